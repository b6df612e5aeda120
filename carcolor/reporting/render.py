"""Render ``report/index.qmd`` into a self-contained HTML page and a PDF: with Quarto when ``quarto`` is on
PATH (:mod:`carcolor.reporting.quarto`), else with the offline renderer (:mod:`carcolor.reporting.offline`).
``--renderer`` (or, where it is not given, as in the workflow's job, ``$CARCOLOR_RENDER``) forces either.

Either renders into a build folder next to the output folder, and the two files are then moved into the
output folder together; both tell the report's code where the tables are and which renderer made it.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from pathlib import Path

from .. import atomic, layout
from . import offline, quarto
from .offline import ReportChunkError
from .qmd import RenderError

COMMAND = "render"
RENDERERS = {"quarto": quarto.render, "fallback": offline.render}
CHOICES = ("auto", *RENDERERS)
CHOICE_VARIABLE = "CARCOLOR_RENDER"  # a user's choice of renderer, where --renderer is not given
OUTPUTS = {Path(name).suffix[1:]: name for name in layout.REPORT_FILES}  # {"html": "index.html", "pdf": ...}

__all__ = ["RenderError", "ReportChunkError", "build_folder", "choose", "render_report"]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_folder(out_dir: Path) -> Path:
    """The renderer's work folder: next to the output folder (never in /tmp, where a killed run would
    leave it behind), emptied first, since whatever is there is a killed run's leftovers."""
    build = out_dir.parent / f".{out_dir.name}.build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    return build


def choose(renderer: str | None = None) -> str:
    """The renderer to run: ``renderer``, else ``$CARCOLOR_RENDER``, else "auto", which is "quarto" where
    ``quarto`` is on PATH and "fallback" elsewhere. A forced Quarto that is missing is named when it runs."""
    given = renderer if renderer is not None else os.environ.get(CHOICE_VARIABLE) or "auto"
    if given not in CHOICES:
        where = "renderer" if renderer is not None else f"${CHOICE_VARIABLE}"
        raise ValueError(f"{where} is {given!r}: choose one of {', '.join(CHOICES)}")
    if given == "auto":
        return "quarto" if shutil.which("quarto") else "fallback"
    return given


def render_report(qmd: Path, out_dir: Path, results_dir: Path, *, renderer: str | None = None,
                  log=_stderr, keep_build: bool = False) -> dict:
    """Render qmd into out_dir/index.html (self-contained, offline) and out_dir/index.pdf.

    renderer: "auto" (quarto if on PATH, else fallback), "quarto", "fallback"; None: ``$CARCOLOR_RENDER``,
    else "auto" (:func:`choose`).
    Returns {"renderer": ..., "html": path, "pdf": path}. Progress goes to ``log`` (stderr by default).
    ``keep_build`` keeps the renderer's intermediate files (Markdown, figures, .typ) for inspection.
    """
    qmd, out_dir, results_dir = Path(qmd), Path(out_dir), Path(results_dir)
    if not qmd.is_file():
        raise RenderError(f"report source {qmd} not found")
    renderer = choose(renderer)
    t0 = time.perf_counter()
    build = build_folder(out_dir)
    try:
        made = RENDERERS[renderer](qmd, build, results_dir, log)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_together({out_dir / name: functools.partial(shutil.copyfile, made[key])
                               for key, name in OUTPUTS.items()})
    finally:
        if keep_build:
            log(f"[render] intermediate files kept in {build}")
        else:
            shutil.rmtree(build, ignore_errors=True)
    result = {"renderer": made["renderer"], **{key: out_dir / name for key, name in OUTPUTS.items()}}
    log(f"[render] done in {time.perf_counter() - t0:.1f} s: {result['html']}, {result['pdf']}")
    return result


def run(args: argparse.Namespace) -> int:
    """`carcolor render`: render report/index.qmd into results/report/index.html and index.pdf."""
    try:
        render_report(Path(args.qmd), Path(args.out), Path(args.results), renderer=args.renderer,
                      keep_build=args.keep_build)
    except RenderError as err:
        _stderr(f"carcolor {COMMAND}: {err}")
        return 1
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qmd", default="report/index.qmd", help="report source (default: %(default)s)")
    p.add_argument("--results", default="results",
                   help="results directory that contains tables/ (default: %(default)s)")
    p.add_argument("--out", default="results/report",
                   help="where index.html and index.pdf go (default: %(default)s)")
    add_renderer_argument(p)
    p.add_argument("--keep-build", action="store_true",
                   help="keep the renderer's intermediate files (their folder is printed)")


def add_renderer_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--renderer", choices=CHOICES, default=None,
                   help=f"auto: Quarto when on PATH, else the offline fallback (default: ${CHOICE_VARIABLE}, "
                        "else auto)")


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
