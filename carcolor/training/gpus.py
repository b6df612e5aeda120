"""Every GPU of one machine: each training cell on its own GPU, never two cells on one.

Snakemake counts GPUs (`--resources gpu=N` runs at most N cells at once) but does not say which
GPU a job gets. So a training job, before its notebook kernel starts, takes the first free id from
a pool of lock files, `.snakemake/carcolor-gpus/<id>.lock`, one per GPU, with the OS lock (flock)
that runlock uses: the kernel releases it when the job ends, however it ends. It then sets
CUDA_VISIBLE_DEVICES to that one id, which the kernel inherits. With at most N cells running, one
id is always free, so no cell waits while a GPU idles; with more (a larger `gpu=` than GPUs) a cell
waits for an id instead of sharing one.

Under SLURM the allocation has already set CUDA_VISIBLE_DEVICES for the job: left as it is.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

POOL_DIR = ".snakemake/carcolor-gpus"
# Pretend this many GPUs (ids 0..N-1) instead of asking CUDA: for testing the pool without GPUs.
PRETEND = "CARCOLOR_GPUS"
_HELD: list[int] = []  # the claimed id's lock descriptor, kept for the life of the process


def wants_cuda(device: str, nvidia: str = "/dev/nvidiactl") -> bool:
    """Whether a cell with this `train.device` trains on a GPU (as workflow.gpus_per_cell decides)."""
    return device == "cuda" or (device == "auto" and os.path.exists(nvidia))


def visible_ids() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs)."""
    if os.environ.get(PRETEND):
        return [str(i) for i in range(int(os.environ[PRETEND]))]
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [i.strip() for i in listed.split(",") if i.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def claim(ids: list[str], pool_dir: str | Path = POOL_DIR, poll: float = 0.5) -> str:
    """Lock and return the first free id of `ids`, waiting while every one is taken."""
    pool = Path(pool_dir)
    pool.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for gpu in ids:
            fd = os.open(pool / f"{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            _HELD.append(fd)
            return gpu
        if not waited:
            print(f"carcolor: all {len(ids)} GPUs are taken; waiting for one (is --resources gpu= larger "
                  f"than the number of GPUs?)", file=sys.stderr, flush=True)
            waited = True
        time.sleep(poll)


def pin(cell: str, device: str, pool_dir: str | Path = POOL_DIR) -> str:
    """Choose this cell's GPU before its kernel starts; return a line saying where it runs."""
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "none")
        return f"cell {cell} runs in SLURM job {job} on {os.environ.get('SLURMD_NODENAME', '?')} (GPUs: {gpus})"
    if not wants_cuda(device):
        return f"cell {cell} runs on the CPU"
    ids = visible_ids()
    if not ids:
        return f"cell {cell}: no GPU visible"
    gpu = claim(ids, pool_dir)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    return f"cell {cell} runs on GPU {gpu} (CUDA_VISIBLE_DEVICES={gpu}; of {','.join(ids)})"
