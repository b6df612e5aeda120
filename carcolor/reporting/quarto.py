"""The Quarto driver: ``quarto render`` of the .qmd, once to HTML and once to Typst's PDF.

Each format is rendered into a folder of its own in the build folder (``--output-dir``: Quarto may empty
its output folder, and results/report/ also holds the grid cells' pages). There Quarto writes the output
under the .qmd's own folder relative to its project (the nearest folder above it with a ``_quarto.yml``):
for this project ``<build>/html/report/index.html`` and ``<build>/typst/report/index.pdf``. The kernel
daemon is off, so each render reads this run's ``CARCOLOR_RESULTS``, not a kept kernel's.

Quarto runs from the project's folder with this process's interpreter (``QUARTO_PYTHON``), so a job of an
environment that is not activated (``.venv/bin/snakemake``) finds Jupyter and carcolor. Its kernel is the
``python3`` kernelspec in ``templates/quarto/kernels/`` (first on ``JUPYTER_PATH``): the same interpreter,
with ipykernel's log at ERROR, so Quarto's output has no "Kernel is running over TCP" warning; the project's
``_environment`` names the same folder for a plain ``quarto render``. A failed render ends in one line;
Quarto's own output, printed above it, says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..sources import package_data
from . import results
from .qmd import RenderError

PACKAGE_DATA = ("templates/quarto",)
KERNELSPECS = package_data(__file__, "templates/quarto")  # a JUPYTER_PATH entry: kernels/python3/kernel.json
PROJECT_FILE = "_quarto.yml"
FORMATS = {"html": ("html", ".html"), "pdf": ("typst", ".pdf")}  # what we call it: (Quarto's format, suffix)
INSTALL = ("install Quarto (https://quarto.org, or conda-forge's quarto) and put it on PATH, or render without "
           "it: --renderer fallback")


def project_dir(qmd: Path) -> Path:
    """The Quarto project a .qmd belongs to: the nearest folder above it with a ``_quarto.yml`` (else its own)."""
    qmd = qmd.resolve()
    return next((folder for folder in qmd.parents if (folder / PROJECT_FILE).is_file()), qmd.parent)


def output_path(qmd: Path, build: Path, suffix: str) -> Path:
    """Where ``quarto render qmd --output-dir build`` writes its output of this suffix."""
    qmd = qmd.resolve()
    return build / qmd.parent.relative_to(project_dir(qmd)) / f"{qmd.stem}{suffix}"


def executable() -> str:
    """The ``quarto`` on PATH; a :class:`RenderError` saying what to do where there is none."""
    quarto = shutil.which("quarto")
    if not quarto:
        raise RenderError(f"Quarto was asked for, but there is no `quarto` on PATH: {INSTALL}")
    return quarto


def environment(results_dir: Path, renderer: str) -> dict:
    """Quarto's environment: the report's (:func:`results.environment`), this interpreter for Jupyter and the
    quiet kernelspec first on JUPYTER_PATH."""
    env = results.environment(results_dir, renderer)
    env["QUARTO_PYTHON"] = sys.executable
    env["JUPYTER_PATH"] = os.pathsep.join([str(KERNELSPECS), *filter(None, [env.get("JUPYTER_PATH")])])
    return env


def render(qmd: Path, build: Path, results_dir: Path, log) -> dict:
    """Render ``qmd`` with Quarto into ``build``; returns ``{"renderer": "Quarto <version>", "html": path,
    "pdf": path}``."""
    quarto = executable()
    version = subprocess.run([quarto, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    renderer = f"Quarto {version}"
    log(f"[render] renderer: {renderer}")
    qmd, env = qmd.resolve(), environment(results_dir, renderer)
    result = {"renderer": renderer}
    for key, (fmt, suffix) in FORMATS.items():
        t0 = time.perf_counter()
        out = (build / fmt).resolve()
        proc = subprocess.run([quarto, "render", str(qmd), "--to", fmt, "--output-dir", str(out),
                               "--no-execute-daemon"], env=env, cwd=project_dir(qmd))
        if proc.returncode != 0:
            raise RenderError(f"quarto render {qmd.name} --to {fmt} failed (exit status {proc.returncode}); "
                              "Quarto's output above says why")
        result[key] = output_path(qmd, out, suffix)
        if not result[key].is_file():
            raise RenderError(f"quarto render --to {fmt} finished but did not write {result[key]}")
        log(f"[render] {fmt}: ({time.perf_counter() - t0:.1f} s)")
    return result
