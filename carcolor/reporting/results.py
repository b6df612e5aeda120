"""What the report reads: the tidy tables in ``<results>/tables/``, ``dataset.json`` and the lab's own
results (``report/lab.csv``); where they are and which renderer is building the report, from the
environment the renderers set."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import layout

MAKE_COMMAND = "snakemake --cores all"
RESULTS_VARIABLE = "CARCOLOR_RESULTS"  # the renderers tell the report's code where the results are
RENDERED_WITH_VARIABLE = "CARCOLOR_RENDERED_WITH"  # and which renderer is building it (its name and version)
QUARTO_SHARE_VARIABLE = "QUARTO_SHARE_PATH"  # Quarto's resources, holding its `version`: set for the code it runs


class MissingResultsError(FileNotFoundError):
    """A results table the report needs does not exist yet."""


@dataclass
class Tables:
    """The results tables of one experiment grid."""

    epochs: pd.DataFrame
    summary: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    dataset: pd.DataFrame
    comparisons: pd.DataFrame
    provenance: pd.DataFrame
    dataset_info: dict
    results_dir: Path


def environment(results: str | Path, renderer: str) -> dict:
    """The environment a renderer runs the report's code in: this one, with where the results are and
    the renderer's name."""
    return {**os.environ, RESULTS_VARIABLE: str(Path(results).resolve()), RENDERED_WITH_VARIABLE: renderer}


def results_dir(default: str | Path = "../results") -> Path:
    """The results directory: ``$CARCOLOR_RESULTS`` or ``default`` (relative to the cwd)."""
    return Path(os.environ.get(RESULTS_VARIABLE) or default)


def renderer_name() -> str:
    """The renderer that is building the report: ``$CARCOLOR_RENDERED_WITH``, else (a plain ``quarto render``)
    Quarto with the version in its resources folder, else just "Quarto"."""
    if os.environ.get(RENDERED_WITH_VARIABLE):
        return os.environ[RENDERED_WITH_VARIABLE]
    share = os.environ.get(QUARTO_SHARE_VARIABLE)
    version = Path(share, "version") if share else None
    return f"Quarto {version.read_text().strip()}" if version and version.is_file() else "Quarto"


def load_tables(results: str | Path) -> Tables:
    """Read ``<results>/tables/*.csv`` and ``dataset.json``.

    Raises :class:`MissingResultsError` naming the first missing file and the command that makes it.
    """
    results = Path(results)
    tables = results / "tables"
    for name in layout.TABLE_FILES:
        if not (tables / name).is_file():
            raise MissingResultsError(
                f"missing results table {tables / name}: the report is built from results/tables/; run "
                f"`{MAKE_COMMAND}` first (or point CARCOLOR_RESULTS at a results directory that contains tables/)")
    frames = {name.removesuffix(".csv"): pd.read_csv(tables / name) for name in layout.TABLE_FILES
              if name.endswith(".csv")}
    info = json.loads((tables / "dataset.json").read_text())
    return Tables(dataset_info=info, results_dir=results, **frames)


def load_lab(path: str | Path) -> pd.DataFrame:
    """The lab's facts (``report/lab.csv``: arch, optimizer, train_time, train_seconds, val_images_per_colour)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: the lab's reference table (report/lab.csv)")
    return pd.read_csv(path, dtype={"train_time": str})
