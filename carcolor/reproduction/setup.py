"""How two runs were set up, cell by cell: what decides the numbers, and what does not.

Each aspect comes from what a cell recorded (summary.json, provenance.json). The aspects that decide
the numbers (DECIDES) must all be the same for equal numbers to be expected: then every non-time
column of the tables must be equal (carcolor.reproduction.agreement.bitwise). The others (the commit,
when the training code is the same; the other packages; Python; the host) are shown, not required.
"""
from __future__ import annotations

import pandas as pd

from .runs import Run

NOT_RECORDED = "not recorded"
COLUMNS = ["cell", "aspect", "reference", "candidate", "same", "decides"]


def _settings(summary: dict) -> dict | None:
    """The training settings (threads included), the cell's own keys aside."""
    config = summary.get("config")
    return {k: v for k, v in config.items() if k not in ("arch", "optimizer", "seed")} if config else None


def _packages(prov: dict) -> dict | None:
    found = {k: v for k, v in (prov.get("packages") or {}).items() if k not in ("torch", "carcolor")}
    return found or None


# aspect -> (reads it from (summary.json, provenance.json), decides the numbers)
ASPECTS = {
    "settings": (lambda s, p: _settings(s), True),
    "data fingerprint": (lambda s, p: (s.get("identity") or {}).get("data"), True),
    "training code": (lambda s, p: (s.get("identity") or {}).get("code"), True),
    "torch": (lambda s, p: s.get("torch") or p.get("torch"), True),
    "device": (lambda s, p: s.get("device"), True),
    "CPU model": (lambda s, p: (p.get("cpu") or {}).get("model"), True),
    "threads": (lambda s, p: s.get("threads"), True),
    "commit": (lambda s, p: p.get("git_commit"), False),
    "other packages": (lambda s, p: _packages(p), False),
    "Python": (lambda s, p: p.get("python"), False),
    "host": (lambda s, p: p.get("host"), False),
}
DECIDES = [aspect for aspect, (_, decides) in ASPECTS.items() if decides]


def _value(run: Run, cell: str, aspect: str):
    value = ASPECTS[aspect][0](run.summaries.get(cell) or {}, run.provenance.get(cell) or {})
    return NOT_RECORDED if value is None else value if isinstance(value, dict) else str(value)


def _shown(a, b) -> tuple[str, str]:
    """Both sides of an aspect made of several values (settings, packages): how many, when all are the
    same; else only those that differ, `key=value`."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return tuple(v if isinstance(v, str) else ", ".join(f"{k}={v[k]}" for k in sorted(v)) for v in (a, b))
    if a == b:
        return (f"{len(a)} values, all the same",) * 2
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return tuple(", ".join(f"{k}={side.get(k, 'none')}" for k in differ) for side in (a, b))


def compare(reference: Run, candidate: Run, cells: list[str]) -> pd.DataFrame:
    """One row per cell and aspect: both values, whether they are the same, whether the aspect decides
    the numbers. Of the settings and the other packages only those that differ are named."""
    rows = []
    for cell in cells:
        for aspect, (_, decides) in ASPECTS.items():
            a, b = _value(reference, cell, aspect), _value(candidate, cell, aspect)
            same = a == b and a != NOT_RECORDED
            a, b = _shown(a, b)
            rows.append({"cell": cell, "aspect": aspect, "reference": a, "candidate": b, "same": same,
                         "decides": decides})
    return pd.DataFrame(rows, columns=COLUMNS)


def same_where_it_matters(setup: pd.DataFrame) -> dict[str, bool]:
    """Per cell: whether every aspect that decides the numbers is the same (and recorded) in both runs."""
    deciding = setup[setup["decides"]]
    return {cell: bool(rows["same"].all()) for cell, rows in deciding.groupby("cell", sort=False)}


def by_aspect(setup: pd.DataFrame) -> pd.DataFrame:
    """The page's table: one row per aspect, each side's value(s) over the cells, in how many cells
    the two are the same, and whether the aspect decides the numbers."""
    rows = []
    for aspect, group in setup.groupby("aspect", sort=False):
        values = {side: "; ".join(dict.fromkeys(group[side])) for side in ("reference", "candidate")}
        rows.append({"aspect": aspect, **values, "same_in": int(group["same"].sum()), "cells": len(group),
                     "decides": bool(group["decides"].iloc[0])})
    return pd.DataFrame(rows, columns=["aspect", "reference", "candidate", "same_in", "cells", "decides"])
