"""Notebook kernels that die with the job that started them, and keep their files under .snakemake/.

papermill and nbclient start each kernel in a session of its own (jupyter_client does so, to interrupt
it), so a kill of the job's process group does not reach it: the kernel would poll for its parent
once a second and keep writing meanwhile. `kernel_arguments` makes the kernel, as its first act, ask
Linux to kill it the moment its parent dies (PR_SET_PDEATHSIG). Its connection file, which holds the
kernel's key, goes to a folder of the working directory's .snakemake/ named after the starting process
(`runtime_dir`); a later job removes the folders of processes that are gone.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
from pathlib import Path

RUNTIME_DIR = ".snakemake/carcolor-kernels"
PR_SET_PDEATHSIG = 1
# Starts of a kernel before its job gives up: jupyter_client picks the kernel's ports free, then the kernel
# binds them, and a process starting beside it can take one meanwhile ("Address already in use"); the
# kernel then dies before it has run anything, and a new start picks other ports.
KERNEL_STARTS = 3


def die_with_parent() -> bool:
    """Be killed (SIGKILL) when the parent process dies; exit now if it has died already. Linux only;
    returns whether it took effect."""
    parent = int(os.environ.get("JPY_PARENT_PID") or os.getppid())
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return False
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    return True


def kernel_arguments() -> list[str]:
    """Arguments for the kernel's command line (nbclient's and papermill's `extra_arguments`)."""
    return ['--IPKernelApp.exec_lines=["import carcolor.kernels as _k; _k.die_with_parent(); del _k"]']


def start_failed(exc: BaseException) -> bool:
    """Whether a kernel died as it started, before running anything (jupyter_client's RuntimeError)."""
    return isinstance(exc, RuntimeError) and "before replying to kernel_info" in str(exc)


def retrying(execute, *, what: str, log):
    """execute(), started again (up to KERNEL_STARTS times in all) when its kernel dies as it starts."""
    for attempt in range(1, KERNEL_STARTS + 1):
        try:
            return execute()
        except RuntimeError as exc:
            if not start_failed(exc) or attempt == KERNEL_STARTS:
                raise
            log(f"carcolor: the kernel of {what} died as it started ({exc}); starting it again "
                f"({attempt + 1} of {KERNEL_STARTS})")
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def runtime_dir(workdir: str | Path = "."):
    """Within this block, the kernels this process starts write their connection files to
    <workdir>/.snakemake/carcolor-kernels/<pid>/ (removed at the end); folders of processes that no
    longer live are removed first."""
    root = Path(workdir) / RUNTIME_DIR
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.name.isdigit() and int(folder.name) != os.getpid() and not _alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / str(os.getpid())
    mine.mkdir(mode=0o700, exist_ok=True)
    before = tempfile.tempdir
    tempfile.tempdir = str(mine.resolve())  # jupyter_client's connection file: tempfile.mkstemp(".json")
    try:
        yield mine
    finally:
        tempfile.tempdir = before
        shutil.rmtree(mine, ignore_errors=True)
