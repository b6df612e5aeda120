"""Compare a run with a reference, metric by metric, and say whether it reproduced it.

`carcolor compare REFERENCE [CANDIDATE]` reads both (results folders, archives or unpacked archives;
the candidate defaults to results/), writes the tables of the comparison into results/compare/
(comparison.csv: every pair x metric with its interval and verdict; setup.csv, claims.csv,
curves.csv, compare.json) and renders report/compare/index.qmd from them into results/compare/index.html
and index.pdf with the report's renderer. The margins are the `reproduction` section of
experiments/config.yaml, or of a config file given with --margins.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from .. import atomic, defaults, layout
from ..reporting.render import RenderError, add_renderer_argument, render_report
from . import agreement, runs, setup

COMMAND = "compare"
SECTION = "reproduction"
QMD = defaults.REPO / "report" / "compare" / "index.qmd"
SUMMARY = "compare.json"


def margins(path: str | Path | None = None) -> dict:
    """The margins: the defaults' `reproduction` section, with that of the file at `path` over it."""
    section = defaults.defaults()[SECTION]
    if path:
        given = yaml.safe_load(Path(path).read_text()) or {}
        section = defaults.merge(section, given.get(SECTION) if isinstance(given, dict) else None)
    schema = yaml.safe_load(defaults.SCHEMA_FILE.read_text())["properties"][SECTION]
    try:
        jsonschema.validate(section, schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(map(str, exc.absolute_path)) or SECTION
        raise ValueError(f"{path or defaults.DEFAULTS_NAME}: {SECTION}.{where}: {exc.message}; valid keys: "
                         f"{', '.join(schema['properties'])} (see {defaults.DEFAULTS_NAME})") from None
    return section


def _bitwise(reference, candidate, table: pd.DataFrame, cells: list[str], grid: list[str]) -> dict:
    same = setup.same_where_it_matters(table)
    eligible = [c for c in cells if same[c]]
    differing = list(dict.fromkeys(table[table["decides"] & ~table["same"]]["aspect"]))
    if not eligible:
        return {"status": "not expected", "cells": 0, "differing": differing, "tables": [], "difference": None}
    found = agreement.bitwise(reference, candidate, eligible, whole=len(eligible) == len(cells) and not grid)
    status = "differs" if found["difference"] else "identical"
    return {"status": status, "cells": len(eligible), "differing": differing, **found}


def compare(reference: str | Path, candidate: str | Path, out: str | Path, margin: dict) -> dict:
    """Write the comparison's tables into `out`; returns what compare.json holds."""
    ref, cand = runs.load(reference), runs.load(candidate)
    cells = agreement.common_cells(ref, cand)
    if not cells:
        raise ValueError(f"{reference} and {candidate} have no cell in common (reference: {', '.join(ref.cells)}; "
                         f"candidate: {', '.join(cand.cells)}): nothing to compare")
    grid = agreement.grid_differences(ref, cand)
    table = setup.compare(ref, cand, cells)
    result = agreement.agreement(ref, cand, cells, margin)
    claims = agreement.claims(ref, cand)
    summary = {"reference": {"where": ref.where, "kind": ref.kind}, "candidate": {"where": cand.where, "kind": cand.kind},
               "cells": cells, "grid": grid, "bitwise": _bitwise(ref, cand, table, cells, grid),
               "verdicts": agreement.counts(result), "claims_changed": int(claims["changed"].sum()),
               "claims": len(claims), "margins": margin, "confidence": agreement.CONFIDENCE,
               "score_split": str(ref.tables["summary"]["score_split"].iloc[0])}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = {"comparison.csv": result, "setup.csv": table, "claims.csv": claims,
              "curves.csv": agreement.curves(ref, cand, cells)}
    atomic.write_together({**{out / name: (lambda tmp, f=f: f.to_csv(tmp, index=False)) for name, f in frames.items()},
                           out / SUMMARY: lambda tmp: tmp.write_text(json.dumps(summary, indent=2))})
    return summary


def lines(summary: dict) -> list[str]:
    """What `carcolor compare` prints: one line per section of the page."""
    bit, v = summary["bitwise"], summary["verdicts"]
    found = bit["difference"]
    bitwise = {"identical": f"bitwise identical ({bit['cells']} cells; {', '.join(bit['tables'])})",
               "not expected": f"not expected: {', '.join(bit['differing'])} differ",
               "differs": found and (f"differs: {found['table']}, {found['row']}, {found['column']}: "
                                     f"{found['reference']} vs {found['candidate']}")}[bit["status"]]
    return ([f"reference: {summary['reference']['where']} ({summary['reference']['kind']}); "
             f"candidate: {summary['candidate']['where']} ({summary['candidate']['kind']})"]
            + [f"grid: {line}" for line in summary["grid"]]
            + [f"compared: {len(summary['cells'])} cells both ran",
               f"setup: {'the same in everything that decides the numbers' if not bit['differing'] else ', '.join(bit['differing']) + ' differ'}",
               f"bitwise: {bitwise}",
               f"agreement: {v['reproduced']} reproduced, {v['not reproduced']} not reproduced, "
               f"{v['inconclusive']} inconclusive",
               f"claims: {summary['claims']} verdicts side by side, {summary['claims_changed']} changed"])


def add_arguments(p) -> None:
    p.add_argument("reference", help="a results folder, an archive (.zip) or an unpacked one (experiments/reference)")
    p.add_argument("candidate", nargs="?", default="results", help="the same kinds (default: %(default)s)")
    p.add_argument("--out", default=layout.COMPARE_DIR, help="where the page and its tables go (default: %(default)s)")
    p.add_argument("--margins", metavar="FILE",
                   help=f"a config file whose `{SECTION}` section replaces the defaults' margins")
    add_renderer_argument(p)
    p.add_argument("--no-page", action="store_true", help="write the tables only, no HTML or PDF")


def run(args) -> int:
    """`carcolor compare`: did a run reproduce a reference? A page and comparison.csv in results/compare/."""
    summary = compare(args.reference, args.candidate, args.out, margins(args.margins))
    for line in lines(summary):
        print(f"[compare] {line}")
    if args.no_page:
        return 0
    try:
        result = render_report(QMD, Path(args.out), Path(args.out), renderer=args.renderer)
    except RenderError as err:
        print(f"carcolor compare: the page could not be rendered: {err}", file=sys.stderr)
        return 1
    print(f"[compare] page: {result['html']}, {result['pdf']}")
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
