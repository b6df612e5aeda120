"""One resumable HTTP download: streamed into ``<file>.part``, retried, recorded with its SHA-256.

Downloads use the standard library only (``urllib``). An interrupted download resumes from the part
file with an HTTP ``Range`` request, transient failures are retried, and only a complete file is
ever renamed to its final name; every completed download is recorded next to the file as
``<file>.json`` (url, path, size, SHA-256, time), which later stages can cite.
carcolor.data.download names the DVM-Car archives and fetches them with this.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import ssl
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from .. import atomic

log = logging.getLogger(__name__)

USER_AGENT = "carcolor-download/1.0 (+python-urllib)"

# Seconds before the first retry; doubled on each further retry (capped below).
RETRY_DELAY_S = 2.0
RETRY_DELAY_MAX_S = 60.0
# HTTP statuses worth retrying; every other 4xx/5xx fails at once.
TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


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


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def record_path(dest: Path) -> Path:
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
            f"{needed} bytes ({human_size(needed)}) needed, {free} bytes ({human_size(free)}) free",
            url=url, reason="not enough free disk space", dest=directory,
        )




def _open(url: str, dest: Path, part: Path, digest: _Hash, state: dict, offset: int, timeout: float):
    """The response to a request for the bytes from `offset` on, or None when the part file already
    holds the whole file. Raises ``_Retry`` for failures worth retrying and ``DownloadError`` otherwise."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        with e:
            code, reason, e_headers = e.code, e.reason, e.headers
        if code == 416 and offset:
            _, total = _parse_content_range(e_headers.get("Content-Range"))
            if total is None:
                total = state.get("total")
            if total == offset:
                return None  # the part file already holds the whole file
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
        reason, transient = _classify(e, urlsplit(url).hostname, timeout)
        if transient:
            raise _Retry(reason)
        raise _fail(url, reason, dest)


def _resume_point(resp, url: str, dest: Path, part: Path, digest: _Hash, offset: int) -> tuple[int, int | None, str]:
    """Where the response's bytes go: (first byte, total size or None, file mode). A server that
    resumes elsewhere or ignores Range restarts the part file."""
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
        return offset, total, "ab"
    if status in (200, 206):
        # A 200 answer to a Range request: the server ignores Range, start over.
        if offset:
            log.info("%s ignores Range requests; restarting %s from zero", urlsplit(url).hostname, part.name)
        digest.reset()
        if status == 206:
            _, total = _parse_content_range(resp.headers.get("Content-Range"))
        else:
            total = _content_length(resp.headers)
        return 0, total, "wb"
    raise _fail(url, f"unexpected HTTP {status} {resp.reason}".strip(), dest)


def _stream(resp, url: str, dest: Path, part: Path, digest: _Hash, offset: int, total: int | None, mode: str, *,
            progress: bool, chunk_size: int, timeout: float) -> int:
    """The response's body into the part file; returns the part file's size."""
    size = offset
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
               desc=dest.name, disable=not progress, leave=True)
    try:
        with open(part, mode) as f:
            while True:
                try:
                    chunk = resp.read(chunk_size)
                except (http.client.HTTPException, OSError, ValueError) as e:
                    reason, transient = _classify(e, urlsplit(url).hostname, timeout)
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
    return size


def _attempt(url: str, dest: Path, part: Path, digest: _Hash, state: dict, *,
             progress: bool, chunk_size: int, timeout: float) -> int:
    """One request; returns the size of the complete part file.

    Raises ``_Retry`` for failures worth retrying and ``DownloadError`` otherwise.
    """
    offset = part.stat().st_size if part.exists() else 0
    digest.sync(part, offset)
    resp = _open(url, dest, part, digest, state, offset, timeout)
    if resp is None:
        return offset
    with resp:
        offset, total, mode = _resume_point(resp, url, dest, part, digest, offset)
        if total is not None:
            state["total"] = total
        _check_disk(url, part.parent, total - offset if total is not None else None)
        size = _stream(resp, url, dest, part, digest, offset, total, mode, progress=progress,
                       chunk_size=chunk_size, timeout=timeout)
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
    record_file = record_path(dest)
    record_file.unlink(missing_ok=True)  # a record must never describe another file
    os.replace(part, dest)
    record = {
        "url": url,
        "path": str(dest),
        "size": size,
        "sha256": sha256,
        "downloaded_at": _now_iso(),
    }
    write_record(record_file, record)
    return record


def write_record(path: Path, record: dict) -> None:
    atomic.write_text(path, json.dumps(record, indent=2) + "\n")


def read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()

