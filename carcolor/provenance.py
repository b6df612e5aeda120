"""Where a result came from: code revision, machine, device, versions, times, and how to re-run it.

`collect` makes a cell's `provenance.json`; `tables.collect` turns those into `provenance.csv`, one
row per cell, which the report's appendix shows.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .defaults import DEFAULTS_NAME, REPO

PACKAGES = ("carcolor", "torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pillow",
            "papermill", "snakemake")
# The Snakefile puts the --configfile paths of the run here, so a cell can say how to re-run it.
CONFIGFILES_ENV = "CARCOLOR_CONFIGFILES"
# torch.compile's on-disk caches a cell used (carcolor train-cell sets the first three)
COMPILE_CACHE_ENV = ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE",
                     "TRITON_CACHE_DIR")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'s' if n != 1 else ''})"


def _git(args: list[str], root: Path) -> subprocess.CompletedProcess | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out.returncode == 0 else None


def git_state(root: Path | None = None) -> dict:
    """The checkout's commit and whether tracked files differ from it (untracked files, such as a
    config file of one's own next to the code, do not count). Both None outside a git checkout."""
    root = root or REPO
    rev = _git(["rev-parse", "HEAD"], root)
    if rev is None:
        return {"commit": None, "tracked_changes": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], root)
    return {"commit": rev.stdout.strip(), "tracked_changes": None if status is None else bool(status.stdout.strip())}


def git_revision(root: Path | None = None) -> str | None:
    """``<commit>``, with ``-dirty`` when tracked files differ from it; None outside a git checkout."""
    state = git_state(root)
    if state["commit"] is None:
        return None
    return state["commit"] + ("-dirty" if state["tracked_changes"] else "")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def nvidia_driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def gpu(device) -> dict | None:
    """Name, memory and driver of the GPU a cell used; None on the CPU."""
    if device is None or device.type != "cuda":
        return None
    import torch

    props = torch.cuda.get_device_properties(device)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "driver": nvidia_driver(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def torch_versions() -> dict:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}


def configfiles() -> list[str]:
    """The run's --configfile paths (relative to the working directory where they are under it)."""
    try:
        files = json.loads(os.environ.get(CONFIGFILES_ENV, "[]"))
    except json.JSONDecodeError:
        return []
    return [str(f) for f in files if isinstance(f, str)]


def rerun_command(cell: str, files: list[str] | None = None) -> str:
    """The command that re-trains exactly this cell (then refreshes tables and report), from the
    working directory of the run: `make cell` with the run's config files."""
    files = configfiles() if files is None else files
    extra = [f for f in files if f != DEFAULTS_NAME]
    command = f"make cell CELL={cell}"
    if extra:
        command += " CONFIG=" + shlex.quote(" ".join(extra))
    return command


def lock_state() -> dict | None:
    """Whether the installed packages are those of the lock file (None when there is no lock file)."""
    from . import requirements as lock

    path = REPO / lock.LOCK
    if not path.is_file():
        return None
    result = lock.compare(path)
    return {"lock": lock.LOCK, "matches": result["matches"], "differences": result["differences"]}


def collect(*, device=None, cell: str | None = None, started: str | None = None) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    record = {"created": now(), "started": started, "ended": now(),
              "python": sys.version.split()[0], "platform": platform.platform(),
              "machine": platform.machine(), "host": platform.node(),
              "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "usable": usable_cpus()},
              "gpu": gpu(device), **torch_versions(),
              "git": git_revision(), **{f"git_{k}": v for k, v in git_state().items()},
              "packages": versions, "locked": lock_state(),
              "inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
              "compile_cache": {k: os.environ.get(k) for k in COMPILE_CACHE_ENV if os.environ.get(k) is not None},
              "configfiles": configfiles()}
    if cell:
        record["cell"] = cell
        record["rerun"] = rerun_command(cell)
    return record
