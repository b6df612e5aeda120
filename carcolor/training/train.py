"""Training one grid cell, in the shape of torchvision's classification reference.

`train_one_epoch`, `evaluate` and `run` (the main entry point, called by experiments/train.ipynb).
A checkpoint (model, optimizer, epoch, config, history) is written after every epoch; a run that
finds an unfinished checkpoint of the same configuration resumes from it.

Protocol: the epoch is chosen on val (best val macro-F1, the earliest on ties). When the data have a
test split it is evaluated after every epoch too, for the record, but never read by training or by
the choice; the predictions kept are those of the score split (test if there is one, else val) at
the chosen epoch.

Speed (numbers in benchmarks/README.md): batches come from the uint8 cache (carcolor.training.batches), the
model runs in channels_last (faster on the CPU too, at 64 and 224 px), bf16 autocast and
torch.compile on CUDA only (on the CPU bf16 autocast was slower and compiling costs more than an
8-epoch run), both optimizers use torch.optim's foreach implementation (a fair Adam vs Adamax
step time), and no per-batch host synchronisation on CUDA: the per-epoch timing breakdown uses
CUDA events, read once at the end of the epoch.
"""
from __future__ import annotations

import dataclasses
import ctypes
import hashlib
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score

from .. import atomic, defaults, grid, provenance, runlock, sources
from . import models, optimizers
from .batches import CachedBatches, TrainPreset


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


@dataclass
class Runtime:
    """Choices resolved for the machine at hand (recorded in the cell's results)."""

    device: torch.device
    amp_dtype: torch.dtype | None
    compile: bool
    data_on_device: bool
    channels_last: bool

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the batches are normalised into: the autocast dtype on CUDA (saves a cast)."""
        return self.amp_dtype if self.amp_dtype is not None and self.device.type == "cuda" else torch.float32


# Room kept free beyond the cache and the measured training step: the allocator's fragmentation,
# cuDNN workspaces of kernels the warm-up did not pick, the optimizer's state (created at its first step).
DEVICE_MARGIN_BYTES = 2 << 30


def device_cache_fits(data_bytes: int, *, free_bytes: int, activation_bytes: int,
                      margin_bytes: int = DEVICE_MARGIN_BYTES) -> bool:
    """Whether the uint8 cache may live on the GPU: it, the training step's own memory (activations,
    gradients, workspaces: the warm-up's measured peak) and a margin must fit the free memory."""
    return data_bytes + activation_bytes + margin_bytes <= free_bytes


def resolve_runtime(cfg: TrainConfig, data_bytes: int, *, activation_bytes: int = 0,
                    free_bytes: int | None = None) -> Runtime:
    """Device, mixed precision, compilation and data placement; 'auto' means what measured fastest.

    On the CPU: fp32 (bf16 autocast measured ~1.8x slower), eager (compiling takes longer than
    an 8-epoch run saves). On CUDA: bf16 autocast, torch.compile, and the data on the device when
    `device_cache_fits` (free_bytes: the device's free memory unless given; activation_bytes: what a
    training step needs, which `run` measures in the warm-up and then decides the placement again).
    channels_last is a plain setting (faster on both).
    """
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but no CUDA device is available; use 'auto' or 'cpu'.")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    amps = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if cfg.amp == "auto":
        amp = torch.bfloat16 if use_cuda else None
    elif cfg.amp in amps:
        amp = amps[cfg.amp]
    else:
        raise ValueError(f"amp must be auto, none, bf16 or fp16, got {cfg.amp!r}")
    compiled = use_cuda if cfg.compile == "auto" else _flag(cfg.compile, "compile")
    if cfg.data_on_device == "auto":
        free = free_bytes if free_bytes is not None else (torch.cuda.mem_get_info()[0] if use_cuda else 0)
        on_device = use_cuda and device_cache_fits(data_bytes, free_bytes=free, activation_bytes=activation_bytes)
    else:
        on_device = _flag(cfg.data_on_device, "data_on_device") and use_cuda
    return Runtime(device, amp, compiled, on_device, bool(cfg.channels_last))


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{name} must be auto, true or false, got {value!r}")


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory in the process instead of returning it to the system.

    By default glibc serves every allocation above 32 MB with its own mmap and unmaps it when freed,
    so each training step on the CPU page-faults all its large activations in afresh: at 224 px
    that is a third of the step's time (measured 14 -> 21 images/s for MobileNetV2, batch 64);
    neutral at 64 px. Process-wide; Linux with glibc only. Returns whether it took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return mallopt(m_mmap_max, 0) == 1 and mallopt(m_trim_threshold, 2**31 - 1) == 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Splits a loop's time into phases: `mark(phase)` books the time since the previous mark.

    On the CPU it reads the wall clock. On CUDA it records an event on the current stream and reads
    the events once, in `totals`: no host synchronisation per batch, and the phases add up to the
    stream's time between the first and the last mark. Disabled, it does nothing.
    """

    def __init__(self, device: torch.device, phases: tuple[str, ...], enabled: bool = True):
        self.cuda = device.type == "cuda"
        self.enabled = enabled
        self.phases = phases
        self.marks: list[tuple[str | None, object]] = []
        self._cpu = dict.fromkeys(phases, 0.0)
        self._last = 0.0

    def start(self) -> None:
        if not self.enabled:
            return
        if self.cuda:
            self.marks = [(None, self._event())]
        self._last = time.perf_counter()

    @staticmethod
    def _event():
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, phase: str) -> None:
        if not self.enabled:
            return
        if self.cuda:
            self.marks.append((phase, self._event()))
        else:
            now = time.perf_counter()
            self._cpu[phase] += now - self._last
            self._last = now

    def totals(self) -> dict[str, float]:
        """Seconds per phase (NaN when disabled); on CUDA waits for the last event."""
        if not self.enabled:
            return dict.fromkeys(self.phases, float("nan"))
        if not self.cuda:
            return dict(self._cpu)
        out = dict.fromkeys(self.phases, 0.0)
        if len(self.marks) > 1:
            self.marks[-1][1].synchronize()
            for (_, a), (phase, b) in zip(self.marks, self.marks[1:]):
                out[phase] += a.elapsed_time(b) / 1000
        return out


def _scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    return {"f1_macro": float(f1_score(y_true, y_pred, average="macro", labels=list(range(n_classes)),
                                       zero_division=0)),
            "accuracy": float(accuracy_score(y_true, y_pred))}


PHASES = ("data_s", "forward_backward_s", "optimizer_s")
NO_PHASES = dict.fromkeys(PHASES, float("nan"))  # a held-out split's rows: no training phases


def train_one_epoch(model, criterion, optimizer, batches, rt: Runtime, *, n_classes: int,
                    timing: bool = True) -> dict:
    """One pass over the training batches; returns loss, scores and where the time went.

    data_s + forward_backward_s + optimizer_s add up to `seconds` (bar the loop's end). Nothing
    here waits for the GPU before the end of the epoch.
    """
    model.train()
    device = rt.device
    timer = PhaseTimer(device, PHASES, enabled=timing)
    loss_sum = torch.zeros((), device=device)
    preds, targets = [], []
    n = 0
    _sync(device)
    start = time.perf_counter()
    timer.start()
    for x, y in batches:
        timer.mark("data_s")
        with torch.autocast(device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_sum += loss.detach().float() * len(y)
        preds.append(logits.detach().argmax(1))
        targets.append(y)
        n += len(y)
        timer.mark("forward_backward_s")
        optimizer.step()
        timer.mark("optimizer_s")
    totals = timer.totals()
    _sync(device)
    seconds = time.perf_counter() - start
    loss_value = float(loss_sum) / max(n, 1)
    y_true = torch.cat(targets).cpu().numpy()
    y_pred = torch.cat(preds).cpu().numpy()
    return {"loss": loss_value, **_scores(y_true, y_pred, n_classes), "seconds": seconds,
            "images_per_s": n / seconds, **totals}


@torch.inference_mode()
def evaluate(model, criterion, batches, rt: Runtime, *, n_classes: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Loss and scores on a held-out split; also returns predicted labels and their probabilities.

    In large batches (eval_batch_size); `run` passes the eager model, as compiling the inference
    graph of every batch shape costs more than it saves over a few passes of the validation split.
    """
    model.eval()
    _sync(rt.device)
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=rt.device)
    preds, probs, targets = [], [], []
    for x, y in batches:
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            logits = model(x)
        logits = logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        p = logits.softmax(1)
        probs.append(p.max(1).values)
        preds.append(p.argmax(1))
        targets.append(y)
    _sync(rt.device)
    seconds = time.perf_counter() - start
    y_true = torch.cat(targets).cpu().numpy()
    y_pred = torch.cat(preds).cpu().numpy()
    metrics = {"loss": float(loss_sum) / len(y_true), **_scores(y_true, y_pred, n_classes),
               "seconds": seconds, "images_per_s": len(y_true) / seconds}
    return metrics, y_pred, torch.cat(probs).cpu().numpy()


def warm_up(model, step_model, criterion, rt: Runtime, *, batch_size: int, image_size: int,
            eval_batch_sizes: tuple[int, ...] = ()) -> float:
    """One untimed forward and backward pass before epoch 1; returns its seconds (`warm_up_s`).

    With torch.compile this is where the graph is compiled (from Inductor's on-disk cache when an
    earlier cell of the run compiled the same graph); on the CPU it is the first step's one-off cost.
    On CUDA it is also where cuDNN autotunes (`cudnn.benchmark`) the training step's convolutions, and,
    with `eval_batch_sizes`, one inference forward of the eager model per evaluation batch shape does
    the same for evaluation. cuDNN keeps its choices in the process only, so every cell autotunes once,
    here. All of it stays out of every epoch's time and throughput, so the first cell of an
    architecture (cold compile cache) is not slower for a reason that has nothing to do with its
    optimizer. Every state is put back (weights, BatchNorm statistics, random streams) and no optimizer
    step is taken, so the run's numbers are the same with and without it.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if rt.device.type == "cuda" else None
    memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format
    x = torch.zeros((batch_size, 3, image_size, image_size), device=rt.device, dtype=rt.input_dtype)
    x = x.contiguous(memory_format=memory_format)
    y = torch.zeros(batch_size, dtype=torch.long, device=rt.device)
    _sync(rt.device)
    start = time.perf_counter()
    if eval_batch_sizes:
        model.eval()
        with torch.inference_mode(), torch.autocast(rt.device.type, dtype=rt.amp_dtype,
                                                    enabled=rt.amp_dtype is not None):
            for n in sorted(set(eval_batch_sizes)):
                model(torch.zeros((n,) + tuple(x.shape[1:]), device=rt.device, dtype=rt.input_dtype)
                      .contiguous(memory_format=memory_format))
    model.train()
    with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
        loss = criterion(step_model(x), y)
    loss.backward()
    _sync(rt.device)
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    model.load_state_dict(state)
    torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    return seconds


def eval_batch_shapes(split_sizes, batch_size: int) -> tuple[int, ...]:
    """The batch sizes evaluation will see: a full batch and each split's last, shorter one."""
    shapes = set()
    for n in split_sizes:
        if n:
            shapes.add(min(n, batch_size))
            if n > batch_size and n % batch_size:
                shapes.add(n % batch_size)
    return tuple(sorted(shapes))


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


def optimizer_settings(name: str, kwargs: dict) -> tuple[dict, str]:
    """The optimizer's keyword arguments, with torch.optim's foreach implementation unless chosen.

    torch.optim picks foreach only for CUDA tensors and has a fused Adam but no fused Adamax; asking
    for foreach everywhere times both optimizers' steps with the same kind of implementation.
    Returns the arguments and the implementation's name ('foreach', 'fused' or 'for-loop').
    """
    optimizers.check_optimizer(name)
    kwargs = dict(kwargs)
    cls = getattr(torch.optim, optimizers.COMMON.get(name.lower()) or optimizers.available()[name.lower()])
    accepted = inspect.signature(cls.__init__).parameters
    if "foreach" in accepted and "foreach" not in kwargs and not kwargs.get("fused"):
        kwargs["foreach"] = True
    if kwargs.get("fused"):
        impl = "fused"
    elif kwargs.get("foreach"):
        impl = "foreach"
    else:
        impl = "for-loop"
    return kwargs, impl


def _flushed_print(line: str) -> None:
    print(line, flush=True)


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


def score_split(data: dict) -> str:
    """The split the comparisons score: "test" when the data have a non-empty one, else "val"."""
    return "test" if len(data.get("test_labels", ())) else "val"


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
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    classes = data["classes"]
    n_classes = len(classes)
    scored = score_split(data)
    has_test = scored == "test"
    splits = ("train", "val", "test") if has_test else ("train", "val")
    data_bytes = sum(data[f"{s}_images"].nbytes for s in splits)
    rt = resolve_runtime(cfg, data_bytes)  # on CUDA the data's place is decided after the warm-up
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    keeps_memory = False
    if rt.device.type == "cpu":
        torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
        keeps_memory = keep_freed_memory()
    else:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    deterministic = bool(cfg.deterministic) and rt.device.type == "cpu"

    model = models.build_model(cfg.arch, n_classes, pretrained=cfg.pretrained)
    params = models.count_parameters(model)
    macs = models.count_macs(model, data["train_images"].shape[1])
    memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format
    model = model.to(rt.device, memory_format=memory_format)
    optimizer_kwargs, optimizer_impl = optimizer_settings(cfg.optimizer, cfg.optimizer_kwargs)
    optimizer = optimizers.build_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr,
                                      weight_decay=cfg.weight_decay, **optimizer_kwargs)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    ckpt_path = out / "checkpoint.pt"
    history: list[dict] = []
    selected = no_selection()
    start_epoch = 1
    identity = run_identity(cfg, data)
    ckpt = load_resumable(ckpt_path, identity, log=log, cell=cfg.cell)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") is not None and rt.device.type == "cuda":
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        history, selected, start_epoch = ckpt["history"], ckpt["selected"], ckpt["epoch"] + 1
        started = ckpt.get("started", started)  # a resumed run started when its first epoch did
        if ckpt["epoch"] >= cfg.epochs:
            log(f"[{cfg.cell}] all {cfg.epochs} epochs were trained already ({ckpt_path}); writing the results")
        else:
            log(f"[{cfg.cell}] resuming after epoch {ckpt['epoch']} from {ckpt_path}")
    step_model = torch.compile(model) if rt.compile else model
    warm_up_s = float("nan")  # nothing left to train: no warm-up
    step_bytes = None
    if start_epoch <= cfg.epochs:
        warm_up_s, step_bytes = _timed_warm_up(model, step_model, criterion, rt, cfg, data, splits)
        log(f"[{cfg.cell}] warm-up ({'compiling' if rt.compile else 'first step'}): {warm_up_s:.1f}s, "
            f"not counted in the epochs' times")
    if rt.device.type == "cuda" and cfg.data_on_device == "auto":
        free = torch.cuda.mem_get_info()[0]
        rt = dataclasses.replace(rt, data_on_device=step_bytes is not None and device_cache_fits(
            data_bytes, free_bytes=free, activation_bytes=step_bytes))
        log(f"[{cfg.cell}] data ({data_bytes / 1e9:.1f} GB) on the device: {rt.data_on_device} (training step "
            f"{(step_bytes or 0) / 1e9:.1f} GB, free {free / 1e9:.1f} GB, margin {DEVICE_MARGIN_BYTES / 1e9:.1f} GB)")
    train_batches = CachedBatches(data["train_images"], data["train_labels"], batch_size=cfg.batch_size,
                                  device=rt.device, shuffle=True, seed=cfg.seed,
                                  preset=TrainPreset(crop_padding=cfg.crop_padding, hflip=cfg.hflip),
                                  on_device=rt.data_on_device, drop_last=True, dtype=rt.input_dtype)
    eval_batches = {s: CachedBatches(data[f"{s}_images"], data[f"{s}_labels"], batch_size=cfg.eval_batch_size,
                                     device=rt.device, shuffle=False, on_device=rt.data_on_device,
                                     dtype=rt.input_dtype) for s in splits[1:]}
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
                           "classes": classes, "complete": epoch == cfg.epochs, "started": started}, ckpt_path)
        log(f"[{cfg.cell}] epoch {epoch}/{cfg.epochs}  train loss {tr['loss']:.4f}  val loss {va['loss']:.4f}  "
            f"val F1 {va['f1_macro']:.3f}  val acc {va['accuracy']:.3f}  {tr['seconds'] + va['seconds']:.1f}s  "
            f"{tr['images_per_s']:.0f} img/s")

    metrics = pd.DataFrame(history)
    predictions = predictions_frame(selected, scored, data[f"{scored}_labels"], classes)
    summary = {**keys, "epochs": cfg.epochs, "params": params, "macs": macs,
               "image_size": int(data["train_images"].shape[1]), "batch_size": cfg.batch_size, "lr": cfg.lr,
               "train_images": int(len(data["train_labels"])), "val_images": int(len(data["val_labels"])),
               "test_images": int(len(data.get("test_labels", ()))), "score_split": scored,
               "selected_epoch": selected["epoch"], "warm_up_s": warm_up_s, "warm_up_peak_bytes": step_bytes,
               "device": provenance.device_name(rt.device), "amp": str(rt.amp_dtype).replace("torch.", ""),
               "compile": rt.compile, "channels_last": rt.channels_last, "data_on_device": rt.data_on_device,
               "threads": torch.get_num_threads(), "optimizer_impl": optimizer_impl,
               "timing_breakdown": bool(cfg.timing_breakdown), "deterministic": deterministic,
               "cudnn_benchmark": rt.device.type == "cuda", "input_dtype": str(rt.input_dtype).replace("torch.", ""),
               "eval_batch_size": cfg.eval_batch_size, "eval_compiled": False, "keep_freed_memory": keeps_memory,
               "torch": torch.__version__, "identity": identity, "config": dataclasses.asdict(cfg)}
    atomic.write_together({
        out / "metrics.csv": lambda tmp: metrics.to_csv(tmp, index=False),
        out / "predictions.csv": lambda tmp: predictions.to_csv(tmp, index=False),
        out / "provenance.json": lambda tmp: tmp.write_text(json.dumps(
            provenance.collect(device=rt.device, cell=cfg.cell, started=started), indent=2)),
        # last: its presence says the cell's results are complete
        out / "summary.json": lambda tmp: tmp.write_text(json.dumps(summary, indent=2, default=str)),
    })
    return summary
