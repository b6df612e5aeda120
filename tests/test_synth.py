"""Tests for the synthetic DVM-Car generator (carcolor.data.synth)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from carcolor.data.colours import COLOURS, LOOKALIKE_GROUPS
from carcolor.data.synth import MAKERS, generate

ALL = list(COLOURS)
ID_RE = re.compile(r"\d+_\d+")
IMAGE_RE = re.compile(r"image_(\d+)\.jpg")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """All colours, 3 adverts each, 3 photos per advert (99 images)."""
    root = tmp_path_factory.mktemp("synth_small")
    df = generate(root, colours=ALL, adverts_per_colour=3, photos_per_advert=3, seed=0)
    return root, df


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """All colours, 12 adverts each, 2 photos per advert (264 images): for the difficulty check."""
    root = tmp_path_factory.mktemp("synth_medium")
    df = generate(root, colours=ALL, adverts_per_colour=12, photos_per_advert=2, seed=0)
    return root, df


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- names and layout


def test_colours_table():
    assert ALL == ["Black", "Grey", "White", "Blue", "Silver", "Red", "Brown", "Green", "Yellow", "Beige", "Orange"]
    for rgb in COLOURS.values():
        assert len(rgb) == 3 and all(0 <= c <= 255 for c in rgb)


def test_dataframe_columns_and_counts(small):
    root, df = small
    assert list(df.columns) == ["path", "maker", "genmodel", "year", "color", "genmodel_id", "adv_index", "image_n"]
    assert len(df) == 11 * 3 * 3
    assert df.color.value_counts().to_dict() == {c: 9 for c in ALL}
    assert df.path.is_unique


def test_file_names_parse_into_seven_fields(small):
    root, df = small
    for row in df.itertuples():
        name = row.path.rsplit("/", 1)[1]
        fields = name.split("$$")
        assert len(fields) == 7, name
        maker, model, year, colour, gid, adv, image = fields
        assert (maker, model, year, colour) == (row.maker, row.genmodel, str(row.year), row.color)
        assert ID_RE.fullmatch(gid) and gid == row.genmodel_id
        assert adv == str(row.adv_index)
        m = IMAGE_RE.fullmatch(image)
        assert m and int(m.group(1)) == row.image_n
        assert f"{gid}$${adv}" == f"{row.genmodel_id}$${row.adv_index}"


def test_folder_layout(small):
    root, df = small
    for row in df.itertuples():
        parts = row.path.split("/")
        assert parts[:5] == ["resized_DVM", row.maker, row.genmodel, str(row.year), row.color]
        assert len(parts) == 6
        assert (root / row.path).is_file()
    # nothing else was written: no temporary or stray files
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert written == set(df.path)


def test_advert_key_identifies_one_car(small):
    root, df = small
    key = df.genmodel_id + "$$" + df.adv_index.astype(str)
    per_key = df.assign(key=key).groupby("key")
    assert per_key.ngroups == 11 * 3
    for _, g in per_key:
        assert g[["maker", "genmodel", "year", "color"]].drop_duplicates().shape[0] == 1
        assert len(g) == 3  # several photos per advert
        assert g.image_n.is_unique and g.image_n.between(1, 6).all()
    # the Genmodel_ID is fixed per (maker, model)
    assert (df.groupby(["maker", "genmodel"]).genmodel_id.nunique() == 1).all()
    assert (df.groupby("genmodel_id")[["maker", "genmodel"]].nunique() == 1).all().all()


def test_photos_of_one_advert_differ(small):
    root, df = small
    for _, g in df.groupby(["genmodel_id", "adv_index"]):
        blobs = [(root / p).read_bytes() for p in g.path]
        assert len(set(blobs)) == len(blobs)


def test_awkward_names_in_catalogue_and_output(medium):
    names = [m for m, _, _ in MAKERS] + [model for _, _, models in MAKERS for model, _, _ in models]
    for ch in (" ", "'", "+", "-", "_"):
        assert any(ch in n for n in names), ch
    assert 6 <= len(MAKERS) <= 10
    ids = [f"{mid}_{gid}" for _, mid, models in MAKERS for _, gid, _ in models]
    assert len(set(ids)) == len(ids)
    root, df = medium
    written = set(df.maker) | set(df.genmodel)
    for ch in (" ", "'", "+"):
        assert any(ch in n for n in written), ch
    for p in df.path:
        assert (root / p).is_file()


# --------------------------------------------------------------------------- images


def test_images_are_rgb_300_with_white_corners(small):
    root, df = small
    for p in df.path:
        with Image.open(root / p) as im:
            assert im.format == "JPEG"
            assert im.mode == "RGB" and im.size == (300, 300)
            a = np.asarray(im)
        for corner in (a[:8, :8], a[:8, -8:], a[-8:, :8], a[-8:, -8:]):
            assert corner.min() >= 240
        # the car is there: the centre is not background
        assert (a[120:180, 60:240].astype(int).sum(-1) < 3 * 235).mean() > 0.3


def test_size_argument(tmp_path):
    df = generate(tmp_path, colours=["Red"], adverts_per_colour=1, photos_per_advert=2, size=128)
    for p in df.path:
        with Image.open(tmp_path / p) as im:
            assert im.size == (128, 128) and im.mode == "RGB"


# --------------------------------------------------------------------------- determinism


def test_deterministic_byte_identical(tmp_path):
    kw = dict(colours=["White", "Blue", "Orange"], adverts_per_colour=2, photos_per_advert=2, seed=7)
    df_a = generate(tmp_path / "a", **kw)
    df_b = generate(tmp_path / "b", **kw)
    pd.testing.assert_frame_equal(df_a, df_b)
    tree_a, tree_b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert tree_a == tree_b and len(tree_a) == 12


def test_workers_change_no_byte(tmp_path):
    kw = dict(colours=["Silver", "Red", "Beige"], adverts_per_colour=3, photos_per_advert=2, seed=5, size=96)
    one = generate(tmp_path / "one", **kw)
    two = generate(tmp_path / "two", workers=2, **kw)
    pd.testing.assert_frame_equal(one, two)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    assert len(_tree(tmp_path / "two")) == 18


def test_seed_changes_output(tmp_path):
    kw = dict(colours=["Grey"], adverts_per_colour=2, photos_per_advert=1)
    a = generate(tmp_path / "a", seed=0, **kw)
    b = generate(tmp_path / "b", seed=1, **kw)
    blobs_a = {(tmp_path / "a" / p).read_bytes() for p in a.path}
    blobs_b = {(tmp_path / "b" / p).read_bytes() for p in b.path}
    assert not blobs_a & blobs_b


def test_existing_adverts_stable_when_counts_or_colours_change(tmp_path):
    small = generate(tmp_path / "s", colours=["Beige", "Black"], adverts_per_colour=2, photos_per_advert=2)
    big = generate(tmp_path / "b", colours=["Black", "Silver", "Beige"], adverts_per_colour=4, photos_per_advert=2)
    assert set(small.path) < set(big.path)
    for p in small.path:
        assert (tmp_path / "s" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()
    # rows follow the caller's colour order
    assert list(dict.fromkeys(big.color)) == ["Black", "Silver", "Beige"]


# --------------------------------------------------------------------------- arguments, progress, atomic writes


def test_unknown_colour_names_value_and_choices(tmp_path):
    with pytest.raises(ValueError) as exc:
        generate(tmp_path, colours=["Red", "Purple"], adverts_per_colour=1, photos_per_advert=1)
    msg = str(exc.value)
    assert "Purple" in msg
    for c in ALL:
        assert c in msg
    assert not (tmp_path / "resized_DVM").exists()


@pytest.mark.parametrize(
    "kw",
    [
        dict(colours=[]),
        dict(colours=["Red", "Red"]),
        dict(colours=["red"]),
        dict(adverts_per_colour=0),
        dict(photos_per_advert=0),
        dict(photos_per_advert=1.5),
        dict(quality=0),
        dict(seed=-1),
        dict(size=16),
        dict(workers=0),
        dict(workers=True),
    ],
)
def test_bad_arguments(tmp_path, kw):
    args = dict(colours=["Red"], adverts_per_colour=1, photos_per_advert=1) | kw
    with pytest.raises(ValueError):
        generate(tmp_path, **args)


def test_progress_lines(tmp_path, capsys):
    generate(tmp_path, colours=["Green", "Yellow"], adverts_per_colour=5, photos_per_advert=2, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert 5 <= len(err) <= 11
    assert "20/20" in err[-1] and "100%" in err[-1]
    assert capsys.readouterr().out == ""


def test_interrupted_write_leaves_no_final_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\xff\xd8partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, colours=["Red"], adverts_per_colour=1, photos_per_advert=1)
    assert not (tmp_path / "resized_DVM").exists()  # the half-drawn tree stays in its build folder


# --------------------------------------------------------------------------- difficulty


def _centre_mean_rgb(path: Path) -> np.ndarray:
    """Mean RGB of the central region (mostly the car's doors; no background mask, so white cars work)."""
    with Image.open(path) as im:
        a = np.asarray(im, dtype=np.float32)
    s = a.shape[0]
    return a[int(0.4 * s) : int(0.6 * s), int(0.25 * s) : int(0.75 * s)].reshape(-1, 3).mean(0)


def test_colour_task_is_neither_trivial_nor_hopeless(medium):
    """Nearest-centroid on mean colour: well above chance, well below perfect; errors mostly look-alikes."""
    root, df = medium
    x = np.stack([_centre_mean_rgb(root / p) for p in df.path])
    y = np.array([ALL.index(c) for c in df.color])
    advert = (df.adv_index.to_numpy() - 1) // len(ALL)  # advert number within its colour
    train = advert % 2 == 0  # half of the adverts; all photos of one advert on the same side
    centroids = np.stack([x[train & (y == k)].mean(0) for k in range(len(ALL))])
    pred = np.argmin(((x[~train, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    truth = y[~train]
    acc = float((pred == truth).mean())
    assert 0.3 < acc < 0.9, acc

    group = {c: i for i, g in enumerate(LOOKALIKE_GROUPS) for c in g}
    wrong = pred != truth
    within = [group.get(ALL[t], -1) == group.get(ALL[p], -2) for t, p in zip(truth[wrong], pred[wrong])]
    # 12 of the 110 ordered colour pairs lie inside a group: uniform errors would give ~11% here
    assert np.mean(within) > 0.4, np.mean(within)
    # the errors on each look-alike group's colours stay mostly inside that group
    for g in LOOKALIKE_GROUPS:
        idx = [ALL.index(c) for c in g]
        t_in = np.isin(truth, idx) & wrong
        assert np.isin(pred[t_in], idx).mean() > 0.5, g


def test_a_new_draw_replaces_the_whole_tree_and_a_killed_draws_folder(tmp_path):
    """Nothing of an earlier draw (other seed, more adverts) survives into the next, and a killed draw's
    half-built folder is removed: the tree holds exactly the photos the settings call for."""
    generate(tmp_path, colours=["Red", "Blue"], adverts_per_colour=3, photos_per_advert=2, size=32, seed=1)
    stray = tmp_path / ".resized_DVM.build" / "Audi" / "half.jpg"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a jpeg")  # a killed draw's
    frame = generate(tmp_path, colours=["Red"], adverts_per_colour=1, photos_per_advert=1, size=32)
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == sorted(frame["path"]) and len(on_disk) == 1
    again = tmp_path.parent / "fresh"
    assert frame.equals(generate(again, colours=["Red"], adverts_per_colour=1, photos_per_advert=1, size=32))
    assert (tmp_path / on_disk[0]).read_bytes() == (again / on_disk[0]).read_bytes()
