"""How the report writes things: the names of networks and optimizers, numbers, durations, dates, mean ±
half-width bands, lists, Markdown tables and a run's name linked to its page. No sentences: those live in
``report/index.qmd``."""

from __future__ import annotations

import math
import re

import pandas as pd

from .. import layout

LEVEL_NAMES = {"mobilenet_v2": "MobileNetV2", "mobilenet_v1": "MobileNetV1", "adam": "Adam", "adamax": "Adamax"}
DASH = "–"  # a missing value


def level_name(level: str) -> str:
    """An architecture or optimizer by its report name (``adamax`` -> ``Adamax``)."""
    return LEVEL_NAMES.get(level, level)


def run_label(arch: str, optimizer: str) -> str:
    """``MobileNetV2 + Adam``."""
    return f"{level_name(arch)} + {level_name(optimizer)}"


def missing(x) -> bool:
    """None or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def duration(seconds: float) -> str:
    """``h:mm:ss`` (rounded to the second)."""
    if missing(seconds):
        return DASH
    h, rest = divmod(int(round(float(seconds))), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def long_date(day) -> str:
    """``December 7, 2026``: a date as Quarto writes ``date-format: long`` in English."""
    return f"{day:%B} {day.day}, {day.year}"


def count(n: float) -> str:
    """``2.24 M``, ``55.7 M``, ``1.20 G``."""
    n = float(n)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}"
    return f"{n:.0f}"


def integer(n: float) -> str:
    """``1,234``."""
    return f"{int(round(float(n))):,}"


def f1(x: float) -> str:
    """A score to three decimals: ``0.770``."""
    return f"{float(x):.3f}"


def ratio(x: float) -> str:
    """``1.16×``."""
    return f"{float(x):.2f}×"


def band(mean: float, half: float, fmt=f1) -> str:
    """``0.812 ± 0.013`` (mean ± 95 % half-width); just the mean when there is no half-width (one seed)."""
    if missing(mean):
        return DASH
    return fmt(mean) if missing(half) else f"{fmt(mean)} ± {fmt(half)}"


def join(items, last: str = "and") -> str:
    """``a, b and c``."""
    items = [str(i) for i in items]
    return ", ".join(items[:-1]) + f" {last} " + items[-1] if len(items) > 1 else "".join(items)


def quantity(n: int, noun: str) -> str:
    """``3 seeds``, ``one seed``."""
    return f"one {noun}" if n == 1 else f"{n} {noun}s"


def code(text: str) -> str:
    """Text as inline code: ``mobilenet_v2-adam-s0``."""
    return f"`{text}`"


def code_list(names, at_most: int = 6) -> str:
    """Names as inline code joined into a list, the ones past ``at_most - 1`` counted: ```a`, `b` and 3 more``."""
    names = [code(n) for n in names]
    if len(names) > at_most:
        names = names[:at_most - 1] + [f"{len(names) - at_most + 1} more"]
    return join(names) or DASH


def cell_link(cell: str) -> str:
    """A run's name linked to its notebook page (relative to the report, so a copied results/report/ keeps it)."""
    return f"[{code(cell)}]({layout.page_path(cell)})"


_NUMERIC = re.compile(r"^\**[\d.,:+\-−]+")


def md_table(df: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A pipe table (``df.to_markdown``) with an optional ``: caption`` line; ``label`` (``tbl-…``)
    gives the table an id, a number and ``@tbl-…`` references.

    Columns whose values all start with a number (or are "–") are right-aligned.
    """
    if label and not label.startswith("tbl-"):
        raise ValueError(f"a table label starts with 'tbl-' (Quarto's cross-reference prefix), not {label!r}")
    align = []
    for col in df.columns:
        vals = [str(v) for v in df[col] if str(v) not in {DASH, ""}]
        align.append("right" if vals and all(_NUMERIC.match(v) for v in vals) else "left")
    text = df.to_markdown(index=False, disable_numparse=True, colalign=align)
    if caption:
        text += f"\n\n: {caption}" + (f" {{#{label}}}" if label else "")
    return text + "\n"
