"""The prepared cache as training reads it: which splits it has, the arrays and dataset.json, and a
cheap fingerprint of its contents.

carcolor.data.prepare writes the cache; this module only reads it, so the training notebook, which
imports it, does not depend on how the cache is made (a change to the decoder re-makes the cache,
and the cache, not the decoder's code, is training's input).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .. import layout

SPLITS = ("train", "val", "test")  # every cache has all three; the test split may have 0 rows
OUTPUTS = layout.PREPARED_FILES


def load_prepared(prepared_dir: str | Path) -> dict:
    """The cache as numpy arrays (memory-mapped) plus class names and the dataset description."""
    d = Path(prepared_dir)
    needed = [f for f in OUTPUTS if f.endswith(".npy")] + ["dataset.json"]
    missing = [f for f in needed if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(f"prepared data missing in {d}: {', '.join(missing)}; run "
                                f"`snakemake --cores all prepare_dataset` first.")
    info = json.loads((d / "dataset.json").read_text())
    data = {"classes": info["colours"], "info": info}
    for split in SPLITS:
        data[f"{split}_images"] = np.load(d / f"{split}_images.npy", mmap_mode="r")
        data[f"{split}_labels"] = np.load(d / f"{split}_labels.npy")
    data["fingerprint"] = fingerprint(d, data)
    return data


def fingerprint(prepared_dir: Path, data: dict, rows: int = 64) -> str:
    """A cheap hash of the prepared data: which file is in which row (manifest.csv), the labels and
    the pixels of a few rows per split, test included (the whole cache of a real run is 18 GB: too
    slow to hash)."""
    h = hashlib.sha256((Path(prepared_dir) / "manifest.csv").read_bytes())
    for split in SPLITS:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        h.update(np.ascontiguousarray(labels).tobytes())
        h.update(repr(images.shape).encode())
        picks = np.unique(np.linspace(0, len(images) - 1, num=min(rows, len(images))).astype(int))
        h.update(np.ascontiguousarray(images[picks]).tobytes())
    return h.hexdigest()[:16]
