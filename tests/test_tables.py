"""Tidy tables: per-cell summaries, per-class scores, confusion counts, dataset counts."""
import json

import numpy as np
import pandas as pd
import pytest

from carcolor import tables

KEYS = {"cell": "m-adam-s0", "arch": "m", "optimizer": "adam", "seed": 0}


def _metrics(val_f1, seconds=(10.0, 12.0)):
    rows = []
    for epoch, f1 in enumerate(val_f1, start=1):
        rows.append({**KEYS, "epoch": epoch, "split": "train", "loss": 1.0 / epoch, "f1_macro": f1, "accuracy": f1,
                     "seconds": seconds[0], "images_per_s": 0, "data_s": 1, "forward_backward_s": 8,
                     "optimizer_s": 1})
        rows.append({**KEYS, "epoch": epoch, "split": "val", "loss": 2.0 / epoch, "f1_macro": f1, "accuracy": f1,
                     "seconds": seconds[1] - seconds[0], "images_per_s": 0, "data_s": np.nan,
                     "forward_backward_s": np.nan, "optimizer_s": np.nan})
    return pd.DataFrame(rows)


def test_summary_picks_best_and_final_epoch():
    info = {**KEYS, "params": 10, "macs": 20, "image_size": 32, "batch_size": 10, "lr": 0.1,
            "train_images": 105, "device": "cpu (2 threads)"}
    row = tables.summarise(_metrics([0.2, 0.6, 0.5]), info)
    assert row["best_val_f1_macro"] == 0.6 and row["best_epoch"] == 2
    assert row["final_val_f1_macro"] == 0.5 and row["final_val_loss"] == pytest.approx(2 / 3)
    assert row["train_seconds"] == pytest.approx(36.0) and row["mean_epoch_seconds"] == pytest.approx(12.0)
    assert row["images_per_s"] == pytest.approx(100 * 3 / 30)  # full batches only (drop_last)
    assert row["optimizer_s"] == 3
    assert set(row) == set(tables.SUMMARY_COLUMNS)


def test_per_class_and_confusion_are_complete():
    preds = pd.DataFrame({"label": [0, 0, 1, 2, 2, 2], "pred": [0, 1, 1, 2, 2, 0]})
    scores, confusion = tables.per_class(preds, ["Red", "Blue", "Grey"], KEYS)
    assert list(scores["colour"]) == ["Red", "Blue", "Grey"]
    assert scores.set_index("colour").loc["Grey", "recall"] == pytest.approx(2 / 3)
    assert len(confusion) == 9 and confusion["count"].sum() == 6
    assert confusion.set_index(["true", "predicted"]).loc[("Grey", "Red"), "count"] == 1


def test_dataset_table_counts_images_and_adverts_in_class_order():
    manifest = pd.DataFrame({"split": ["train", "train", "val", "train", "val"], "label": [1, 1, 1, 0, 0],
                             "colour": ["Red", "Red", "Red", "Blue", "Blue"], "name": list("abcde"),
                             "adv_id": ["1", "1", "2", "3", "4"]})
    table = tables.dataset_table(manifest)
    assert table.to_dict("records") == [
        {"colour": "Blue", "split": "train", "images": 1, "adverts": 1},
        {"colour": "Blue", "split": "val", "images": 1, "adverts": 1},
        {"colour": "Red", "split": "train", "images": 2, "adverts": 1},
        {"colour": "Red", "split": "val", "images": 1, "adverts": 1}]


def test_collect_names_a_missing_run(tmp_path):
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "dataset.json").write_text(json.dumps({"colours": ["Red"]}))
    with pytest.raises(FileNotFoundError, match="forcerun"):
        tables.collect([tmp_path / "runs" / "x"], tmp_path / "prepared", tmp_path / "tables")
