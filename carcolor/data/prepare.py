"""Preparation: choose colours, sample per colour, split by advert, decode once into a uint8 cache.

Outputs in `out_dir`: {train,val,test}_images.npy (N x S x S x 3 uint8), {train,val,test}_labels.npy,
manifest.csv (exactly which file went where), skipped.csv (unreadable files and why) and
dataset.json (counts, skips, protocol, provenance). The test files are always written, with 0 rows
when n_test_per_colour is 0, so the workflow's outputs are the same for every config.

Decoding runs in parallel worker processes that write each decoded image straight into its row of
a .npy file in a work folder with pwrite (the cache is never held in RAM, nor mapped), and resumes
after an interruption from a small state file. Which file lands in which row does not depend on
the number of workers or on interruptions: colour c's block holds, at position p, the image of
rank p in its shuffled pool; an unreadable one is replaced by the next unused rank, in order.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout
from .colours import NON_COLOURS
from .dvm import ImageReader, filter_viewpoints, list_images, members, name_key, read_image_table

SPLITS = ("train", "val", "test")
PRECEDENCE = ("val", "test", "train")  # which split keeps an advert listed under two colours
CHUNK = 32  # images per worker task
CHECKPOINT_S = 5.0  # seconds between state saves while decoding
PROGRESS_S = 5.0  # seconds between progress lines in logs
OUTPUTS = layout.PREPARED_FILES


COMMAND = "prepare"


class DataError(ValueError):
    """The data cannot give what the config asks for; the message says what to change."""


def colour_counts(images: pd.DataFrame) -> pd.Series:
    """Images per real colour (Unlisted and Multicolour left out), most frequent first, ties by name."""
    counts = images.loc[~images["color"].isin(NON_COLOURS), "color"].astype(object).value_counts()
    counts = counts[counts > 0]
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return pd.Series({c: int(n) for c, n in order}, dtype=np.int64)


def choose_colours(images: pd.DataFrame, colours: list[str] | None, top_n: int | None) -> list[str]:
    """The class list: `colours` as given (each must occur), or the `top_n` most frequent real colours."""
    counts = colour_counts(images)
    have = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none"
    if colours:
        for c in colours:
            if c in NON_COLOURS:
                raise DataError(f"colour {c!r} is not a colour class (never use {' or '.join(NON_COLOURS)}).")
        missing = [c for c in colours if c not in counts.index]
        if missing:
            raise DataError(f"colour {missing[0]!r} does not occur in the data; colours found: {have}.")
        return list(colours)
    if not top_n:
        raise DataError("give 'colours' or 'top_n_colours'.")
    if top_n > len(counts):
        raise DataError(f"top_n_colours is {top_n} but the data has only {len(counts)} colours: {have}.")
    return list(counts.index[:top_n])


def _rng(seed: int, colour: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(colour.encode())])


def _fewest(cumulative: np.ndarray, n: int) -> int:
    """The fewest leading adverts whose images add up to n or more (0 for n == 0)."""
    return int(np.searchsorted(cumulative, n) + 1) if n else 0


def _held_out(sizes: np.ndarray, n_train: int, n_val: int, n_test: int, colour: str) -> tuple[int, int]:
    """How many adverts go to val (taken from the front of the shuffled list) and to test (from its back).

    Each takes the fewest whole adverts that give its count, then a few more as a reserve for
    unreadable files (val first, then test) while the adverts in between keep n_train images.
    Test comes from the back so that val, and hence train, stay exactly as without a test split.
    """
    head, tail, total = np.cumsum(sizes), np.cumsum(sizes[::-1]), int(sizes.sum())
    k, j = _fewest(head, n_val), _fewest(tail, n_test)

    def left(k, j):  # train images once k val and j test adverts are taken
        return total - int(head[k - 1]) - (int(tail[j - 1]) if j else 0)

    if left(k, j) < n_train:
        test = f"{n_test} test, " if n_test else ""
        raise DataError(f"colour {colour!r}: {total} images in {len(sizes)} adverts cannot be split by advert "
                        f"into {n_val} val, {test}{n_train} train images; lower the counts.")
    reserve = n_val // 20 + 2
    while k + j < len(sizes) and head[k - 1] < n_val + reserve and left(k + 1, j) >= n_train:
        k += 1
    reserve = n_test // 20 + 2
    while n_test and k + j < len(sizes) and tail[j - 1] < n_test + reserve and left(k, j + 1) >= n_train:
        j += 1
    return k, j


def split_by_advert(images: pd.DataFrame, colours: list[str], n_train: int, n_val: int,
                    seed: int, n_test: int = 0) -> pd.DataFrame:
    """Candidates per colour and split, in the order they are to be used.

    Adverts (all photos of one car) are shuffled per colour; whole adverts from the front of that
    list go to the val pool until it holds n_val images plus a small reserve (for unreadable files),
    whole adverts from its back go to the test pool likewise (none when n_test is 0), the rest form
    the train pool. Each pool's images are then shuffled; the first n are used, the rest replace
    unreadable ones. Returns images with the extra columns label, split and rank (0, 1, ... per
    colour and split). No advert is in two splits. With n_test == 0 the train and val pools are
    exactly those of a split without a test split. The result depends only on the names
    (apostrophes ignored, so the Kaggle copy gives the same sample), never on the order or layout
    the files were listed in.
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    pools = []
    for label, colour in enumerate(colours):
        rng = _rng(seed, colour)
        own = images[(images["color"] == colour).to_numpy()]
        own = own.iloc[np.argsort(own["name"].astype(object).map(name_key).to_numpy(dtype=object),
                                  kind="stable")].reset_index(drop=True)
        if len(own) < n_train + n_val + n_test:
            raise DataError(f"colour {colour!r} has only {len(own)} images but {_asked(counts)} are requested; "
                            f"lower {_keys(counts)} or drop the colour.")
        adv = own["adv_id"].astype(object).to_numpy()
        sizes = pd.Series(adv).value_counts().sort_index()  # adverts in name order, not listing order
        adverts = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        k, j = _held_out(sizes.loc[adverts].to_numpy(), n_train, n_val, n_test, colour)
        held_out = {a: "val" for a in adverts[:k]} | {a: "test" for a in adverts[len(adverts) - j:]}
        side = pd.Series(adv).map(held_out).fillna("train").to_numpy(dtype=object)
        # The test pool is shuffled last: the generator then draws val and train as it always did.
        for split in ("val", "train", "test"):
            pool = own[side == split]
            pool = pool.iloc[rng.permutation(len(pool))].copy()
            pool["label"], pool["split"] = label, split
            pools.append(pool)
    out = pd.concat(pools, ignore_index=True)
    out["split"] = out["split"].astype(pd.CategoricalDtype(list(SPLITS)))
    out = _one_split_per_advert(out)
    out["rank"] = out.groupby(["label", "split"], sort=False, observed=True).cumcount()
    _check_pools(out, colours, counts)
    return out


def _asked(counts: dict[str, int]) -> str:
    """'20 train + 6 val = 26' (test named only when asked for)."""
    parts = [f"{n} {s}" for s, n in counts.items() if n or s != "test"]
    return f"{' + '.join(parts)} = {sum(counts.values())}"


def _keys(counts: dict[str, int]) -> str:
    return " / ".join(f"n_{s}_per_colour" for s, n in counts.items() if n or s != "test")


def _one_split_per_advert(out: pd.DataFrame) -> pd.DataFrame:
    """Drop the rows of an advert listed under two colours from every split but its first in PRECEDENCE."""
    adv = out["adv_id"].astype(object)
    split = out["split"].astype(object)
    keep = np.ones(len(out), dtype=bool)
    for i, first in enumerate(PRECEDENCE):
        taken = set(adv[(split == first).to_numpy()])
        for later in PRECEDENCE[i + 1:]:
            keep &= ~((split == later) & adv.isin(taken)).to_numpy()
    return out[keep].reset_index(drop=True)


def _check_pools(out: pd.DataFrame, colours: list[str], counts: dict[str, int]) -> None:
    """Each colour's pool of each split still holds its count once shared adverts were removed."""
    sizes = out.groupby(["label", "split"], observed=True).size()
    for label, colour in enumerate(colours):
        for split, n in counts.items():
            have = int(sizes.get((label, split), 0))
            if have < n:
                raise DataError(f"colour {colour!r}: only {have} {split} images are left once adverts shared "
                                f"with another colour's {' or '.join(PRECEDENCE[:PRECEDENCE.index(split)])} "
                                f"split are removed; lower n_{split}_per_colour.")


def decode(img, size: int) -> np.ndarray:
    """A PIL image (not yet loaded) as a size x size x 3 uint8 array, fitted onto white, aspect kept."""
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


# --------------------------------------------------------------------------- worker side

_READER: ImageReader | None = None
_FILES: dict[str, tuple[int, int, int]] = {}  # .npy path -> (write descriptor, data offset, bytes per row)
_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")  # object addresses differ from run to run


def _worker_init():
    """Start of a worker process: no file handles inherited from the parent."""
    global _READER
    _READER = None
    _FILES.clear()


def _release():
    global _READER
    if _READER is not None:
        _READER.close()
    _READER = None
    for fd, _, _ in _FILES.values():
        os.close(fd)
    _FILES.clear()


def _array_file(path: str) -> tuple[int, int, int]:
    """Where the rows of a .npy file start; rows are written with pwrite, never mapped into memory."""
    entry = _FILES.get(path)
    if entry is None:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
        if fortran or dtype != np.uint8:
            raise ValueError(f"{path}: expected a C-ordered uint8 array")
        entry = _FILES[path] = (os.open(path, os.O_WRONLY), offset, int(np.prod(shape[1:])))
    return entry


def _decode_task(task):
    """Decode (row, source, member, offset, csize, method, crc) items into the .npy file at `path`.

    Returns one entry per item: None when decoded and written, else why the file could not be read
    or decoded. A failure to write into the cache (a full disk) is raised, never counted as a skip.
    """
    global _READER
    from PIL import Image

    if _READER is None:
        _READER = ImageReader()
    path, size, items = task
    fd, start, row_bytes = _array_file(path)
    out = []
    for row, source, member, offset, csize, method, crc in items:
        try:
            data = _READER.read(source, member, offset, csize, method, crc if offset >= 0 else None)
            with Image.open(io.BytesIO(data)) as img:
                pixels = np.ascontiguousarray(decode(img, size))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped and counted
            out.append(_ADDRESS.sub("", f"{type(exc).__name__}: {exc}"))
            continue
        if pixels.nbytes != row_bytes:
            raise ValueError(f"decoded {pixels.shape}, the cache holds {row_bytes} bytes per image")
        if os.pwrite(fd, pixels.data, start + row * row_bytes) != row_bytes:
            raise OSError(f"short write into {path}")
        out.append(None)
    return out


def _noop():
    return None


def pool_map(pool, tasks):
    """Results in task order; in this process when there is no pool."""
    return pool.map(_decode_task, tasks) if pool is not None else map(_decode_task, tasks)


@contextlib.contextmanager
def _workers(n: int):
    """A process pool of n workers (None for one: decode in this process).

    A worker that dies (killed, or crashed inside a decoder) fails the run with BrokenProcessPool
    instead of hanging it; the next run resumes. With fork, all workers start at once, here, while
    this process is still small.
    """
    if n <= 1:
        yield None
        return
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init)
    try:
        pool.submit(_noop).result()
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- parent side


class _Progress:
    """Images decoded so far: a tqdm bar on a terminal, a line every few seconds in a log."""

    def __init__(self, total: int, label: str, done: int = 0):
        self.total, self.label, self.done, self.t0, self.last = total, label, done, time.time(), 0.0
        self.start = done
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=f"[prepare] {label}", unit="img",
                            file=sys.stderr, smoothing=0.1)

    def update(self, n: int):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.time()
        if now - self.last > PROGRESS_S or self.done >= self.total:
            self.last = now
            rate = (self.done - self.start) / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("nan")
            share = 100 * self.done / max(self.total, 1)
            print(f"[prepare] {self.label}: {self.done}/{self.total} images ({share:.0f}%), {rate:.0f}/s, "
                  f"eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Split:
    """One split's decoding: candidates in rank order per colour, the state, the array on disk."""

    def __init__(self, candidates: pd.DataFrame, colours: list[str], split: str, n: int, size: int, work: Path):
        self.split, self.n, self.size, self.colours = split, n, size, colours
        self.arr_path = work / f"{split}_images.npy"
        self.state_path = work / f"{split}_state.json"
        part = candidates[(candidates["split"] == split).to_numpy()]
        self.pools = []
        for ci in range(len(colours)):
            pool = part[(part["label"] == ci).to_numpy()].sort_values("rank")
            self.pools.append({
                "name": pool["name"].to_numpy(dtype=object),
                "source": pool["source"].astype(object).to_numpy(),
                "member": None,  # built on first use
                "frame": pool,
                "offset": pool["offset"].to_numpy(np.int64),
                "csize": pool["csize"].to_numpy(np.int64),
                "method": pool["method"].to_numpy(np.int64),
                "crc": pool["crc"].to_numpy(np.int64),
            })
        self.state = None

    @property
    def nbytes(self) -> int:
        return len(self.colours) * self.n * self.size * self.size * 3

    @property
    def resumable(self) -> bool:
        return self.state_path.exists() and self.arr_path.exists()

    def open(self) -> int:
        """Load the state, or create the array; returns the number of images already in place."""
        if self.resumable:
            self.state = json.loads(self.state_path.read_text())
            return sum(st["done"] - len(st["queue"]) for st in self.state["colours"])
        shape = (len(self.colours) * self.n, self.size, self.size, 3)
        arr = np.lib.format.open_memmap(self.arr_path, mode="w+", dtype=np.uint8, shape=shape)
        del arr
        self.state = {"colours": [{"done": 0, "queue": [], "next_rank": self.n, "refill": {}, "skipped": []}
                                  for _ in self.colours]}
        self.save()
        return 0

    def save(self):
        fd = os.open(self.arr_path, os.O_RDONLY)
        try:
            os.fsync(fd)  # rows written by the workers reach the disk before the state says so
        finally:
            os.close(fd)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)

    def _items(self, ci: int, pairs: list[tuple[int, int]]):
        pool = self.pools[ci]
        if pool["member"] is None:
            pool["member"] = members(pool["frame"]).to_numpy(dtype=object)
        return [(ci * self.n + pos, pool["source"][r], pool["member"][r], int(pool["offset"][r]),
                 int(pool["csize"][r]), int(pool["method"][r]), int(pool["crc"][r])) for pos, r in pairs]

    def first_pass(self) -> list:
        """Tasks for positions not yet tried: position p gets rank p."""
        tasks = []
        for ci, st in enumerate(self.state["colours"]):
            for start in range(st["done"], self.n, CHUNK):
                pairs = [(p, p) for p in range(start, min(start + CHUNK, self.n))]
                tasks.append((ci, pairs, True))
        return tasks

    def refill_round(self) -> list:
        """Tasks that give each position whose image was unreadable the next unused rank, in queue order."""
        tasks = []
        for ci, st in enumerate(self.state["colours"]):
            if not st["queue"]:
                continue
            available = len(self.pools[ci]["name"]) - st["next_rank"]
            if available <= 0:
                colour = self.colours[ci]
                filled = self.n - len(st["queue"])
                raise DataError(f"colour {colour!r}: only {filled} readable {self.split} images "
                                f"({len(st['skipped'])} unreadable) for {self.n} requested; lower the "
                                f"per-colour counts or drop the colour.")
            queue = st["queue"][:available]
            pairs = [(p, st["next_rank"] + i) for i, p in enumerate(queue)]
            for start in range(0, len(pairs), CHUNK):
                tasks.append((ci, pairs[start:start + CHUNK], False))
        return tasks

    def apply(self, ci: int, pairs, first: bool, errors) -> tuple[int, int]:
        """Record one finished task; returns (decoded, unreadable)."""
        st = self.state["colours"][ci]
        ok = bad = 0
        for (pos, rank), err in zip(pairs, errors):
            if not first:
                if st["queue"][0] != pos or st["next_rank"] != rank:
                    raise RuntimeError("decoding state out of order")
                st["queue"].pop(0)
                st["next_rank"] += 1
            if err is None:
                ok += 1
                if not first:
                    st["refill"][str(pos)] = rank
            else:
                bad += 1
                st["queue"].append(pos)
                st["skipped"].append([rank, err])
        if first:
            st["done"] += len(pairs)
        return ok, bad

    def rows(self) -> tuple[pd.DataFrame, list[dict]]:
        """The manifest part (candidate rows with their row in the array) and the unreadable files."""
        parts, skipped = [], []
        for ci, st in enumerate(self.state["colours"]):
            pool = self.pools[ci]
            refill = {int(k): v for k, v in st["refill"].items()}
            ranks = [refill.get(p, p) for p in range(self.n)]
            part = pool["frame"].iloc[ranks].copy()
            part["row"] = np.arange(ci * self.n, (ci + 1) * self.n)
            part["member"] = members(part).to_numpy(dtype=object)
            parts.append(part)
            skipped += [{"name": pool["name"][r], "split": self.split, "colour": self.colours[ci], "reason": e}
                        for r, e in st["skipped"]]
        return pd.concat(parts, ignore_index=True), skipped


def _run(split: _Split, tasks: list, pool, progress: _Progress, counter: dict):
    """Run tasks in order, record each result, save the state every few seconds and at the end."""
    if not tasks:
        return
    payload = [(str(split.arr_path), split.size, split._items(ci, pairs)) for ci, pairs, _ in tasks]
    last = time.time()
    try:
        for (ci, pairs, first), errors in zip(tasks, pool_map(pool, payload)):
            ok, bad = split.apply(ci, pairs, first, errors)
            counter["attempted"] += ok + bad
            progress.update(ok)
            if time.time() - last > CHECKPOINT_S:
                split.save()
                last = time.time()
    finally:
        split.save()  # what was recorded so far: a later run carries on from here


def _decode_split(split: _Split, pool, progress: _Progress, counter: dict):
    _run(split, split.first_pass(), pool, progress, counter)
    while True:
        tasks = split.refill_round()
        if not tasks:
            break
        _run(split, tasks, pool, progress, counter)


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
        with _workers(workers) as pool:
            return _prepare(pool, workers, sources, out_dir, colours=colours, top_n_colours=top_n_colours,
                            n_train_per_colour=n_train_per_colour, n_val_per_colour=n_val_per_colour,
                            n_test_per_colour=n_test_per_colour, image_size=image_size, seed=seed,
                            image_table=image_table, viewpoints=viewpoints, synthetic=synthetic)
    finally:
        _release()


def _prepare(pool, workers, sources, out_dir, *, colours, top_n_colours, n_train_per_colour, n_val_per_colour,
             n_test_per_colour, image_size, seed, image_table, viewpoints, synthetic) -> dict:
    t0 = time.time()
    out_dir = Path(out_dir)
    work = out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    print(f"[prepare] listing {len(sources)} source(s): {', '.join(str(s) for s in sources)}", file=sys.stderr)
    images, stats = list_images(sources)
    list_seconds = time.time() - t0
    print(f"[prepare] {len(images)} DVM images found in {list_seconds:.1f}s ({stats['files']} files, "
          f"{stats['duplicates']} duplicate names, {stats['not_dvm_names']} other files; by archive: "
          f"{stats['by_archive']})", file=sys.stderr)
    skipped = {"unreadable": 0, "duplicate_names": stats["duplicates"], "not_dvm_names": stats["not_dvm_names"],
               "outside_viewpoints": 0, "unlisted_or_multicolour": 0}
    listed = len(images)
    if viewpoints:
        if not image_table:
            raise DataError("'data.viewpoints' needs 'data.image_table' (Image_table.csv or tables_V2.zip).")
        images = filter_viewpoints(images, read_image_table(image_table), viewpoints)
        skipped["outside_viewpoints"] = listed - len(images)
        print(f"[prepare] {len(images)} images with viewpoint in {viewpoints}", file=sys.stderr)
    skipped["unlisted_or_multicolour"] = int(images["color"].isin(NON_COLOURS).sum())
    available = colour_counts(images)
    chosen = choose_colours(images, colours, top_n_colours)
    counts = {"train": n_train_per_colour, "val": n_val_per_colour, "test": n_test_per_colour}
    candidates = split_by_advert(images, chosen, n_train_per_colour, n_val_per_colour, seed, n_test_per_colour)
    del images
    params = {"format": 3, "colours": chosen, "n": [counts[s] for s in SPLITS], "size": image_size, "seed": seed}
    key = _plan_key(candidates, params)
    key_path = work / "plan.txt"
    if not key_path.exists() or key_path.read_text() != key:  # a different plan: start afresh
        shutil.rmtree(work)
        work.mkdir(parents=True)
        key_path.write_text(key)
    splits = {s: _Split(candidates, chosen, s, counts[s], image_size, work) for s in SPLITS}
    total = len(chosen) * sum(counts.values())
    cache_bytes = sum(sp.nbytes for sp in splits.values())
    need = sum(sp.nbytes for sp in splits.values() if not sp.resumable)
    free = shutil.disk_usage(work).free
    if free < need:  # the arrays are created sparse: a full disk would only show halfway through
        raise DataError(f"the cache needs {need / 1e9:.1f} GB but only {free / 1e9:.1f} GB are free in {work}; "
                        f"free some space or lower image_size / the per-colour counts.")
    resumed = sum(sp.open() for sp in splits.values())
    print(f"[prepare] {len(chosen)} colours x ({_asked(counts).split(' = ')[0]}) = {total} images "
          f"at {image_size}px: cache {cache_bytes / 1e9:.2f} GB, {workers} worker(s)"
          + (f"; resuming with {resumed} already decoded" if resumed else ""), file=sys.stderr, flush=True)
    progress = _Progress(total, f"decoding at {image_size}px", done=resumed)
    counter = {"attempted": 0}
    t_decode = time.time()
    try:
        for split in SPLITS:
            _decode_split(splits[split], pool, progress, counter)
    finally:
        progress.close()
    decode_seconds = time.time() - t_decode
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
    skipped["unreadable"] = len(unreadable)
    for split in SPLITS:
        labels = manifest.loc[manifest["split"] == split, "label"].to_numpy(np.int64)
        np.save(work / f"{split}_labels.npy", labels)
    seconds = time.time() - t0
    info = _describe(manifest, skipped, stats, chosen, counts, image_size, synthetic, seconds,
                     listed=listed, available=available, decode_seconds=decode_seconds,
                     attempted=counter["attempted"], workers=workers, resumed=resumed,
                     cache_bytes=cache_bytes, list_seconds=list_seconds, seed=seed,
                     viewpoints=viewpoints, image_table=image_table)
    manifest.to_csv(work / "manifest.csv", index=False)
    pd.DataFrame(unreadable, columns=["name", "split", "colour", "reason"]).to_csv(work / "skipped.csv", index=False)
    (work / "dataset.json").write_text(json.dumps(info, indent=2))
    # dataset.json last: it is the mark of a complete cache (load_prepared and Snakemake read it)
    for name in sorted(OUTPUTS, key=lambda n: n == "dataset.json"):
        os.replace(work / name, out_dir / name)
    shutil.rmtree(work)
    print(f"[prepare] done in {seconds:.1f}s (listing {list_seconds:.1f}s, decoding {decode_seconds:.1f}s): "
          f"{len(manifest)} images, cache {cache_bytes / 1e9:.2f} GB in {out_dir}, {len(unreadable)} unreadable "
          f"skipped and replaced, {info['decode_images_per_s']:.0f} images/s "
          f"({info['decode_images_per_s_per_worker']:.0f} per worker)", file=sys.stderr)
    return info


def protocol(n_test_per_colour: int) -> str:
    """Which split the comparisons score: "test" when there is one (the epoch is chosen on val and the
    test split is scored once, at that epoch), else "val" (as the lab did: the held-out images were
    its validation after every epoch, so the score is the chosen epoch's own val score)."""
    return "test" if n_test_per_colour > 0 else "val"


def _describe(manifest, skipped, stats, colours, counts, size, synthetic, seconds, *, listed, available,
              decode_seconds, attempted, workers, resumed, cache_bytes, list_seconds, seed, viewpoints,
              image_table) -> dict:
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
        "images_listed": int(listed),
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
        "list_seconds": round(list_seconds, 2),
        "decode_seconds": round(decode_seconds, 2),
        "decode_workers": workers,
        "images_resumed": int(resumed),
        "decode_images_per_s": rate,
        "decode_images_per_s_per_worker": rate / workers,
    }


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
