"""The lab report's claims as data, and their evaluation into the rows of comparisons.csv.

Each claim compares two levels of one factor (optimizer or architecture) with the other factor
held fixed, paired by seed, on one metric; `stats` gives the interval and the verdict. The report
reads its verdicts from these rows and never decides anything itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from . import stats

COLUMNS = ["claim_id", "claim", "metric", "held_fixed", "side_a", "side_b", "kind", "n_seeds",
           "mean_a", "mean_b", "estimate", "low", "high", "expect", "method", "verdict"]
SUMMARY_NEEDS = stats.KEYS + ["score_f1_macro", "score_split", "final_val_f1_macro",
                              "train_epoch_seconds", "optimizer_step_ms"]
LEVEL_ORDER = {"arch": ("mobilenet_v2", "mobilenet_v1"), "optimizer": ("adam", "adamax")}
OTHER = {"optimizer": "arch", "arch": "optimizer"}


@dataclass(frozen=True)
class Claim:
    """One claim on one metric: side_a vs side_b of `factor`, the other factor held fixed.

    test is "difference" (paired a - b), "ratio" (paired a / b) or "variance" (var a / var b).
    """
    claim_id: str
    claim: str
    metric: str
    factor: str
    side_a: str
    side_b: str
    test: str
    expect: str


CLAIMS = (
    Claim("adamax-stable-within", "Adamax trains more stably than Adam (within a run)",
          "val_loss_change_sd", "optimizer", "adamax", "adam", "difference", "<0"),
    Claim("adamax-stable-seeds", "Adamax trains more stably than Adam (across seeds)",
          "final_val_f1_macro", "optimizer", "adamax", "adam", "variance", "<1"),
    Claim("adamax-better", "Adamax reaches a better macro-F1 than Adam",
          "score_f1_macro", "optimizer", "adamax", "adam", "difference", ">0"),
    Claim("adamax-slower", "Adamax is slower than Adam",
          "train_epoch_seconds", "optimizer", "adamax", "adam", "ratio", ">1"),
    Claim("adamax-slower", "Adamax is slower than Adam",
          "optimizer_step_ms", "optimizer", "adamax", "adam", "ratio", ">1"),
    Claim("v1-less-accurate", "MobileNetV1 is less accurate than MobileNetV2",
          "score_f1_macro", "arch", "mobilenet_v1", "mobilenet_v2", "difference", "<0"),
    Claim("v1-faster", "MobileNetV1 is faster than MobileNetV2",
          "train_epoch_seconds", "arch", "mobilenet_v1", "mobilenet_v2", "ratio", "<1"),
)
TESTS = {"difference": stats.paired_difference, "ratio": stats.ratio_interval, "variance": stats.variance_ratio}
KIND = {"difference": "difference", "ratio": "ratio", "variance": "ratio"}


def runs_table(summary: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The summary with each run's within-run spread (`val_loss_change_sd`): summary.csv's own column
    when it has one, else computed from the epochs and joined on the run keys."""
    missing = [c for c in SUMMARY_NEEDS if c not in summary.columns]
    if missing:
        raise KeyError(f"summary table lacks {', '.join(missing)}; the claims need {', '.join(SUMMARY_NEEDS)}")
    if "val_loss_change_sd" in summary.columns:
        return summary
    spread = stats.within_run_spread(epochs)[stats.KEYS + ["val_loss_change_sd"]]
    return summary.merge(spread, on=stats.KEYS, how="left", validate="one_to_one")


def _levels(runs: pd.DataFrame, column: str) -> list:
    """The levels of `column` in the grid: the known ones in report order, then the rest sorted."""
    present = set(runs[column])
    known = [level for level in LEVEL_ORDER[column] if level in present]
    return known + sorted(present - set(known), key=str)


def _side(runs: pd.DataFrame, claim: Claim, fixed_level, side: str) -> pd.DataFrame:
    """One side's runs at the held-fixed level, one row per seed (a duplicate seed is an error)."""
    rows = runs[(runs[OTHER[claim.factor]] == fixed_level) & (runs[claim.factor] == side)]
    dup = rows[rows["seed"].duplicated(keep=False)]
    if len(dup):
        raise ValueError(f"{claim.factor}={side}, {OTHER[claim.factor]}={fixed_level} has more than one run "
                         f"for seed {dup['seed'].iloc[0]} (cells {', '.join(map(str, dup['cell']))}); "
                         f"pairing by seed needs one run per seed")
    return rows[["seed", claim.metric]]


def _compare(runs: pd.DataFrame, claim: Claim, fixed_level) -> dict | None:
    """One comparisons row, or None when one of the two sides is not in the grid at this level."""
    a, b = (_side(runs, claim, fixed_level, side) for side in (claim.side_a, claim.side_b))
    if a.empty or b.empty:
        return None
    paired = a.merge(b, on="seed", how="inner", suffixes=("_a", "_b")).sort_values("seed")
    result = TESTS[claim.test](paired[claim.metric + "_a"], paired[claim.metric + "_b"])
    return {"claim_id": claim.claim_id, "claim": claim.claim, "metric": claim.metric,
            "held_fixed": f"{OTHER[claim.factor]}={fixed_level}", "side_a": claim.side_a,
            "side_b": claim.side_b, "kind": KIND[claim.test], "n_seeds": result["n"],
            "mean_a": result["mean_a"], "mean_b": result["mean_b"], "estimate": result["estimate"],
            "low": result["low"], "high": result["high"], "expect": claim.expect,
            "method": result["method"],
            "verdict": stats.verdict(result["low"], result["high"], expect=claim.expect)}


def comparisons(summary: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Every claim x metric x held-fixed level that the grid can answer, as comparisons.csv rows.

    Runs are paired by seed (inner join); a comparison whose two sides are not both in the grid
    is left out, so a grid of MobileNetV2 only has no architecture claims. With one seed every
    verdict is inconclusive.
    """
    runs = runs_table(summary, epochs)
    rows = []
    for claim in CLAIMS:
        for level in _levels(runs, OTHER[claim.factor]):
            row = _compare(runs, claim, level)
            if row is not None:
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many comparisons are supported, contradicted and inconclusive (all three keys, always)."""
    counts = table["verdict"].value_counts()
    unknown = sorted(set(counts.index) - set(stats.VERDICTS))
    if unknown:
        raise ValueError(f"unknown verdicts {unknown}; expected {', '.join(stats.VERDICTS)}")
    return {v: int(counts.get(v, 0)) for v in stats.VERDICTS}
