"""DVM-Car on disk: parse its file names and list its images, from zip archives or unpacked trees.

The label lives in the file name, never in the folder: `resized_DVM/{Maker}/{Genmodel}/{Year}/
{Color}/{file}` and `confirmed_fronts/{Maker}/{Year}/{file}` (or any other layout, such as the
Kaggle copy's) are walked recursively and only the file name is parsed.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SEP = "$$"
GENMODEL_ID = re.compile(r"^\d+_\d+$")
IMAGE_N = re.compile(r"^image_(\d+)\.jpe?g$", re.IGNORECASE)
ARCHIVE_DIRS = {"resized_dvm": "resized_DVM", "confirmed_fronts": "confirmed_fronts"}
COLUMNS = ["name", "source", "member", "archive", "maker", "genmodel", "year", "color",
           "genmodel_id", "adv_index", "image_n", "adv_id"]


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


def parse_name(filename: str) -> DvmName | None:
    """Parse `Maker$$Genmodel$$Year$$Color$$Genmodel_ID$$AdvIndex$$image_N.jpg`; None if it is not one."""
    fields = filename.split(SEP)
    if len(fields) != 7:
        return None
    maker, genmodel, year, color, genmodel_id, adv_index, image = fields
    match = IMAGE_N.match(image)
    if not match or not GENMODEL_ID.match(genmodel_id) or not color:
        return None
    return DvmName(maker, genmodel, year, color, genmodel_id, adv_index, int(match.group(1)))


def _archive_of(member: str) -> str:
    for part in member.replace("\\", "/").split("/")[:-1]:
        known = ARCHIVE_DIRS.get(part.lower())
        if known:
            return known
    return "other"


def _walk(source: Path):
    """Yield (member, file name) for every file under a folder or inside a zip."""
    if source.is_dir():
        for dirpath, _, files in os.walk(source):
            for f in files:
                full = Path(dirpath, f)
                yield full.relative_to(source).as_posix(), f
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.filename.rsplit("/", 1)[-1]
    else:
        raise FileNotFoundError(f"DVM source {str(source)!r} is neither a folder nor a zip archive "
                                f"(give resized_DVM_v2.zip, Confirmed_fronts.zip or an unpacked folder).")


def list_images(sources: list[str | Path]) -> tuple[pd.DataFrame, dict]:
    """One row per distinct DVM image name over all sources (first source wins on duplicates).

    Returns (frame with COLUMNS, stats) where stats counts files, duplicates and names that are
    not DVM image names.
    """
    rows, seen = [], set()
    stats = {"files": 0, "duplicates": 0, "not_dvm_names": 0, "sources": []}
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"DVM source {str(source)!r} does not exist; download it with "
                                    f"`carcolor download resized_DVM` or fix 'data.paths' in the config.")
        stats["sources"].append(str(source))
        for member, fname in _walk(source):
            stats["files"] += 1
            parsed = parse_name(fname)
            if parsed is None:
                stats["not_dvm_names"] += 1
                continue
            if fname in seen:
                stats["duplicates"] += 1
                continue
            seen.add(fname)
            rows.append((fname, str(source), member, _archive_of(f"{source.name}/{member}"), parsed.maker, parsed.genmodel,
                         parsed.year, parsed.color, parsed.genmodel_id, parsed.adv_index,
                         parsed.image_n, parsed.adv_id))
    return pd.DataFrame(rows, columns=COLUMNS), stats


class ImageReader:
    """Reads raw image bytes by (source, member); keeps zip archives open (one set per process)."""

    def __init__(self):
        self._zips: dict[str, zipfile.ZipFile] = {}

    def read(self, source: str, member: str) -> bytes:
        path = Path(source)
        if path.is_dir():
            return (path / member).read_bytes()
        zf = self._zips.get(source)
        if zf is None:
            zf = self._zips[source] = zipfile.ZipFile(source)
        return zf.read(member)

    def open(self, source: str, member: str):
        from PIL import Image

        return Image.open(io.BytesIO(self.read(source, member)))

    def close(self):
        for zf in self._zips.values():
            zf.close()
        self._zips.clear()


def read_image_table(path: str | Path) -> pd.DataFrame:
    """Image_table.csv (plain, or inside tables_V2.zip) as a frame with stripped header names.

    The published CSV pads its header cells with a leading space (' Image_name').
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1].lower() == "image_table.csv"]
            if not members:
                raise FileNotFoundError(f"{path} holds no Image_table.csv")
            with zf.open(members[0]) as fh:
                frame = pd.read_csv(fh, skipinitialspace=True)
    else:
        frame = pd.read_csv(path, skipinitialspace=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = {"Image_name", "Predicted_viewpoint"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(sorted(missing))}; "
                         f"columns found: {', '.join(frame.columns)}")
    frame["Image_name"] = frame["Image_name"].astype(str).str.strip()
    return frame


def filter_viewpoints(images: pd.DataFrame, table: pd.DataFrame, viewpoints: list[int]) -> pd.DataFrame:
    """Keep the images whose Predicted_viewpoint (0 = front, 45, ..., 315) is one of `viewpoints`."""
    view = pd.to_numeric(table["Predicted_viewpoint"], errors="coerce")
    keep = set(table.loc[view.isin(viewpoints), "Image_name"])
    return images[images["name"].isin(keep)].reset_index(drop=True)
