"""Training one grid cell: its configuration, its run with a checkpoint after every epoch, the chosen epoch.

`run` is the entry point, called by experiments/train.ipynb. A checkpoint (model, optimizer, epoch,
config, history) is written after every epoch; a run that finds an unfinished checkpoint of the same
configuration resumes from it. The epoch loop is carcolor.training.loop's, the machine's choices
carcolor.training.runtime's.

Protocol: preparation decides which split the comparisons score (dataset.json's `protocol`: test if
the data have a test split, else val); training reads it from the data and decides the chosen epoch
(`select`: best val macro-F1, the earliest on ties), and records both in summary.json
(`score_split`, `selected_epoch`), which everything after training reads. The test split, when there
is one, is evaluated after every epoch too, for the record, but never read by training or by the
choice; the predictions kept are those of the score split at the chosen epoch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import atomic, defaults, grid, provenance, runlock, sources
from . import models, optimizers
from .batches import CachedBatches, TrainPreset
from .loop import NO_PHASES, evaluate, eval_batch_shapes, train_one_epoch, warm_up
from .runtime import DEVICE_MARGIN_BYTES, Runtime, device_cache_fits, keep_freed_memory, resolve_runtime


@dataclass
class TrainConfig:
    """Everything that defines one cell's training: the cell and the `train` section of the config.

    No defaults of its own: they live in experiments/config.yaml (carcolor.defaults), which the
    workflow's config and `for_cell` both start from.
    """

    arch: str
    optimizer: str
    seed: int
    epochs: int
    threads: int
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    optimizer_kwargs: dict
    pretrained: bool
    label_smoothing: float
    hflip: bool
    crop_padding: int
    device: str
    amp: str
    channels_last: bool
    compile: object
    data_on_device: object
    deterministic: bool
    timing_breakdown: bool

    @property
    def cell(self) -> str:
        return grid.cell_name(self.arch, self.optimizer, self.seed)

    @classmethod
    def for_cell(cls, *, arch: str | None = None, optimizer: str | None = None, seed: int | None = None,
                 settings: dict | None = None) -> "TrainConfig":
        """One cell's configuration from the notebook's parameters; what is None (the notebook run by
        hand) comes from the defaults: the first cell of their grid, their `train` section."""
        default = defaults.defaults()
        first = grid.cells(default["grid"])[0]
        settings = default["train"] if settings is None else dict(settings)
        fields = {f.name for f in dataclasses.fields(cls)} - {"arch", "optimizer", "seed"}
        unknown, missing = sorted(set(settings) - fields), sorted(fields - set(settings))
        if unknown or missing:
            raise ValueError(f"training settings: unknown {', '.join(unknown) or 'none'}, missing "
                             f"{', '.join(missing) or 'none'}; the `train` section has {', '.join(sorted(fields))}")
        return cls(arch=arch if arch is not None else first.arch,
                   optimizer=optimizer if optimizer is not None else first.optimizer,
                   seed=int(seed if seed is not None else first.seed), **settings)

    def fingerprint(self) -> str:
        """Every setting, threads included: on the CPU the thread count changes the sums' order."""
        d = dataclasses.asdict(self)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """A hash of the training code (this module and what it imports, carcolor.sources) and the torch
    version: a checkpoint resumes only the same code."""
    return hashlib.sha256((torch.__version__ + sources.digest(sources.closure([__name__]))).encode()).hexdigest()[:16]


def run_identity(cfg: TrainConfig, data: dict) -> dict:
    """What must match for a checkpoint to be resumed: settings (threads too), data and code."""
    return {"settings": cfg.fingerprint(), "threads": cfg.threads, "data": data.get("fingerprint"),
            "code": code_version()}


class TrainingDiverged(FloatingPointError):
    """The training loss became non-finite or exploded; the message says what to change."""


# An epoch whose mean training loss is over this many times the reference has diverged.
DIVERGENCE_FACTOR = 10.0


def check_loss(loss: float, epoch: int, history: list[dict], n_classes: int, cfg: TrainConfig) -> None:
    """Stop a run whose training loss is non-finite or far above where it started, whatever the optimizer.

    The reference is the loss of guessing uniformly, ln(classes), or epoch 1's loss if higher; a
    healthy run stays below it from the first epoch on (the untrained network starts near ln(classes)).
    """
    firsts = [h["loss"] for h in history if h["split"] == "train" and h["epoch"] == 1]
    reference = max([math.log(n_classes)] + firsts)
    if math.isfinite(loss) and loss <= DIVERGENCE_FACTOR * reference:
        return
    what = f"is {loss}" if not math.isfinite(loss) else (f"is {loss:.3g}, over {DIVERGENCE_FACTOR:g}x its "
                                                          f"reference {reference:.3g}")
    raise TrainingDiverged(f"cell {cfg.cell}: training loss {what} in epoch {epoch}: training diverged; "
                           f"lower train.lr (now {cfg.lr:g}) or check train.optimizer_kwargs.")


def _timed_warm_up(model, step_model, criterion, rt: Runtime, cfg: TrainConfig, data: dict,
                   splits) -> tuple[float, int | None]:
    """The warm-up (evaluation shapes too on CUDA, where cuDNN autotunes); on CUDA also the memory it
    took beyond what was allocated before (the training step's peak: activations, gradients,
    workspaces), after which the allocator's cached blocks go back for the data cache to use."""
    cuda = rt.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(rt.device)
        before = torch.cuda.memory_allocated(rt.device)
    shapes = eval_batch_shapes([len(data[f"{s}_labels"]) for s in splits[1:]], cfg.eval_batch_size) if cuda else ()
    seconds = warm_up(model, step_model, criterion, rt, batch_size=cfg.batch_size,
                      image_size=int(data["train_images"].shape[1]), eval_batch_sizes=shapes)
    if not cuda:
        return seconds, None
    peak = torch.cuda.max_memory_allocated(rt.device) - before
    torch.cuda.empty_cache()
    return seconds, int(peak)


def _flushed_print(line: str) -> None:
    print(line, flush=True)


# `make cell CELL=<cell>` sets this to re-train a cell whose checkpoint is finished (else its results would
# be written again from it); an unfinished checkpoint is resumed all the same, so a killed `make cell` goes
# on where it stopped. An environment variable, not a setting: it changes no number, only whether the
# finished epochs are trained again.
RETRAIN = "CARCOLOR_RETRAIN"


def retrain_asked(cell: str) -> bool:
    return os.environ.get(RETRAIN) == cell


def load_resumable(path: Path, identity: dict, log=print, cell: str = "") -> dict | None:
    """The checkpoint at path if the very same run wrote it (see run_identity), else None, saying why."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is simply not resumed
        log(f"[{cell}] {path} is unreadable ({type(exc).__name__}); training from epoch 1")
        return None
    differs = [key for key in identity if (ckpt.get("identity") or {}).get(key) != identity[key]]
    if differs:
        old = ckpt.get("identity") or {}
        detail = ", ".join(f"{k} {old.get(k)} -> {identity[k]}" if k == "threads" else k for k in differs)
        log(f"[{cell}] {path} belongs to another run (differs in: {detail}); training from epoch 1")
        return None
    return ckpt


def no_selection() -> dict:
    """The chosen epoch before any epoch was evaluated."""
    return {"epoch": 0, "val_f1_macro": -math.inf, "pred": None, "prob": None}


def select(selected: dict, epoch: int, val: dict, pred: np.ndarray, prob: np.ndarray) -> dict:
    """The chosen epoch after `epoch`: it takes over only when its val macro-F1 is strictly higher,
    so ties keep the earliest epoch. `pred` and `prob` are the score split's predictions at `epoch`:
    kept in memory (and in the checkpoint), as the model of that epoch is not kept."""
    if val["f1_macro"] > selected["val_f1_macro"]:
        return {"epoch": epoch, "val_f1_macro": val["f1_macro"], "pred": pred, "prob": prob}
    return selected


def predictions_frame(selected: dict, split: str, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """predictions.csv: the score split's predictions at the chosen epoch, one row per image."""
    pred = selected["pred"]
    return pd.DataFrame({"split": split, "epoch": selected["epoch"], "row": np.arange(len(pred)), "label": labels,
                         "pred": pred, "true_colour": [classes[i] for i in labels],
                         "pred_colour": [classes[i] for i in pred], "confidence": selected["prob"]})


def run(cfg: TrainConfig, data: dict, out_dir: str | Path, *, log=None) -> dict:
    """Train one cell on prepared data; write metrics.csv, predictions.csv, summary.json, checkpoint.pt.

    metrics.csv has train, val and (when the data have one) test rows per epoch; predictions.csv holds
    the score split's predictions at the epoch chosen on val (see `select`).

    Returns the summary dict. Raises TrainingDiverged naming the epoch when the loss is non-finite or explodes.
    A checkpoint of the same run (settings, threads, data, code) is resumed, a complete one is not re-trained.
    """
    log = log or _flushed_print  # a notebook kernel would otherwise hold each line back for a while
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"  # two processes must never write one checkpoint
    runlock.hold(lock, f"cell {cfg.cell} ({out})")
    try:
        return _run(cfg, data, out, log)
    finally:
        runlock.release(lock)


def _run(cfg: TrainConfig, data: dict, out: Path, log) -> dict:
    started = provenance.now()
    scored = data["info"]["protocol"]  # the split the comparisons score, as preparation decided it
    splits = ("train", "val", "test") if scored == "test" else ("train", "val")
    data_bytes = sum(data[f"{s}_images"].nbytes for s in splits)
    rt, keeps_memory = _start(cfg, data_bytes)
    classes, n_classes = data["classes"], len(data["classes"])
    model, optimizer, criterion, built = _build(cfg, n_classes, int(data["train_images"].shape[1]), rt)
    ckpt_path = out / "checkpoint.pt"
    identity = run_identity(cfg, data)
    history, selected, start_epoch = [], no_selection(), 1
    ckpt = load_resumable(ckpt_path, identity, log=log, cell=cfg.cell)
    if ckpt is not None and ckpt["complete"] and retrain_asked(cfg.cell):
        log(f"[{cfg.cell}] re-training from epoch 1 as asked ({RETRAIN}={cfg.cell}): {ckpt_path} is finished")
        ckpt = None
    warm_up_s, step_bytes = float("nan"), None
    if ckpt is not None:
        history, selected, start_epoch, started = _restore(ckpt, model, optimizer, rt, cfg, ckpt_path, log)
        warm_up_s, step_bytes = ckpt["warm_up_s"], ckpt["warm_up_peak_bytes"]  # kept for a finished run
    step_model = torch.compile(model) if rt.compile else model
    if start_epoch <= cfg.epochs:
        warm_up_s, step_bytes = _timed_warm_up(model, step_model, criterion, rt, cfg, data, splits)
        log(f"[{cfg.cell}] warm-up ({'compiling' if rt.compile else 'first step'}): {warm_up_s:.1f}s, "
            f"not counted in the epochs' times")
    rt = _place_data(rt, cfg, data_bytes, step_bytes, log)
    train_batches, eval_batches = _batches(cfg, data, rt, splits)
    if ckpt is not None:
        train_batches.generator.set_state(ckpt["generator"])

    keys = {"cell": cfg.cell, "arch": cfg.arch, "optimizer": cfg.optimizer, "seed": cfg.seed}
    for epoch in range(start_epoch, cfg.epochs + 1):
        tr = train_one_epoch(step_model, criterion, optimizer, train_batches, rt, n_classes=n_classes,
                             timing=cfg.timing_breakdown)
        check_loss(tr["loss"], epoch, history, n_classes, cfg)
        history.append({**keys, "epoch": epoch, "split": "train", **tr})
        held_out = {}
        for split, batches in eval_batches.items():  # test is recorded; the choice below reads val only
            held_out[split] = evaluate(model, criterion, batches, rt, n_classes=n_classes)
            history.append({**keys, "epoch": epoch, "split": split, **held_out[split][0], **NO_PHASES})
        va = held_out["val"][0]
        selected = select(selected, epoch, va, *held_out[scored][1:])
        # the checkpoint first: once the epoch's line is out, the epoch is safe
        atomic.save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                           "config": dataclasses.asdict(cfg), "identity": identity, "history": history,
                           "selected": selected,
                           "generator": train_batches.generator.get_state(), "torch_rng": torch.get_rng_state(),
                           "cuda_rng": torch.cuda.get_rng_state_all() if rt.device.type == "cuda" else None,
                           "classes": classes, "complete": epoch == cfg.epochs, "started": started,
                           "warm_up_s": warm_up_s, "warm_up_peak_bytes": step_bytes}, ckpt_path)
        log(f"[{cfg.cell}] epoch {epoch}/{cfg.epochs}  train loss {tr['loss']:.4f}  val loss {va['loss']:.4f}  "
            f"val F1 {va['f1_macro']:.3f}  val acc {va['accuracy']:.3f}  {tr['seconds'] + va['seconds']:.1f}s  "
            f"{tr['images_per_s']:.0f} img/s")

    summary = _summary(cfg, data, rt, built, keys=keys, scored=scored, selected_epoch=selected["epoch"],
                       warm_up_s=warm_up_s, step_bytes=step_bytes, keeps_memory=keeps_memory, identity=identity)
    _write_results(out, pd.DataFrame(history),
                   predictions_frame(selected, scored, data[f"{scored}_labels"], classes), summary,
                   provenance.collect(device=rt.device, cell=cfg.cell, started=started))
    return summary


def _start(cfg: TrainConfig, data_bytes: int) -> tuple[Runtime, bool]:
    """The runtime's choices and the seeds, before anything is built; returns the runtime and whether
    glibc keeps freed memory (on the CPU, keep_freed_memory)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rt = resolve_runtime(cfg, data_bytes)  # on CUDA the data's place is decided after the warm-up
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if rt.device.type != "cpu":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        return rt, False
    if rt.compile:  # Inductor's own deterministic mode too (use_deterministic_algorithms imports Inductor)
        torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    else:  # the same switch for eager kernels, without importing Inductor: 3.4 s of every CPU cell's start
        torch.set_deterministic_debug_mode("warn" if cfg.deterministic else "default")
    return rt, keep_freed_memory()


def _build(cfg: TrainConfig, n_classes: int, image_size: int, rt: Runtime):
    """The model (on its device, in its memory format), the optimizer, the loss, and what the summary
    says of them (parameters, MACs, the optimizer's implementation)."""
    model = models.build_model(cfg.arch, n_classes, pretrained=cfg.pretrained)
    built = {"params": models.count_parameters(model), "macs": models.count_macs(model, image_size)}
    memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format
    model = model.to(rt.device, memory_format=memory_format)
    optimizer_kwargs, built["optimizer_impl"] = optimizers.optimizer_settings(cfg.optimizer, cfg.optimizer_kwargs)
    optimizer = optimizers.build_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay, **optimizer_kwargs)
    return model, optimizer, torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), built


def _restore(ckpt: dict, model, optimizer, rt: Runtime, cfg: TrainConfig, path: Path, log):
    """Model, optimizer and random state from a resumable checkpoint; returns the history, the chosen
    epoch so far, the next epoch and when the run started (its first epoch)."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"] is not None and rt.device.type == "cuda":
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    if ckpt["epoch"] >= cfg.epochs:
        log(f"[{cfg.cell}] all {cfg.epochs} epochs were trained already ({path}); writing the results")
    else:
        log(f"[{cfg.cell}] resuming after epoch {ckpt['epoch']} from {path}")
    return ckpt["history"], ckpt["selected"], ckpt["epoch"] + 1, ckpt["started"]


def _place_data(rt: Runtime, cfg: TrainConfig, data_bytes: int, step_bytes: int | None, log) -> Runtime:
    """On CUDA with data_on_device 'auto', the data's place decided again with the training step's
    measured memory (device_cache_fits)."""
    if rt.device.type != "cuda" or cfg.data_on_device != "auto":
        return rt
    free = torch.cuda.mem_get_info()[0]
    rt = dataclasses.replace(rt, data_on_device=step_bytes is not None and device_cache_fits(
        data_bytes, free_bytes=free, activation_bytes=step_bytes))
    log(f"[{cfg.cell}] data ({data_bytes / 1e9:.1f} GB) on the device: {rt.data_on_device} (training step "
        f"{(step_bytes or 0) / 1e9:.1f} GB, free {free / 1e9:.1f} GB, margin {DEVICE_MARGIN_BYTES / 1e9:.1f} GB)")
    return rt


def _batches(cfg: TrainConfig, data: dict, rt: Runtime, splits) -> tuple[CachedBatches, dict[str, CachedBatches]]:
    """The training batches (shuffled, augmented, full batches only) and each held-out split's."""
    train = CachedBatches(data["train_images"], data["train_labels"], batch_size=cfg.batch_size, device=rt.device,
                          shuffle=True, seed=cfg.seed, preset=TrainPreset(crop_padding=cfg.crop_padding,
                                                                          hflip=cfg.hflip),
                          on_device=rt.data_on_device, drop_last=True, dtype=rt.input_dtype)
    held_out = {s: CachedBatches(data[f"{s}_images"], data[f"{s}_labels"], batch_size=cfg.eval_batch_size,
                                 device=rt.device, shuffle=False, on_device=rt.data_on_device, dtype=rt.input_dtype)
                for s in splits[1:]}
    return train, held_out


def _summary(cfg: TrainConfig, data: dict, rt: Runtime, built: dict, *, keys: dict, scored: str,
             selected_epoch: int, warm_up_s: float, step_bytes: int | None, keeps_memory: bool,
             identity: dict) -> dict:
    """summary.json: the cell, its data and model, the protocol's two decisions (the score split, as
    preparation decided it, and the chosen epoch), the warm-up, every runtime choice, the config."""
    return {**keys, "epochs": cfg.epochs, "params": built["params"], "macs": built["macs"],
            "image_size": int(data["train_images"].shape[1]), "batch_size": cfg.batch_size, "lr": cfg.lr,
            "train_images": int(len(data["train_labels"])), "val_images": int(len(data["val_labels"])),
            "test_images": int(len(data["test_labels"])), "score_split": scored,
            "selected_epoch": selected_epoch, "warm_up_s": warm_up_s, "warm_up_peak_bytes": step_bytes,
            "device": provenance.device_name(rt.device), "amp": str(rt.amp_dtype).replace("torch.", ""),
            "compile": rt.compile, "channels_last": rt.channels_last, "data_on_device": rt.data_on_device,
            "threads": torch.get_num_threads(), "optimizer_impl": built["optimizer_impl"],
            "timing_breakdown": bool(cfg.timing_breakdown),
            "deterministic": bool(cfg.deterministic) and rt.device.type == "cpu",
            "cudnn_benchmark": rt.device.type == "cuda", "input_dtype": str(rt.input_dtype).replace("torch.", ""),
            "eval_batch_size": cfg.eval_batch_size, "eval_compiled": False, "keep_freed_memory": keeps_memory,
            "torch": torch.__version__, "identity": identity, "config": dataclasses.asdict(cfg)}


def _write_results(out: Path, metrics: pd.DataFrame, predictions: pd.DataFrame, summary: dict,
                   origin: dict) -> None:
    atomic.write_together({
        out / "metrics.csv": lambda tmp: metrics.to_csv(tmp, index=False),
        out / "predictions.csv": lambda tmp: predictions.to_csv(tmp, index=False),
        out / "provenance.json": lambda tmp: tmp.write_text(json.dumps(origin, indent=2)),
        # last: its presence says the cell's results are complete
        out / "summary.json": lambda tmp: tmp.write_text(json.dumps(summary, indent=2, default=str)),
    })
