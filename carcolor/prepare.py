"""Preparation: choose colours, sample per colour, split by advert, decode once into a uint8 cache.

Outputs in `out_dir`: {train,val}_images.npy (N x S x S x 3 uint8), {train,val}_labels.npy,
manifest.csv (exactly which file went where) and dataset.json (counts, skips, provenance).
Decoding runs in parallel, writes into a work folder and resumes after an interruption.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .config import NON_COLOURS
from .dvm import ImageReader, filter_viewpoints, list_images, read_image_table

SPLITS = ("train", "val")
CHUNK = 64


class DataError(ValueError):
    """The data cannot give what the config asks for; the message says what to change."""


def choose_colours(images: pd.DataFrame, colours: list[str] | None, top_n: int | None) -> list[str]:
    """The class list: `colours` as given (each must occur), or the `top_n` most frequent real colours."""
    counts = images.loc[~images["color"].isin(NON_COLOURS), "color"].value_counts()
    if colours:
        missing = [c for c in colours if c not in counts.index]
        if missing:
            have = ", ".join(f"{c} ({n})" for c, n in counts.items())
            raise DataError(f"colour {missing[0]!r} does not occur in the data; colours found: {have or 'none'}.")
        return list(colours)
    if top_n > len(counts):
        raise DataError(f"top_n_colours is {top_n} but the data has only {len(counts)} colours: "
                        f"{', '.join(counts.index)}.")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [c for c, _ in ranked[:top_n]]


def _rng(seed: int, colour: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(colour.encode())])


def split_by_advert(images: pd.DataFrame, colours: list[str], n_train: int, n_val: int,
                    seed: int) -> pd.DataFrame:
    """Candidates per colour and split, in the order they are to be used.

    Adverts (all photos of one car) are shuffled per colour; whole adverts go to the val pool until it
    holds n_val images plus a small reserve (for unreadable files), the rest form the train pool.
    Each pool's images are then shuffled; the first n are used, the rest replace unreadable ones.
    Returns images with the extra columns label, split and rank. No advert is in both splits.
    """
    pools = []
    for label, colour in enumerate(colours):
        rng = _rng(seed, colour)
        own = images[images["color"] == colour].sort_values("name").reset_index(drop=True)
        if len(own) < n_train + n_val:
            raise DataError(f"colour {colour!r} has only {len(own)} images but {n_train} train + {n_val} "
                            f"val = {n_train + n_val} are requested; lower n_train_per_colour / "
                            f"n_val_per_colour or drop the colour.")
        sizes = own.groupby("adv_id").size()
        adverts = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        cumulative = np.cumsum(sizes.loc[adverts].to_numpy())
        total = int(cumulative[-1])
        k = int(np.searchsorted(cumulative, n_val) + 1)  # fewest adverts that give n_val images
        if total - cumulative[k - 1] < n_train:
            raise DataError(f"colour {colour!r}: {total} images in {len(adverts)} adverts cannot be split "
                            f"by advert into {n_val} val and {n_train} train images; lower the counts.")
        # A few more val adverts as a reserve for unreadable files, while train keeps enough images.
        reserve = n_val // 20 + 2
        while (k < len(adverts) and cumulative[k - 1] < n_val + reserve
               and total - cumulative[k] >= n_train):
            k += 1
        n_val_adverts = k
        val_adverts = set(adverts[:n_val_adverts])
        for split, in_val in (("val", True), ("train", False)):
            pool = own[own["adv_id"].isin(val_adverts) == in_val]
            pool = pool.iloc[rng.permutation(len(pool))].copy()
            pool["label"], pool["split"], pool["rank"] = label, split, np.arange(len(pool))
            pools.append(pool)
    out = pd.concat(pools, ignore_index=True)
    both = set(out.loc[out["split"] == "val", "adv_id"]) & set(out.loc[out["split"] == "train", "adv_id"])
    if both:  # an advert listed under two colours: keep it on the val side only
        out = out[~((out["split"] == "train") & out["adv_id"].isin(both))].reset_index(drop=True)
    return out


def decode(img, size: int) -> np.ndarray:
    """A PIL image as a size x size x 3 uint8 array, fitted onto white with its aspect kept."""
    from PIL import Image

    img.draft("RGB", (size, size))  # JPEG: let the decoder shrink by 1/2, 1/4, 1/8 for free
    img = img.convert("RGB")
    if img.width != img.height:
        side = max(img.size)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
        img = canvas
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


_READER: ImageReader | None = None


def _decode_task(args):
    """Worker: decode a chunk of (source, member) pairs; an unreadable file gives its error text."""
    global _READER
    if _READER is None:
        _READER = ImageReader()
    items, size = args
    out = []
    for source, member in items:
        try:
            with _READER.open(source, member) as img:
                img.load()
                out.append(decode(img, size))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped and counted
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _plan_key(candidates: pd.DataFrame, params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    h.update(pd.util.hash_pandas_object(candidates[["name", "split", "rank"]], index=False).values.tobytes())
    return h.hexdigest()[:16]


class _Progress:
    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.t0, self.last = total, label, 0, time.time(), 0.0

    def update(self, n: int):
        self.done += n
        now = time.time()
        if now - self.last > 2 or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("nan")
            print(f"[prepare] {self.label}: {self.done}/{self.total} images decoded, {rate:.0f}/s, "
                  f"eta {eta:.0f}s", file=sys.stderr, flush=True)


def _decode_split(candidates: pd.DataFrame, colours: list[str], n: int, size: int, work: Path,
                  split: str, pool, progress: _Progress) -> tuple[pd.DataFrame, list[dict]]:
    """Fill work/{split}_images.npy, colour by colour, resuming from work/{split}_state.json."""
    state_path = work / f"{split}_state.json"
    arr_path = work / f"{split}_images.npy"
    shape = (len(colours) * n, size, size, 3)
    state = json.loads(state_path.read_text()) if state_path.exists() and arr_path.exists() else None
    if state is None:
        arr = np.lib.format.open_memmap(arr_path, mode="w+", dtype=np.uint8, shape=shape)
        state = {"colours": {c: {"filled": 0, "next_rank": 0, "used": [], "skipped": []} for c in colours}}
    else:
        arr = np.load(arr_path, mmap_mode="r+")
        progress.update(sum(s["filled"] for s in state["colours"].values()))
    for ci, colour in enumerate(colours):
        st = state["colours"][colour]
        ranked = candidates[(candidates["label"] == ci) & (candidates["split"] == split)].sort_values("rank")
        while st["filled"] < n:
            need = n - st["filled"]
            batch = ranked.iloc[st["next_rank"]: st["next_rank"] + need]
            if batch.empty:
                raise DataError(f"colour {colour!r}: only {st['filled']} readable {split} images "
                                f"({len(st['skipped'])} unreadable); lower the per-colour counts.")
            items = list(zip(batch["source"], batch["member"]))
            chunks = [(items[i:i + CHUNK], size) for i in range(0, len(items), CHUNK)]
            names = batch["name"].tolist()
            k = 0
            for result in pool_map(pool, chunks):
                for value in result:
                    name = names[k]
                    k += 1
                    if isinstance(value, str):
                        st["skipped"].append({"name": name, "split": split, "reason": value})
                    else:
                        arr[ci * n + st["filled"]] = value
                        st["filled"] += 1
                        st["used"].append(name)
                        progress.update(1)
                st["next_rank"] += len(result)
                arr.flush()
                state_path.write_text(json.dumps(state))
    del arr
    rows = []
    skipped = []
    for ci, colour in enumerate(colours):
        st = state["colours"][colour]
        rows += [(name, ci * n + i) for i, name in enumerate(st["used"])]
        skipped += st["skipped"]
    used = pd.DataFrame(rows, columns=["name", "row"])
    return used, skipped


def pool_map(pool, chunks):
    return pool.imap(_decode_task, chunks) if pool is not None else map(_decode_task, chunks)


def prepare(sources: list[str | Path], out_dir: str | Path, *, colours: list[str] | None = None,
            top_n_colours: int | None = None, n_train_per_colour: int, n_val_per_colour: int,
            image_size: int, seed: int = 0, image_table: str | None = None,
            viewpoints: list[int] | None = None, workers: int | None = None,
            synthetic: bool = False) -> dict:
    """Select, split and decode; write the cache, manifest.csv and dataset.json into out_dir."""
    t0 = time.time()
    out_dir = Path(out_dir)
    work = out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    images, stats = list_images(sources)
    print(f"[prepare] {len(images)} DVM images found in {len(sources)} source(s) "
          f"({stats['duplicates']} duplicate names, {stats['not_dvm_names']} other files)", file=sys.stderr)
    if viewpoints:
        if not image_table:
            raise DataError("'data.viewpoints' needs 'data.image_table' (Image_table.csv or tables_V2.zip).")
        images = filter_viewpoints(images, read_image_table(image_table), viewpoints)
        print(f"[prepare] {len(images)} images with viewpoint in {viewpoints}", file=sys.stderr)
    chosen = choose_colours(images, colours, top_n_colours)
    candidates = split_by_advert(images, chosen, n_train_per_colour, n_val_per_colour, seed)
    params = {"colours": chosen, "n": [n_train_per_colour, n_val_per_colour], "size": image_size, "seed": seed}
    key = _plan_key(candidates, params)
    key_path = work / "plan.txt"
    if not key_path.exists() or key_path.read_text() != key:  # a different plan: start afresh
        shutil.rmtree(work)
        work.mkdir(parents=True)
        key_path.write_text(key)
    workers = workers or os.cpu_count() or 1
    counts = {"train": n_train_per_colour, "val": n_val_per_colour}
    progress = _Progress(len(chosen) * (n_train_per_colour + n_val_per_colour),
                         f"{image_size}px cache, {workers} worker(s)")
    manifest, skipped = [], []
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with (ctx.Pool(workers) if workers > 1 else _NoPool()) as pool:
        for split in SPLITS:
            used, skip = _decode_split(candidates, chosen, counts[split], image_size, work, split,
                                       pool if workers > 1 else None, progress)
            part = candidates[candidates["split"] == split].merge(used, on="name")
            manifest.append(part)
            skipped += skip
    manifest = pd.concat(manifest, ignore_index=True)
    manifest["colour"] = manifest["color"]
    manifest = manifest[["split", "row", "label", "colour", "name", "adv_id", "maker", "genmodel", "year",
                         "archive", "source", "member"]].sort_values(["split", "row"])
    seconds = time.time() - t0
    for split in SPLITS:
        labels = manifest.loc[manifest["split"] == split].sort_values("row")["label"].to_numpy(np.int64)
        np.save(work / f"{split}_labels.npy", labels)
    info = _describe(manifest, skipped, stats, chosen, counts, image_size, synthetic, seconds)
    manifest.to_csv(work / "manifest.csv", index=False)
    pd.DataFrame(skipped, columns=["name", "split", "reason"]).to_csv(work / "skipped.csv", index=False)
    (work / "dataset.json").write_text(json.dumps(info, indent=2))
    for name in ("train_images.npy", "val_images.npy", "train_labels.npy", "val_labels.npy",
                 "manifest.csv", "skipped.csv", "dataset.json"):
        os.replace(work / name, out_dir / name)
    shutil.rmtree(work)
    size_mb = sum((out_dir / f"{s}_images.npy").stat().st_size for s in SPLITS) / 1e6
    print(f"[prepare] done in {seconds:.1f}s: {len(manifest)} images, cache {size_mb:.1f} MB, "
          f"{len(skipped)} unreadable skipped, {info['decode_images_per_s']:.0f} images/s "
          f"({info['decode_images_per_s_per_worker']:.0f} per worker)", file=sys.stderr)
    return info


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _describe(manifest, skipped, stats, colours, counts, size, synthetic, seconds) -> dict:
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons["unreadable"] = reasons.get("unreadable", 0) + 1
    train_adv = set(manifest.loc[manifest["split"] == "train", "adv_id"])
    val_adv = set(manifest.loc[manifest["split"] == "val", "adv_id"])
    decoded = len(manifest) + len(skipped)
    workers = os.cpu_count() or 1
    return {
        "source": "synthetic" if synthetic else "dvm",
        "synthetic": bool(synthetic),
        "image_size": size,
        "colours": colours,
        "n_train_per_colour": counts["train"],
        "n_val_per_colour": counts["val"],
        "images": int(len(manifest)),
        "adverts": int(len(train_adv | val_adv)),
        "advert_level_split": not (train_adv & val_adv),
        "skipped": {"unreadable": reasons.get("unreadable", 0),
                    "duplicate_names": stats["duplicates"], "not_dvm_names": stats["not_dvm_names"]},
        "files_seen": stats["files"],
        "archives": stats["sources"],
        "prepare_seconds": round(seconds, 2),
        "decode_images_per_s": decoded / max(seconds, 1e-9),
        "decode_images_per_s_per_worker": decoded / max(seconds, 1e-9) / workers,
    }


def load_prepared(prepared_dir: str | Path) -> dict:
    """The cache as numpy arrays (memory-mapped) plus class names and the dataset description."""
    d = Path(prepared_dir)
    missing = [f for f in ("train_images.npy", "val_images.npy", "dataset.json") if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(f"prepared data missing in {d}: {', '.join(missing)}; run "
                                f"`snakemake --cores all prepare_dataset` first.")
    info = json.loads((d / "dataset.json").read_text())
    return {
        "train_images": np.load(d / "train_images.npy", mmap_mode="r"),
        "train_labels": np.load(d / "train_labels.npy"),
        "val_images": np.load(d / "val_images.npy", mmap_mode="r"),
        "val_labels": np.load(d / "val_labels.npy"),
        "classes": info["colours"],
        "info": info,
    }
