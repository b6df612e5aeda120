"""One run at a time, and nothing to do by hand after a kill.

Snakemake locks a working directory with files under .snakemake/locks/ that a killed run leaves
behind; the next run then stops and asks for `--unlock`, although no run is alive. carcolor holds
an OS lock (flock) for as long as a run lives instead: the kernel releases it when the process
dies, however it dies. So the Snakefile can tell a live run (refuse, in one line) from a dead one
(clear Snakemake's stale locks and go on). The same kind of lock guards each training cell's folder
against two processes writing one checkpoint.
"""
from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from pathlib import Path

LOCK_NAME = "carcolor-run.lock"
# Snakemake invocations that change nothing, and so take no lock (Snakemake's dry run does not either).
READ_ONLY_FLAGS = {"--dry-run", "--dryrun", "--lint", "--unlock", "--summary", "--detailed-summary",
                   "--list", "--list-rules", "--list-target-rules", "--dag", "--rulegraph", "--filegraph",
                   "--report", "--list-changes", "--lc", "--list-input-changes", "--li", "--list-params-changes",
                   "--lp", "--list-code-changes", "--list-untracked", "--cleanup-metadata", "--version",
                   "--print-compilation", "--d3dag", "-n", "-S", "-D", "-l"}
_HELD: dict[str, int] = {}  # lock path -> open descriptor, kept for the life of the process


class Locked(RuntimeError):
    """Another live process holds the lock; the message says which and what to do."""


def read_only(argv: list[str]) -> bool:
    """Whether a snakemake command line only looks (dry run, lint, unlock, summaries, graphs)."""
    for arg in argv[1:]:
        flag = arg.split("=", 1)[0]
        if flag in READ_ONLY_FLAGS or re.fullmatch(r"-[a-zA-Z]*n[a-zA-Z]*", arg):
            return True
    return False


def hold(path: str | Path, what: str) -> None:
    """Take the lock at path for the rest of this process's life, or raise Locked naming its holder."""
    path = Path(path)
    key = str(path.resolve())
    if key in _HELD:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Locked(f"{what} is in use by another live process ({holder}); wait for it to finish "
                     f"or stop it, then run the same command again.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
    _HELD[key] = fd


def release(path: str | Path) -> None:
    fd = _HELD.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)


def clear_stale_snakemake_locks(workdir: str | Path = ".") -> list[Path]:
    """Remove Snakemake's lock files; call only while holding the run lock (no other run is alive)."""
    removed = []
    for lock in sorted((Path(workdir) / ".snakemake" / "locks").glob("*.lock")):
        lock.unlink(missing_ok=True)
        removed.append(lock)
    return removed


def guard_run(argv: list[str], *, main_process: bool, workdir: str | Path = ".") -> None:
    """The Snakefile's guard: a real run takes the run lock and clears a dead run's Snakemake locks;
    while another run lives it stops with one line. Read-only commands and Snakemake's own job
    processes (cluster jobs parse the Snakefile again) pass untouched."""
    if not main_process or read_only(argv):
        return
    workdir = Path(workdir)
    try:
        hold(workdir / ".snakemake" / LOCK_NAME, f"the working directory {workdir.resolve()}")
    except Locked as exc:
        print(f"carcolor: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if clear_stale_snakemake_locks(workdir):
        print("carcolor: removed the locks of an earlier run that was killed; carrying on where it stopped.",
              file=sys.stderr)
