"""The epoch loop's parts (carcolor.training.loop): the phase timer, the evaluation batch shapes and the
untimed warm-up, which must put every state back."""
from __future__ import annotations

import math

import torch

from carcolor.training import loop, models, runtime
from tests import training


def test_eval_batch_shapes_are_the_full_and_the_last_batches():
    assert loop.eval_batch_shapes([11_000, 11_000], 1024) == (760, 1024)
    assert loop.eval_batch_shapes([24, 0], 64) == (24,)
    assert loop.eval_batch_shapes([128, 130], 64) == (2, 64)


def test_warm_up_with_evaluation_shapes_still_puts_every_state_back():
    rt = runtime.resolve_runtime(training.config(device="cpu"), 0)
    torch.manual_seed(0)
    model = models.build_model("mobilenet_v2", 4).to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    model.classifier.register_forward_hook(lambda m, i, o: calls.append((len(o), m.training)))
    loop.warm_up(model, model, torch.nn.CrossEntropyLoss(), rt, batch_size=4, image_size=32,
                  eval_batch_sizes=(6, 3))
    assert calls == [(3, False), (6, False), (4, True)]  # each evaluation shape in eval mode, then the step
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_phase_timer_on_the_cpu():
    timer = loop.PhaseTimer(torch.device("cpu"), ("a", "b"))
    timer.start()
    timer.mark("a")
    sum(range(10000))
    timer.mark("b")
    totals = timer.totals()
    assert set(totals) == {"a", "b"} and all(v >= 0 for v in totals.values())
    off = loop.PhaseTimer(torch.device("cpu"), ("a",), enabled=False)
    off.start()
    off.mark("a")
    assert math.isnan(off.totals()["a"])


def test_warm_up_puts_every_state_back():
    cfg = training.config()
    rt = runtime.resolve_runtime(cfg, 0)
    model = models.build_model("mobilenet_v2", 4).to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    seconds = loop.warm_up(model, model, torch.nn.CrossEntropyLoss(), rt, batch_size=4, image_size=32)
    assert seconds > 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())
