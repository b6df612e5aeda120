"""The epoch loop, in the shape of torchvision's classification reference: `train_one_epoch`, `evaluate`,
the untimed `warm_up` before epoch 1, and the timers that split an epoch's time into phases.

No per-batch host synchronisation on CUDA: the per-epoch timing breakdown uses CUDA events, read
once at the end of the epoch.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from .runtime import Runtime


def sync(device: torch.device) -> None:
    """Wait for the work queued on the device (nothing to wait for on the CPU)."""
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
    sync(device)
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
    sync(device)
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
    sync(rt.device)
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
    sync(rt.device)
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
    sync(rt.device)
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
    sync(rt.device)
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
