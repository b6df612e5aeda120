"""What two runs have in common, and how far they agree on it: the grid's differences, the bitwise
check, the equivalence verdict per pair and metric, the lab's claims side by side, the mean curves.

Only what both runs have is compared: the cells both ran, the colours both have.
"""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from ..analysis import stats
from .runs import Run

CONFIDENCE = 0.90  # the interval of an equivalence test at 5 % on each side (TOST)
CURVE_CONFIDENCE = 0.95  # the bands of the curves, as in the report's figures
PAIR = ["arch", "optimizer"]
# Columns that measure time: they differ between any two runs, so the bitwise check leaves them out.
TIME = re.compile(r".*(seconds|_s|_ms)$")
RUN_KEYS = ("images_resumed", "decode_workers")  # dataset.json: how the preparation went, not what it made
ROW_KEYS = {"epochs": ["cell", "epoch", "split"], "summary": ["cell"], "per_class": ["cell", "colour"],
            "confusion": ["cell", "true", "predicted"], "dataset": ["colour", "split"],
            "comparisons": ["claim_id", "metric", "held_fixed"]}
PER_CELL = ("epochs", "summary", "per_class", "confusion")
GRID_KEYS = ("source", "image_size", "n_train_per_colour", "n_val_per_colour", "n_test_per_colour", "protocol")
# metric -> (table, column, kind, the margin's key in the config's `reproduction` section)
METRICS = {"macro-F1": ("summary", "score_f1_macro", "difference", "f1_margin"),
           "loss": ("summary", "score_loss", "difference", "loss_margin"),
           "F1 per colour": ("per_class", "f1", "difference", "colour_f1_margin"),
           "epoch time": ("summary", "train_epoch_seconds", "ratio", "epoch_time_ratio")}
COLUMNS = ["arch", "optimizer", "metric", "colour", "kind", "n_reference", "n_candidate", "mean_reference",
           "mean_candidate", "estimate", "low", "high", "margin_low", "margin_high", "method", "verdict"]


def common_cells(reference: Run, candidate: Run) -> list[str]:
    theirs = set(candidate.cells)
    return [c for c in reference.cells if c in theirs]


def grid_differences(reference: Run, candidate: Run) -> list[str]:
    """One line per difference of the two grids: cells, colours, data and splits, epochs."""
    lines = []
    for mine, theirs, where in ((reference, candidate, "reference"), (candidate, reference, "candidate")):
        lines += [f"cell {c} is only in the {where}" for c in mine.cells if c not in set(theirs.cells)]
        lines += [f"colour {c} is only in the {where}" for c in mine.dataset.get("colours", [])
                  if c not in theirs.dataset.get("colours", [])]
    for key in GRID_KEYS:
        a, b = reference.dataset.get(key), candidate.dataset.get(key)
        if a != b:
            lines.append(f"data: {key} is {a} in the reference, {b} in the candidate")
    a, b = (sorted(set(run.tables["summary"]["epochs"])) for run in (reference, candidate))
    if a != b:
        lines.append(f"training: {', '.join(map(str, a))} epochs in the reference, {', '.join(map(str, b))} "
                     f"in the candidate")
    return lines


# --------------------------------------------------------------------------- bitwise


def _frame(run: Run, table: str, cells: list[str]) -> pd.DataFrame:
    """A table as the exact text of its cells (no parsing), rows of `cells` only, time columns out."""
    frame = pd.read_csv(io.StringIO(run.texts[table]), dtype=str, keep_default_na=False)
    if "cell" in frame.columns:
        frame = frame[frame["cell"].isin(cells)]
    if "metric" in frame.columns:  # comparisons.csv: the rows that compare times differ as times do
        frame = frame[~frame["metric"].map(lambda m: bool(TIME.match(m)))]
    keep = [c for c in frame.columns if not TIME.match(c)]
    return frame[keep].sort_values(ROW_KEYS[table], kind="stable").reset_index(drop=True)


def _first_difference(table: str, a: pd.DataFrame, b: pd.DataFrame) -> dict | None:
    keys = ROW_KEYS[table]
    where = {"table": f"{table}.csv"}
    if list(a.columns) != list(b.columns):
        return {**where, "row": "(header)", "column": "(columns)", "reference": ", ".join(a.columns),
                "candidate": ", ".join(b.columns)}
    rows_a, rows_b = (list(map(tuple, f[keys].to_numpy())) for f in (a, b))
    if rows_a != rows_b:
        missing = next((r for r in rows_a if r not in set(rows_b)), None) or next(r for r in rows_b if r not in set(rows_a))
        row = ", ".join(f"{k}={v}" for k, v in zip(keys, missing))
        return {**where, "row": row, "column": "(the row)", "reference": "present" if missing in rows_a else "absent",
                "candidate": "present" if missing in rows_b else "absent"}
    unequal = np.argwhere(a.to_numpy() != b.to_numpy())
    if not len(unequal):
        return None
    i, j = unequal[0]
    row = ", ".join(f"{k}={a.at[i, k]}" for k in keys)
    return {**where, "row": row, "column": a.columns[j], "reference": a.iat[i, j], "candidate": b.iat[i, j]}


def _dataset_difference(reference: Run, candidate: Run) -> dict | None:
    a, b = ({k: v for k, v in run.dataset.items() if not TIME.match(k) and k not in RUN_KEYS}
            for run in (reference, candidate))
    key = next((k for k in list(a) + list(b) if a.get(k) != b.get(k)), None)
    if key is None:
        return None
    return {"table": "dataset.json", "row": "", "column": key, "reference": str(a.get(key)),
            "candidate": str(b.get(key))}


def bitwise(reference: Run, candidate: Run, eligible: list[str], whole: bool) -> dict:
    """Compare every non-time column of the cells in `eligible` (those set up the same in everything that
    decides the numbers), and with `whole` (every cell eligible, the same grid) the tables made of all
    cells too. Returns the tables checked and the first difference (None when there is none)."""
    tables = list(PER_CELL) + (["dataset", "comparisons"] if whole else [])
    for table in tables:
        found = _first_difference(table, _frame(reference, table, eligible), _frame(candidate, table, eligible))
        if found:
            return {"tables": tables, "difference": found}
    found = _dataset_difference(reference, candidate) if whole else None
    return {"tables": tables + (["dataset.json"] if whole else []), "difference": found}


# --------------------------------------------------------------------------- agreement


def _values(run: Run, metric: str, cells: list[str]) -> pd.DataFrame:
    table, column, _, _ = METRICS[metric]
    frame = run.tables[table]
    frame = frame[frame["cell"].isin(cells)]
    return frame.assign(value=frame[column], colour=frame["colour"] if "colour" in frame else "")


def _interval(kind: str, a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Welch's interval, or an exact 0 (ratio 1) when both runs have the same seeds with the same values."""
    test = stats.welch_difference if kind == "difference" else stats.welch_ratio
    same = (sorted(a["seed"]) == sorted(b["seed"])
            and a.sort_values("seed")["value"].tolist() == b.sort_values("seed")["value"].tolist())
    result = test(a["value"], b["value"], confidence=CONFIDENCE)
    if same:
        exact = 0.0 if kind == "difference" else 1.0
        result.update(estimate=exact, low=exact, high=exact, method="the same value for every seed: no interval needed")
    return result


def agreement(reference: Run, candidate: Run, cells: list[str], margins: dict) -> pd.DataFrame:
    """Per pair and metric (per colour for per-colour F1): candidate minus reference (a ratio for
    times) with its 90 % interval, and the equivalence verdict against the margin."""
    rows = []
    for metric, (_, _, kind, key) in METRICS.items():
        margin = float(margins[key])
        lower, upper = (-margin, margin) if kind == "difference" else (1 / margin, margin)
        ref, cand = _values(reference, metric, cells), _values(candidate, metric, cells)
        for (arch, optimizer, colour), b in ref.groupby(PAIR + ["colour"], sort=False):
            a = cand[(cand["arch"] == arch) & (cand["optimizer"] == optimizer) & (cand["colour"] == colour)]
            if a.empty:  # a colour the candidate lacks: a grid difference, not compared
                continue
            r = _interval(kind, a, b)
            rows.append({"arch": arch, "optimizer": optimizer, "metric": metric, "colour": colour, "kind": kind,
                         "n_reference": r["n_b"], "n_candidate": r["n_a"], "mean_reference": r["mean_b"],
                         "mean_candidate": r["mean_a"], "estimate": r["estimate"], "low": r["low"],
                         "high": r["high"], "margin_low": lower, "margin_high": upper, "method": r["method"],
                         "verdict": stats.equivalence(r["low"], r["high"], lower=lower, upper=upper)})
    return pd.DataFrame(rows, columns=COLUMNS)


def claims(reference: Run, candidate: Run) -> pd.DataFrame:
    """Each claim x metric x held-fixed level that both runs decided, their verdicts side by side."""
    keys = ["claim_id", "claim", "metric", "held_fixed", "kind"]
    a, b = (run.tables["comparisons"][keys + ["estimate", "verdict"]] for run in (reference, candidate))
    both = a.merge(b, on=keys, how="inner", suffixes=("_reference", "_candidate"))
    return both.assign(changed=both["verdict_reference"] != both["verdict_candidate"])


def curves(reference: Run, candidate: Run, cells: list[str], split: str = "val") -> pd.DataFrame:
    """Per run, pair and epoch: the mean of each curve over the seeds both runs have, with a 95 % band."""
    rows = []
    for name, run in (("reference", reference), ("candidate", candidate)):
        epochs = run.tables["epochs"]
        part = epochs[epochs["cell"].isin(cells) & (epochs["split"] == split)]
        for (arch, optimizer, epoch), g in part.groupby(PAIR + ["epoch"], sort=False):
            for metric in ("f1_macro", "loss"):
                mean, half = stats.mean_band(g[metric], CURVE_CONFIDENCE)
                rows.append({"run": name, "arch": arch, "optimizer": optimizer, "epoch": int(epoch),
                             "metric": metric, "mean": mean, "half": half, "n": int(g[metric].notna().sum())})
    return pd.DataFrame(rows, columns=["run", "arch", "optimizer", "epoch", "metric", "mean", "half", "n"])


def counts(table: pd.DataFrame, column: str = "verdict") -> dict[str, int]:
    values = table[column].value_counts()
    return {v: int(values.get(v, 0)) for v in stats.EQUIVALENCE_VERDICTS}
