"""Batches from the uint8 cache: crop/flip only (no colour change), white padding, normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from carcolor.training.batches import MEAN, STD, CachedBatches, Normalize, TrainPreset, to_device


def _images(n=16, size=32, seed=0) -> np.ndarray:
    """Random photos with a black border row/column, so that white padding is told apart."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 250, (n, size, size, 3), dtype=np.uint8)
    return x


def _reference(x: torch.Tensor, params: torch.Tensor, p: int) -> torch.Tensor:
    """Crop and flip image by image, the slow obvious way."""
    out = []
    n, h, w, c = x.shape
    for img, (dy, dx, flip) in zip(x, params.tolist()):
        padded = torch.full((h + 2 * p, w + 2 * p, c), 255, dtype=torch.uint8)
        padded[p:p + h, p:p + w] = img
        crop = padded[dy:dy + h]
        crop = crop.flip(1) if flip else crop
        out.append(crop[:, dx:dx + w] if not flip else crop[:, 2 * p - dx:2 * p - dx + w])
    return torch.stack(out)


def test_preset_keeps_shape_dtype_and_only_crops_and_flips():
    x = torch.from_numpy(_images())
    preset = TrainPreset(crop_padding=4, hflip=True)
    params = preset.sample(len(x), torch.Generator().manual_seed(1))
    y = preset.apply(x, params)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert params[:, :2].min() >= 0 and params[:, :2].max() <= 8
    assert set(params[:, 2].tolist()) == {0, 1}
    torch.testing.assert_close(y, _reference(x, params, 4), rtol=0, atol=0)


def test_flip_only_keeps_every_colour_histogram():
    x = torch.from_numpy(_images())
    preset = TrainPreset(crop_padding=0, hflip=True)
    params = preset.sample(len(x), torch.Generator().manual_seed(0))
    y = preset.apply(x, params)
    flipped = params[:, 2].bool()
    assert flipped.any() and (~flipped).any()
    torch.testing.assert_close(y[flipped], x[flipped].flip(2), rtol=0, atol=0)
    torch.testing.assert_close(y[~flipped], x[~flipped], rtol=0, atol=0)
    for a, b in zip(x, y):  # per image and channel: the same pixel values, only moved
        for c in range(3):
            assert torch.equal(torch.bincount(a[..., c].flatten(), minlength=256),
                               torch.bincount(b[..., c].flatten(), minlength=256))


def test_padding_is_white_and_pixels_come_from_the_image():
    x = torch.zeros(32, 16, 16, 3, dtype=torch.uint8)  # black images
    preset = TrainPreset(crop_padding=4, hflip=True)
    params = preset.sample(len(x), torch.Generator().manual_seed(2))
    y = preset.apply(x, params)
    assert set(torch.unique(y).tolist()) <= {0, 255}
    for img, (dy, dx, _) in zip(y, params.tolist()):
        white_rows = abs(dy - 4)
        white_cols = abs(dx - 4)
        expected_white = 16 * 16 - (16 - white_rows) * (16 - white_cols)
        assert int((img[..., 0] == 255).sum()) == expected_white
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()  # no colour shift


def test_identity_preset_and_call():
    x = torch.from_numpy(_images(4))
    assert TrainPreset(crop_padding=0, hflip=False)(x, torch.Generator()) is x
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    preset = TrainPreset()
    torch.testing.assert_close(preset(x, g1), preset.apply(x, preset.sample(4, g2)), rtol=0, atol=0)
    with pytest.raises(ValueError):
        TrainPreset(crop_padding=-1)


def test_normalize_is_imagenet_and_channels_last():
    x = torch.from_numpy(_images(3, 8))
    y = Normalize("cpu")(x)
    assert y.shape == (3, 3, 8, 8) and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = (x.permute(0, 3, 1, 2).double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    assert Normalize("cpu", torch.bfloat16)(x).dtype == torch.bfloat16


def test_cached_batches_cover_the_set_once_per_epoch():
    images = _images(20, 8)
    labels = np.arange(20) % 4
    batches = CachedBatches(images, labels, batch_size=6, device="cpu", shuffle=True, seed=0)
    assert len(batches) == 4
    seen = []
    for x, y in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 8, 8)
        assert x.is_contiguous(memory_format=torch.channels_last)
        seen.append(y)
    assert [len(y) for y in seen] == [6, 6, 6, 2]
    assert sorted(torch.cat(seen).tolist()) == sorted(labels.tolist())
    # without augmentation each batch is the normalised images of its labels' rows
    plain = CachedBatches(images, np.arange(20), batch_size=6, device="cpu", shuffle=True, seed=0)
    norm = Normalize("cpu")
    for x, idx in plain:
        torch.testing.assert_close(x, norm(torch.from_numpy(images)[idx]), rtol=0, atol=0)
    dropped = CachedBatches(images, labels, batch_size=6, device="cpu", shuffle=False, drop_last=True)
    assert len(dropped) == 3 and sum(len(y) for _, y in dropped) == 18


def test_cached_batches_are_reproducible_and_resumable():
    images, labels = _images(24, 8), np.arange(24) % 4

    def make():
        return CachedBatches(images, labels, batch_size=8, device="cpu", shuffle=True, seed=5,
                             preset=TrainPreset(), drop_last=True)

    a, b = make(), make()
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    state = a.generator.get_state()
    second = [x for x, _ in a]
    b.generator.set_state(state)  # what a resumed run does at an epoch boundary
    for x, (xb, _) in zip(second, b):
        assert torch.equal(x, xb)
    other = CachedBatches(images, labels, batch_size=8, device="cpu", shuffle=True, seed=6,
                          preset=TrainPreset(), drop_last=True)
    assert not all(torch.equal(x, xo) for (x, _), (xo, _) in zip(make(), other))


def test_cached_batches_accept_tensors_and_reject_bad_input():
    images = torch.from_numpy(_images(8, 8))
    batches = CachedBatches(images, torch.arange(8), batch_size=4, device="cpu", shuffle=False, on_device=True)
    assert not batches.on_device  # the CPU is no device to copy to
    x, y = next(iter(batches))
    assert y.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="uint8"):
        CachedBatches(images.float(), torch.arange(8), batch_size=4, device="cpu", shuffle=False)
    with pytest.raises(ValueError, match="uint8"):
        CachedBatches(images.numpy().astype(np.float32), np.arange(8), batch_size=4, device="cpu", shuffle=False)
    with pytest.raises(ValueError, match="uint8"):
        CachedBatches(images[..., :1], torch.arange(8), batch_size=4, device="cpu", shuffle=False)
    with pytest.raises(ValueError, match="labels"):
        CachedBatches(images, torch.arange(7), batch_size=4, device="cpu", shuffle=False)


def test_loader_benchmark_smoke(repo, tmp_path):
    """benchmarks/loader.py end to end at toy size: data, ImageFolder tree, the three loops, ratios."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_loader", repo / "benchmarks" / "loader.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    result = loader.main(["--smoke", "--data-dir", str(tmp_path), "--workers", "1", "--arch", "mobilenet_v1"])
    assert set(result["median_images_per_s"]) == {"carcolor", "folder+our-step", "folder+plain-step"}
    assert all(v > 0 for v in result["median_images_per_s"].values())
    assert result["ratio_vs_plain"] > 0
    folder = next(tmp_path.glob("imagefolder-*"))
    assert sorted(p.name for p in folder.iterdir()) == ["Black", "Blue", "Grey", "White"]


def test_to_device_copies_a_memory_map_in_chunks(tmp_path):
    images = _images(10, 8)
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    out = to_device(mapped, "cpu", chunk_bytes=3 * images[0].nbytes)  # 4 chunks, the last one short
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(images))


def test_to_device_on_cuda_stages_through_two_reused_pinned_buffers(tmp_path, monkeypatch):
    """The CUDA path, run on the CPU with CUDA's pieces stood in for: two pinned staging buffers
    allocated once, asynchronous copies, and a buffer refilled only after the copy out of it is done."""
    images = _images(10, 8)
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    log, pinned = [], []
    real_empty, real_copyto = torch.empty, np.copyto

    def empty(*shape, pin_memory=False, device=None, **kw):
        pinned.append(pin_memory)
        return real_empty(*shape, **kw)  # on the CPU, unpinned: none of this needs a GPU

    class Event:
        made = 0

        def __init__(self):
            self.i, Event.made = Event.made, Event.made + 1

        def record(self):
            log.append(("copy issued", self.i))

        def synchronize(self):
            log.append(("copy done", self.i))

    class Stream:
        def synchronize(self):
            log.append(("all done",))

    def copyto(dst, src):
        log.append(("fill", sum(1 for e in log if e[0] == "fill")))
        real_copyto(dst, src)

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(np, "copyto", copyto)
    out = to_device(mapped, "cuda", chunk_bytes=3 * images[0].nbytes)  # 4 chunks through 2 buffers
    assert torch.equal(out, torch.from_numpy(images))
    assert pinned == [False, True, True]  # the result, then the two staging buffers: nothing per chunk
    assert log == [("fill", 0), ("copy issued", 0), ("fill", 1), ("copy issued", 1),
                   ("copy done", 0), ("fill", 2), ("copy issued", 2),
                   ("copy done", 1), ("fill", 3), ("copy issued", 3), ("all done",)]


def test_loader_benchmark_on_cuda_times_100_steps_by_the_loop_clock(repo, monkeypatch):
    """On a GPU the default is 100 timed steps, and our loop's time is train_one_epoch's own `seconds`
    (the loop alone), not a wall clock around it that would include its scoring and copies."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_loader_cuda", repo / "benchmarks" / "loader.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    assert loader.parse_args(["--device", "cuda"]).steps == 100
    assert loader.parse_args(["--device", "cuda", "--size", "224"]).steps == 100
    assert loader.parse_args(["--size", "224"]).steps == 4 and loader.parse_args([]).steps == 24
    step = loader.OurStep("mobilenet_v1", 4, "adam", "cpu")
    monkeypatch.setattr(loader.loop, "train_one_epoch", lambda *a, **k: {"seconds": 1.25})
    assert step(iter([]), 3) == 1.25
