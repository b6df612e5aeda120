"""Preparation: choose colours, sample per colour, split by advert, decode once into a uint8 cache.

Outputs in `out_dir`: {train,val,test}_images.npy (N x S x S x 3 uint8), {train,val,test}_labels.npy,
manifest.csv (exactly which file went where), skipped.csv (unreadable files and why) and
dataset.json (counts, skips, protocol, provenance). The test files are always written, with 0 rows
when n_test_per_colour is 0, so the workflow's outputs are the same for every config.

The protocol is decided here, once, and recorded in dataset.json (`protocol`): training scores the
split it names and everything after training reads what training recorded. Which images are used
is carcolor.data.selection's, decoding them carcolor.data.decoding's, reading the cache
carcolor.data.cache's.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import OUTPUTS, SPLITS
from .colours import NON_COLOURS
from .decoding import Progress, SplitDecoder, decode_split, release, worker_pool
from .dvm import filter_viewpoints, list_images, read_image_table
from .selection import DataError, asked, choose_colours, colour_counts, split_by_advert

COMMAND = "prepare"


def protocol(n_test_per_colour: int) -> str:
    """Which split the comparisons score: "test" when there is one (the epoch is chosen on val and the
    test split is scored once, at that epoch), else "val" (as the lab did: the held-out images were
    its validation after every epoch, so the score is the chosen epoch's own val score)."""
    return "test" if n_test_per_colour > 0 else "val"


def _plan_key(candidates: pd.DataFrame, params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    h.update(pd.util.hash_pandas_object(candidates[["name", "split", "rank"]].astype(object),
                                        index=False).values.tobytes())
    return h.hexdigest()[:16]


def prepare(sources: list[str | Path], out_dir: str | Path, *, colours: list[str] | None = None,
            top_n_colours: int | None = None, n_train_per_colour: int, n_val_per_colour: int,
            n_test_per_colour: int = 0, image_size: int, seed: int = 0, image_table: str | None = None,
            viewpoints: list[int] | None = None, workers: int | None = None,
            synthetic: bool = False) -> dict:
    """Select, split and decode; write the cache, manifest.csv, skipped.csv and dataset.json into out_dir.

    An interrupted run leaves out_dir/.work behind; the next call with the same settings and data
    carries on from there.
    """
    workers = max(1, int(workers or os.cpu_count() or 1))
    # The workers start first, forked from a small process: they never share (and copy page by page)
    # the 1.45 M-row listing this process builds next.
    try:
        with worker_pool(workers) as pool:
            return _prepare(pool, workers, sources, out_dir, colours=colours, top_n_colours=top_n_colours,
                            n_train_per_colour=n_train_per_colour, n_val_per_colour=n_val_per_colour,
                            n_test_per_colour=n_test_per_colour, image_size=image_size, seed=seed,
                            image_table=image_table, viewpoints=viewpoints, synthetic=synthetic)
    finally:
        release()


def _prepare(pool, workers, sources, out_dir, *, colours, top_n_colours, n_train_per_colour, n_val_per_colour,
             n_test_per_colour, image_size, seed, image_table, viewpoints, synthetic) -> dict:
    t0 = time.time()
    out_dir = Path(out_dir)
    work = out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    images, stats, skipped = _list(sources, image_table, viewpoints)
    available = colour_counts(images)
    chosen = choose_colours(images, colours, top_n_colours)
    counts = {"train": n_train_per_colour, "val": n_val_per_colour, "test": n_test_per_colour}
    candidates = split_by_advert(images, chosen, n_train_per_colour, n_val_per_colour, seed, n_test_per_colour)
    del images
    splits, resumed = _open_work(work, candidates, chosen, counts, image_size, seed)
    cache_bytes = sum(sp.nbytes for sp in splits.values())
    print(f"[prepare] {len(chosen)} colours x ({asked(counts).split(' = ')[0]}) = "
          f"{len(chosen) * sum(counts.values())} images at {image_size}px: cache {cache_bytes / 1e9:.2f} GB, "
          f"{workers} worker(s)" + (f"; resuming with {resumed} already decoded" if resumed else ""),
          file=sys.stderr, flush=True)
    attempted, decode_seconds = _decode(splits, pool, f"decoding at {image_size}px", resumed)
    manifest, unreadable = _manifest(splits)
    skipped["unreadable"] = len(unreadable)
    seconds = time.time() - t0
    info = _describe(manifest, skipped, stats, chosen, counts, image_size, synthetic, seconds,
                     available=available, decode_seconds=decode_seconds, attempted=attempted, workers=workers,
                     resumed=resumed, cache_bytes=cache_bytes, seed=seed, viewpoints=viewpoints,
                     image_table=image_table)
    _write(work, out_dir, manifest, unreadable, info)
    print(f"[prepare] done in {seconds:.1f}s (listing {stats['seconds']:.1f}s, decoding {decode_seconds:.1f}s): "
          f"{len(manifest)} images, cache {cache_bytes / 1e9:.2f} GB in {out_dir}, {len(unreadable)} unreadable "
          f"skipped and replaced, {info['decode_images_per_s']:.0f} images/s "
          f"({info['decode_images_per_s_per_worker']:.0f} per worker)", file=sys.stderr)
    return info


def _list(sources, image_table, viewpoints) -> tuple[pd.DataFrame, dict, dict]:
    """The DVM images of the sources (those of the viewpoints, when asked for), the listing's statistics
    (with `listed`, the images before the viewpoint filter, and `seconds`), and what was skipped so far."""
    t0 = time.time()
    print(f"[prepare] listing {len(sources)} source(s): {', '.join(str(s) for s in sources)}", file=sys.stderr)
    images, stats = list_images(sources)
    list_seconds = time.time() - t0
    print(f"[prepare] {len(images)} DVM images found in {list_seconds:.1f}s ({stats['files']} files, "
          f"{stats['duplicates']} duplicate names, {stats['not_dvm_names']} other files; by archive: "
          f"{stats['by_archive']})", file=sys.stderr)
    skipped = {"unreadable": 0, "duplicate_names": stats["duplicates"], "not_dvm_names": stats["not_dvm_names"],
               "outside_viewpoints": 0, "unlisted_or_multicolour": 0}
    stats = {**stats, "listed": len(images), "seconds": list_seconds}
    if viewpoints:
        if not image_table:
            raise DataError("'data.viewpoints' needs 'data.image_table' (Image_table.csv or tables_V2.zip).")
        images = filter_viewpoints(images, read_image_table(image_table), viewpoints)
        skipped["outside_viewpoints"] = stats["listed"] - len(images)
        print(f"[prepare] {len(images)} images with viewpoint in {viewpoints}", file=sys.stderr)
    skipped["unlisted_or_multicolour"] = int(images["color"].isin(NON_COLOURS).sum())
    return images, stats, skipped


def _open_work(work: Path, candidates: pd.DataFrame, colours: list[str], counts: dict[str, int], size: int,
               seed: int) -> tuple[dict[str, SplitDecoder], int]:
    """Each split's decoder in the work folder, carrying on where a run of the same plan stopped (a
    different plan starts afresh), and how many images are decoded already."""
    params = {"format": 3, "colours": colours, "n": [counts[s] for s in SPLITS], "size": size, "seed": seed}
    key = _plan_key(candidates, params)
    key_path = work / "plan.txt"
    if not key_path.exists() or key_path.read_text() != key:  # a different plan: start afresh
        shutil.rmtree(work)
        work.mkdir(parents=True)
        key_path.write_text(key)
    splits = {s: SplitDecoder(candidates, colours, s, counts[s], size, work) for s in SPLITS}
    need = sum(sp.nbytes for sp in splits.values() if not sp.resumable)
    free = shutil.disk_usage(work).free
    if free < need:  # the arrays are created sparse: a full disk would only show halfway through
        raise DataError(f"the cache needs {need / 1e9:.1f} GB but only {free / 1e9:.1f} GB are free in {work}; "
                        f"free some space or lower image_size / the per-colour counts.")
    return splits, sum(sp.open() for sp in splits.values())


def _decode(splits: dict[str, SplitDecoder], pool, label: str, resumed: int) -> tuple[int, float]:
    """Decode every split; returns the images tried (unreadable ones included) and the seconds taken."""
    progress = Progress(sum(len(sp.colours) * sp.n for sp in splits.values()), label, done=resumed)
    counter = {"attempted": 0}
    start = time.time()
    try:
        for split in SPLITS:
            decode_split(splits[split], pool, progress, counter)
    finally:
        progress.close()
    return counter["attempted"], time.time() - start


def _manifest(splits: dict[str, SplitDecoder]) -> tuple[pd.DataFrame, list[dict]]:
    """manifest.csv (which file is in which row of which split) and the unreadable files."""
    manifest, unreadable = [], []
    for split in SPLITS:
        part, bad = splits[split].rows()
        manifest.append(part)
        unreadable += bad
    manifest = pd.concat(manifest, ignore_index=True)
    manifest["colour"] = manifest["color"].astype(object)
    manifest = manifest[["split", "row", "label", "colour", "name", "adv_id", "maker", "genmodel", "year",
                         "archive", "source", "member"]].sort_values(["split", "row"]).reset_index(drop=True)
    for col in ("adv_id", "maker", "genmodel", "year", "archive", "source"):
        manifest[col] = manifest[col].astype(object)
    return manifest, unreadable


def _write(work: Path, out_dir: Path, manifest: pd.DataFrame, unreadable: list[dict], info: dict) -> None:
    """The labels, manifest.csv, skipped.csv and dataset.json next to the decoded arrays in the work
    folder, then all of them into out_dir, dataset.json last."""
    for split in SPLITS:
        labels = manifest.loc[manifest["split"] == split, "label"].to_numpy(np.int64)
        np.save(work / f"{split}_labels.npy", labels)
    manifest.to_csv(work / "manifest.csv", index=False)
    pd.DataFrame(unreadable, columns=["name", "split", "colour", "reason"]).to_csv(work / "skipped.csv", index=False)
    (work / "dataset.json").write_text(json.dumps(info, indent=2))
    # dataset.json last: it is the mark of a complete cache (load_prepared and Snakemake read it)
    for name in sorted(OUTPUTS, key=lambda n: n == "dataset.json"):
        os.replace(work / name, out_dir / name)
    shutil.rmtree(work)


def _describe(manifest, skipped, stats, colours, counts, size, synthetic, seconds, *, available, decode_seconds,
              attempted, workers, resumed, cache_bytes, seed, viewpoints, image_table) -> dict:
    """dataset.json: what was used and skipped, the protocol, where the images came from, the times."""
    adv = {s: set(manifest.loc[manifest["split"] == s, "adv_id"]) for s in SPLITS}
    shared = set.union(*(adv[a] & adv[b] for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]))
    per = manifest.groupby(["colour", "split"]).size()
    per_colour = {c: {s: int(per.get((c, s), 0)) for s in SPLITS} for c in colours}
    adverts_per_colour = manifest.groupby(["colour", "split"])["adv_id"].nunique()
    rate = attempted / max(decode_seconds, 1e-9)
    return {
        "source": "synthetic" if synthetic else "dvm",
        "synthetic": bool(synthetic),
        "image_size": size,
        "colours": colours,
        "n_train_per_colour": counts["train"],
        "n_val_per_colour": counts["val"],
        "n_test_per_colour": counts["test"],
        "protocol": protocol(counts["test"]),
        "images": int(len(manifest)),
        "images_per_split": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
        "images_per_colour": per_colour,
        "adverts": int(len(set.union(*adv.values()))),
        "adverts_per_split": {s: len(adv[s]) for s in SPLITS},
        "adverts_per_colour": {c: {s: int(adverts_per_colour.get((c, s), 0)) for s in SPLITS} for c in colours},
        "advert_level_split": not shared,
        "skipped": {k: int(v) for k, v in skipped.items()},
        "files_seen": stats["files"],
        "images_listed": int(stats["listed"]),
        "images_available_per_colour": {str(c): int(n) for c, n in available.items()},
        "archives": stats["sources"],
        "archives_read": sorted(set(stats["by_archive"]) | set(stats["duplicates_by_archive"])),
        "images_listed_per_archive": stats["by_archive"],
        "duplicates_per_archive": stats["duplicates_by_archive"],
        "images_used_per_archive": {str(k): int(v) for k, v in manifest["archive"].value_counts().items()},
        "seed": seed,
        "viewpoints": viewpoints,
        "image_table": Path(image_table).name if image_table else None,
        "cache_bytes": int(cache_bytes),
        "prepare_seconds": round(seconds, 2),
        "list_seconds": round(stats["seconds"], 2),
        "decode_seconds": round(decode_seconds, 2),
        "decode_workers": workers,
        "images_resumed": int(resumed),
        "decode_images_per_s": rate,
        "decode_images_per_s_per_worker": rate / workers,
    }


def add_arguments(p) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("--settings", required=True, help="JSON: sources, colours, counts, image_size, seed, ...")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")


def run(args) -> int:
    """`carcolor prepare`: select, split by advert and decode into the uint8 cache."""
    settings = json.loads(args.settings)
    sources = settings.pop("sources")
    prepare(sources, args.out, workers=args.workers, **settings)
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
