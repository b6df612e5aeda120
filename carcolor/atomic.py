"""Writing files that other jobs read: a temporary name in the same folder, then a rename.

A reader, or a run killed at any moment, sees either the old file, the new one, or none; never a
partial one under the final name. The temporary name is fixed (`.<name>.partial`), so a run that is
killed and re-run overwrites its own leftovers instead of piling them up (one run at a time is
guaranteed by carcolor.runlock). A write that fails (a full disk, say) removes its temporary file.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable


def partial_name(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call writer(temporary path), then rename the result to path."""
    path = Path(path)
    tmp = partial_name(path)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data, **kwargs) -> Path:
    return write_text(path, json.dumps(data, indent=2, **kwargs))


def write_csv(frame, path: str | Path) -> Path:
    return write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_torch(obj, path: str | Path) -> Path:
    import torch

    return write_with(path, lambda tmp: torch.save(obj, tmp))


def write_together(writers: dict[str | Path, Callable[[Path], None]]) -> list[Path]:
    """Write several files that belong together: all to temporary names first, then all renamed.

    The renames take microseconds, so the set is replaced as one; a kill before them leaves the
    old set (or, under Snakemake, which deletes a job's outputs first, no set) untouched.
    """
    staged = [(partial_name(path), Path(path)) for path in writers]
    try:
        for (tmp, _), writer in zip(staged, writers.values()):
            writer(tmp)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    return [path for _, path in staged]


def replace_folder(built: str | Path, dest: str | Path) -> Path:
    """Put a folder built elsewhere (next to dest, on the same file system) in dest's place, removing
    what dest held: nothing of an earlier version survives beside the new one. A kill between the two
    renames leaves no dest; the stage that writes it then runs again."""
    built, dest = Path(built), Path(dest)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(built, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
