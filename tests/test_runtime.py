"""The choices a cell's training makes for the machine (carcolor.training.runtime): device, mixed precision,
compilation, where the cache lives; and the optimizers' implementation (carcolor.training.optimizers)."""
from __future__ import annotations

import pytest
import torch

from carcolor.training import optimizers, runtime
from tests import training

GB = 10**9


def test_runtime_on_the_cpu():
    rt = runtime.resolve_runtime(training.config(device="cpu"), 0)
    assert rt.device.type == "cpu" and rt.amp_dtype is None and rt.compile is False
    assert rt.data_on_device is False and rt.channels_last is True and rt.input_dtype == torch.float32
    assert runtime.resolve_runtime(training.config(device="cpu", compile=True, amp="bf16"), 0).compile is True
    with pytest.raises(ValueError, match="amp"):
        runtime.resolve_runtime(training.config(device="cpu", amp="fp8"), 0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            runtime.resolve_runtime(training.config(device="cuda"), 0)


def test_the_device_cache_leaves_room_for_the_training_step():
    """The paper's cache (train + val, 18.2 GB) at batch 256, 224 px. A forward-hook count of
    MobileNetV2's layer outputs gives 19.5 M values per image: about 10 GB at batch 256 in bf16 and
    20 GB in fp32. On a 40 GB card (39.5 GB free) the cache fits beside the bf16 step but not beside
    the fp32 one; on an 80 GB card beside both. The old rule (under half the free memory) put it on
    the 40 GB card either way."""
    cache = 18.2 * GB
    for step, free, fits in [(20 * GB, 39.5 * GB, False), (10 * GB, 39.5 * GB, True),
                             (20 * GB, 79.2 * GB, True), (10 * GB, 79.2 * GB, True)]:
        assert runtime.device_cache_fits(cache, free_bytes=free, activation_bytes=step) is fits, (step, free)
        assert cache < 0.5 * free  # what the old rule checked: always true here
    # the margin counts: 18.2 + 20 GB fit 40 GB only without it
    assert runtime.device_cache_fits(cache, free_bytes=39.5 * GB, activation_bytes=20 * GB, margin_bytes=0)
    assert not runtime.device_cache_fits(19.9 * GB, free_bytes=21 * GB, activation_bytes=0)


def test_resolve_runtime_places_the_cache_by_the_rule_on_cuda(monkeypatch):
    """The CUDA branch of the decision, with the free memory and the step's memory given (no GPU needed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = training.config()  # device, amp, compile and data_on_device: auto
    on_40 = runtime.resolve_runtime(cfg, int(18.2 * GB), activation_bytes=20 * GB, free_bytes=int(39.5 * GB))
    on_80 = runtime.resolve_runtime(cfg, int(18.2 * GB), activation_bytes=20 * GB, free_bytes=int(79.2 * GB))
    assert on_40.device.type == "cuda" and on_40.amp_dtype == torch.bfloat16 and on_40.compile
    assert on_40.data_on_device is False and on_80.data_on_device is True
    forced = runtime.resolve_runtime(training.config(data_on_device=True), int(18.2 * GB), activation_bytes=20 * GB,
                                   free_bytes=int(39.5 * GB))
    assert forced.data_on_device is True  # an explicit setting is obeyed


def test_optimizer_settings_use_foreach_unless_chosen():
    assert optimizers.optimizer_settings("adam", {}) == ({"foreach": True}, "foreach")
    assert optimizers.optimizer_settings("Adamax", {}) == ({"foreach": True}, "foreach")
    assert optimizers.optimizer_settings("adam", {"fused": True}) == ({"fused": True}, "fused")
    assert optimizers.optimizer_settings("sgd", {"foreach": False}) == ({"foreach": False}, "for-loop")
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizers.optimizer_settings("adamx", {})
