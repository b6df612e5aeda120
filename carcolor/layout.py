"""Where each file the workflow makes lives, relative to the working directory: the one home of
every output's name. The stage that writes a file and every reader (the Snakefile included) take
its name from here.
"""
from __future__ import annotations

from .grid import cell_name

SYNTHETIC_DIR = "data/synthetic"
SYNTHETIC_MARKER = f"{SYNTHETIC_DIR}/images.csv"  # written last: the mark of a complete draw

PREPARED_DIR = "data/prepared"
# What preparation writes; dataset.json last, the mark of a complete cache.
PREPARED_FILES = ("train_images.npy", "val_images.npy", "test_images.npy", "train_labels.npy", "val_labels.npy",
                  "test_labels.npy", "manifest.csv", "skipped.csv", "dataset.json")
PREPARED_JSON = f"{PREPARED_DIR}/dataset.json"

# The resolved configuration of the run that made results/, and the config files it was given.
CONFIG_RECORD = "results/config.yaml"

RUNS_DIR = "results/runs"
# A training cell's record; summary.json last, the mark of a complete run (checkpoint.pt is no output:
# it outlives a forced re-run so that an interrupted one resumes).
RUN_FILES = ("train.ipynb", "metrics.csv", "predictions.csv", "provenance.json", "summary.json")

TABLES_DIR = "results/tables"
TABLE_FILES = ("epochs.csv", "summary.csv", "per_class.csv", "confusion.csv", "dataset.csv", "dataset.json",
               "comparisons.csv", "provenance.csv")

FIGURES_DIR = "results/figures"
FIGURE_NAMES = ("loss", "f1", "time", "breakdown", "per_class", "confusion")

REPORT_DIR = "results/report"
REPORT_FILES = ("index.html", "index.pdf")
CELL_PAGES = "cells"  # the cells' pages, in a folder of the report's


def run_dir(cell: str) -> str:
    """A cell's folder: its executed notebook, metrics, predictions, summary, provenance, checkpoint."""
    return f"{RUNS_DIR}/{cell}"


def page_path(cell: str) -> str:
    """A cell's page relative to the report's folder: how the report links to it."""
    return f"{CELL_PAGES}/{cell}.html"


# The Snakefile's patterns: the same names with wildcards in place of the cell's parts.
CELL_PATTERN = cell_name("{arch}", "{optimizer}", "{seed}")

# A finished run packed as one zip (carcolor archive), and the comparison of two runs (carcolor compare).
ARCHIVE_DIR = "results/archive"
COMPARE_DIR = "results/compare"
