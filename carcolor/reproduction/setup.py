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


def _settings(summary: dict) -> str:
    """The training settings (threads included) as `key=value` pairs, the cell's own keys aside."""
    config = summary.get("config")
    if not config:
        return NOT_RECORDED
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items()) if k not in ("arch", "optimizer", "seed"))


def _packages(prov: dict) -> dict:
    return {k: v for k, v in (prov.get("packages") or {}).items() if k not in ("torch", "carcolor")}


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
    "other packages": (lambda s, p: ", ".join(f"{k} {v}" for k, v in sorted(_packages(p).items())) or None, False),
    "Python": (lambda s, p: p.get("python"), False),
    "host": (lambda s, p: p.get("host"), False),
}
DECIDES = [aspect for aspect, (_, decides) in ASPECTS.items() if decides]


def _value(run: Run, cell: str, aspect: str) -> str:
    value = ASPECTS[aspect][0](run.summaries.get(cell) or {}, run.provenance.get(cell) or {})
    return NOT_RECORDED if value is None else str(value)


def _packages_shown(a: str, b: str) -> tuple[str, str]:
    """Both sides' `other packages`: the versions of those that differ, or how many are the same."""
    if a == b:
        return (a, b) if a == NOT_RECORDED else ((f"{len(a.split(', '))} packages, same versions",) * 2)
    before, after = (dict(item.rsplit(" ", 1) for item in v.split(", ")) if v != NOT_RECORDED else {} for v in (a, b))
    differ = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    return tuple(", ".join(f"{k} {side.get(k, 'none')}" for k in differ) for side in (before, after))


def compare(reference: Run, candidate: Run, cells: list[str]) -> pd.DataFrame:
    """One row per cell and aspect: both values, whether they are the same, whether the aspect decides
    the numbers. For `other packages` only those whose versions differ are named."""
    rows = []
    for cell in cells:
        for aspect, (_, decides) in ASPECTS.items():
            a, b = _value(reference, cell, aspect), _value(candidate, cell, aspect)
            same = a == b and a != NOT_RECORDED
            if aspect == "other packages":
                a, b = _packages_shown(a, b)
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
