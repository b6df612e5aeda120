"""Pack a finished run as one zip under results/archive/: tables, report, cells' pages and notebooks.

The zip holds every file by its path in the working directory (results/tables/summary.csv, ...): the
tables, each cell's executed notebook, metrics, predictions, summary and provenance (never a
checkpoint), the report and the cells' pages, the resolved configuration (results/config.yaml), the
prepared data's description (data/prepared/dataset.json, no image), requirements.lock and the
Snakefile, with checksums.sha256 (`sha256sum -c` checks an unpacked copy) and the RO-Crate metadata
(carcolor.reproduction.crate). The same run always gives the same bytes: entries in a fixed order,
each dated by the run's end. `--reference DIR` writes the small files alone (tables, summaries,
provenance, configuration, metadata; no notebook or page), unpacked: what experiments/reference/ holds.
"""
from __future__ import annotations

import getpass
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd

from .. import atomic, layout, requirements
from ..defaults import REPO
from . import crate

COMMAND = "archive"
SMALL_RUN_FILES = ("summary.json", "provenance.json")
FROM_CHECKOUT = (crate.WORKFLOW, requirements.LOCK)  # the code's files, read from the checkout


def names(cells: list[str], *, small: bool = False) -> list[str]:
    """The files of a finished run that an archive holds (the small ones only, with `small`)."""
    found = [layout.CONFIG_RECORD, layout.PREPARED_JSON, requirements.LOCK]
    found += [f"{layout.TABLES_DIR}/{name}" for name in layout.TABLE_FILES]
    found += [f"{layout.run_dir(c)}/{f}" for c in cells for f in (SMALL_RUN_FILES if small else layout.RUN_FILES)]
    if not small:
        found += [f"{layout.REPORT_DIR}/{f}" for f in layout.REPORT_FILES]
        found += [f"{layout.REPORT_DIR}/{layout.page_path(c)}" for c in cells]
    return found


def read_run(results: Path, small: bool) -> dict[str, bytes]:
    """Every file of the archive, by name; a missing one stops with the command that makes it."""
    summary = results / "tables" / "summary.csv"
    if not summary.is_file():
        raise FileNotFoundError(f"{summary} is missing: archive a finished run (run `snakemake --cores all` first)")
    cells = list(pd.read_csv(summary)["cell"])
    files = {}
    for name in names(cells, small=small) + [crate.WORKFLOW]:
        head, _, rest = name.partition("/")
        path = REPO / name if name in FROM_CHECKOUT else results / rest if head == "results" else results.parent / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: archive a finished run (run `snakemake --cores all` first)")
        files[name] = path.read_bytes()
    return files


def _author() -> str:
    try:
        out = subprocess.run(["git", "config", "user.name"], cwd=REPO, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return getpass.getuser()


def _one(values, several: str = "several") -> str | None:
    found = sorted({str(v) for v in values if v is not None})
    return found[0] if len(found) == 1 else (f"{several}: {', '.join(found)}" if found else None)


def facts(files: dict[str, bytes], author: str | None) -> dict:
    """What the crate says about the run, from its own files."""
    summary = pd.read_csv(io.BytesIO(files[f"{layout.TABLES_DIR}/summary.csv"]))
    cells = list(summary["cell"])
    prov = [json.loads(files[f"{layout.run_dir(c)}/provenance.json"]) for c in cells]
    ident = [json.loads(files[f"{layout.run_dir(c)}/summary.json"]).get("identity") or {} for c in cells]
    dataset = json.loads(files[f"{layout.TABLES_DIR}/dataset.json"])
    gpus = _one((p.get("gpu") or {}).get("name") for p in prov) or "no GPU"
    machine = (f"{_one(p['cpu']['model'] for p in prov)} ({_one(p['cpu']['cores'] for p in prov)} cores), {gpus}, "
               f"Python {_one(p.get('python') for p in prov)}, torch {_one(p.get('torch') for p in prov)}")
    end = max(p.get("ended") or "" for p in prov)
    return {"author": author or _author(), "start": min(p.get("started") or end for p in prov), "end": end,
            "commit": _one(p.get("git_commit") for p in prov),
            "snakemake": _one((p.get("packages") or {}).get("snakemake") for p in prov),
            "fingerprint": _one(i.get("data") for i in ident) or "not recorded",
            "data_source": crate.data_source(dataset),
            "title": f"carcolor run of {end[:10]}: {len(cells)} cells on {dataset.get('source')} data",
            "description": f"{len(cells)} grid cells ({', '.join(cells)}), on {machine}; on host "
                           f"{_one(p.get('host') for p in prov)}, commit {_one(p.get('git_commit') for p in prov)}.",
            "sizes": {name: len(data) for name, data in files.items()}}


def contents(files: dict[str, bytes], author: str | None = None) -> tuple[dict[str, bytes], dict]:
    """The archive's files (the run's, its crate metadata and the checksums of both), and its facts."""
    info = facts(files, author)
    metadata = crate.build([n for n in files if n != crate.WORKFLOW] + [crate.CHECKSUMS], info)
    out = {**files, crate.METADATA: crate.dumps(metadata).encode()}
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in out.items())
    return {**out, crate.CHECKSUMS: sums.encode()}, info


def _stamp(end: str) -> tuple:
    when = datetime.fromisoformat(end) if end else datetime(1980, 1, 1)
    return when.timetuple()[:6]


def write_zip(out: Path, files: dict[str, bytes], end: str) -> Path:
    def writer(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                entry = zipfile.ZipInfo(name, date_time=_stamp(end))
                entry.external_attr = 0o644 << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(entry, data)

    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_with(out, writer)


def write_folder(out: Path, files: dict[str, bytes]) -> Path:
    """The files unpacked into a fresh folder, renamed over `out` once complete."""
    fresh = atomic.partial_name(out)
    shutil.rmtree(fresh, ignore_errors=True)
    for name, data in files.items():
        (fresh / name).parent.mkdir(parents=True, exist_ok=True)
        (fresh / name).write_bytes(data)
    shutil.rmtree(out, ignore_errors=True)
    fresh.rename(out)
    return out


def archive_name(end: str) -> str:
    return f"carcolor-run-{end[:19].replace('-', '').replace(':', '')}.zip"


def add_arguments(p) -> None:
    p.add_argument("--results", default="results", help="the finished run's results folder (default: %(default)s)")
    p.add_argument("--out", default=layout.ARCHIVE_DIR, help="where the zip goes (default: %(default)s)")
    p.add_argument("--reference", metavar="DIR",
                   help="write the small files (no notebook or page) unpacked into DIR instead, e.g. "
                        "experiments/reference")
    p.add_argument("--author", help="the person named in the crate (default: git's user.name, else the login name)")


def run(args) -> int:
    """`carcolor archive`: pack a finished run as one zip with RO-Crate metadata."""
    files, info = contents(read_run(Path(args.results), small=bool(args.reference)), args.author)
    if args.reference:
        out = write_folder(Path(args.reference), files)
    else:
        out = write_zip(Path(args.out) / archive_name(info["end"]), files, info["end"])
    size = out.stat().st_size if out.is_file() else sum(len(d) for d in files.values())
    print(f"[archive] {len(files)} files, {size / 1e6:.1f} MB -> {out}")
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
