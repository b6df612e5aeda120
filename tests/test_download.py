"""Tests for carcolor.data.download and carcolor.data.transfer against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import URLError

import pytest

from carcolor.data import download as dl
from carcolor.data import transfer
def _make_archive() -> bytes:
    """A real zip (stored, so it stays about 3 MB) filled with seeded random bytes."""
    rng = random.Random(19586296)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for i in range(3):
            z.writestr(f"img_{i}.bin", rng.randbytes(1_000_000))
    return buf.getvalue()


ARCHIVE = _make_archive()
SHA = hashlib.sha256(ARCHIVE).hexdigest()
CHUNK = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    """Serves /archive.zip with Range support; behaviour set on the server object."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.seen.append({"path": self.path, "range": self.headers.get("Range")})
            n = sum(1 for s in srv.seen if s["path"] == "/archive.zip")
        if self.path == "/error":
            return self._status(500, "Internal Server Error")
        if self.path != "/archive.zip":
            return self._status(404, "Not Found")

        data, start = srv.data, 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

        cut = srv.cut.get(n, srv.cut.get("always"))
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        if srv.cut_mode == "stall":
            time.sleep(srv.stall_s)
        elif srv.cut_mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        # "eof": return, the server closes the connection short of Content-Length

    def _status(self, code, msg):
        body = msg.encode()
        self.send_response(code, msg)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


Server = namedtuple("Server", "base url http")


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up, as the cut tests make it
            return
        super().handle_error(request, client_address)


@pytest.fixture
def server():
    httpd = _Quiet(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.seen, httpd.data, httpd.ignore_range = [], ARCHIVE, False
    httpd.cut, httpd.cut_mode, httpd.stall_s = {}, "eof", 1.0
    t = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    t.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield Server(base, base + "/archive.zip", httpd)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_retry_delay(monkeypatch):
    monkeypatch.setattr(transfer, "RETRY_DELAY_S", 0.0)


def _get(url, dest, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("chunk_size", CHUNK)
    kw.setdefault("timeout", 5.0)
    return transfer.download(url, dest, **kw)


def _assert_complete(dest: Path, record: dict):
    assert dest.read_bytes() == ARCHIVE
    assert record["sha256"] == SHA and record["size"] == len(ARCHIVE)
    assert record["path"] == str(dest)
    assert set(record) == {"url", "path", "size", "sha256", "downloaded_at"}
    assert json.loads(Path(str(dest) + ".json").read_text()) == record
    assert not Path(str(dest) + ".part").exists()


def _assert_one_line_failure(err: transfer.DownloadError, url: str, dest: Path):
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg
    assert url in msg and str(dest) in msg and "by hand" in msg
    assert not dest.exists()
    assert not Path(str(dest) + ".json").exists()


def test_plain_download(server, tmp_path):
    dest = tmp_path / "sub" / "archive.zip"
    record = _get(server.url, dest)
    _assert_complete(dest, record)
    assert record["url"] == server.url
    assert [s["range"] for s in server.http.seen] == [None]


@pytest.mark.parametrize("mode", ["eof", "reset"])
def test_cut_connection_resumes(server, tmp_path, mode):
    server.http.cut, server.http.cut_mode = {1: 1_234_567}, mode
    dest = tmp_path / "archive.zip"
    record = _get(server.url, dest, retries=3)
    _assert_complete(dest, record)
    seen = server.http.seen
    assert len(seen) == 2 and seen[0]["range"] is None
    # the retry asked only for what was missing
    offset = int(re.fullmatch(r"bytes=(\d+)-", seen[1]["range"]).group(1))
    assert 0 < offset <= 1_234_567


def test_several_cuts_and_a_timeout(server, tmp_path):
    srv = server.http
    srv.cut, srv.cut_mode, srv.stall_s = {1: 500_000, 2: 900_000}, "stall", 1.5
    dest = tmp_path / "archive.zip"
    record = _get(server.url, dest, retries=3, timeout=0.4)
    _assert_complete(dest, record)
    ranges = [s["range"] for s in srv.seen]
    assert len(ranges) == 3 and ranges[0] is None
    # each retry resumes from what reached the part file (whole chunks, at most the cut)
    offsets = [int(re.fullmatch(r"bytes=(\d+)-", r).group(1)) for r in ranges[1:]]
    assert 0 < offsets[0] <= 500_000 and offsets[0] < offsets[1] <= offsets[0] + 900_000


def test_existing_part_is_resumed_with_range(server, tmp_path):
    dest = tmp_path / "archive.zip"
    Path(str(dest) + ".part").write_bytes(ARCHIVE[:1_000_003])
    record = _get(server.url, dest)
    _assert_complete(dest, record)  # the hash covers the bytes already on disk
    assert [s["range"] for s in server.http.seen] == ["bytes=1000003-"]


def test_complete_part_gets_416_and_is_finished(server, tmp_path):
    dest = tmp_path / "archive.zip"
    Path(str(dest) + ".part").write_bytes(ARCHIVE)
    record = _get(server.url, dest)
    _assert_complete(dest, record)
    assert [s["range"] for s in server.http.seen] == [f"bytes={len(ARCHIVE)}-"]


def test_server_ignoring_range_starts_over(server, tmp_path):
    srv = server.http
    srv.ignore_range, srv.cut = True, {1: 700_000}
    dest = tmp_path / "archive.zip"
    # a stale, wrong part: it must be truncated, not appended to
    Path(str(dest) + ".part").write_bytes(b"x" * 300_000)
    record = _get(server.url, dest, retries=2)
    _assert_complete(dest, record)
    ranges = [s["range"] for s in srv.seen]
    assert ranges == ["bytes=300000-", "bytes=700000-"]


def test_retries_exhausted_keeps_part_for_later(server, tmp_path):
    srv = server.http
    srv.cut = {"always": 400_000}
    dest = tmp_path / "archive.zip"
    with pytest.raises(transfer.DownloadError) as exc:
        _get(server.url, dest, retries=1)
    _assert_one_line_failure(exc.value, server.url, dest)
    assert "2 attempts" in str(exc.value)
    part = Path(str(dest) + ".part")
    assert part.stat().st_size == 800_000
    assert part.read_bytes() == ARCHIVE[:800_000]
    # the connection is fixed: the next run resumes where the last one stopped
    srv.cut = {}
    record = _get(server.url, dest)
    _assert_complete(dest, record)
    assert srv.seen[-1]["range"] == "bytes=800000-"


def test_404_is_one_line_and_not_retried(server, tmp_path):
    dest = tmp_path / "data" / "dvm" / "resized_DVM_v2.zip"
    url = server.base + "/missing"
    with pytest.raises(transfer.DownloadError) as exc:
        _get(url, dest, retries=3)
    _assert_one_line_failure(exc.value, url, dest)
    assert "HTTP 404 Not Found" in str(exc.value)
    assert str(exc.value).startswith(f"cannot download {url} ")
    assert len(server.http.seen) == 1
    assert not Path(str(dest) + ".part").exists()


def test_500_is_retried_then_fails(server, tmp_path):
    dest = tmp_path / "archive.zip"
    url = server.base + "/error"
    with pytest.raises(transfer.DownloadError) as exc:
        _get(url, dest, retries=2)
    _assert_one_line_failure(exc.value, url, dest)
    assert "HTTP 500" in str(exc.value)
    assert len(server.http.seen) == 3


def test_connection_refused(tmp_path):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/archive.zip"
    dest = tmp_path / "archive.zip"
    with pytest.raises(transfer.DownloadError) as exc:
        _get(url, dest, retries=1)
    _assert_one_line_failure(exc.value, url, dest)
    assert "refused" in str(exc.value)
    assert not Path(str(dest) + ".part").exists()


def test_dns_failure_fails_at_once(monkeypatch, tmp_path):
    calls = []

    def fake_urlopen(req, timeout):
        calls.append(req.full_url)
        raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(transfer, "urlopen", fake_urlopen)
    url = "https://ndownloader.figshare.com/files/34792453"
    dest = tmp_path / "resized_DVM_v2.zip"
    with pytest.raises(transfer.DownloadError) as exc:
        _get(url, dest, retries=3)
    _assert_one_line_failure(exc.value, url, dest)
    assert "DNS" in str(exc.value) and "ndownloader.figshare.com" in str(exc.value)
    assert calls == [url]


def test_not_enough_disk_space(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(transfer.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    dest = tmp_path / "archive.zip"
    Path(str(dest) + ".part").write_bytes(ARCHIVE[:100])
    with pytest.raises(transfer.DownloadError) as exc:
        _get(server.url, dest)
    msg = str(exc.value)
    assert "\n" not in msg and str(len(ARCHIVE) - 100) in msg and "1000" in msg
    assert not dest.exists()
    assert Path(str(dest) + ".part").read_bytes() == ARCHIVE[:100]


def test_progress_bar_runs(server, tmp_path, capsys):
    record = _get(server.url, tmp_path / "archive.zip", progress=True)
    assert record["sha256"] == SHA
    assert "archive.zip" in capsys.readouterr().err


# -- fetch_archive ----------------------------------------------------------------------

def test_archives_table():
    assert set(dl.ARCHIVES) == {"resized_DVM", "confirmed_fronts", "tables"}
    assert dl.ARCHIVES["resized_DVM"].filename == "resized_DVM_v2.zip"
    assert dl.ARCHIVES["resized_DVM"].url == "https://ndownloader.figshare.com/files/34792453"
    assert dl.ARCHIVES["confirmed_fronts"].url.endswith("/34792480")
    assert dl.ARCHIVES["tables"].url.endswith("/38754867")
    with pytest.raises(dataclasses.FrozenInstanceError):
        dl.ARCHIVES["tables"].url = "x"


def test_fetch_archive_unknown_name(tmp_path):
    with pytest.raises(ValueError) as exc:
        dl.fetch_archive("imagenet", tmp_path)
    msg = str(exc.value)
    assert "imagenet" in msg
    assert all(name in msg for name in dl.ARCHIVES)


@pytest.fixture
def local_tables(server, monkeypatch):
    archive = dataclasses.replace(dl.ARCHIVES["tables"], url=server.url,
                                  approx_bytes=len(ARCHIVE))
    monkeypatch.setitem(dl.ARCHIVES, "tables", archive)
    return archive


def test_fetch_archive_downloads_then_skips(server, local_tables, tmp_path):
    first = dl.fetch_archive("tables", tmp_path, progress=False)
    dest = tmp_path / "tables_V2.zip"
    _assert_complete(dest, first)
    assert len(server.http.seen) == 1
    again = dl.fetch_archive("tables", tmp_path, progress=False)
    assert again == first
    assert len(server.http.seen) == 1  # nothing fetched the second time


def test_fetch_archive_refetches_on_size_mismatch(server, local_tables, tmp_path):
    dest = tmp_path / "tables_V2.zip"
    dest.write_bytes(ARCHIVE[:1000])
    Path(str(dest) + ".json").write_text(json.dumps({"size": len(ARCHIVE)}))
    record = dl.fetch_archive("tables", tmp_path, progress=False)
    _assert_complete(dest, record)
    assert len(server.http.seen) == 1


def test_fetch_archive_records_a_hand_download(server, local_tables, tmp_path):
    dest = tmp_path / "tables_V2.zip"
    dest.write_bytes(ARCHIVE)
    record = dl.fetch_archive("tables", tmp_path, progress=False)
    assert record["sha256"] == SHA and record["size"] == len(ARCHIVE)
    assert record["source"] == "existing file"
    assert json.loads(Path(str(dest) + ".json").read_text()) == record
    assert server.http.seen == []


# -- command line -----------------------------------------------------------------------

class _Parser:
    """`carcolor download ARGS` parsed as the command line does; args.func runs it."""

    def parse_args(self, argv):
        from carcolor import command

        assert argv[0] == "download"
        args = command.parser_for("download", dl).parse_args(argv[1:])
        args.func = dl.run
        return args


def _parser():
    return _Parser()


def test_cli_list(capsys):
    args = _parser().parse_args(["download", "--list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for a in dl.ARCHIVES.values():
        assert a.name in out and a.url in out and a.filename in out
    assert "13.6 GB" in out and "CC BY-NC 4.0" in out


def test_cli_parses_names_and_data_dir():
    args = _parser().parse_args(["download", "tables", "confirmed_fronts",
                                 "--data-dir", "/tmp/x"])
    assert args.names == ["tables", "confirmed_fronts"]
    assert args.data_dir == Path("/tmp/x") and not args.list
    assert _parser().parse_args(["download", "tables"]).data_dir == Path("data/dvm")


def test_cli_download_and_errors(server, local_tables, tmp_path, capsys):
    p = _parser()
    args = p.parse_args(["download", "tables", "--data-dir", str(tmp_path), "--no-progress"])
    assert args.func(args) == 0
    assert (tmp_path / "tables_V2.zip").read_bytes() == ARCHIVE
    assert SHA in capsys.readouterr().out

    args = p.parse_args(["download", "nope", "--data-dir", str(tmp_path)])
    assert args.func(args) == 2
    assert "resized_DVM" in capsys.readouterr().err

    args = p.parse_args(["download", "--data-dir", str(tmp_path)])
    assert args.func(args) == 2
    assert "--list" in capsys.readouterr().err

    dl.ARCHIVES["tables"] = dataclasses.replace(local_tables, url=server.base + "/missing")
    (tmp_path / "tables_V2.zip").unlink()
    args = p.parse_args(["download", "tables", "--data-dir", str(tmp_path), "--no-progress"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 404" in err and "tables_V2.zip" in err
