"""The Quarto driver: ``quarto render`` of the .qmd, once to HTML and once to Typst's PDF.

Each format is rendered into a folder of its own in the build folder (``--output-dir``: Quarto may empty
its output folder, and results/report/ also holds the grid cells' pages). There Quarto writes the output
under the .qmd's own folder relative to its project (the nearest folder above it with a ``_quarto.yml``):
for this project ``<build>/html/report/index.html`` and ``<build>/typst/report/index.pdf``. The kernel
daemon is off, so each render reads this run's ``CARCOLOR_RESULTS``, not a kept kernel's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from . import results
from .qmd import RenderError

PROJECT_FILE = "_quarto.yml"
FORMATS = {"html": ("html", ".html"), "pdf": ("typst", ".pdf")}  # what we call it: (Quarto's format, suffix)


def output_path(qmd: Path, build: Path, suffix: str) -> Path:
    """Where ``quarto render qmd --output-dir build`` writes its output of this suffix."""
    qmd = qmd.resolve()
    project = next((folder for folder in qmd.parents if (folder / PROJECT_FILE).is_file()), qmd.parent)
    return build / qmd.parent.relative_to(project) / f"{qmd.stem}{suffix}"


def render(qmd: Path, build: Path, results_dir: Path, log) -> dict:
    """Render ``qmd`` with Quarto into ``build``; returns ``{"renderer": "Quarto <version>", "html": path,
    "pdf": path}``."""
    quarto = shutil.which("quarto")
    if not quarto:
        raise RenderError("quarto is not on PATH: install Quarto (conda-forge's quarto) or use --renderer fallback")
    version = subprocess.run([quarto, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    renderer = f"Quarto {version}"
    log(f"[render] renderer: {renderer}")
    result = {"renderer": renderer}
    for key, (fmt, suffix) in FORMATS.items():
        t0 = time.perf_counter()
        out = (build / fmt).resolve()
        proc = subprocess.run([quarto, "render", str(qmd), "--to", fmt, "--output-dir", str(out),
                               "--no-execute-daemon"], env=results.environment(results_dir, renderer))
        if proc.returncode != 0:
            raise RenderError(f"quarto render --to {fmt} failed with exit code {proc.returncode}")
        result[key] = output_path(qmd, out, suffix)
        if not result[key].is_file():
            raise RenderError(f"quarto render --to {fmt} finished but did not write {result[key]}")
        log(f"[render] {fmt}: ({time.perf_counter() - t0:.1f} s)")
    return result
