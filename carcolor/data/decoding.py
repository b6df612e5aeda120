"""Decoding the chosen images into the uint8 cache, in parallel, resumable.

Worker processes write each decoded image straight into its row of a .npy file in a work folder
with pwrite (the cache is never held in RAM, nor mapped), and a run resumes after an interruption
from a small state file per split. Which file lands in which row does not depend on the number of
workers or on interruptions: colour c's block holds, at position p, the image of rank p in its
shuffled pool (carcolor.data.selection); an unreadable one is replaced by the next unused rank, in
order.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing as mp
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic
from .dvm import ImageReader, members
from .selection import DataError

CHUNK = 32  # images per worker task
CHECKPOINT_S = 5.0  # seconds between state saves while decoding
PROGRESS_S = 5.0  # seconds between progress lines in logs


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


def release():
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


def _pool_map(pool, tasks):
    """Results in task order; in this process when there is no pool."""
    return pool.map(_decode_task, tasks) if pool is not None else map(_decode_task, tasks)


@contextlib.contextmanager
def worker_pool(n: int):
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


class Progress:
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


class SplitDecoder:
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
        atomic.write_text(self.state_path, json.dumps(self.state))

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


def _run(split: SplitDecoder, tasks: list, pool, progress: Progress, counter: dict):
    """Run tasks in order, record each result, save the state every few seconds and at the end."""
    if not tasks:
        return
    payload = [(str(split.arr_path), split.size, split._items(ci, pairs)) for ci, pairs, _ in tasks]
    last = time.time()
    try:
        for (ci, pairs, first), errors in zip(tasks, _pool_map(pool, payload)):
            ok, bad = split.apply(ci, pairs, first, errors)
            counter["attempted"] += ok + bad
            progress.update(ok)
            if time.time() - last > CHECKPOINT_S:
                split.save()
                last = time.time()
    finally:
        split.save()  # what was recorded so far: a later run carries on from here


def decode_split(split: SplitDecoder, pool, progress: Progress, counter: dict):
    _run(split, split.first_pass(), pool, progress, counter)
    while True:
        tasks = split.refill_round()
        if not tasks:
            break
        _run(split, tasks, pool, progress, counter)
