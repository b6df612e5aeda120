"""What the Snakefile needs, kept here where tests reach it: validated config, paths, rule arguments."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from . import config as cfgmod
from .config import ConfigError

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "carcolor"
SYNTHETIC_DIR = "data/synthetic"
SYNTHETIC_MARKER = f"{SYNTHETIC_DIR}/images.csv"
PREPARED_DIR = "data/prepared"
PREPARED_JSON = f"{PREPARED_DIR}/dataset.json"
PREPARED_FILES = [f"{PREPARED_DIR}/{name}" for name in
                  ("train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy", "manifest.csv")]
RUN_FILES = ("train.ipynb", "metrics.csv", "predictions.csv", "summary.json")
TABLES = [f"results/tables/{name}" for name in
          ("epochs.csv", "summary.csv", "per_class.csv", "confusion.csv", "dataset.csv", "dataset.json")]
REPORT = ["results/report/index.html", "results/report/index.pdf"]
# The package modules each stage runs: editing one re-runs that stage and what follows, nothing else.
CODE = {
    "generate": ["synth.py", "cli.py"],
    "prepare": ["dvm.py", "prepare.py", "cli.py"],
    "train": ["train.py", "batches.py", "models.py", "optim.py"],
    "collect": ["tables.py", "cli.py"],
    "render": ["render.py", "plots.py", "narrative.py"],
}


def configure(config: dict) -> dict:
    """Validate Snakemake's config; on a problem print one line and stop before anything runs."""
    try:
        return cfgmod.validate(config)
    except (ConfigError, ValueError) as exc:
        print(f"carcolor: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def code(stage: str) -> list[str]:
    return [str(PACKAGE / name) for name in CODE[stage]]


def repo_file(relative: str) -> str:
    return str(REPO / relative)


def cell_names(cfg: dict) -> list[str]:
    return [c.name for c in cfgmod.cells(cfg)]


def run_files(cfg: dict, name: str) -> list[str]:
    return [f"results/runs/{cell}/{name}" for cell in cell_names(cfg)]


def cell_pattern(cfg: dict) -> str:
    """A wildcard constraint that matches exactly this grid's cell names."""
    import re

    return "|".join(re.escape(n) for n in cell_names(cfg))


def source_paths(cfg: dict) -> list[str]:
    """The DVM sources prepare reads: the synthetic tree, or the configured (or downloaded) archives."""
    data = cfg["data"]
    if data["source"] == "synthetic":
        return [f"{SYNTHETIC_DIR}/resized_DVM"]
    from .download import ARCHIVES

    downloaded = [f"{data['download_dir']}/{ARCHIVES[n].filename}" for n in data["download"] if n != "tables"]
    return list(data["paths"]) + downloaded


def prepare_inputs(cfg: dict) -> list[str]:
    data = cfg["data"]
    if data["source"] == "synthetic":
        return [SYNTHETIC_MARKER]
    inputs = source_paths(cfg)
    if data.get("image_table"):
        inputs.append(data["image_table"])
    return inputs


def prepare_settings(cfg: dict) -> str:
    data = cfg["data"]
    settings = {k: data[k] for k in ("colours", "top_n_colours", "n_train_per_colour", "n_val_per_colour",
                                      "image_size", "seed", "image_table", "viewpoints")}
    settings["sources"] = source_paths(cfg)
    settings["synthetic"] = data["source"] == "synthetic"
    return json.dumps(settings, separators=(",", ":"))


def prepare_threads(cfg: dict, cores: int) -> int:
    """Decoding processes: data.workers when set, else every core Snakemake was given."""
    return cfg["data"]["workers"] or cores


def generate_settings(cfg: dict) -> str:
    colours = cfg["data"]["colours"]
    if not colours:
        from .synth import COLOURS

        colours = list(COLOURS)
    return json.dumps({"colours": colours, **cfg["synthetic"]}, separators=(",", ":"))


def download_targets(cfg: dict) -> list[str]:
    from .download import ARCHIVES

    data = cfg["data"]
    return [f"{data['download_dir']}/{ARCHIVES[n].filename}" for n in data["download"]]


def papermill_args(cfg: dict):
    """A params function for train_cell: papermill's -p/-y arguments for the cell in the wildcards."""

    def args(wildcards, threads=None) -> str:
        cell = cfgmod.cell_by_name(cfg, wildcards.cell)
        params = cfgmod.train_params(cfg, cell)
        settings = params.pop("train")
        parts = []
        for key, value in params.items():
            parts += ["-p", key, str(value)]
        parts += ["-p", "prepared", str(Path(PREPARED_DIR).resolve()),
                  "-p", "out_dir", str(Path("results/runs", cell.name).resolve()),
                  "-y", json.dumps({"settings": settings})]
        return " ".join(shlex.quote(p) for p in parts)

    return args
