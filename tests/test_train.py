"""Training one cell (carcolor.training.train) on a tiny random cache: outputs, determinism, resume, errors, and
the protocol: epoch chosen on val, an optional test split scored at that epoch and nowhere else."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn.metrics import f1_score

from carcolor import defaults
from carcolor.analysis import tables
from carcolor.training import loop, runtime, train
from tests import training

METRIC_COLUMNS = ["loss", "f1_macro", "accuracy"]


@pytest.fixture(scope="module")
def data():
    return training.cache()


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One uninterrupted 2-epoch run."""
    out = tmp_path_factory.mktemp("reference")
    summary = train.run(training.config(), data, out, log=lambda *a: None)
    return out, summary, pd.read_csv(out / "metrics.csv")


@pytest.fixture(scope="module")
def with_test(tmp_path_factory):
    """The reference run's data plus a test split of 6 images per class, one uninterrupted run."""
    data = training.cache(n_test_per_class=6)
    out = tmp_path_factory.mktemp("with_test")
    summary = train.run(training.config(), data, out, log=lambda *a: None)
    return data, out, summary, pd.read_csv(out / "metrics.csv")


def _quiet(*_):
    pass


def _chosen_epoch(metrics: pd.DataFrame) -> int:
    """The best val macro-F1's epoch, the earliest on ties."""
    val = metrics[metrics["split"] == "val"].sort_values("epoch")
    return int(val.loc[val["f1_macro"] == val["f1_macro"].max(), "epoch"].iloc[0])


def _check_predictions(preds: pd.DataFrame, metrics: pd.DataFrame, labels: np.ndarray, split: str) -> None:
    """predictions.csv holds `split`'s predictions made at the chosen epoch: its scores are that row's."""
    epoch = _chosen_epoch(metrics)
    assert (preds["split"] == split).all() and (preds["epoch"] == epoch).all()
    assert np.array_equal(preds["label"], labels) and preds["row"].tolist() == list(range(len(labels)))
    row = metrics[(metrics["split"] == split) & (metrics["epoch"] == epoch)].iloc[0]
    assert (preds["pred"] == preds["label"]).mean() == pytest.approx(row["accuracy"], abs=1e-12)
    f1 = f1_score(preds["label"], preds["pred"], average="macro", labels=list(range(len(training.CLASSES))),
                  zero_division=0)
    assert f1 == pytest.approx(row["f1_macro"], abs=1e-12)


def test_outputs_have_the_expected_columns(reference, data):
    out, summary, metrics = reference
    assert set(tables.EPOCH_COLUMNS) <= set(metrics.columns)
    assert list(metrics[["epoch", "split"]].itertuples(index=False, name=None)) == [
        (1, "train"), (1, "val"), (2, "train"), (2, "val")]
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds.columns) == ["split", "epoch", "row", "label", "pred", "true_colour", "pred_colour",
                                   "confidence"]
    assert len(preds) == len(data["val_labels"]) and preds["confidence"].between(0, 1).all()
    _check_predictions(preds, metrics, data["val_labels"], "val")  # no test split: val is scored
    saved = json.loads((out / "summary.json").read_text())
    assert saved["score_split"] == "val" and saved["test_images"] == 0
    assert saved["selected_epoch"] == _chosen_epoch(metrics)
    for key in ("cell", "arch", "optimizer", "seed", "epochs", "params", "macs", "image_size", "batch_size", "lr",
                "train_images", "val_images", "test_images", "score_split", "selected_epoch",
                "device", "amp", "compile", "channels_last", "data_on_device",
                "threads", "optimizer_impl", "timing_breakdown", "deterministic", "input_dtype", "eval_batch_size",
                "keep_freed_memory",
                "config"):
        assert key in saved, key
    assert saved["optimizer_impl"] == "foreach" and saved["channels_last"] is True
    assert saved["compile"] is False and saved["amp"] == "None" and saved["data_on_device"] is False
    assert json.loads((out / "provenance.json").read_text())["packages"]["torch"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["complete"] is True
    row = tables.summarise(metrics, saved)  # what collect makes of it
    assert set(tables.SUMMARY_COLUMNS) <= set(row)


def test_a_test_split_is_scored_at_the_epoch_chosen_on_val(with_test):
    data, out, summary, metrics = with_test
    assert list(metrics[["epoch", "split"]].itertuples(index=False, name=None)) == [
        (1, "train"), (1, "val"), (1, "test"), (2, "train"), (2, "val"), (2, "test")]
    test, val = metrics[metrics["split"] == "test"], metrics[metrics["split"] == "val"]
    assert test[list(loop.PHASES)].isna().all().all() and test[METRIC_COLUMNS].notna().all().all()
    assert (test["seconds"] > 0).all() and (test["images_per_s"] > 0).all()
    assert not np.array_equal(test["loss"].to_numpy(), val["loss"].to_numpy())  # other images, other loss
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == len(data["test_labels"]) == 24
    _check_predictions(preds, metrics, data["test_labels"], "test")
    assert summary["score_split"] == "test" and summary["test_images"] == 24
    assert summary["selected_epoch"] == _chosen_epoch(metrics)
    assert json.loads((out / "summary.json").read_text())["selected_epoch"] == summary["selected_epoch"]


def test_a_test_split_changes_no_training_number(with_test, reference):
    """Train and val rows are bit-identical with and without a test split on the same data."""
    _, _, _, metrics = with_test
    _, _, without = reference
    kept = metrics[metrics["split"] != "test"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[["epoch", "split"] + METRIC_COLUMNS],
                                  without[["epoch", "split"] + METRIC_COLUMNS], check_exact=True)


def test_the_epoch_is_chosen_on_val_only_earliest_on_ties():
    chosen = train.no_selection()
    history = [(0.5, 0.9), (0.7, 0.1), (0.7, 0.95), (0.6, 0.99)]  # (val F1, test F1) per epoch
    for epoch, (val_f1, test_f1) in enumerate(history, start=1):
        pred = np.full(3, epoch)
        chosen = train.select(chosen, epoch, {"f1_macro": val_f1, "test_f1": test_f1}, pred, pred / 10)
    assert chosen["epoch"] == 2 and chosen["val_f1_macro"] == 0.7
    assert chosen["pred"].tolist() == [2, 2, 2] and chosen["prob"].tolist() == [0.2, 0.2, 0.2]


def test_the_score_split_is_the_one_preparation_recorded(tmp_path):
    """Training has no split rule of its own: it scores the split dataset.json's protocol names. Here
    the data hold test images but the protocol says val: no test rows, val predictions."""
    data = training.cache(n_test_per_class=2)
    data["info"] = {**data["info"], "protocol": "val"}
    summary = train.run(training.config(epochs=1), data, tmp_path, log=_quiet)
    metrics, preds = pd.read_csv(tmp_path / "metrics.csv"), pd.read_csv(tmp_path / "predictions.csv")
    assert summary["score_split"] == "val" and set(metrics["split"]) == {"train", "val"}
    assert set(preds["split"]) == {"val"} and len(preds) == len(data["val_labels"])


def test_resume_with_a_test_split_gives_the_uninterrupted_result(with_test, tmp_path, monkeypatch):
    data, out, _, uninterrupted = with_test
    _stop_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train.run(training.config(), data, tmp_path, log=_quiet)
    monkeypatch.undo()
    calls = _count_epochs(monkeypatch)
    train.run(training.config(), data, tmp_path, log=_quiet)
    assert len(calls) == 1
    columns = ["epoch", "split"] + METRIC_COLUMNS
    pd.testing.assert_frame_equal(uninterrupted[columns], pd.read_csv(tmp_path / "metrics.csv")[columns],
                                  check_exact=True)
    # the predictions of the chosen epoch come back from the checkpoint, even if it was epoch 1
    assert (tmp_path / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()
    for name in ("metrics.csv", "predictions.csv", "summary.json"):  # Snakemake deletes them before a re-run
        (tmp_path / name).unlink()
    train.run(training.config(), data, tmp_path, log=_quiet)
    assert len(calls) == 1  # the complete checkpoint is not trained again
    assert (tmp_path / "predictions.csv").read_bytes() == (out / "predictions.csv").read_bytes()


def test_timing_breakdown_adds_up(reference):
    _, _, metrics = reference
    tr = metrics[metrics["split"] == "train"]
    parts = tr[list(loop.PHASES)].sum(axis=1)
    assert (tr[list(loop.PHASES)] >= 0).all().all()
    assert np.allclose(parts, tr["seconds"], rtol=0.05, atol=0.02), (parts.tolist(), tr["seconds"].tolist())
    assert metrics.loc[metrics["split"] == "val", list(loop.PHASES)].isna().all().all()
    assert (metrics["seconds"] > 0).all() and (metrics["images_per_s"] > 0).all()


def test_same_seed_same_metrics(reference, data, tmp_path):
    _, _, first = reference
    train.run(training.config(), data, tmp_path, log=_quiet)
    again = pd.read_csv(tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(first[METRIC_COLUMNS], again[METRIC_COLUMNS])


def test_resume_after_an_interruption_gives_the_uninterrupted_result(reference, data, tmp_path, monkeypatch):
    _, _, uninterrupted = reference
    _stop_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train.run(training.config(), data, tmp_path, log=_quiet)
    assert not (tmp_path / "metrics.csv").exists()
    monkeypatch.undo()

    epochs, logged = [], []
    one_epoch = train.train_one_epoch
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: epochs.append(1) or one_epoch(*a, **k))
    train.run(training.config(), data, tmp_path, log=logged.append)
    assert len(epochs) == 1  # epoch 2 only
    assert "resuming after epoch 1" in logged[0]
    resumed = pd.read_csv(tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(uninterrupted[["epoch", "split"] + METRIC_COLUMNS],
                                  resumed[["epoch", "split"] + METRIC_COLUMNS])


def _stop_after_epoch(monkeypatch, epoch: int) -> None:
    """The next run stops (as a kill would) right after writing the checkpoint of `epoch`."""
    save = train.atomic.save_torch

    def save_then_stop(obj, path):
        save(obj, path)
        if obj["epoch"] == epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch}")

    monkeypatch.setattr(train.atomic, "save_torch", save_then_stop)


def _count_epochs(monkeypatch) -> list:
    calls = []
    one_epoch = train.train_one_epoch
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: calls.append(1) or one_epoch(*a, **k))
    return calls


def test_a_finished_run_whose_notebook_died_is_not_trained_again(data, tmp_path, monkeypatch):
    train.run(training.config(), data, tmp_path, log=_quiet)
    first = pd.read_csv(tmp_path / "metrics.csv")
    for name in ("metrics.csv", "predictions.csv", "summary.json"):  # Snakemake deletes them before a re-run
        (tmp_path / name).unlink()
    calls, logged = _count_epochs(monkeypatch), []
    train.run(training.config(), data, tmp_path, log=logged.append)
    assert calls == [] and "all 2 epochs were trained already" in logged[0]
    again = pd.read_csv(tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(first, again)  # timings included: they come from the checkpoint
    assert (tmp_path / "predictions.csv").exists() and (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("change, differs", [({"lr": 0.001}, "settings"), ({"threads": 1}, "threads 2 -> 1")])
def test_a_checkpoint_of_another_run_is_not_resumed_and_says_why(data, tmp_path, monkeypatch, change, differs):
    _stop_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train.run(training.config(threads=2), data, tmp_path, log=_quiet)
    monkeypatch.undo()
    calls, logged = _count_epochs(monkeypatch), []
    train.run(training.config(**{"threads": 2, **change}), data, tmp_path, log=logged.append)
    assert len(calls) == 2 and not any("resuming" in line for line in logged)
    assert "belongs to another run" in logged[0] and differs in logged[0], logged


def test_other_data_or_code_is_not_resumed(data, tmp_path, monkeypatch):
    _stop_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train.run(training.config(), {**data, "fingerprint": "aaaa"}, tmp_path, log=_quiet)
    monkeypatch.undo()
    logged = []
    train.run(training.config(), {**data, "fingerprint": "bbbb"}, tmp_path, log=logged.append)
    assert "differs in: data" in logged[0]
    _stop_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train.run(training.config(), data, tmp_path / "code", log=_quiet)
    monkeypatch.undo()
    monkeypatch.setattr(train, "code_version", lambda: "edited")
    logged = []
    train.run(training.config(), data, tmp_path / "code", log=logged.append)
    assert "differs in: code" in logged[0]


@pytest.mark.parametrize("optimizer, lr", [("adam", 1e6), ("sgd", 1e4)])
def test_an_exploding_loss_stops_the_cell_whatever_the_optimizer(data, tmp_path, optimizer, lr):
    with pytest.raises(train.TrainingDiverged) as err:
        train.run(training.config(optimizer=optimizer, lr=lr, epochs=3), data, tmp_path, log=_quiet)
    msg = str(err.value)
    assert "diverged" in msg and "train.lr" in msg and "\n" not in msg
    assert not (tmp_path / "metrics.csv").exists()


def test_check_loss_rule():
    cfg = training.config()
    first = [{"split": "train", "epoch": 1, "loss": 1.5}]
    train.check_loss(1.3, 1, [], 4, cfg)  # near ln(4) = 1.39: fine
    train.check_loss(13.0, 2, first, 4, cfg)  # under 10 x 1.5
    with pytest.raises(train.TrainingDiverged, match="epoch 1"):
        train.check_loss(14.0, 1, [], 4, cfg)  # over 10 x ln(4)
    with pytest.raises(train.TrainingDiverged, match="epoch 3"):
        train.check_loss(16.0, 3, first, 4, cfg)
    with pytest.raises(train.TrainingDiverged, match="inf"):
        train.check_loss(math.inf, 2, first, 4, cfg)


def test_two_processes_never_train_one_cell(data, tmp_path):
    import subprocess
    import sys
    import time

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom carcolor import runlock\n"
                               "runlock.hold(sys.argv[1], 'x'); print('held', flush=True); time.sleep(60)",
                               str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(train.runlock.Locked, match="in use by another live process"):
            train.run(training.config(), data, tmp_path, log=_quiet)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    train.run(training.config(epochs=1), data, tmp_path, log=_quiet)  # the holder is dead: the lock is free


def _poison_loss_from_step(monkeypatch, first_bad_step: int) -> None:
    """The training criterion returns NaN from its `first_bad_step`-th call on (4 steps per epoch)."""
    calls = []

    class Poisoned(torch.nn.CrossEntropyLoss):
        def forward(self, logits, target):
            calls.append(1)
            loss = super().forward(logits, target)
            return loss * math.nan if len(calls) >= first_bad_step else loss

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", Poisoned)


@pytest.mark.parametrize("first_bad_step, epoch", [(1, 1), (6, 2)])
def test_nan_loss_raises_naming_the_epoch(data, tmp_path, monkeypatch, first_bad_step, epoch):
    _poison_loss_from_step(monkeypatch, first_bad_step)
    with pytest.raises(train.TrainingDiverged, match=rf"in epoch {epoch}\b") as err:
        train.run(training.config(epochs=3), data, tmp_path, log=_quiet)
    assert "mobilenet_v1-adam-s0" in str(err.value) and "train.lr" in str(err.value)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False) if epoch > 1 else None
    assert not (tmp_path / "metrics.csv").exists()
    if ckpt is not None:  # the last good epoch is kept, unfinished
        assert ckpt["epoch"] == epoch - 1 and not ckpt["complete"]


def test_unknown_and_missing_training_settings_are_named():
    settings = {**defaults.defaults()["train"], "warmup_epochs": 2, "mixup": 0.2}
    del settings["epochs"]
    with pytest.raises(ValueError) as err:
        train.TrainConfig.for_cell(arch="mobilenet_v1", optimizer="adam", seed=0, settings=settings)
    assert "unknown mixup, warmup_epochs, missing epochs" in str(err.value)


def test_on_cuda_the_data_are_placed_again_with_the_measured_step(monkeypatch):
    """After the warm-up, data_on_device 'auto' is decided again with the training step's measured memory
    (no GPU needed: the device's free memory is given)."""
    gb = 10**9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (int(39.5 * gb), 80 * gb))
    rt = runtime.Runtime(torch.device("cuda"), torch.bfloat16, True, True, True)
    logged = []
    placed = train._place_data(rt, training.config(), int(18.2 * gb), 20 * gb, logged.append)
    assert placed.data_on_device is False and "on the device: False" in logged[0]
    assert train._place_data(rt, training.config(), int(18.2 * gb), 10 * gb, logged.append).data_on_device is True
    assert train._place_data(rt, training.config(), int(18.2 * gb), None, logged.append).data_on_device is False
    assert train._place_data(rt, training.config(data_on_device=True), 0, None, logged.append) is rt
    cpu = runtime.Runtime(torch.device("cpu"), None, False, False, True)
    assert train._place_data(cpu, training.config(), 0, None, logged.append) is cpu and len(logged) == 3


def test_the_notebook_run_by_hand_trains_the_first_cell_of_the_defaults():
    """No parameters: the first cell of experiments/config.yaml's grid, with its train section."""
    cfg = train.TrainConfig.for_cell()
    own = defaults.defaults()
    assert (cfg.arch, cfg.optimizer, cfg.seed) == (own["grid"]["archs"][0], own["grid"]["optimizers"][0],
                                                   own["grid"]["seeds"][0])
    assert {k: getattr(cfg, k) for k in own["train"]} == own["train"]


def test_timing_off_leaves_the_breakdown_empty(data, tmp_path):
    summary = train.run(training.config(epochs=1, timing_breakdown=False, optimizer="adamax"), data, tmp_path, log=_quiet)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics[list(loop.PHASES)].isna().all().all() and (metrics["seconds"] > 0).all()
    assert summary["timing_breakdown"] is False and summary["optimizer_impl"] == "foreach"


def test_the_warm_up_is_timed_apart_and_changes_no_number(data, tmp_path, monkeypatch):
    summary = train.run(training.config(threads=2), data, tmp_path / "with", log=_quiet)
    assert summary["warm_up_s"] > 0  # recorded in summary.json, outside every epoch's time
    assert json.loads((tmp_path / "with" / "summary.json").read_text())["warm_up_s"] == summary["warm_up_s"]
    monkeypatch.setattr(train, "warm_up", lambda *a, **k: float("nan"))
    train.run(training.config(threads=2), data, tmp_path / "without", log=_quiet)
    with_, without = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("with", "without"))
    columns = ["epoch", "split"] + METRIC_COLUMNS
    pd.testing.assert_frame_equal(with_[columns], without[columns])  # bit for bit
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "with" / "predictions.csv"),
                                  pd.read_csv(tmp_path / "without" / "predictions.csv"))


def test_device_name_counts_threads_in_words():
    from carcolor import provenance
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert provenance.device_name(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert provenance.device_name(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)


def test_deterministic_kernels_on_the_cpu_without_importing_inductor(tool_env):
    """torch.use_deterministic_algorithms imports Inductor (3.4 s of every CPU cell's start) to set its
    own deterministic mode, which matters only when compiling: an eager CPU cell sets the same switch
    for eager kernels without it."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom carcolor import defaults\nfrom carcolor.training import train\n"
            "cfg = train.TrainConfig.for_cell(settings={**defaults.defaults()['train'], 'device': 'cpu'})\n"
            "train._start(cfg, 0)\n"
            "print('torch._inductor' in sys.modules, torch.are_deterministic_algorithms_enabled(),\n"
            "      torch.is_deterministic_algorithms_warn_only_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tool_env, timeout=120)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr[-2000:]
