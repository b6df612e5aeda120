"""The grid as the report sees it: runs in report order, (architecture, optimizer) pairs, each pair's
numbers as mean ± 95 % half-width over its seeds, the best pair, the split that was scored, and where
an epoch's time went. The figures (:mod:`carcolor.reporting.plots`) and the prose share it.

The half-widths only show how far the seeds scatter; claims are decided by the paired comparisons in
comparisons.csv (:mod:`carcolor.analysis.claims`), never by whether two bands overlap.
"""

from __future__ import annotations

import pandas as pd

from ..analysis import stats
from . import fmt
from .results import MAKE_COMMAND

ARCH_ORDER = ("mobilenet_v2", "mobilenet_v1")
OPTIMIZER_ORDER = ("adam", "adamax")
CONFIDENCE = 0.95
BAND_COLUMNS = ("score_f1_macro", "score_accuracy", "score_loss", "best_val_f1_macro", "final_val_f1_macro",
                "final_val_accuracy", "final_val_loss", "train_seconds", "mean_epoch_seconds",
                "train_epoch_seconds", "optimizer_step_ms", "images_per_s", "optimizer_s", "params", "macs",
                "val_loss_change_sd", "warm_up_s")


def _order_key(arch: str, optimizer: str) -> tuple:
    a = ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER)
    o = OPTIMIZER_ORDER.index(optimizer) if optimizer in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER)
    return (a, arch, o, optimizer)


def ordered_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows in report order: MobileNetV2 first, Adam before Adamax, then seed."""
    keys = summary.apply(lambda r: _order_key(r["arch"], r["optimizer"]) + (r["seed"],), axis=1)
    return summary.iloc[sorted(range(len(summary)), key=lambda i: keys.iloc[i])].reset_index(drop=True)


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (arch, optimizer) pairs of a table in report order."""
    return sorted(set(zip(frame["arch"], frame["optimizer"])), key=lambda p: _order_key(*p))


def rows_of(frame: pd.DataFrame, arch: str, optimizer: str) -> pd.DataFrame:
    """The rows of one pair."""
    return frame[(frame["arch"] == arch) & (frame["optimizer"] == optimizer)]


def pair_means(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per pair in report order: each number as its mean over seeds (``col``) and the 95 %
    half-width of that mean (``col_hw``, NaN with one seed), with ``n_seeds`` and ``best_epochs`` (the
    runs' chosen epochs, by seed)."""
    rows = []
    for arch, opt in pairs(summary):
        runs = rows_of(summary, arch, opt).sort_values("seed")
        row = {"arch": arch, "optimizer": opt, "n_seeds": int(runs["seed"].nunique()),
               "best_epochs": [int(e) for e in runs["best_epoch"]]}
        for col in BAND_COLUMNS:
            if col in runs.columns:
                row[col], row[f"{col}_hw"] = stats.mean_band(runs[col], CONFIDENCE)
        rows.append(row)
    return pd.DataFrame(rows)


def top_pairs(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """The pairs whose mean score macro-F1 is the highest as the report prints it (three decimals),
    in report order: one pair, or all those tied for the best."""
    means = pair_means(summary)
    printed = means["score_f1_macro"].map(fmt.f1)
    best = printed[means["score_f1_macro"].idxmax()]
    return [(r["arch"], r["optimizer"]) for (_, r), p in zip(means.iterrows(), printed) if p == best]


def best_pair(summary: pd.DataFrame) -> tuple[str, str]:
    """The pair with the best mean score macro-F1 (of pairs tied for it, the fastest training pass per
    epoch): the one whose confusion matrix the report shows."""
    top = set(top_pairs(summary))
    means = pair_means(summary)
    tied = means[[(a, o) in top for a, o in zip(means["arch"], means["optimizer"])]]
    fastest = tied.sort_values("train_epoch_seconds", kind="stable").iloc[0]
    return str(fastest["arch"]), str(fastest["optimizer"])


def n_seeds(summary: pd.DataFrame) -> int:
    """Seeds per pair (the fewest, when pairs differ): the n of every paired comparison at most."""
    return int(summary.groupby(["arch", "optimizer"])["seed"].nunique().min())


def score_split(summary: pd.DataFrame) -> str:
    """The split the runs were scored on ("test" or "val"), as each run recorded it in the summary."""
    splits = sorted(set(map(str, summary["score_split"])))
    if len(splits) != 1:
        raise ValueError(f"summary.csv scores its runs on {fmt.join(splits) or 'no split'}; one grid scores one "
                         f"split: re-run `{MAKE_COMMAND}` so that every run uses the same data")
    return splits[0]


def devices(summary: pd.DataFrame) -> list[str]:
    """The devices the runs used, in order of first appearance."""
    return list(dict.fromkeys(str(d) for d in summary["device"]))


def timing_breakdown(epochs: pd.DataFrame) -> pd.DataFrame:
    """Seconds per grid cell spent in input batches, forward+backward, optimizer step, the rest of the
    training pass, and evaluation (every other split; summed over epochs)."""
    tr = epochs[epochs["split"] == "train"]
    ev = epochs[epochs["split"] != "train"]
    g = tr.groupby(["cell", "arch", "optimizer", "seed"], sort=False)
    out = g[["seconds", "data_s", "forward_backward_s", "optimizer_s"]].sum(min_count=1).reset_index()
    parts = out[["data_s", "forward_backward_s", "optimizer_s"]].fillna(0).sum(axis=1)
    out["other_s"] = (out["seconds"] - parts).clip(lower=0)
    out["eval_s"] = out["cell"].map(ev.groupby("cell")["seconds"].sum()).fillna(0.0)
    out["epochs"] = out["cell"].map(tr.groupby("cell")["epoch"].nunique())
    return out
