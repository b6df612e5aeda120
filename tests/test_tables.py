"""Tidy tables: per-cell summaries, per-class scores, confusion counts, dataset counts, comparisons."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from carcolor.analysis import claims, tables

KEYS = {"cell": "m-adam-s0", "arch": "m", "optimizer": "adam", "seed": 0}
CONFIG = {"pretrained": False, "hflip": True, "crop_padding": 4, "label_smoothing": 0.0, "weight_decay": 0.0}


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
    info = {**KEYS, "params": 10, "macs": 20, "image_size": 32, "batch_size": 10, "lr": 0.1, "train_images": 105,
            "test_images": 0, "device": "cpu (2 threads)", "selected_epoch": 2, "score_split": "val",
            "warm_up_s": 0.5, "config": CONFIG}
    row = tables.summarise(_metrics([0.2, 0.6, 0.5]), info)
    assert row["best_val_f1_macro"] == 0.6 and row["best_epoch"] == 2
    assert row["final_val_f1_macro"] == 0.5 and row["final_val_loss"] == pytest.approx(2 / 3)
    assert row["train_seconds"] == pytest.approx(36.0) and row["mean_epoch_seconds"] == pytest.approx(12.0)
    assert row["images_per_s"] == pytest.approx(100 * 3 / 30)  # full batches only (drop_last)
    assert row["optimizer_s"] == 3
    assert set(row) == set(tables.SUMMARY_COLUMNS)


def _hand_made(val_f1=(0.2, 0.6, 0.6, 0.5), val_loss=(1.0, 0.8, 0.9, 0.6), keys=KEYS, test=True):
    """Four epochs with train seconds 10, 12, 14, 16 and optimizer_s 1, 2, 3, 4; test rows optional."""
    rows = []
    for epoch, (f1, loss) in enumerate(zip(val_f1, val_loss), start=1):
        common = {**keys, "epoch": epoch, "images_per_s": 1.0}
        rows.append({**common, "split": "train", "loss": 2.0 / epoch, "f1_macro": f1 / 2, "accuracy": f1 / 2,
                     "seconds": 8.0 + 2 * epoch, "data_s": 1.0, "forward_backward_s": 5.0 + epoch,
                     "optimizer_s": float(epoch)})
        held_out = {"data_s": np.nan, "forward_backward_s": np.nan, "optimizer_s": np.nan}
        rows.append({**common, "split": "val", "loss": loss, "f1_macro": f1, "accuracy": f1 + 0.01, "seconds": 2.0,
                     **held_out})
        if test:
            rows.append({**common, "split": "test", "loss": 10.0 + epoch, "f1_macro": 0.1 * epoch,
                         "accuracy": 0.1 * epoch + 0.05, "seconds": 3.0, **held_out})
    return pd.DataFrame(rows)


# summary.json as training writes it; epochs 2 and 3 tie on val: training chose the earliest
INFO = {**KEYS, "params": 10, "macs": 20, "image_size": 32, "batch_size": 10, "lr": 0.1, "train_images": 105,
        "device": "cpu (2 threads)", "test_images": 24, "selected_epoch": 2, "score_split": "test", "warm_up_s": 0.5,
        "config": CONFIG}


def test_summary_scores_the_test_split_at_the_epoch_chosen_on_val():
    row = tables.summarise(_hand_made(), INFO)
    assert row["best_epoch"] == 2 and row["best_val_f1_macro"] == 0.6  # epochs 2 and 3 tie: the earliest
    assert row["score_split"] == "test"
    assert (row["score_f1_macro"], row["score_accuracy"], row["score_loss"]) == pytest.approx((0.2, 0.25, 12.0))
    assert row["test_images"] == 24
    assert row["train_epoch_seconds"] == pytest.approx((10 + 12 + 14 + 16) / 4)
    assert row["optimizer_step_ms"] == pytest.approx((1 + 2 + 3 + 4) / (105 // 10 * 4) * 1000)  # 250 ms
    # val-loss changes ending in epochs 3 and 4: +0.1 and -0.3, population sd 0.2
    assert row["val_loss_change_sd"] == pytest.approx(0.2)
    # the lab's times: training plus the val pass, not the extra test pass
    assert row["train_seconds"] == pytest.approx(52 + 4 * 2.0) and row["mean_epoch_seconds"] == pytest.approx(15.0)
    assert row["final_val_f1_macro"] == 0.5 and row["final_val_loss"] == 0.6
    assert set(row) == set(tables.SUMMARY_COLUMNS)


def test_summary_without_a_test_split_scores_val():
    row = tables.summarise(_hand_made(test=False), {**INFO, "test_images": 0, "score_split": "val"})
    assert row["score_split"] == "val" and row["best_epoch"] == 2
    assert (row["score_f1_macro"], row["score_accuracy"], row["score_loss"]) == pytest.approx((0.6, 0.61, 0.8))
    assert row["score_f1_macro"] == row["best_val_f1_macro"] and row["test_images"] == 0


def test_optimizer_step_time_is_unknown_without_the_timing_breakdown():
    metrics = _hand_made()
    metrics["optimizer_s"] = np.nan
    row = tables.summarise(metrics, INFO)
    assert math.isnan(row["optimizer_step_ms"]) and row["train_epoch_seconds"] == pytest.approx(13.0)


def test_per_class_and_confusion_are_complete():
    preds = pd.DataFrame({"split": "test", "label": [0, 0, 1, 2, 2, 2], "pred": [0, 1, 1, 2, 2, 0]})
    scores, confusion = tables.per_class(preds, ["Red", "Blue", "Grey"], INFO)
    assert (scores["split"] == "test").all() and (confusion["split"] == "test").all()
    assert list(scores.columns[:6]) == tables.KEYS + ["split", "colour"]
    assert list(scores["colour"]) == ["Red", "Blue", "Grey"]
    assert scores.set_index("colour").loc["Grey", "recall"] == pytest.approx(2 / 3)
    assert len(confusion) == 9 and confusion["count"].sum() == 6
    assert confusion.set_index(["true", "predicted"]).loc[("Grey", "Red"), "count"] == 1


def test_dataset_table_counts_images_and_adverts_in_class_order():
    manifest = pd.DataFrame({"split": ["test", "train", "train", "val", "train", "val"], "label": [1, 1, 1, 1, 0, 0],
                             "colour": ["Red", "Red", "Red", "Red", "Blue", "Blue"], "name": list("fabcde"),
                             "adv_id": ["5", "1", "1", "2", "3", "4"]})
    table = tables.dataset_table(manifest)
    assert table.to_dict("records") == [
        {"colour": "Blue", "split": "train", "images": 1, "adverts": 1},
        {"colour": "Blue", "split": "val", "images": 1, "adverts": 1},
        {"colour": "Red", "split": "train", "images": 2, "adverts": 1},
        {"colour": "Red", "split": "val", "images": 1, "adverts": 1},
        {"colour": "Red", "split": "test", "images": 1, "adverts": 1}]


def _write_run(run_dir, keys, metrics, labels):
    run_dir.mkdir(parents=True)
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    (run_dir / "summary.json").write_text(json.dumps({**INFO, **keys}))
    preds = pd.DataFrame({"split": "test", "epoch": 2, "row": range(len(labels)), "label": labels,
                          "pred": labels[::-1]})
    preds.to_csv(run_dir / "predictions.csv", index=False)
    (run_dir / "provenance.json").write_text(json.dumps({
        "cell": keys["cell"], "started": "2026-01-01T10:00:00+00:00", "ended": "2026-01-01T10:01:00+00:00",
        "host": "node-7", "cpu": {"model": "Some CPU", "cores": 8, "usable": 2},
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.1, "driver": "550.54.15"}, "python": "3.11.2",
        "platform": "Linux-6.1-x86_64", "inductor_cache": "/work/data/cache/inductor",
        "torch": "2.14.1", "cuda": "13.0", "cudnn": 92400, "git_commit": "ab" * 20, "git_tracked_changes": False,
        "locked": {"lock": "requirements.lock", "matches": False,
                   "differences": [{"package": "numpy", "locked": "2.4.6", "installed": "2.4.5"}]},
        "rerun": f"make cell CELL={keys['cell']}"}))


def test_collect_writes_every_table_and_one_seed_decides_nothing(tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    info = {"colours": ["Red", "Blue"], "n_val_per_colour": 1, "n_test_per_colour": 1, "protocol": "test",
            "decode_images_per_s": 1.0}
    (prepared / "dataset.json").write_text(json.dumps(info))
    pd.DataFrame({"split": ["train", "val", "test", "train", "val", "test"], "label": [0, 0, 0, 1, 1, 1],
                  "colour": ["Red"] * 3 + ["Blue"] * 3, "name": list("abcdef"),
                  "adv_id": list("123456")}).to_csv(prepared / "manifest.csv", index=False)
    runs = []
    for arch in ("mobilenet_v2", "mobilenet_v1"):
        for opt in ("adam", "adamax"):
            keys = {"cell": f"{arch}-{opt}-s0", "arch": arch, "optimizer": opt, "seed": 0}
            runs.append(tmp_path / "runs" / keys["cell"])
            _write_run(runs[-1], keys, _hand_made(keys=keys), np.array([0, 0, 1, 1]))
    paths = tables.collect(runs, prepared, tmp_path / "tables")
    assert set(paths) == {"epochs", "summary", "per_class", "confusion", "dataset", "dataset_json", "comparisons",
                          "provenance"}
    prov = pd.read_csv(paths["provenance"])
    assert list(prov.columns) == tables.PROVENANCE_COLUMNS and list(prov["cell"]) == [r.name for r in runs]
    first = prov.iloc[0]
    assert (first["cpu_model"], first["cpu_usable"], first["gpu_name"], first["gpu_driver"]) == (
        "Some CPU", 2, "NVIDIA H100 80GB HBM3", "550.54.15")
    assert not first["locked"] and first["lock_differences"] == "numpy 2.4.5 (locked 2.4.6)"
    compared = pd.read_csv(paths["comparisons"])
    assert list(compared.columns) == claims.COLUMNS
    assert len(compared) == 14 and set(compared["verdict"]) == {"inconclusive"}  # one seed decides nothing
    assert set(compared["n_seeds"]) == {1} and compared["low"].isna().all()
    summary = pd.read_csv(paths["summary"])
    assert list(summary.columns) == tables.SUMMARY_COLUMNS and set(summary["score_split"]) == {"test"}
    epochs = pd.read_csv(paths["epochs"])
    assert (epochs["split"] == "test").sum() == 4 * 4
    for name in ("per_class", "confusion"):
        assert set(pd.read_csv(paths[name])["split"]) == {"test"}
    assert set(pd.read_csv(paths["dataset"])["split"]) == {"train", "val", "test"}
    meta = json.loads(paths["dataset_json"].read_text())
    assert meta["n_test_per_colour"] == 1 and meta["protocol"] == "test" and "decode_images_per_s" not in meta


def test_collect_names_a_missing_run(tmp_path):
    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "dataset.json").write_text(json.dumps({"colours": ["Red"], "protocol": "test"}))
    with pytest.raises(FileNotFoundError, match="forcerun"):
        tables.collect([tmp_path / "runs" / "x"], tmp_path / "prepared", tmp_path / "tables")


def test_the_chosen_epoch_and_the_score_split_are_the_ones_training_recorded():
    """No rule of its own: the summary row follows summary.json's selected_epoch and score_split."""
    assert set(INFO) == set(tables.RUN_NEEDS)  # summarise reads nothing else of summary.json
    row = tables.summarise(_hand_made(), {**INFO, "selected_epoch": 3})
    assert row["best_epoch"] == 3 and row["best_val_f1_macro"] == 0.6
    assert (row["score_f1_macro"], row["score_loss"]) == pytest.approx((0.3, 13.0))  # test at epoch 3
    row = tables.summarise(_hand_made(), {**INFO, "score_split": "val"})
    assert row["score_split"] == "val" and row["score_f1_macro"] == row["best_val_f1_macro"]


def test_an_older_results_folder_is_named_with_the_command_that_remakes_it(tmp_path, capsys):
    from carcolor import command

    prepared, run = tmp_path / "prepared", tmp_path / "runs" / KEYS["cell"]
    prepared.mkdir()
    (prepared / "dataset.json").write_text(json.dumps({"colours": ["Red", "Blue"], "protocol": "test"}))
    _write_run(run, KEYS, _hand_made(), np.array([0, 1]))
    old = {k: v for k, v in INFO.items() if k not in ("selected_epoch", "score_split")}
    (run / "summary.json").write_text(json.dumps(old))
    args = ["--runs", str(run), "--prepared", str(prepared), "--out", str(tmp_path / "tables")]
    assert command.main("carcolor.analysis.tables", args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(run / "summary.json") in err and "selected_epoch, score_split" in err
    assert f"snakemake --cores all --forcerun {run / 'train.ipynb'}" in err
    (prepared / "dataset.json").write_text(json.dumps({"colours": ["Red", "Blue"]}))
    assert command.main("carcolor.analysis.tables", args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset.json lacks protocol" in err and "--forcerun prepare_dataset" in err
