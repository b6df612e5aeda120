"""Numbers, tables and short phrases for the comparison page (report/compare.qmd), read from the
tables `carcolor compare` wrote. The page's prose is in the .qmd; this module types no sentence.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..reporting import fmt, results
from . import agreement

METRIC_ORDER = ("macro-F1", "loss", "epoch time")
MARGIN_KEYS = {metric: key for metric, (_, _, _, key) in agreement.METRICS.items()}


@dataclass
class Comparison:
    """What `carcolor compare` wrote into one folder."""

    summary: dict
    comparison: pd.DataFrame
    setup: pd.DataFrame
    claims: pd.DataFrame
    curves: pd.DataFrame


def load(folder: str | Path | None = None) -> Comparison:
    """The tables of `folder`, by default $CARCOLOR_RESULTS (set by the renderer)."""
    folder = Path(folder or os.environ.get("CARCOLOR_RESULTS") or "../../results/compare")
    read = {name: pd.read_csv(folder / f"{name}.csv", keep_default_na=name != "setup")
            for name in ("comparison", "setup", "claims", "curves")}
    return Comparison(summary=json.loads((folder / "compare.json").read_text()), **read)


def labels(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    return {(a, o): fmt.run_label(a, o) for a, o in zip(frame["arch"], frame["optimizer"])}


def metric_name(metric: str, split: str) -> str:
    return {"macro-F1": f"{split} macro-F1", "loss": f"{split} loss", "F1 per colour": f"{split} F1 per colour",
            "epoch time": "time per training epoch"}[metric]


def _number(x: float, kind: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.2f}×" if kind == "ratio" else f"{x:+.3f}"


def interval(row) -> str:
    """`+0.012 [-0.020, +0.044]`, or the estimate alone when there is no interval (one seed)."""
    estimate = _number(row["estimate"], row["kind"])
    if math.isnan(row["low"]):
        return f"{estimate} (no interval)"
    if row["low"] == row["high"]:
        return f"{estimate} (exact)"
    return f"{estimate} [{_number(row['low'], row['kind'])}, {_number(row['high'], row['kind'])}]"


def _verdict(verdict: str) -> str:
    return f"**{verdict}**" if verdict == "not reproduced" else verdict


def _mean(x: float, kind: str) -> str:
    return "–" if math.isnan(x) else (f"{x:.2f} s" if kind == "ratio" else f"{x:.3f}")


def agreement_table(c: Comparison) -> pd.DataFrame:
    """Per pair and metric (per-colour F1 apart): both means, the difference or ratio with its
    interval, the margin and the verdict."""
    split = c.summary["score_split"]
    rows = c.comparison[c.comparison["metric"].isin(METRIC_ORDER)].copy()
    rows["_m"] = rows["metric"].map(METRIC_ORDER.index)
    names = labels(rows)
    out = []
    for _, r in rows.sort_values("_m", kind="stable").iterrows():
        margin = (f"±{r['margin_high']:g}" if r["kind"] == "difference"
                  else f"{r['margin_low']:.2f}× to {r['margin_high']:g}×")
        out.append({"pair": names[(r["arch"], r["optimizer"])], "metric": metric_name(r["metric"], split),
                    "reference": _mean(r["mean_reference"], r["kind"]),
                    "candidate": _mean(r["mean_candidate"], r["kind"]),
                    "candidate − reference (90 % interval)": interval(r), "margin": margin,
                    "verdict": _verdict(r["verdict"])})
    return pd.DataFrame(out)


def colour_table(c: Comparison) -> pd.DataFrame:
    """Per colour (rows) and pair (columns): the verdict on that colour's F1, with the difference."""
    rows = c.comparison[c.comparison["metric"] == "F1 per colour"]
    names = labels(rows)
    cells = {(r["colour"], names[(r["arch"], r["optimizer"])]): f"{_verdict(r['verdict'])} ({_number(r['estimate'], 'difference')})"
             for _, r in rows.iterrows()}
    colours, pairs = list(dict.fromkeys(rows["colour"])), list(dict.fromkeys(names.values()))
    return pd.DataFrame([{"colour": colour, **{p: cells.get((colour, p), "–") for p in pairs}} for colour in colours])


def setup_table(c: Comparison) -> pd.DataFrame:
    from .setup import by_aspect

    t = by_aspect(c.setup)
    short = {side: t[side].str.replace(r"\b([0-9a-f]{12})[0-9a-f]{28}\b", r"\1", regex=True)  # commits, as git
             for side in ("reference", "candidate")}                             # shows them (setup.csv: whole)
    return pd.DataFrame({"aspect": t["aspect"], "reference": short["reference"], "candidate": short["candidate"],
                         "same in (cells)": [f"{s}/{n}" for s, n in zip(t["same_in"], t["cells"])],
                         "decides the numbers": t["decides"].map({True: "yes", False: "no"})})


def claims_table(c: Comparison) -> pd.DataFrame:
    t = c.claims
    mark = t["changed"].map({True: "**", False: ""})
    return pd.DataFrame({"claim": t["claim"], "held fixed": t["held_fixed"], "metric": t["metric"],
                         "reference": mark + t["verdict_reference"] + mark,
                         "candidate": mark + t["verdict_candidate"] + mark})


def margins_table(c: Comparison) -> pd.DataFrame:
    m, split = c.summary["margins"], c.summary["score_split"]
    return pd.DataFrame([{"metric": metric_name(metric, split), "margin": f"{m[key]:g}",
                          "setting": f"reproduction.{key}"} for metric, key in MARGIN_KEYS.items()])


def counts(c: Comparison, part: str) -> dict[str, int]:
    """Verdict counts of the pair-level metrics ("pairs") or of the per-colour ones ("colours")."""
    rows = c.comparison["metric"] == "F1 per colour"
    return agreement.counts(c.comparison[rows if part == "colours" else ~rows])


def renderer() -> str:
    return results.renderer_name()


def md(frame: pd.DataFrame, caption: str, label: str) -> str:
    return fmt.md_table(frame, caption, label)
