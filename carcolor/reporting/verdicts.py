"""The lab's claims as the report shows them, read from ``comparisons.csv`` (made by
:mod:`carcolor.analysis.claims`; nothing is decided here): the verdict table, each comparison's parts for
its sentence (which case it is, its numbers written precisely enough to show the side of 0 or 1 they
are on), the verdict counts, and the time comparisons beside the lab's times. The sentences themselves
are in ``report/index.qmd``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..analysis import claims
from . import fmt, pairs

METRIC_NAMES = {
    "score_f1_macro": "{split} macro-F1",
    "final_val_f1_macro": "final val macro-F1 across seeds",
    "val_loss_change_sd": "sd of late val-loss changes",
    "train_epoch_seconds": "training pass per epoch",
    "optimizer_step_ms": "optimizer step",
}
METRIC_UNITS = {"train_epoch_seconds": " s", "optimizer_step_ms": " ms"}
TIME_METRICS = ("train_epoch_seconds", "optimizer_step_ms")
ONE_SEED = "inconclusive: one seed"  # the verdict printed for a comparison over one seed
TABLE_COLUMNS = ["Claim", "Metric", "Held fixed", "Seeds", "Estimate [95 % CI]", "Verdict"]


def metric_name(metric: str, split: str = "test") -> str:
    """The report's name for a comparisons.csv metric (``score_f1_macro`` -> ``test macro-F1``)."""
    return METRIC_NAMES.get(metric, metric.replace("_", " ")).format(split=split)


def held_fixed(row) -> str:
    """The level held fixed: ``arch=mobilenet_v2`` -> ``MobileNetV2``."""
    return fmt.level_name(str(row["held_fixed"]).partition("=")[2])


def kind(row) -> str:
    """"difference", "ratio" or "variance" (a ratio of two variances)."""
    return "variance" if "variance" in str(row["method"]).lower() else str(row["kind"])


def contrast(row) -> str:
    """What was compared: ``Adamax − Adam``, ``Adamax / Adam`` or ``var(Adamax) / var(Adam)``."""
    a, b = fmt.level_name(row["side_a"]), fmt.level_name(row["side_b"])
    return {"variance": f"var({a}) / var({b})", "difference": f"{a} − {b}"}.get(kind(row), f"{a} / {b}")


def _decimals(values, threshold: float, start: int) -> int:
    """Decimals enough that no value other than the threshold prints as the threshold (at most 6)."""
    for d in range(start, 7):
        if all(round(v, d) != threshold or v == threshold for v in values if not fmt.missing(v)):
            return d
    return 6


def number_format(row):
    """A formatter for the estimate and bounds of one row, precise enough to show which side of 0 or 1 they are on."""
    threshold = 0.0 if row["kind"] == "difference" else 1.0
    decimals = _decimals([row["estimate"], row["low"], row["high"]], threshold, 2 if row["kind"] == "ratio" else 3)

    def write(x: float) -> str:
        if fmt.missing(x):
            return fmt.DASH
        if math.isinf(x):
            return "∞"
        if kind(row) == "variance":
            return f"{x:.3g}"
        if row["kind"] == "ratio":
            return f"{x:.{decimals}f}×"
        return f"{x:+.{decimals}f}".replace("-", "−")

    return write


def verdict_label(row) -> str:
    """The verdict as the report prints it: the table's verdict, or ``inconclusive: one seed``."""
    return ONE_SEED if int(row["n_seeds"]) == 1 else str(row["verdict"])


def estimate_text(row) -> str:
    """``+0.012 [+0.004, +0.020]``; the estimate alone when there is no interval."""
    write = number_format(row)
    if fmt.missing(row["low"]) or fmt.missing(row["high"]):
        return f"{write(row['estimate'])} (no interval)" if not fmt.missing(row["estimate"]) else fmt.DASH
    return f"{write(row['estimate'])} [{write(row['low'])}, {write(row['high'])}]"


def _means(row) -> str:
    """``Adamax 0.770, Adam 0.758`` for differences and ratios; "" for a variance ratio."""
    if kind(row) == "variance" or fmt.missing(row["mean_a"]):
        return ""
    unit = METRIC_UNITS.get(row["metric"], "")
    digits = {" s": 2, " ms": 1}.get(unit, 3)
    a, b = fmt.level_name(row["side_a"]), fmt.level_name(row["side_b"])
    return f"{a} {row['mean_a']:.{digits}f}{unit}, {b} {row['mean_b']:.{digits}f}{unit}"


@dataclass(frozen=True)
class Verdict:
    """One comparisons.csv row, in the parts its sentence needs.

    case: "decided" (an interval over several seeds), "no interval" (several seeds, none to give),
    "one seed" or "one seed, spread" (a spread across seeds, which one seed cannot have).
    claim_side / other_side: where the interval must lie for the claim and against it ("below 0").
    """

    case: str
    held: str
    metric: str
    contrast: str
    label: str
    verdict: str
    kind: str
    n: int
    estimate: str
    low: str
    high: str
    interval: str
    method: str
    threshold: str
    claim_side: str
    other_side: str
    means: str


def _case(row) -> str:
    n = int(row["n_seeds"])
    if n == 1:
        return "one seed, spread" if kind(row) == "variance" else "one seed"
    return "no interval" if n == 0 or fmt.missing(row["low"]) else "decided"


def verdict(row, split: str = "test") -> Verdict:
    write, expect = number_format(row), str(row["expect"])
    below, above = f"below {expect[1:]}", f"above {expect[1:]}"
    return Verdict(
        case=_case(row), held=held_fixed(row), metric=metric_name(row["metric"], split), contrast=contrast(row),
        label=verdict_label(row), verdict=str(row["verdict"]), kind=kind(row), n=int(row["n_seeds"]),
        estimate=write(row["estimate"]), low=write(row["low"]), high=write(row["high"]),
        interval=estimate_text(row), method=str(row["method"]), threshold=expect[1:],
        claim_side=below if expect[0] == "<" else above, other_side=above if expect[0] == "<" else below,
        means=_means(row))


def by_claim(comparisons: pd.DataFrame, split: str = "test") -> list[tuple[str, list[Verdict]]]:
    """Each claim's text with its comparisons, in the order of comparisons.csv."""
    return [(claim, [verdict(r, split) for _, r in comparisons[comparisons["claim"] == claim].iterrows()])
            for claim in dict.fromkeys(comparisons["claim"])]


def unanswered_claims(comparisons: pd.DataFrame) -> list[str]:
    """The lab's claims (claims.CLAIMS) that this grid has no comparison for, e.g. no MobileNetV1 run."""
    answered = set(comparisons["claim_id"])
    return list(dict.fromkeys(c.claim for c in claims.CLAIMS if c.claim_id not in answered))


def verdict_table(comparisons: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per comparison: claim, metric, held fixed, n seeds, estimate [low, high], verdict.

    A claim's text is printed on its first row only, so the rows read as one group per claim.
    """
    rows = []
    previous = None
    for _, r in comparisons.iterrows():
        rows.append(dict(zip(TABLE_COLUMNS, [r["claim"] if r["claim"] != previous else "",
                                             metric_name(r["metric"], split), held_fixed(r), str(int(r["n_seeds"])),
                                             estimate_text(r), verdict_label(r)])))
        previous = r["claim"]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


@dataclass(frozen=True)
class Counts:
    """How many comparisons there are and how many got each verdict; one_seed: every one is over one seed."""

    total: int
    supported: int
    contradicted: int
    inconclusive: int
    one_seed: bool


def counts(comparisons: pd.DataFrame) -> Counts:
    by_verdict = claims.verdict_counts(comparisons)
    return Counts(total=sum(by_verdict.values()), one_seed=bool(len(comparisons))
                  and int(comparisons["n_seeds"].max()) <= 1, **by_verdict)


@dataclass(frozen=True)
class TimeComparison:
    """One claim about time at one level held fixed: its comparisons (one per time metric) over n seeds,
    and the lab's ratio of total training times (``1:54:34 / 1:38:34 = 1.16×``), or the runs the lab lacks."""

    held: str
    contrast: str
    n: int
    rows: list[Verdict]
    lab_ratio: str
    lab_missing: list[str]


def _run_keys(row, side: str) -> tuple[str, str]:
    """(arch, optimizer) of one side of a comparisons row: its level plus the level held fixed."""
    factor, _, level = str(row["held_fixed"]).partition("=")
    return (level, row[side]) if factor == "arch" else (row[side], level)


def _lab_ratio(lab: pd.DataFrame, row) -> tuple[str, list[str]]:
    sides = [_run_keys(row, side) for side in ("side_a", "side_b")]
    found = [pairs.rows_of(lab, *keys) for keys in sides]
    lacking = [fmt.run_label(*keys) for keys, rows in zip(sides, found) if rows.empty]
    if lacking:
        return "", lacking
    a, b = (rows.iloc[0] for rows in found)
    ratio = float(a["train_seconds"]) / float(b["train_seconds"])
    return f"{a['train_time']} / {b['train_time']} = {fmt.ratio(ratio)}", []


def time_comparisons(comparisons: pd.DataFrame, lab: pd.DataFrame) -> list[TimeComparison]:
    """The time claims, grouped by claim and level held fixed, each with the lab's ratio."""
    rows = comparisons[comparisons["metric"].isin(TIME_METRICS)]
    out = []
    for _, group in rows.groupby(["claim_id", "held_fixed"], sort=False):
        first = group.iloc[0]
        ratio, lacking = _lab_ratio(lab, first)
        out.append(TimeComparison(held=held_fixed(first), contrast=contrast(first), n=int(group["n_seeds"].max()),
                                  rows=[verdict(r) for _, r in group.iterrows()], lab_ratio=ratio,
                                  lab_missing=lacking))
    return out
