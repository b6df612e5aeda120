"""DVM-Car names, listing of zips and folders in both published layouts, reading, Image_table."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from carcolor.data import dvm
from tests import dvmfake

PHOTOS = dvmfake.adverts({"Black": 6, "Red": 5, "Unlisted": 2})


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name, fields", [
    ("Nissan$$Pulsar$$2016$$Grey$$64_32$$457$$image_10.jpg",
     ("Nissan", "Pulsar", "2016", "Grey", "64_32", "457", 10)),
    ("Land Rover$$Range Rover Evoque$$2018$$White$$47_12$$3$$image_1.jpg",
     ("Land Rover", "Range Rover Evoque", "2018", "White", "47_12", "3", 1)),
    ("Kia$$Pro_Cee'd$$2015$$Red$$44_20$$9$$image_46.JPG",
     ("Kia", "Pro_Cee'd", "2015", "Red", "44_20", "9", 46)),
    ("Nissan$$Micra C+C$$2007$$Multicolour$$64_25$$12$$image_2.jpeg",
     ("Nissan", "Micra C+C", "2007", "Multicolour", "64_25", "12", 2)),
    ("Mercedes-Benz$$C-Class$$2011$$Silver$$59_8$$1$$image_0.jpg",
     ("Mercedes-Benz", "C-Class", "2011", "Silver", "59_8", "1", 0)),
])
def test_parse_name(name, fields):
    parsed = dvm.parse_name(name)
    assert (parsed.maker, parsed.genmodel, parsed.year, parsed.color, parsed.genmodel_id,
            parsed.adv_index, parsed.image_n) == fields
    assert parsed.adv_id == f"{fields[4]}$${fields[5]}"


@pytest.mark.parametrize("name", [
    ".DS_Store", "Thumbs.db", "readme.txt",
    "Nissan$$Pulsar$$2016$$Grey$$64_32$$image_10.jpg",  # 6 fields
    "Nissan$$Pulsar$$2016$$Grey$$64-32$$457$$image_10.jpg",  # bad Genmodel_ID
    "Nissan$$Pulsar$$2016$$Grey$$64_32$$457$$image_10.png",
    "Nissan$$Pulsar$$2016$$$$64_32$$457$$image_10.jpg",  # no colour
    "._Nissan$$Pulsar$$2016$$Grey$$64_32$$457$$image_10.jpg",  # macOS resource fork
])
def test_parse_name_rejects(name):
    assert dvm.parse_name(name) is None


def test_archive_of():
    assert dvm.archive_of("resized_DVM/Kia/Pro_Cee'd/2015/Red/x.jpg") == "resized_DVM"
    assert dvm.archive_of("Confirmed_fronts/Kia/2015/x.jpg") == "confirmed_fronts"
    assert dvm.archive_of("/data/dvm/confirmed_fronts") == "confirmed_fronts"
    assert dvm.archive_of("DVM_kaggle/Red/x.jpg") == "other"


# --------------------------------------------------------------------------- listing


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["name", "archive", "maker", "genmodel", "year", "color", "genmodel_id", "adv_index", "image_n", "adv_id"]
    out = frame[cols].astype(object).sort_values("name").reset_index(drop=True)
    out["image_n"] = out["image_n"].astype(int)
    return out


def test_zip_and_tree_list_the_same_images(tmp_path):
    content = dvmfake.files(PHOTOS, "resized", extras=True)
    tree = dvmfake.write_tree(tmp_path / "tree", content)
    stored = dvmfake.write_zip(tmp_path / "stored.zip", content)
    deflated = dvmfake.write_zip(tmp_path / "deflated.zip", content, zipfile.ZIP_DEFLATED)
    frames = {}
    for label, source in (("tree", tree), ("stored", stored), ("deflated", deflated)):
        frame, stats = dvm.list_images([source])
        assert stats["files"] == len(content)  # folder entries of the zip are not files
        assert stats["not_dvm_names"] == len(dvmfake.EXTRAS)
        assert stats["duplicates"] == 0
        assert stats["by_archive"] == {"resized_DVM": len(PHOTOS)}
        assert list(frame.columns) == dvm.COLUMNS
        frames[label] = _comparable(frame)
        expected = sorted(p.name for p in PHOTOS)
        assert frames[label]["name"].tolist() == expected
        members = set(dvm.members(frame))
        assert members == {p.resized_path() for p in PHOTOS}
    pd.testing.assert_frame_equal(frames["tree"], frames["stored"])
    pd.testing.assert_frame_equal(frames["tree"], frames["deflated"])
    row = frames["tree"].set_index("name").loc[PHOTOS[1].name]
    p = PHOTOS[1]
    assert (row.maker, row.genmodel, row.year, row.color, row.adv_id, row.image_n) == \
        (p.maker, p.genmodel, str(p.year), p.colour, p.adv_id, p.n)


def test_both_layouts_duplicates_and_first_source_wins(tmp_path):
    fronts = [p for p in PHOTOS if p.n % 3 == 0 or p.adv % 3 == 0]
    assert 0 < len(fronts) < len(PHOTOS)
    resized = dvmfake.write_zip(tmp_path / "resized_DVM_v2.zip", dvmfake.files(PHOTOS, "resized"))
    fronts_tree = dvmfake.write_tree(tmp_path / "unpacked", dvmfake.files(fronts, "Fronts"))
    fronts_zip = dvmfake.write_zip(tmp_path / "Confirmed_fronts.zip", dvmfake.files(fronts, "fronts"))

    frame, stats = dvm.list_images([fronts_tree, resized])
    assert len(frame) == len(PHOTOS) and frame["name"].is_unique
    assert stats["duplicates"] == len(fronts)
    assert stats["duplicates_by_archive"] == {"resized_DVM": len(fronts)}
    assert stats["by_archive"] == {"confirmed_fronts": len(fronts), "resized_DVM": len(PHOTOS) - len(fronts)}
    first = frame.set_index("name")
    assert set(first.loc[[p.name for p in fronts], "source"]) == {str(fronts_tree)}

    frame, stats = dvm.list_images([resized, fronts_zip])
    assert stats["duplicates"] == len(fronts)
    assert stats["duplicates_by_archive"] == {"confirmed_fronts": len(fronts)}
    assert set(frame["source"]) == {str(resized)}


def test_kaggle_copy_without_apostrophes_dedupes_against_figshare(tmp_path):
    kaggle = dvmfake.write_tree(tmp_path / "kaggle", dvmfake.files(PHOTOS, "flat", kaggle=True))
    resized = dvmfake.write_zip(tmp_path / "resized_DVM_v2.zip", dvmfake.files(PHOTOS, "resized"))
    frame, stats = dvm.list_images([kaggle])
    assert sorted(frame["name"]) == sorted(p.kaggle_name for p in PHOTOS)
    assert any("'" in p.name for p in PHOTOS) and not any("'" in n for n in frame["name"])
    assert stats["by_archive"] == {"other": len(PHOTOS)}
    assert set(frame["genmodel"]) >= {"Pro_Ceed"}
    both, stats = dvm.list_images([kaggle, resized])
    assert len(both) == len(PHOTOS) and stats["duplicates"] == len(PHOTOS)


def test_zip_quirks_backslashes_prepended_data_zip64(tmp_path):
    photos = PHOTOS[:5]
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in photos[:3]:
            zf.writestr(p.resized_path().replace("/", "\\"), dvmfake.jpeg(p.rgb))  # written on Windows
        for p in photos[3:]:
            with zf.open(zipfile.ZipInfo(p.fronts_path()), "w", force_zip64=True) as fh:
                fh.write(dvmfake.jpeg(p.rgb))
    data = path.read_bytes()
    prepended = tmp_path / "sfx.zip"
    prepended.write_bytes(b"#!/bin/sh\nexit 0\n" + b"\0" * 1000 + data)
    for source in (path, prepended):
        entries = list(dvm.zip_entries(source))
        with zipfile.ZipFile(source) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            assert [d + f for d, f, *_ in entries] == [i.filename for i in infos]
            assert [(o, c, m, crc) for _, _, o, c, m, crc in entries] == \
                [(i.header_offset, i.compress_size, i.compress_type, i.CRC) for i in infos]
            frame, stats = dvm.list_images([source])
            assert sorted(frame["name"]) == sorted(p.name for p in photos)
            reader = dvm.ImageReader()
            for row in frame.itertuples():
                member = row.dir + row.name
                assert reader.read(row.source, member, row.offset, row.csize, row.method, row.crc) == zf.read(member)
            reader.close()


def test_listing_does_not_build_zipfile_objects(tmp_path, monkeypatch):
    """The 1.45 M-entry archive must be listed without zipfile's per-entry objects (minutes, gigabytes)."""
    source = dvmfake.write_zip(tmp_path / "resized_DVM_v2.zip", dvmfake.files(PHOTOS, "resized"))

    def refuse(*args, **kwargs):
        raise AssertionError("zipfile.ZipFile used while listing")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    frame, _ = dvm.list_images([source])
    assert len(frame) == len(PHOTOS)


def test_missing_or_wrong_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dvm.list_images([tmp_path / "nope.zip"])
    bad = tmp_path / "not_a.zip"
    bad.write_bytes(b"hello")
    with pytest.raises(FileNotFoundError, match="neither a folder nor a zip"):
        dvm.list_images([bad])


def test_empty_source(tmp_path):
    (tmp_path / "empty").mkdir()
    frame, stats = dvm.list_images([tmp_path / "empty"])
    assert len(frame) == 0 and list(frame.columns) == dvm.COLUMNS and stats["files"] == 0


# --------------------------------------------------------------------------- reading


def test_reader_by_offset_matches_zipfile_and_checks_crc(tmp_path):
    content = dvmfake.files(PHOTOS[:4], "resized")
    path = dvmfake.write_zip(tmp_path / "a.zip", content)
    frame, _ = dvm.list_images([path])
    reader = dvm.ImageReader()
    for row in frame.itertuples():
        data = reader.read(row.source, row.dir + row.name, row.offset, row.csize, row.method, row.crc)
        assert data == content[row.dir + row.name]
        assert reader.read(row.source, row.dir + row.name) == data  # without an offset: via zipfile
        with reader.open(row.source, row.dir + row.name) as img:
            assert img.size == (40, 40)
    reader.close()
    # flip one byte of a stored member's data: the CRC check notices
    row = next(frame.itertuples())
    raw = bytearray(path.read_bytes())
    header = raw[row.offset: row.offset + 30]
    start = row.offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    raw[start + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        dvm.ImageReader().read(row.source, row.dir + row.name, row.offset, row.csize, row.method, row.crc)


def test_reader_reads_folders(tmp_path):
    tree = dvmfake.write_tree(tmp_path / "t", dvmfake.files(PHOTOS[:2], "fronts"))
    frame, _ = dvm.list_images([tree])
    for row in frame.itertuples():
        assert row.offset == -1
        data = dvm.ImageReader().read(row.source, row.dir + row.name, row.offset)
        assert Image.open(io.BytesIO(data)).size == (40, 40)


# --------------------------------------------------------------------------- Image_table and viewpoints


@pytest.mark.parametrize("zipped", [False, True])
def test_image_table_with_padded_headers(tmp_path, zipped):
    text = dvmfake.image_table_csv(PHOTOS, leave_out=2)
    assert text.splitlines()[0].split(",")[2] == " Image_name"
    if zipped:
        path = dvmfake.tables_zip(tmp_path / "tables_V2.zip", text)
    else:
        path = tmp_path / "Image_table.csv"
        path.write_text(text)
    table = dvm.read_image_table(path)
    assert {"Image_name", "Predicted_viewpoint", "Quality_check"} <= set(table.columns)
    assert table["Image_name"].tolist() == [p.name for p in PHOTOS[:-2]]
    assert pd.to_numeric(table["Predicted_viewpoint"]).tolist() == [p.viewpoint for p in PHOTOS[:-2]]

    frame, _ = dvm.list_images([dvmfake.write_tree(tmp_path / "kaggle", dvmfake.files(PHOTOS, "flat", kaggle=True))])
    front = dvm.filter_viewpoints(frame, table, [0])
    expected = {p.kaggle_name for p in PHOTOS[:-2] if p.viewpoint in (0, 360)}  # 360 is the front as well
    assert set(front["name"]) == expected and len(front) == len(expected)
    sides = dvm.filter_viewpoints(frame, table, [90, 270])
    assert set(sides["name"]) == {p.kaggle_name for p in PHOTOS[:-2] if p.viewpoint in (90, 270)}


def test_image_table_errors(tmp_path):
    path = tmp_path / "Image_table.csv"
    path.write_text("Genmodel_ID, Image_name\n1_1, x.jpg\n")
    with pytest.raises(ValueError, match="Predicted_viewpoint"):
        dvm.read_image_table(path)
    empty = dvmfake.write_zip(tmp_path / "tables.zip", {"tables_V2/Ad_table.csv": b"a\n"})
    with pytest.raises(FileNotFoundError, match="no Image_table.csv"):
        dvm.read_image_table(empty)


def test_listing_scales(tmp_path):
    """Per-name work stays small (a few microseconds): the bound, 3 s per 10,000 names, is for slow, busy machines."""
    import time

    path = tmp_path / "many.zip"
    photos = dvmfake.adverts({"Black": 4000, "Grey": 4000, "Unlisted": 4000})
    with zipfile.ZipFile(path, "w") as zf:
        for p in photos:
            zf.writestr(p.resized_path(), b"")
    t = time.perf_counter()
    frame, stats = dvm.list_images([path])
    seconds = time.perf_counter() - t
    assert len(frame) == len(photos) > 25_000
    assert frame["adv_id"].nunique() == 12_000
    assert seconds < 3 * len(photos) / 10_000, seconds
    assert isinstance(frame["color"].dtype, pd.CategoricalDtype)
    assert np.array_equal(frame["image_n"].to_numpy(), [p.n for p in photos])


def test_zip64_records_and_offsets(tmp_path, monkeypatch):
    """Past 4 GB (resized_DVM_v2.zip is 13.6 GB) sizes and offsets move into Zip64 extra fields."""
    photos = PHOTOS[:6]
    path = tmp_path / "zip64.zip"
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)  # every offset and the directory count as "large"
    content = dvmfake.files(photos, "resized")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for rel, data in content.items():
            zf.writestr(rel, data)
    monkeypatch.undo()
    raw = path.read_bytes()
    assert b"PK\x06\x06" in raw and b"\xff\xff\xff\xff" in raw  # Zip64 end record, 0xFFFFFFFF markers
    entries = list(dvm.zip_entries(path))
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert [(d + f, o, c, crc) for d, f, o, c, _, crc in entries] == \
            [(i.filename, i.header_offset, i.compress_size, i.CRC) for i in infos]
        assert max(i.header_offset for i in infos) > 1000
        frame, _ = dvm.list_images([path])
        reader = dvm.ImageReader()
        for row in frame.itertuples():
            member = row.dir + row.name
            assert reader.read(row.source, member, row.offset, row.csize, row.method, row.crc) == zf.read(member)
        reader.close()
