"""Download the DVM-Car archives from Figshare.

The DVM-Car dataset (Huang et al.) is published as Figshare article 19586296
(doi:10.6084/m9.figshare.19586296) under the CC BY-NC 4.0 licence.  No checksums
are published, so every completed download is recorded next to the file as
``<file>.json`` with its size and SHA-256; later stages can cite that record.

Downloads stream with the standard library only (``urllib``) into
``<file>.part``.  An interrupted download resumes from the part file with an HTTP
``Range`` request, transient failures are retried, and only a complete file is
ever renamed to its final name.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .transfer import DownloadError, download, human_size, read_record, record_path, sha256_file, write_record

log = logging.getLogger(__name__)

FIGSHARE_ARTICLE = 19586296
FIGSHARE_DOI = "10.6084/m9.figshare.19586296"
LICENCE = "CC BY-NC 4.0"
DEFAULT_DATA_DIR = Path("data/dvm")


@dataclass(frozen=True)
class Archive:
    """One published file of the DVM-Car Figshare article."""

    name: str
    url: str
    filename: str
    approx_bytes: int
    description: str


ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        Archive(
            name="resized_DVM",
            url="https://ndownloader.figshare.com/files/34792453",
            filename="resized_DVM_v2.zip",
            approx_bytes=13_600_000_000,
            description="all 1,451,784 resized car images",
        ),
        Archive(
            name="confirmed_fronts",
            url="https://ndownloader.figshare.com/files/34792480",
            filename="Confirmed_fronts.zip",
            approx_bytes=730_000_000,
            description="images confirmed to show the front view",
        ),
        Archive(
            name="tables",
            url="https://ndownloader.figshare.com/files/38754867",
            filename="tables_V2.zip",
            approx_bytes=189_000_000,
            description="basic, trim, price, sales, advert and image tables",
        ),
    )
}


def fetch_archive(name: str, data_dir: Path, **kw) -> dict:
    """Download ``ARCHIVES[name]`` into ``data_dir / filename`` and return its record.

    Nothing is fetched when the file and its ``.json`` record exist and the
    sizes agree.  A file without a record that is a readable zip archive (for
    example one downloaded by hand) is kept and recorded rather than fetched
    again.  Keyword arguments go to :func:`download`.
    """
    try:
        archive = ARCHIVES[name]
    except KeyError:
        raise ValueError(
            f"unknown DVM-Car archive {name!r}; valid choices: {', '.join(ARCHIVES)}"
        ) from None
    dest = Path(data_dir) / archive.filename
    record_file = record_path(dest)
    if dest.is_file():
        record = read_record(record_file) if record_file.is_file() else None
        size = dest.stat().st_size
        if record is not None and record.get("size") == size:
            log.info("%s is already complete (%d bytes); skipping", dest, size)
            return record
        if record is None and zipfile.is_zipfile(dest):
            log.info("recording %s, found on disk without a download record", dest)
            record = {
                "url": archive.url,
                "path": str(dest),
                "size": size,
                "sha256": sha256_file(dest),
                "downloaded_at": datetime.fromtimestamp(dest.stat().st_mtime, timezone.utc)
                .isoformat(timespec="seconds"),
                "source": "existing file",
            }
            write_record(record_file, record)
            return record
        log.warning("%s does not match its download record; downloading it again", dest)
    return download(archive.url, dest, **kw)


# -- command line --------------------------------------------------------------------

def _list_archives(out=None) -> None:
    out = out or sys.stdout
    rows = [(a.name, human_size(a.approx_bytes), a.filename, a.url) for a in ARCHIVES.values()]
    head = ("NAME", "SIZE", "FILE", "URL")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3], file=out)
    print(f"\nDVM-Car, Figshare article {FIGSHARE_ARTICLE} (doi:{FIGSHARE_DOI}), "
          f"licence {LICENCE}. No checksums are published; each download is "
          "recorded with its SHA-256 in <file>.json.", file=out)


def run(args: argparse.Namespace) -> int:
    """`carcolor download`: fetch the named archives (resumable, verified)."""
    if args.list:
        _list_archives()
        return 0
    names = list(dict.fromkeys(args.names))
    if "all" in names:
        names = list(ARCHIVES)
    if not names:
        print(f"carcolor download: name at least one archive ({', '.join(ARCHIVES)}, all) "
              "or use --list", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in ARCHIVES]
    if unknown:
        print(f"carcolor download: unknown archive {', '.join(map(repr, unknown))}; "
              f"valid choices: {', '.join(ARCHIVES)}, all", file=sys.stderr)
        return 2
    for name in names:
        try:
            record = fetch_archive(name, args.data_dir, progress=not args.no_progress,
                                   retries=args.retries, timeout=args.timeout)
        except DownloadError as e:
            print(f"carcolor download: error: {e}", file=sys.stderr)
            return 1
        print(f"{name}: {record['path']} ({record['size']} bytes, sha256 {record['sha256']})")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (f"Download DVM-Car archives (Figshare article {FIGSHARE_ARTICLE}, licence {LICENCE}). "
                     "Interrupted downloads resume from <file>.part.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"archive(s) to fetch: {', '.join(ARCHIVES)}, or all")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="directory for the archives (default: %(default)s)")
    p.add_argument("--list", action="store_true",
                   help="list the archives with their sizes and URLs, then exit")
    p.add_argument("--retries", type=int, default=3,
                   help="retries after a transient failure (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="network timeout in seconds (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
