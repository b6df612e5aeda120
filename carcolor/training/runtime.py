"""The choices one cell's training makes for the machine at hand: device, mixed precision, compilation,
where the cached images live, and how glibc keeps freed memory. Each is recorded in the cell's results.

Speed (numbers in benchmarks/README.md): the model runs in channels_last (faster on the CPU too, at
64 and 224 px), bf16 autocast and torch.compile on CUDA only (on the CPU bf16 autocast was slower and
compiling costs more than an 8-epoch run).
"""
from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass

import torch


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


def resolve_runtime(cfg, data_bytes: int, *, activation_bytes: int = 0, free_bytes: int | None = None) -> Runtime:
    """Device, mixed precision, compilation and data placement of a cell's TrainConfig (its device, amp,
    compile, data_on_device and channels_last); 'auto' means what measured fastest.

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
