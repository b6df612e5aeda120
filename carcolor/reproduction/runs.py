"""A finished run as `carcolor compare` reads it: from a results folder, an archive (zip) or an
unpacked archive (experiments/reference/), each file by its path in the working directory
(carcolor.layout), so the three read alike.

Whatever is wrong with what was given (not a zip, no crate metadata, another project's crate, a file
whose checksum does not match, a missing table) is a `BrokenRun`: one line naming the file and what
is wrong, which `carcolor compare` prints before it exits with status 2.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from .. import layout, requirements
from . import crate

CHECKSUMS = crate.CHECKSUMS
WHAT_TO_GIVE = "give a results folder (results/), an archive (results/archive/*.zip) or an unpacked one"


class BrokenRun(ValueError):
    """What was given is no readable run; the message names the file and what is wrong, in one line."""


class FolderSource:
    """A working directory (holding results/) or an unpacked archive; `results` is where results/ is.
    Like ZipSource it reads each file by its path in the working directory, or gives None."""

    def __init__(self, root: Path, kind: str, results: Path | None = None):
        self.where, self.kind = str(root if results is None else results), kind
        self.root, self.results = root, results if results is not None else root / "results"

    def _path(self, name: str) -> Path:
        head, _, rest = name.partition("/")
        return self.results / rest if head == "results" else self.root / name

    def read(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.is_file() else None



class ZipSource:
    def __init__(self, path: Path):
        self.where, self.kind = str(path), "archive"
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BrokenRun(f"{path}: not a zip archive ({exc}); {WHAT_TO_GIVE}") from None

    def read(self, name: str) -> bytes | None:
        try:
            return self.zip.read(name)
        except KeyError:
            return None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BrokenRun(f"{self.where}: {name} cannot be read ({exc}); make the archive again") from None



def open_source(path: str | Path) -> FolderSource | ZipSource:
    """The run at path: a zip, an unpacked archive (it has ro-crate-metadata.json), a results folder
    (it has tables/) or a working directory (it has results/tables/)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder; {WHAT_TO_GIVE}")
    if p.is_file():
        return ZipSource(p)
    if (p / crate.METADATA).is_file():
        return FolderSource(p, "unpacked archive")
    if (p / "tables").is_dir():
        return FolderSource(p.parent, "results folder", results=p)
    if (p / layout.TABLES_DIR).is_dir():
        return FolderSource(p, "results folder")
    raise BrokenRun(f"{p}: a folder with neither tables/ nor {crate.METADATA}; {WHAT_TO_GIVE}")


def verify(source: FolderSource | ZipSource) -> int:
    """Check every file listed in the archive's checksums.sha256; returns how many were checked."""
    listed = source.read(CHECKSUMS)
    if listed is None:
        raise BrokenRun(f"{source.where}: no {CHECKSUMS}; an archive made by `carcolor archive` has one")
    count = 0
    for line in listed.decode().splitlines():
        digest, _, name = line.partition("  ")
        data = source.read(name)
        if data is None:
            raise BrokenRun(f"{source.where}: {name} is listed in {CHECKSUMS} but missing")
        if hashlib.sha256(data).hexdigest() != digest:
            raise BrokenRun(f"{source.where}: {name} does not match its checksum in {CHECKSUMS} (damaged or "
                            f"edited); make the archive again with `carcolor archive`")
        count += 1
    return count


@dataclass
class Run:
    """What compare needs of one run; `texts` keeps each table's CSV text for the bitwise check."""

    where: str
    kind: str
    tables: dict[str, pd.DataFrame]
    texts: dict[str, str]
    dataset: dict
    summaries: dict[str, dict] = field(default_factory=dict)
    provenance: dict[str, dict] = field(default_factory=dict)
    config: dict | None = None
    lock: str | None = None
    metadata: dict | None = None

    @property
    def cells(self) -> list[str]:
        return list(self.tables["summary"]["cell"])


def _json(source: FolderSource | ZipSource, name: str) -> dict | None:
    data = source.read(name)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BrokenRun(f"{source.where}: {name} is not JSON ({exc})") from None


def _tables(source: FolderSource | ZipSource) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    frames, texts = {}, {}
    for name in (n for n in layout.TABLE_FILES if n.endswith(".csv")):
        path = f"{layout.TABLES_DIR}/{name}"
        data = source.read(path)
        if data is None:
            raise BrokenRun(f"{source.where}: {path} is missing; a finished run has every table "
                            f"(run `snakemake --cores all`, then `carcolor archive`)")
        texts[name.removesuffix(".csv")] = data.decode()
        frames[name.removesuffix(".csv")] = pd.read_csv(io.BytesIO(data))
    return frames, texts


def load(path: str | Path) -> Run:
    """Read a run; an archive's checksums and crate are checked first."""
    source = open_source(path)
    metadata = None
    if source.kind != "results folder":
        metadata = _json(source, crate.METADATA)
        if metadata is None:
            raise BrokenRun(f"{source.where}: no {crate.METADATA}; {WHAT_TO_GIVE}")
        wrong = crate.problem(metadata)
        if wrong:
            raise BrokenRun(f"{source.where}: {wrong}")
        verify(source)
    frames, texts = _tables(source)
    dataset = _json(source, f"{layout.TABLES_DIR}/dataset.json")
    if dataset is None:
        raise BrokenRun(f"{source.where}: {layout.TABLES_DIR}/dataset.json is missing")
    run = Run(where=source.where, kind=source.kind, tables=frames, texts=texts, dataset=dataset, metadata=metadata)
    for cell in run.cells:
        for name, into in (("summary.json", run.summaries), ("provenance.json", run.provenance)):
            into[cell] = _json(source, f"{layout.run_dir(cell)}/{name}") or {}
    record = source.read(layout.CONFIG_RECORD)
    run.config = (yaml.safe_load(record) or {}).get("config") if record is not None else None
    lock = source.read(requirements.LOCK)
    run.lock = lock.decode() if lock is not None else None
    return run
