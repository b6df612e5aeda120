"""Preparation on fake DVM-Car archives in the real formats: selection, advert-level split (train, val
and an optional test split), decoding, unreadable files, provenance, determinism and resuming after
an interruption."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from carcolor.data import decoding, dvm, selection
from carcolor.data.cache import load_prepared
from carcolor.data.prepare import prepare
from carcolor.data.selection import DataError, choose_colours, split_by_advert
from tests import dvmfake

COLOURS = ["Black", "White", "Red"]
PHOTOS = dvmfake.adverts({"Black": 30, "White": 24, "Red": 24, "Unlisted": 40, "Beige": 2, "Multicolour": 3})
BY_NAME = {p.name: p for p in PHOTOS} | {p.kaggle_name: p for p in PHOTOS}
_red = [p for p in PHOTOS if p.colour == "Red"]
_black = [p for p in PHOTOS if p.colour == "Black"]
# Unreadable files: truncated JPEGs and non-images with a .jpg name, mostly among the Red ones.
BROKEN = {p.name: (dvmfake.truncated() if i % 2 else dvmfake.NOT_IMAGE) for i, p in enumerate(_red[::6] + _black[5:6])}
FRONTS = [p for p in PHOTOS if p.adv % 3 == 0]  # confirmed_fronts: a subset, same names
N_TRAIN, N_VAL, N_TEST, SIZE = 20, 6, 6, 16
ARGS = dict(colours=COLOURS, n_train_per_colour=N_TRAIN, n_val_per_colour=N_VAL, image_size=SIZE, seed=0)
WITH_TEST = ARGS | {"n_test_per_colour": N_TEST}
SPLITS = ("train", "val", "test")
# sha256 of manifest.csv's split, row and name columns made by the code before the test split
# existed (seeds 0 and 3): with n_test_per_colour 0 the same files must land in the same rows.
BEFORE_TEST_SPLIT = {0: "bfd4d0741f9c99d9", 3: "13d4c60d76929ca4"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvm")
    resized = dvmfake.files(PHOTOS, "resized", broken=BROKEN, extras=True)
    paths = {
        "resized_zip": dvmfake.write_zip(root / "resized_DVM_v2.zip", resized, zipfile.ZIP_DEFLATED),
        "resized_tree": dvmfake.write_tree(root / "unpacked", resized),
        "fronts_tree": dvmfake.write_tree(root / "fronts", dvmfake.files(FRONTS, "Fronts", broken=BROKEN)),
        "kaggle": dvmfake.write_tree(root / "kaggle", dvmfake.files(PHOTOS, "flat", kaggle=True, broken=BROKEN)),
    }
    table = dvmfake.image_table_csv(PHOTOS, leave_out=3)
    paths["image_table"] = root / "Image_table.csv"
    paths["image_table"].write_text(table)
    paths["tables_zip"] = dvmfake.tables_zip(root / "tables_V2.zip", table)
    return paths


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run from the zip plus the confirmed_fronts tree, one worker."""
    out = tmp_path_factory.mktemp("reference")
    info = prepare([data["resized_zip"], data["fronts_tree"]], out, workers=1, **ARGS)
    return out, info


@pytest.fixture(scope="module")
def with_test(data, tmp_path_factory):
    """The uninterrupted run with a test split, from the same sources as `reference`, two workers."""
    out = tmp_path_factory.mktemp("with_test")
    info = prepare([data["resized_zip"], data["fronts_tree"]], out, workers=2, **WITH_TEST)
    return out, info


def _load(out):
    loaded = {
        "manifest": pd.read_csv(out / "manifest.csv", keep_default_na=False),
        "skipped": pd.read_csv(out / "skipped.csv", keep_default_na=False),
        "info": json.loads((out / "dataset.json").read_text()),
    }
    for split in SPLITS:
        loaded[split] = np.load(out / f"{split}_images.npy")
        loaded[f"{split}_labels"] = np.load(out / f"{split}_labels.npy")
    return loaded


def _manifest_hash(manifest: pd.DataFrame) -> str:
    return hashlib.sha256(manifest[["split", "row", "name"]].to_csv(index=False).encode()).hexdigest()[:16]


def _check_rows(r: dict, split: str) -> None:
    """Each row of the split's cache holds the file the manifest names, with its label."""
    m = r["manifest"]
    part = m[m["split"] == split].sort_values("row")
    assert part["row"].tolist() == list(range(len(part)))
    assert np.array_equal(part["label"].to_numpy(), r[f"{split}_labels"])
    for row in part.itertuples():
        photo = BY_NAME[row.name]
        assert row.colour == photo.colour == COLOURS[row.label]
        assert row.adv_id == photo.adv_id
        assert row.member == photo.resized_path() and row.archive == "resized_DVM"
        mean = r[split][row.row].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - photo.rgb).max() < 4, (row.name, mean, photo.rgb)  # the right file in the right row


# --------------------------------------------------------------------------- counts and contents


def test_exact_counts_contents_and_advert_split(reference):
    out, info = reference
    r = _load(out)
    m = r["manifest"]
    assert r["train"].shape == (3 * N_TRAIN, SIZE, SIZE, 3) and r["val"].shape == (3 * N_VAL, SIZE, SIZE, 3)
    assert r["train"].dtype == np.uint8
    counts = m.groupby(["colour", "split"]).size().to_dict()
    assert counts == {(c, s): n for c in COLOURS for s, n in (("train", N_TRAIN), ("val", N_VAL))}
    assert m["name"].is_unique
    for split in ("train", "val"):
        _check_rows(r, split)
    train_adv, val_adv = set(m.loc[m.split == "train", "adv_id"]), set(m.loc[m.split == "val", "adv_id"])
    assert not train_adv & val_adv
    assert info["advert_level_split"] is True
    assert info["adverts"] == len(train_adv | val_adv)
    assert info["adverts_per_split"] == {"train": len(train_adv), "val": len(val_adv), "test": 0}


def test_without_a_test_split_train_and_val_are_as_before(reference, data):
    """n_test_per_colour 0: the very files, rows and pixels of the code before the test split existed,
    and an empty test split whose files still exist (the workflow's outputs never change)."""
    out, info = reference
    r = _load(out)
    assert _manifest_hash(r["manifest"]) == BEFORE_TEST_SPLIT[0]
    assert r["test"].shape == (0, SIZE, SIZE, 3) and r["test"].dtype == np.uint8 and len(r["test_labels"]) == 0
    assert info["n_test_per_colour"] == 0 and info["protocol"] == "val"
    assert info["images_per_split"] == {"train": 3 * N_TRAIN, "val": 3 * N_VAL, "test": 0}
    loaded = load_prepared(out)
    assert loaded["test_images"].shape == (0, SIZE, SIZE, 3) and len(loaded["test_labels"]) == 0
    listed, _ = dvm.list_images([data["resized_zip"]])
    assert split_by_advert(listed, COLOURS, N_TRAIN, N_VAL, seed=3).equals(
        split_by_advert(listed, COLOURS, N_TRAIN, N_VAL, seed=3, n_test=0))


def test_seed_3_without_a_test_split_is_as_before(data, tmp_path):
    prepare([data["resized_zip"]], tmp_path, workers=1, **(ARGS | {"seed": 3}))
    assert _manifest_hash(_load(tmp_path)["manifest"]) == BEFORE_TEST_SPLIT[3]


def test_test_split_exact_counts_contents_and_no_advert_in_two_splits(with_test, reference):
    out, info = with_test
    r = _load(out)
    m = r["manifest"]
    assert r["test"].shape == (3 * N_TEST, SIZE, SIZE, 3) and r["test"].dtype == np.uint8
    counts = m.groupby(["colour", "split"]).size().to_dict()
    assert counts == {(c, s): n for c in COLOURS for s, n in zip(SPLITS, (N_TRAIN, N_VAL, N_TEST))}
    assert m["name"].is_unique
    for split in SPLITS:
        _check_rows(r, split)
    adverts = {s: set(m.loc[m.split == s, "adv_id"]) for s in SPLITS}
    assert not adverts["train"] & adverts["val"] and not adverts["train"] & adverts["test"]
    assert not adverts["val"] & adverts["test"]
    assert info["advert_level_split"] is True
    assert info["n_test_per_colour"] == N_TEST and info["protocol"] == "test"
    assert info["images"] == 3 * (N_TRAIN + N_VAL + N_TEST)
    assert info["images_per_split"] == {"train": 3 * N_TRAIN, "val": 3 * N_VAL, "test": 3 * N_TEST}
    assert info["images_per_colour"] == {c: {"train": N_TRAIN, "val": N_VAL, "test": N_TEST} for c in COLOURS}
    assert info["adverts_per_split"] == {s: len(adverts[s]) for s in SPLITS}
    assert info["adverts"] == len(adverts["train"] | adverts["val"] | adverts["test"])
    assert info["cache_bytes"] == 3 * (N_TRAIN + N_VAL + N_TEST) * SIZE * SIZE * 3
    # the test adverts come from the other end of the shuffled list: val is the val of no test split
    ref = _load(reference[0])["manifest"]
    assert m.loc[m.split == "val", "name"].tolist() == ref.loc[ref.split == "val", "name"].tolist()
    loaded, before = load_prepared(out), load_prepared(reference[0])
    assert loaded["test_images"].shape[0] == len(loaded["test_labels"]) == 3 * N_TEST
    assert np.array_equal(loaded["test_labels"], r["test_labels"])
    assert loaded["fingerprint"] != before["fingerprint"]


def test_the_fingerprint_sees_the_test_pixels(with_test, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(with_test[0], out)
    first = load_prepared(out)["fingerprint"]
    images = np.load(out / "test_images.npy")
    images[0] = 255 - images[0]
    np.save(out / "test_images.npy", images)
    assert load_prepared(out)["fingerprint"] != first


def test_unreadable_files_are_counted_and_replaced(reference, data):
    out, info = reference
    r = _load(out)
    skipped = r["skipped"]
    assert len(skipped) > 0 and info["skipped"]["unreadable"] == len(skipped)
    assert set(skipped["name"]) <= set(BROKEN)
    assert not set(skipped["name"]) & set(r["manifest"]["name"])
    kinds = set(skipped["reason"].str.split(":").str[0])
    assert kinds == {"OSError", "UnidentifiedImageError"}  # truncated JPEG, not an image at all
    # every broken file among the first n of its pool was tried, counted and replaced by the next image
    listed, _ = dvm.list_images([data["resized_zip"], data["fronts_tree"]])
    plan = split_by_advert(listed, COLOURS, N_TRAIN, N_VAL, seed=0)
    first = plan[plan["rank"] < plan["split"].astype(object).map({"train": N_TRAIN, "val": N_VAL})]
    assert set(first.loc[first["name"].isin(BROKEN), "name"]) < set(skipped["name"])  # and broken replacements
    assert set(first["name"]) - set(BROKEN) <= set(r["manifest"]["name"])


def test_dataset_json_reports_what_the_report_needs(reference, data):
    out, info = reference
    r = _load(out)
    assert r["info"] == info
    for key in ("source", "synthetic", "image_size", "colours", "n_train_per_colour", "n_val_per_colour",
                "n_test_per_colour", "protocol", "images", "images_per_split", "adverts_per_split",
                "adverts", "advert_level_split", "skipped", "files_seen", "archives", "prepare_seconds",
                "decode_images_per_s", "decode_images_per_s_per_worker"):
        assert key in info, key
    assert info["source"] == "dvm" and info["synthetic"] is False
    assert info["colours"] == COLOURS and info["images"] == 3 * (N_TRAIN + N_VAL)
    assert info["images_per_colour"] == {c: {"train": N_TRAIN, "val": N_VAL, "test": 0} for c in COLOURS}
    non_colours = sum(p.colour in ("Unlisted", "Multicolour") for p in PHOTOS)
    assert info["skipped"] == {"unreadable": len(r["skipped"]), "duplicate_names": len(FRONTS),
                               "not_dvm_names": len(dvmfake.EXTRAS), "outside_viewpoints": 0,
                               "unlisted_or_multicolour": non_colours}
    assert info["files_seen"] == len(PHOTOS) + len(dvmfake.EXTRAS) + len(FRONTS)
    assert info["images_listed"] == len(PHOTOS)
    assert info["archives"] == [str(data["resized_zip"]), str(data["fronts_tree"])]
    assert info["archives_read"] == ["confirmed_fronts", "resized_DVM"]  # Confirmed_fronts/ counts too
    assert info["images_listed_per_archive"] == {"resized_DVM": len(PHOTOS)}  # the zip came first
    assert info["duplicates_per_archive"] == {"confirmed_fronts": len(FRONTS)}
    assert info["images_used_per_archive"] == {"resized_DVM": info["images"]}
    assert info["images_available_per_colour"]["Red"] == len(_red)
    assert "Unlisted" not in info["images_available_per_colour"]
    assert info["decode_images_per_s"] > 0 and info["decode_workers"] == 1
    assert info["cache_bytes"] == 3 * (N_TRAIN + N_VAL) * SIZE * SIZE * 3
    loaded = load_prepared(out)
    assert loaded["classes"] == COLOURS and loaded["train_images"].shape[0] == 3 * N_TRAIN


# --------------------------------------------------------------------------- determinism and sources


def test_same_seed_same_result_with_two_workers_and_other_copies(reference, data, tmp_path):
    ref = _load(reference[0])
    cols = ["split", "row", "label", "colour", "adv_id"]
    runs = {
        "two workers": ([data["resized_zip"], data["fronts_tree"]], 2),
        "unpacked tree": ([data["resized_tree"]], 1),
        "kaggle copy": ([data["kaggle"]], 2),
    }
    for label, (sources, workers) in runs.items():
        out = tmp_path / label.replace(" ", "_")
        prepare(sources, out, workers=workers, **ARGS)
        got = _load(out)
        pd.testing.assert_frame_equal(got["manifest"][cols], ref["manifest"][cols], obj=label)
        expected = ref["manifest"]["name"]
        if label == "kaggle copy":  # the same images, named without apostrophes
            expected = expected.str.replace("'", "")
        assert got["manifest"]["name"].tolist() == expected.tolist(), label
        assert np.array_equal(got["train"], ref["train"]) and np.array_equal(got["val"], ref["val"]), label
        assert got["info"]["skipped"]["unreadable"] == ref["info"]["skipped"]["unreadable"]
    kaggle = _load(tmp_path / "kaggle_copy")["info"]
    assert kaggle["archives_read"] == ["other"] and kaggle["skipped"]["duplicate_names"] == 0
    other = prepare([data["resized_zip"]], tmp_path / "seed1", workers=1, **(ARGS | {"seed": 1}))
    assert other["images"] == ref["info"]["images"]
    assert pd.read_csv(tmp_path / "seed1" / "manifest.csv")["name"].tolist() != ref["manifest"]["name"].tolist()


def test_split_by_advert_is_independent_of_listing_order(data):
    a, _ = dvm.list_images([data["resized_zip"]])
    b, _ = dvm.list_images([data["kaggle"]])
    pa = split_by_advert(a.iloc[::-1].reset_index(drop=True), COLOURS, N_TRAIN, N_VAL, seed=3)
    pb = split_by_advert(b, COLOURS, N_TRAIN, N_VAL, seed=3)
    assert pa["name"].str.replace("'", "").tolist() == pb["name"].tolist()
    assert pa[["split", "rank", "label"]].equals(pb[["split", "rank", "label"]])
    for colour in COLOURS:
        part = pa[pa["color"] == colour]
        assert not set(part.loc[part.split == "val", "adv_id"]) & set(part.loc[part.split == "train", "adv_id"])
        val = part[part.split == "val"]
        assert N_VAL <= len(val) <= N_VAL + N_VAL // 20 + 2 + 4  # whole adverts plus a small reserve


def test_split_by_advert_with_a_test_split(data):
    a, _ = dvm.list_images([data["resized_zip"]])
    b, _ = dvm.list_images([data["kaggle"]])
    pa = split_by_advert(a.iloc[::-1].reset_index(drop=True), COLOURS, N_TRAIN, N_VAL, seed=3, n_test=N_TEST)
    pb = split_by_advert(b, COLOURS, N_TRAIN, N_VAL, seed=3, n_test=N_TEST)
    assert pa["name"].str.replace("'", "").tolist() == pb["name"].tolist()
    assert pa[["split", "rank", "label"]].equals(pb[["split", "rank", "label"]])
    without = split_by_advert(a, COLOURS, N_TRAIN, N_VAL, seed=3)
    for colour in COLOURS:
        part = pa[pa["color"] == colour]
        adverts = {s: set(part.loc[part.split == s, "adv_id"]) for s in SPLITS}
        assert not adverts["train"] & adverts["val"] and not adverts["train"] & adverts["test"]
        assert not adverts["val"] & adverts["test"]
        test = part[part.split == "test"]
        assert N_TEST <= len(test) <= N_TEST + N_TEST // 20 + 2 + 4  # whole adverts plus a small reserve
        assert test["rank"].tolist() == list(range(len(test)))
        val, before = part[part.split == "val"], without[(without["color"] == colour) & (without.split == "val")]
        assert val[["name", "rank"]].reset_index(drop=True).equals(before[["name", "rank"]].reset_index(drop=True))


def _adverts(colour: str, n_adverts: int, photos: int) -> pd.DataFrame:
    """A listing of n_adverts adverts of `photos` photos each: whole adverts of one size."""
    rows = [{"color": colour, "adv_id": f"{colour}$${a}", "name": f"X$$Y$$2010$${colour}$$1_1$${a}$$image_{k}.jpg"}
            for a in range(n_adverts) for k in range(photos)]
    return pd.DataFrame(rows)


def test_a_test_split_that_does_not_fit_names_the_numbers_and_what_to_change(data, tmp_path):
    n_red = len(_red)
    too_many = n_red - N_TRAIN - N_VAL + 1
    with pytest.raises(DataError, match=rf"colour 'Red' has only {n_red} images but 20 train \+ 6 val \+ "
                                        rf"{too_many} test = {n_red + 1} are requested; lower n_train_per_colour / "
                                        rf"n_val_per_colour / n_test_per_colour or drop the colour\."):
        prepare([data["resized_zip"]], tmp_path,
                **(WITH_TEST | {"colours": ["Red", "Black"], "n_test_per_colour": too_many}))
    # 12 images in 3 adverts of 4: 3 val and 3 test take an advert each, leaving 4 for 5 train images
    listing = _adverts("Red", 3, 4)
    split_by_advert(listing, ["Red"], 4, 3, seed=0, n_test=3)
    with pytest.raises(DataError, match=r"colour 'Red': 12 images in 3 adverts cannot be split by advert into "
                                        r"3 val, 3 test, 5 train images; lower the counts\."):
        split_by_advert(listing, ["Red"], 5, 3, seed=0, n_test=3)


def test_an_advert_under_two_colours_stays_in_one_split():
    out = pd.DataFrame({"adv_id": ["s", "s", "s", "t", "t", "u"], "label": [1, 0, 2, 0, 1, 0],
                        "split": pd.Categorical(["test", "val", "train", "test", "train", "train"],
                                                categories=SPLITS)})
    kept = selection._one_split_per_advert(out)
    assert kept[["adv_id", "split"]].astype(str).values.tolist() == [["s", "val"], ["t", "test"], ["u", "train"]]
    kept["rank"] = 0
    with pytest.raises(DataError, match=r"colour 'Black': only 1 test images are left once adverts shared with "
                                        r"another colour's val split are removed; lower n_test_per_colour\."):
        selection._check_pools(kept.assign(label=[1, 0, 1]), ["Black", "White"], {"train": 0, "val": 0, "test": 2})


# --------------------------------------------------------------------------- colour choice and errors


def test_top_n_colours_never_unlisted_or_multicolour(data):
    frame, _ = dvm.list_images([data["resized_zip"]])
    assert frame["color"].value_counts().index[0] == "Unlisted"  # the most frequent "colour"
    top = choose_colours(frame, None, 3)
    assert top == ["Black", "Red", "White"] or top == ["Black", "White", "Red"]
    counts = frame["color"].astype(object).value_counts()
    assert counts[top[0]] >= counts[top[1]] >= counts[top[2]]
    assert choose_colours(frame, None, 4)[3] == "Beige"
    with pytest.raises(DataError, match="only 4 colours"):
        choose_colours(frame, None, 5)
    with pytest.raises(DataError, match="not a colour class"):
        choose_colours(frame, ["Black", "Unlisted"], None)
    with pytest.raises(DataError, match="'Purple' does not occur.*Black \\("):
        choose_colours(frame, ["Black", "Purple"], None)


def test_too_rare_colour_names_the_colour_and_its_count(data, tmp_path):
    n_beige = sum(p.colour == "Beige" for p in PHOTOS)
    with pytest.raises(DataError, match=f"colour 'Beige' has only {n_beige} images but 20 train \\+ 6 val"):
        prepare([data["resized_zip"]], tmp_path, **(ARGS | {"colours": ["Black", "Beige"]}))
    # too many unreadable files: the message says how many were readable
    with pytest.raises(DataError, match="colour 'Red'.*readable (train|val) images"):
        prepare([data["resized_zip"]], tmp_path / "b", workers=1,
                **(ARGS | {"colours": ["Red", "Black"], "n_train_per_colour": len(_red) - N_VAL - 7 - 1}))


# --------------------------------------------------------------------------- viewpoints


@pytest.mark.parametrize("table", ["image_table", "tables_zip"])
def test_viewpoint_filter(data, tmp_path, table):
    args = ARGS | {"n_train_per_colour": 8, "n_val_per_colour": 3}
    info = prepare([data["kaggle"]], tmp_path, image_table=str(data[table]), viewpoints=[0], workers=1, **args)
    m = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
    assert len(m) == 3 * 11
    assert all(BY_NAME[n].viewpoint in (0, 360) for n in m["name"])
    in_table = {p.kaggle_name for p in PHOTOS[:-3]}
    front = sum(p.viewpoint in (0, 360) for p in PHOTOS[:-3])
    assert all(n in in_table for n in m["name"])
    assert info["skipped"]["outside_viewpoints"] == len(PHOTOS) - front
    assert info["viewpoints"] == [0] and info["image_table"] == data[table].name
    with pytest.raises(DataError, match="needs 'data.image_table'"):
        prepare([data["kaggle"]], tmp_path / "x", viewpoints=[0], **args)


# --------------------------------------------------------------------------- resuming


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("fail_after", [2, 15, 16, 21])  # first pass, before and inside refills, val
def test_interrupted_preparation_resumes(reference, data, tmp_path, monkeypatch, fail_after):
    monkeypatch.setattr(decoding, "CHUNK", 4)
    monkeypatch.setattr(decoding, "CHECKPOINT_S", 0.0)
    real = decoding._decode_task
    calls = {"n": 0, "images": 0, "fail_after": fail_after}

    def flaky(task):
        calls["n"] += 1
        if calls["n"] > calls["fail_after"]:
            raise _Interrupt
        calls["images"] += len(task[2])
        return real(task)

    monkeypatch.setattr(decoding, "_decode_task", flaky)
    sources = [data["resized_zip"], data["fronts_tree"]]
    with pytest.raises(_Interrupt):
        prepare(sources, tmp_path, workers=1, **ARGS)
    assert (tmp_path / ".work" / "train_state.json").exists()
    assert not (tmp_path / "manifest.csv").exists()
    first = calls["images"]
    calls["fail_after"] = 10 ** 9
    calls["images"] = 0
    info = prepare(sources, tmp_path, workers=1, **ARGS)
    assert 0 < info["images_resumed"] < info["images"]
    assert calls["images"] < sum(_load(reference[0])["info"]["images_per_split"].values()) \
        + _load(reference[0])["info"]["skipped"]["unreadable"]
    assert calls["images"] + first >= info["images"]
    got, ref = _load(tmp_path), _load(reference[0])
    cols = ["split", "row", "label", "colour", "name", "adv_id", "member"]
    pd.testing.assert_frame_equal(got["manifest"][cols], ref["manifest"][cols])
    assert np.array_equal(got["train"], ref["train"]) and np.array_equal(got["val"], ref["val"])
    pd.testing.assert_frame_equal(got["skipped"], ref["skipped"])
    assert got["info"]["skipped"] == ref["info"]["skipped"]
    assert not (tmp_path / ".work").exists()


def test_interrupted_in_the_test_split_resumes(with_test, data, tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "CHUNK", 4)
    monkeypatch.setattr(decoding, "CHECKPOINT_S", 0.0)
    real, calls = decoding._decode_task, {"test": 0}

    def flaky(task):
        if task[0].endswith("test_images.npy"):
            calls["test"] += 1
            if calls["test"] > 2:
                raise _Interrupt
        return real(task)

    monkeypatch.setattr(decoding, "_decode_task", flaky)
    sources = [data["resized_zip"], data["fronts_tree"]]
    with pytest.raises(_Interrupt):
        prepare(sources, tmp_path, workers=1, **WITH_TEST)
    assert (tmp_path / ".work" / "test_state.json").exists()
    monkeypatch.setattr(decoding, "_decode_task", real)
    info = prepare(sources, tmp_path, workers=1, **WITH_TEST)
    assert 3 * (N_TRAIN + N_VAL) < info["images_resumed"] < info["images"]
    got, ref = _load(tmp_path), _load(with_test[0])
    pd.testing.assert_frame_equal(got["manifest"], ref["manifest"])
    for split in SPLITS:
        assert np.array_equal(got[split], ref[split]) and np.array_equal(got[f"{split}_labels"], ref[f"{split}_labels"])
    pd.testing.assert_frame_equal(got["skipped"], ref["skipped"])


def test_changed_settings_start_afresh(data, tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "CHUNK", 4)
    real, calls = decoding._decode_task, {"n": 0}

    def flaky(task):
        calls["n"] += 1
        if calls["n"] > 3:
            raise _Interrupt
        return real(task)

    monkeypatch.setattr(decoding, "_decode_task", flaky)
    with pytest.raises(_Interrupt):
        prepare([data["resized_zip"]], tmp_path, workers=1, **ARGS)
    monkeypatch.setattr(decoding, "_decode_task", real)
    info = prepare([data["resized_zip"]], tmp_path, workers=1, **(ARGS | {"seed": 5}))
    assert info["images_resumed"] == 0


# --------------------------------------------------------------------------- decoding


def _jpeg(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    buf.seek(0)
    return Image.open(buf)


def test_decode_fits_on_white_and_uses_the_draft():
    img = Image.new("RGB", (300, 150), (200, 30, 30))
    out = decoding.decode(_jpeg(img), 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:8] > 245).all() and (out[-8:] > 245).all()  # white bars above and below
    assert np.abs(out[32, 32].astype(int) - (200, 30, 30)).max() < 8
    square = _jpeg(Image.new("RGB", (300, 300), (20, 120, 220)))
    assert decoding.decode(square, 224).shape == (224, 224, 3)
    with pytest.raises(OSError):
        decoding.decode(Image.open(io.BytesIO(dvmfake.truncated())), 32)


def _die(task):
    """A decoding worker that crashes (as a decoder bug or the out-of-memory killer would)."""
    import os

    os._exit(3)


def test_a_dead_worker_fails_the_run_instead_of_hanging_it(data, tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    monkeypatch.setattr(decoding, "_decode_task", _die)  # the forked workers inherit it
    with pytest.raises(BrokenProcessPool):
        prepare([data["resized_zip"]], tmp_path, workers=2, **ARGS)
    monkeypatch.undo()
    info = prepare([data["resized_zip"]], tmp_path, workers=2, **ARGS)
    assert info["images"] == 3 * (N_TRAIN + N_VAL)


def test_a_full_disk_fails_the_run_instead_of_skipping_images(data, tmp_path, monkeypatch):
    import errno
    import os

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match="No space left"):
        prepare([data["resized_zip"]], tmp_path, workers=1, **ARGS)


def test_too_little_disk_space_is_said_before_decoding(data, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match="the cache needs 0.0 GB but only 0.0 GB are free"):
        prepare([data["resized_zip"]], tmp_path, workers=1, **ARGS)
