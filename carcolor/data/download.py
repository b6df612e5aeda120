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
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import ssl
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

__all__ = [
    "ARCHIVES",
    "Archive",
    "DEFAULT_DATA_DIR",
    "DownloadError",
    "download",
    "fetch_archive",
    "register",
]

log = logging.getLogger(__name__)

FIGSHARE_ARTICLE = 19586296
FIGSHARE_DOI = "10.6084/m9.figshare.19586296"
LICENCE = "CC BY-NC 4.0"
DEFAULT_DATA_DIR = Path("data/dvm")
USER_AGENT = "carcolor-download/1.0 (+python-urllib)"

# Seconds before the first retry; doubled on each further retry (capped below).
RETRY_DELAY_S = 2.0
RETRY_DELAY_MAX_S = 60.0
# HTTP statuses worth retrying; every other 4xx/5xx fails at once.
TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


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


class DownloadError(RuntimeError):
    """A download that cannot complete; ``str()`` is always a single line."""

    def __init__(self, message: str, *, url: str | None = None,
                 reason: str | None = None, dest: Path | None = None):
        message = re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip()
        super().__init__(message)
        self.url = url
        self.reason = reason
        self.dest = dest


class _Retry(Exception):
    """Internal: the attempt failed in a way that is worth retrying."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _fail(url: str, reason: str, dest: Path) -> DownloadError:
    return DownloadError(
        f"cannot download {url} ({reason}); download it by hand and save it as {dest}",
        url=url, reason=reason, dest=dest,
    )


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".json")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Hash:
    """SHA-256 of the part file, kept in step with the bytes written to it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.h = hashlib.sha256()
        self.n = 0

    def update(self, chunk: bytes) -> None:
        self.h.update(chunk)
        self.n += len(chunk)

    def sync(self, path: Path, size: int) -> None:
        """Make the state cover exactly the first ``size`` bytes of ``path``."""
        if self.n == size:
            return
        self.reset()
        if size:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    self.update(block)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _classify(exc: BaseException, host: str | None, timeout: float) -> tuple[str, bool]:
    """One-line reason for a network failure and whether a retry may help."""
    r = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(r, socket.gaierror):
        return f"cannot resolve host {host}: offline or DNS failure ({r.strerror or r})", False
    if isinstance(r, TimeoutError):  # socket.timeout is an alias
        return f"timed out after {timeout:g} s", True
    if isinstance(r, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(r, ConnectionError):
        return f"connection lost: {r.strerror or type(r).__name__}", True
    if isinstance(r, http.client.IncompleteRead):
        return f"incomplete read ({len(r.partial)} bytes)", True
    if isinstance(r, http.client.HTTPException):
        return f"{type(r).__name__}: {r}".rstrip(": "), True
    if isinstance(r, ssl.SSLCertVerificationError):
        return f"TLS certificate error: {r.verify_message or r}", False
    if isinstance(r, ssl.SSLError):
        return f"TLS error: {r.reason or r}", True
    if isinstance(r, OSError):  # network unreachable and friends: most likely offline
        return r.strerror or str(r) or type(r).__name__, False
    return str(r) or type(r).__name__, False


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)", re.I)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header; None where absent."""
    m = _CONTENT_RANGE.match((value or "").strip())
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _content_length(headers) -> int | None:
    try:
        n = int(headers.get("Content-Length", ""))
    except ValueError:
        return None
    return n if n >= 0 else None


def _check_disk(url: str, directory: Path, needed: int | None) -> None:
    if needed is None or needed <= 0:
        return
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(
            f"not enough free disk space to download {url} into {directory}: "
            f"{needed} bytes ({_human(needed)}) needed, {free} bytes ({_human(free)}) free",
            url=url, reason="not enough free disk space", dest=directory,
        )


def _attempt(url: str, dest: Path, part: Path, digest: _Hash, state: dict, *,
             progress: bool, chunk_size: int, timeout: float) -> int:
    """One request; returns the size of the complete part file.

    Raises ``_Retry`` for failures worth retrying and ``DownloadError`` otherwise.
    """
    host = urlsplit(url).hostname
    offset = part.stat().st_size if part.exists() else 0
    digest.sync(part, offset)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        with e:
            code, reason, e_headers = e.code, e.reason, e.headers
        if code == 416 and offset:
            _, total = _parse_content_range(e_headers.get("Content-Range"))
            if total is None:
                total = state.get("total")
            if total == offset:
                return offset  # the part file already holds the whole file
            # The part does not fit the remote file: throw it away and start over.
            part.unlink(missing_ok=True)
            digest.reset()
            raise _Retry(f"HTTP 416 for a {offset}-byte partial file; restarting from zero")
        reason = f"HTTP {code} {reason}".strip()
        if code in TRANSIENT_HTTP:
            raise _Retry(reason)
        raise _fail(url, reason, dest)
    except ValueError as e:  # malformed URL or unknown scheme
        raise _fail(url, str(e), dest)
    except (URLError, http.client.HTTPException, OSError) as e:
        reason, transient = _classify(e, host, timeout)
        if transient:
            raise _Retry(reason)
        raise _fail(url, reason, dest)

    with resp:
        status = resp.status
        if status == 206 and offset:
            start, total = _parse_content_range(resp.headers.get("Content-Range"))
            if start is not None and start != offset:
                part.unlink(missing_ok=True)
                digest.reset()
                raise _Retry(f"server resumed at byte {start} instead of {offset}; restarting")
            if total is None:
                length = _content_length(resp.headers)
                total = offset + length if length is not None else None
            mode = "ab"
        elif status in (200, 206):
            # A 200 answer to a Range request: the server ignores Range, start over.
            if offset:
                log.info("%s ignores Range requests; restarting %s from zero", host, part.name)
            offset = 0
            digest.reset()
            if status == 206:
                _, total = _parse_content_range(resp.headers.get("Content-Range"))
            else:
                total = _content_length(resp.headers)
            mode = "wb"
        else:
            raise _fail(url, f"unexpected HTTP {status} {resp.reason}".strip(), dest)
        if total is not None:
            state["total"] = total
        _check_disk(url, part.parent, total - offset if total is not None else None)

        size = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=dest.name, disable=not progress, leave=True)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = resp.read(chunk_size)
                    except (http.client.HTTPException, OSError, ValueError) as e:
                        reason, transient = _classify(e, host, timeout)
                        raise _Retry(f"{reason} after {size} bytes") if transient \
                            else _fail(url, reason, dest)
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # writing the part file failed (disk full, permissions)
            raise DownloadError(
                f"cannot write {part} while downloading {url}: {e.strerror or e}",
                url=url, reason=str(e), dest=dest,
            ) from e
        finally:
            bar.close()

    if total is not None and size != total:
        if size < total:
            raise _Retry(f"connection closed after {size} of {total} bytes")
        part.unlink(missing_ok=True)
        digest.reset()
        raise _Retry(f"received {size} bytes but {total} were announced; restarting")
    return size


def download(url: str, dest: Path, *, progress: bool = True, chunk_size: int = 1 << 20,
             timeout: float = 60.0, retries: int = 3) -> dict:
    """Fetch ``url`` to ``dest`` and return its provenance record.

    The record ``{"url", "path", "size", "sha256", "downloaded_at"}`` is also
    written next to the file as ``dest + ".json"``.  Data streams into
    ``dest + ".part"``; an existing part file is resumed with a ``Range``
    request, and transient failures (connection reset, timeout, short read,
    HTTP 5xx) are retried up to ``retries`` times, each retry resuming from the
    part file.  The file appears under ``dest`` only once complete.  Anything
    else raises :class:`DownloadError`, whose message names the URL, the reason
    and the path where a file downloaded by hand should be saved.
    """
    dest = Path(dest)
    part = _part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = _Hash()
    state: dict = {}
    attempts = max(0, int(retries)) + 1
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            size = _attempt(url, dest, part, digest, state, progress=progress,
                            chunk_size=chunk_size, timeout=timeout)
            break
        except _Retry as e:
            reason = e.reason
            if attempt < attempts:
                delay = min(RETRY_DELAY_S * 2 ** (attempt - 1), RETRY_DELAY_MAX_S)
                log.warning("download of %s interrupted (%s); retry %d/%d in %.0f s",
                            url, reason, attempt, attempts - 1, delay)
                time.sleep(delay)
    else:
        what = f"{reason}; gave up after {attempts} attempts" if attempts > 1 else reason
        raise _fail(url, what, dest)

    digest.sync(part, size)
    sha256 = digest.hexdigest()
    record_path = _record_path(dest)
    record_path.unlink(missing_ok=True)  # a record must never describe another file
    os.replace(part, dest)
    record = {
        "url": url,
        "path": str(dest),
        "size": size,
        "sha256": sha256,
        "downloaded_at": _now_iso(),
    }
    _write_record(record_path, record)
    return record


def _write_record(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


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
    record_path = _record_path(dest)
    if dest.is_file():
        record = _read_record(record_path) if record_path.is_file() else None
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
                "sha256": _sha256_file(dest),
                "downloaded_at": datetime.fromtimestamp(dest.stat().st_mtime, timezone.utc)
                .isoformat(timespec="seconds"),
                "source": "existing file",
            }
            _write_record(record_path, record)
            return record
        log.warning("%s does not match its download record; downloading it again", dest)
    return download(archive.url, dest, **kw)


# -- command line --------------------------------------------------------------------

def _list_archives(out=None) -> None:
    out = out or sys.stdout
    rows = [(a.name, _human(a.approx_bytes), a.filename, a.url) for a in ARCHIVES.values()]
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
