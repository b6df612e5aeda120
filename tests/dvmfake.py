"""Small fake DVM-Car archives in the real formats, for the loader and preparation tests.

Every image is a flat-colour JPEG whose colour encodes its advert and photo number (see
`Photo.rgb`), so a test can check that each row of the cache holds exactly the file the manifest
names. Names carry the awkward characters of the real data (spaces, apostrophes, `+`, hyphens,
underscores); both published folder layouts and the Kaggle copy's apostrophe-free names are built.
"""
from __future__ import annotations

import functools
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# (maker, genmodel, Genmodel_ID): the awkward characters of the real names.
MODELS = (
    ("Land Rover", "Range Rover Evoque", "47_12"),
    ("Kia", "Pro_Cee'd", "44_20"),
    ("Nissan", "Micra C+C", "64_25"),
    ("Mercedes-Benz", "C-Class", "59_8"),
    ("Alfa Romeo", "Giulietta", "2_9"),
)
NOT_IMAGE = b"<html>this is not a JPEG</html>\n"
# Files of any real folder that are not DVM images; paths relative to the archive's top.
EXTRAS = {
    ".DS_Store": b"\x00\x00\x00\x01Bud1",
    "resized_DVM/Thumbs.db": b"\xd0\xcf\x11\xe0",
    "resized_DVM/Kia/readme.txt": b"notes",
    "__MACOSX/resized_DVM/Kia/._Kia$$Pro_Cee'd$$2015$$Red$$44_20$$1$$image_1.jpg": b"\x00\x05\x16\x07",
}
VIEWS = (0, 45, 90, 360, 180, 0, 270)


@dataclass(frozen=True)
class Photo:
    maker: str
    genmodel: str
    year: int
    colour: str
    gid: str
    adv: int
    n: int

    @property
    def name(self) -> str:
        return f"{self.maker}$${self.genmodel}$${self.year}$${self.colour}$${self.gid}$${self.adv}$$image_{self.n}.jpg"

    @property
    def kaggle_name(self) -> str:
        return self.name.replace("'", "")

    @property
    def adv_id(self) -> str:
        return f"{self.gid}$${self.adv}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        """A flat colour unique to (advert, photo) for adverts < 784 and photos < 28, 8 levels apart."""
        return (16 + (self.adv % 28) * 8, 16 + (self.n % 28) * 8, 16 + (self.adv // 28 % 28) * 8)

    @property
    def viewpoint(self) -> int:
        return VIEWS[(self.adv + self.n) % len(VIEWS)]

    def resized_path(self, top: str = "resized_DVM") -> str:
        return f"{top}/{self.maker}/{self.genmodel}/{self.year}/{self.colour}/{self.name}"

    def fronts_path(self, top: str = "confirmed_fronts") -> str:
        return f"{top}/{self.maker}/{self.year}/{self.name}"


def adverts(adverts_per_colour: dict[str, int], first_adv: int = 1) -> list[Photo]:
    """Photos of consecutive adverts: advert i has 1 + i % 4 photos, numbered like DVM's (gaps allowed)."""
    photos, adv = [], first_adv
    for colour, count in adverts_per_colour.items():
        for _ in range(count):
            maker, model, gid = MODELS[adv % len(MODELS)]
            year = 2008 + adv % 12
            for k in range(1 + adv % 4):
                photos.append(Photo(maker, model, year, colour, gid, adv, 1 + 2 * k + adv % 2))
            adv += 1
    return photos


@functools.lru_cache(maxsize=None)
def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def truncated(rgb: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    """A JPEG cut short: Pillow opens it but fails to load it."""
    data = jpeg(rgb, (120, 120))
    return data[: len(data) // 2]


def files(photos: list[Photo], layout: str = "resized", *, kaggle: bool = False,
          broken: dict[str, bytes] | None = None, extras: bool = False) -> dict[str, bytes]:
    """{path inside the archive: bytes}. layout: resized | fronts | Fronts | flat."""
    broken = broken or {}
    out = {}
    for p in photos:
        if layout == "resized":
            path = p.resized_path()
        elif layout == "fronts":
            path = p.fronts_path()
        elif layout == "Fronts":
            path = p.fronts_path("Confirmed_fronts")
        elif layout == "flat":
            path = f"DVM_kaggle/{p.colour}/{p.name}"
        else:
            raise ValueError(layout)
        if kaggle:
            path = path.replace("'", "")
        out[path] = broken.get(p.name, jpeg(p.rgb))
    if extras:
        out.update(EXTRAS)
    return out


def write_tree(root: Path, content: dict[str, bytes]) -> Path:
    root = Path(root)
    for rel, data in content.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, content: dict[str, bytes], compression: int = zipfile.ZIP_STORED,
              folders: bool = True) -> Path:
    """A zip like the published ones: folder entries first (as `zip -r` writes them), then files."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression) as zf:
        if folders:
            dirs = sorted({rel.rsplit("/", i)[0] + "/" for rel in content for i in range(1, rel.count("/") + 1)})
            for d in dirs:
                zf.writestr(zipfile.ZipInfo(d), b"")
        for rel, data in content.items():
            zf.writestr(rel, data)
    return path


def image_table_csv(photos: list[Photo], leave_out: int = 0) -> str:
    """Image_table.csv as published: header cells padded with a space; the last `leave_out` photos missing."""
    lines = ["Genmodel_ID, Image_ID, Image_name, Predicted_viewpoint, Quality_check"]
    for i, p in enumerate(photos[: len(photos) - leave_out]):
        quality = "P" if i % 7 == 0 else ""
        lines.append(f"{p.gid}, {p.gid}${p.adv}${p.n}, {p.name}, {p.viewpoint}, {quality}")
    return "\n".join(lines) + "\n"


def tables_zip(path: Path, image_table: str) -> Path:
    """tables_V2.zip: Image_table.csv beside the other tables (one with a space and brackets in its name)."""
    return write_zip(path, {
        "tables_V2/Ad_table.csv": b"Maker, Genmodel, Genmodel_ID, Adv_ID\nKia, Pro_Cee'd, 44_20, 44_20$$1\n",
        "tables_V2/Ad_table (extra).csv": b"Adv_ID, Annual_Tax\n44_20$$1, 145\n",
        "tables_V2/Basic_table.csv": b"Automaker, Genmodel, Automaker_ID, Genmodel_ID\n",
        "tables_V2/Image_table.csv": image_table.encode(),
    }, zipfile.ZIP_DEFLATED)
