"""DVM-Car on disk: parse its file names and list its images, from zip archives or unpacked trees.

The label lives in the file name, never in the folder: `resized_DVM/{Maker}/{Genmodel}/{Year}/
{Color}/{file}` and `confirmed_fronts/{Maker}/{Year}/{file}` (or any other layout, such as the
Kaggle copy's) are walked recursively and only the file name is parsed.

Scale: the full archive lists 1.45 M images. Zip central directories are read here directly
(`zipfile` builds one Python object per entry, which takes half a minute and a gigabyte for
resized_DVM_v2.zip); each entry's local-header offset is kept, so decoding workers read an image
with two `pread` calls and never parse the central directory themselves. The listing frame stores
the repeated fields (maker, model, year, colour, folder, advert) as categoricals.
"""
from __future__ import annotations

import io
import os
import re
import struct
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEP = "$$"
GENMODEL_ID = re.compile(r"^\d+_\d+$")
IMAGE_N = re.compile(r"^image_(\d+)\.jpe?g$", re.IGNORECASE)
# Top-level folders of the published archives (any capitalisation) -> the archive's name.
ARCHIVE_DIRS = {"resized_dvm": "resized_DVM", "confirmed_fronts": "confirmed_fronts"}
OTHER_ARCHIVE = "other"  # e.g. the Kaggle copy, or a folder of images in some other layout
# One row per listed image. `dir` is the folder part of the path inside the source, ending in its
# separator ("" at the top); `offset`, `csize`, `method`, `crc` locate a zip member (-1 for a file in
# a folder). `adv_id` is the advert key Genmodel_ID$$AdvIndex.
COLUMNS = ["name", "source", "dir", "archive", "maker", "genmodel", "year", "color", "genmodel_id",
           "adv_index", "image_n", "adv_id", "offset", "csize", "method", "crc"]


@dataclass(frozen=True)
class DvmName:
    maker: str
    genmodel: str
    year: str
    color: str
    genmodel_id: str
    adv_index: str
    image_n: int

    @property
    def adv_id(self) -> str:
        """The advert key: all photos of one car share it."""
        return f"{self.genmodel_id}{SEP}{self.adv_index}"


def _head_fields(head: str) -> tuple[str, ...] | None:
    """The six fields of a name's head, `Maker$$Genmodel$$Year$$Color$$Genmodel_ID$$AdvIndex` (the part
    before `$$image_N.jpg`), or None when they are not a DVM image's."""
    fields = head.split(SEP)
    if (len(fields) != 6 or not GENMODEL_ID.match(fields[4]) or not fields[3] or not fields[5]
            or fields[0].startswith("._")):  # "._": a macOS resource fork beside the real file
        return None
    return tuple(fields)


def parse_name(filename: str) -> DvmName | None:
    """Parse `Maker$$Genmodel$$Year$$Color$$Genmodel_ID$$AdvIndex$$image_N.jpg`; None if it is not one."""
    head, _, tail = filename.rpartition(SEP)
    fields, match = _head_fields(head), IMAGE_N.match(tail)
    if fields is None or not match:
        return None
    return DvmName(*fields, int(match.group(1)))


def name_key(name: str) -> str:
    """The name as matched across copies: the Kaggle copy drops the apostrophes (Pro_Cee'd -> Pro_Ceed)."""
    return name.replace("'", "")


def archive_of(path: str) -> str:
    """Which published archive a path belongs to: resized_DVM, confirmed_fronts or other."""
    for part in reversed(path.replace("\\", "/").split("/")):
        known = ARCHIVE_DIRS.get(part.lower())
        if known:
            return known
    return OTHER_ARCHIVE


# --------------------------------------------------------------------------- zip central directory

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_MAX32 = 0xFFFFFFFF


def zip_entries(path: str | Path):
    """Yield (path inside the zip, local header offset, compressed size, method, CRC-32) per file.

    The path is given as (folder part ending in its separator, file name).

    Reads the central directory in one go, with Zip64 support and data prepended to the archive
    (as `zipfile` allows). Directory entries are left out.
    """
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        tail_len = min(size, _EOCD.size + 65535)
        fh.seek(size - tail_len)
        tail = fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise zipfile.BadZipFile(f"{path}: no zip end-of-central-directory record")
        eocd_pos = size - tail_len + at
        _, _, _, _, n_total, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        cd_end = eocd_pos
        locator = b""
        if eocd_pos >= _EOCD64_LOCATOR.size + _EOCD64.size:
            fh.seek(eocd_pos - _EOCD64_LOCATOR.size)
            locator = fh.read(_EOCD64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":  # Zip64 records precede the classic end record
            cd_end = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size
            fh.seek(cd_end)
            rec = _EOCD64.unpack(fh.read(_EOCD64.size))
            if rec[0] != b"PK\x06\x06":
                raise zipfile.BadZipFile(f"{path}: Zip64 end-of-central-directory record missing")
            n_total, cd_size, cd_offset = rec[7], rec[8], rec[9]
        concat = cd_end - cd_size - cd_offset  # bytes prepended to the archive (self-extractors)
        fh.seek(cd_offset + concat)
        cd = fh.read(cd_size)
    if len(cd) != cd_size:
        raise zipfile.BadZipFile(f"{path}: central directory truncated")
    unpack = _CENTRAL.unpack_from
    pos, end, head, count = 0, len(cd), _CENTRAL.size, 0
    while pos < end:
        count += 1
        (sig, _, _, _, _, flags, method, _, _, crc, csize, usize, n_name, n_extra, n_comment,
         _, _, _, offset) = unpack(cd, pos)
        if sig != b"PK\x01\x02":
            raise zipfile.BadZipFile(f"{path}: bad central directory entry at byte {cd_offset + pos}")
        start = pos + head
        raw = cd[start:start + n_name]
        name = raw.decode("ascii") if raw.isascii() else raw.decode("utf-8" if flags & 0x800 else "cp437")
        if usize == _MAX32 or csize == _MAX32 or offset == _MAX32:
            usize, csize, offset = _zip64_extra(cd[start + n_name:start + n_name + n_extra], usize, csize, offset)
        pos = start + n_name + n_extra + n_comment
        k = max(name.rfind("/"), name.rfind("\\")) + 1
        if k == len(name):  # a folder entry
            continue
        yield name[:k], name[k:], offset + concat, csize, method, crc
    if count & 0xFFFF != n_total & 0xFFFF:  # (writers without Zip64 keep the count modulo 65536)
        raise zipfile.BadZipFile(f"{path}: {count} central directory entries, the end record says {n_total}")


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, i)
        if kind == 1:
            values = iter(struct.unpack_from(f"<{length // 8}Q", extra, i + 4))
            if usize == _MAX32:
                usize = next(values)
            if csize == _MAX32:
                csize = next(values)
            if offset == _MAX32:
                offset = next(values)
            break
        i += 4 + length
    return usize, csize, offset


def _walk(source: Path):
    """Yield (folder part with trailing separator, file name, offset, csize, method, crc) per file."""
    if source.is_dir():
        return _walk_folder(source)
    if zipfile.is_zipfile(source):
        return zip_entries(source)
    raise FileNotFoundError(f"DVM source {str(source)!r} is neither a folder nor a zip archive "
                            f"(give resized_DVM_v2.zip, Confirmed_fronts.zip or an unpacked folder).")


def _walk_folder(source: Path):
    root = str(source)
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        folder = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for f in sorted(files):
            yield folder, f, -1, 0, 0, 0


def list_images(sources: list[str | Path]) -> tuple[pd.DataFrame, dict]:
    """One row per distinct DVM image name over all sources (first source wins on duplicates).

    Duplicates are recognised by name with apostrophes removed, so the Kaggle copy and the Figshare
    archives dedupe against each other. Files under `__MACOSX/` and `._*` files are not images.
    Returns (frame with COLUMNS, stats): stats counts files, duplicates and names that are not DVM
    image names, lists the sources, and counts listed images per archive (resized_DVM,
    confirmed_fronts, other) and duplicates per archive.
    """
    # Per row only a few dict look-ups and appends: the name up to AdvIndex (the "head") identifies
    # the advert and carries maker, model, year and colour, so it is parsed once per advert.
    names: list[str] = []
    folder_index: dict[str, int] = {}  # folder -> code, -1 for folders that hold no images
    folders: list[str] = []
    head_index: dict[str, int] = {}  # "Maker$$Genmodel$$Year$$Color$$Genmodel_ID$$AdvIndex" -> code, or -1
    heads: list[tuple[str, str, str, str, str, str]] = []
    tails: dict[str, int] = {}  # "image_N.jpg" -> N, or -1 when not an image name
    folder_codes, head_codes, image_n = array("i"), array("i"), array("i")
    offsets, csizes, methods, crcs = array("q"), array("q"), array("b"), array("q")
    seen: set[str] = set()
    rows_per_source: list[int] = []
    stats = {"files": 0, "duplicates": 0, "not_dvm_names": 0, "sources": [],
             "by_archive": {}, "duplicates_by_archive": {}}
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"DVM source {str(source)!r} does not exist; download it with "
                                    f"`carcolor download resized_DVM` or fix 'data.paths' in the config.")
        stats["sources"].append(str(source))
        source_kind = archive_of(str(source.resolve()))
        files = not_dvm = 0
        rows_before = len(names)
        dupes: dict[str, int] = {}
        for d, fname, offset, csize, method, crc in _walk(source):
            files += 1
            fc = folder_index.get(d)
            if fc is None:
                fc = folder_index[d] = -1 if _hidden_folder(d) else len(folders)
                if fc >= 0:
                    folders.append(d)
            head, _, tail = fname.rpartition(SEP)
            n = tails.get(tail)
            if n is None:
                m = IMAGE_N.match(tail)
                n = tails[tail] = int(m.group(1)) if m else -1
            h = head_index.get(head)
            if h is None:
                fields = _head_fields(head)
                h = head_index[head] = -1 if fields is None else len(heads)
                if fields is not None:
                    heads.append(fields)
            if n < 0 or h < 0 or fc < 0:
                not_dvm += 1
                continue
            size = len(seen)
            seen.add(fname.replace("'", ""))
            if len(seen) == size:
                kind = _archive_in(d, source_kind)
                dupes[kind] = dupes.get(kind, 0) + 1
                continue
            names.append(fname)
            folder_codes.append(fc)
            head_codes.append(h)
            image_n.append(n)
            offsets.append(offset)
            csizes.append(csize)
            methods.append(method)
            crcs.append(crc)
        rows_per_source.append(len(names) - rows_before)
        stats["files"] += files
        stats["not_dvm_names"] += not_dvm
        stats["duplicates"] += sum(dupes.values())
        for kind, count in dupes.items():
            stats["duplicates_by_archive"][kind] = stats["duplicates_by_archive"].get(kind, 0) + count
    del seen
    frame = _assemble(names, stats["sources"], rows_per_source, folders, folder_codes, heads, head_codes,
                      image_n, offsets, csizes, methods, crcs)
    if len(frame):
        by_archive = frame["archive"].value_counts(sort=False)
        stats["by_archive"] = {str(k): int(v) for k, v in by_archive.items() if v}
    return frame, stats


def _hidden_folder(folder: str) -> bool:
    return folder.startswith("__MACOSX") or "/__MACOSX/" in folder


def _archive_in(folder: str, source_archive: str) -> str:
    kind = archive_of(folder) if folder else OTHER_ARCHIVE
    return source_archive if kind == OTHER_ARCHIVE else kind


def _categorical(values: list, codes: np.ndarray) -> pd.Categorical:
    """Values given per code (possibly repeated) as a categorical over distinct values."""
    new, uniques = pd.factorize(pd.Index(values, dtype=object))
    return pd.Categorical.from_codes(new[codes] if len(new) else codes, categories=pd.Index(uniques, dtype=object))


def _assemble(names, sources, rows_per_source, folders, folder_codes, heads, head_codes, image_n,
              offsets, csizes, methods, crcs) -> pd.DataFrame:
    n = len(names)
    if n == 0:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        for c in ("image_n", "offset", "csize", "method", "crc"):
            frame[c] = frame[c].astype(np.int64)
        return frame
    src = np.repeat(np.arange(len(sources), dtype=np.int32), rows_per_source)
    fold = np.frombuffer(folder_codes, dtype=np.int32)
    head = np.frombuffer(head_codes, dtype=np.int32)
    # archive per (source, folder) pair: a known top folder decides, else the source's own path
    pair = src.astype(np.int64) * len(folders) + fold
    uniq, inverse = np.unique(pair, return_inverse=True)
    source_kind = [archive_of(str(Path(s).resolve())) for s in sources]
    kinds = [_archive_in(folders[f], source_kind[s]) for s, f in (divmod(int(p), len(folders)) for p in uniq)]
    fields = list(zip(*heads))
    adv_ids = [f"{gid}{SEP}{adv}" for gid, adv in zip(fields[4], fields[5])]
    return pd.DataFrame({
        "name": np.array(names, dtype=object),
        "source": pd.Categorical.from_codes(src, categories=pd.Index(sources, dtype=object))
        if len(set(sources)) == len(sources) else _categorical(list(sources), src),
        "dir": pd.Categorical.from_codes(fold, categories=pd.Index(folders, dtype=object)),
        "archive": _categorical(kinds, inverse.reshape(-1).astype(np.int32)),
        "maker": _categorical(list(fields[0]), head),
        "genmodel": _categorical(list(fields[1]), head),
        "year": _categorical(list(fields[2]), head),
        "color": _categorical(list(fields[3]), head),
        "genmodel_id": _categorical(list(fields[4]), head),
        "adv_index": _categorical(list(fields[5]), head),
        "image_n": np.frombuffer(image_n, dtype=np.int32).astype(np.int64),
        "adv_id": _categorical(adv_ids, head),
        "offset": np.frombuffer(offsets, dtype=np.int64),
        "csize": np.frombuffer(csizes, dtype=np.int64),
        "method": np.frombuffer(methods, dtype=np.int8).astype(np.int64),
        "crc": np.frombuffer(crcs, dtype=np.int64),
    }, columns=COLUMNS)


def members(images: pd.DataFrame) -> pd.Series:
    """The path of each image inside its source (zip member or path relative to the folder)."""
    return images["dir"].astype(object) + images["name"].astype(object)


class ImageReader:
    """Reads raw image bytes: from a folder, or from a zip at a known local-header offset.

    Zip reads use `os.pread`, so a reader is safe to share across forked processes; without an
    offset a member is looked up with `zipfile` (slow to open on a 1.45 M-entry archive).
    """

    def __init__(self):
        self._fds: dict[str, int] = {}
        self._zips: dict[str, zipfile.ZipFile] = {}

    def read(self, source: str, member: str, offset: int = -1, csize: int = 0, method: int = 0,
             crc: int | None = None) -> bytes:
        if offset is not None and offset >= 0:
            return self._read_at(source, member, int(offset), int(csize), int(method), crc)
        path = Path(source)
        if path.is_dir():
            return (path / member).read_bytes()
        return self._zipfile(source).read(member)

    def _zipfile(self, source: str) -> zipfile.ZipFile:
        zf = self._zips.get(source)
        if zf is None:
            zf = self._zips[source] = zipfile.ZipFile(source)
        return zf

    def _read_at(self, source: str, member: str, offset: int, csize: int, method: int, crc) -> bytes:
        fd = self._fds.get(source)
        if fd is None:
            fd = self._fds[source] = os.open(source, os.O_RDONLY)
        header = os.pread(fd, _LOCAL.size, offset)
        if len(header) < _LOCAL.size:
            raise EOFError(f"{member}: archive ends inside the local header")
        sig, _, _, flags, _, _, _, _, _, _, n_name, n_extra = _LOCAL.unpack(header)
        if sig != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"{member}: no local header at byte {offset}")
        if flags & 0x1 or method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return self._zipfile(source).read(member)  # encrypted or unusual compression
        data = os.pread(fd, csize, offset + _LOCAL.size + n_name + n_extra)
        if len(data) < csize:
            raise EOFError(f"{member}: archive ends inside the file data")
        if method == zipfile.ZIP_DEFLATED:
            data = zlib.decompress(data, -15)
        if crc is not None and zlib.crc32(data) != crc:
            raise zipfile.BadZipFile(f"{member}: CRC-32 mismatch")
        return data

    def open(self, source: str, member: str, *location):
        from PIL import Image

        return Image.open(io.BytesIO(self.read(source, member, *location)))

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        for zf in self._zips.values():
            zf.close()
        self._fds.clear()
        self._zips.clear()


def read_image_table(path: str | Path) -> pd.DataFrame:
    """Image_table.csv (plain, or inside tables_V2.zip) as a frame with stripped header names.

    The published CSV pads its header fields with a leading space (' Image_name'). Only the columns
    a loader needs are read: Image_name, Predicted_viewpoint and, where present, Quality_check.
    """
    path = Path(path)
    wanted = {"Image_name", "Predicted_viewpoint", "Quality_check", "Genmodel_ID", "Image_ID"}
    usecols = lambda c: str(c).strip() in wanted  # noqa: E731
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1].lower() == "image_table.csv"
                       and not m.startswith("__MACOSX")]
            if not members:
                raise FileNotFoundError(f"{path} holds no Image_table.csv")
            with zf.open(members[0]) as fh:
                frame = pd.read_csv(fh, skipinitialspace=True, usecols=usecols, dtype=str)
    else:
        frame = pd.read_csv(path, skipinitialspace=True, usecols=usecols, dtype=str)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = {"Image_name", "Predicted_viewpoint"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; "
                         f"columns found: {', '.join(frame.columns)}")
    frame["Image_name"] = frame["Image_name"].astype(str).str.strip()
    return frame


def filter_viewpoints(images: pd.DataFrame, table: pd.DataFrame, viewpoints: list[int]) -> pd.DataFrame:
    """Keep the images whose Predicted_viewpoint (0 = front, 45, ..., 315) is one of `viewpoints`.

    Angles are compared modulo 360 (the table also uses 360 for the front). Names are matched with
    apostrophes removed, so the Kaggle copy's names find their rows. Images missing from the table
    are dropped.
    """
    view = pd.to_numeric(table["Predicted_viewpoint"], errors="coerce") % 360
    wanted = {int(v) % 360 for v in viewpoints}
    keep = set(table.loc[view.isin(wanted), "Image_name"].astype(object).map(name_key))
    mask = images["name"].astype(object).map(name_key).isin(keep)
    return images[mask.to_numpy()].reset_index(drop=True)
