"""Batches straight from the uint8 cache: no JPEG, no per-image Python in the training loop.

Augmentation (random crop from a white-padded image, horizontal flip) and normalisation run on
whole batches as tensor operations: crop and flip are one gather, normalisation a multiply-add.
No colour augmentation: hue or saturation jitter would change the label.

The random choices of an epoch (order, crop offsets, flips) are drawn at its start from one CPU
generator, so a run is reproducible on any device and resumes exactly from the generator's state
saved at an epoch boundary. Where the images live on the GPU, those choices go to the device once
per epoch; each batch is then device work only, without a host round trip.
"""
from __future__ import annotations

import numpy as np
import torch

# ImageNet statistics, as used by torchvision's and timm's MobileNets.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class TrainPreset:
    """Random crop (from an image padded with white) and horizontal flip of a NHWC uint8 batch.

    `sample` draws the per-image choices, `apply` carries them out as one gather; calling the preset
    does both. The output has the input's shape and dtype, and only pixels of the input or white.
    """

    def __init__(self, *, crop_padding: int = 4, hflip: bool = True):
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.crop_padding = crop_padding
        self.hflip = hflip

    @property
    def identity(self) -> bool:
        return not self.crop_padding and not self.hflip

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Per-image (dy, dx, flip) as a (n, 3) int64 CPU tensor."""
        p = self.crop_padding
        offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=generator)
        flips = (torch.rand(n, generator=generator) < 0.5) if self.hflip else torch.zeros(n, dtype=torch.bool)
        return torch.cat([offsets, flips.long()[:, None]], 1)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Crop and flip x (N, H, W, C uint8) as `params` (from `sample`, on x's device) say."""
        if self.identity:
            return x
        n, h, w, _ = x.shape
        p = self.crop_padding
        if p:
            # pad H and W of the NHWC batch (F.pad pads the last dimensions first)
            x = torch.nn.functional.pad(x, (0, 0, p, p, p, p), value=255)
        dy, dx, flip = params[:, 0], params[:, 1], params[:, 2]
        j = torch.arange(w, device=x.device)
        cols = torch.where(flip[:, None].bool(), w - 1 - j, j) + dx[:, None]  # (n, w)
        rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
        return x[torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(len(x), generator).to(x.device))


class Normalize:
    """NHWC uint8 -> NCHW float (channels_last memory layout), ImageNet-normalised as x * scale + shift."""

    def __init__(self, device: torch.device | str, dtype: torch.dtype = torch.float32):
        mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1) * 255
        std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1) * 255
        # (x - mean) / std = x * scale + shift; the constants are computed in float64, once.
        self.scale = (1 / std).to(device=device, dtype=dtype)
        self.shift = (-mean / std).to(device=device, dtype=dtype)
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # A permuted contiguous NHWC tensor is already channels_last in memory; the result keeps that.
        x = x.permute(0, 3, 1, 2)
        if x.device.type == "cpu":  # measured: convert, then scale and shift in place, is quickest here
            return x.to(self.dtype).mul_(self.scale).add_(self.shift)
        return torch.addcmul(self.shift, x.to(self.dtype), self.scale)


def to_device(images: np.ndarray, device: torch.device | str, chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """A (memory-mapped) uint8 array as a tensor on `device`, copied in chunks of about chunk_bytes
    through two staging buffers allocated once and reused, so the host never holds a second full copy
    (16.6 GB for the paper's training split) and allocates nothing per chunk.

    On CUDA the buffers are pinned (page-locked): the copy to the GPU is then one DMA at the bus's
    speed, issued without waiting (non_blocking), while the host fills the other buffer from the array;
    from pageable memory the driver would first copy every byte into its own small pinned buffers,
    synchronously. Elsewhere (the CPU) pinning does not exist and the copies are plain.
    """
    device = torch.device(device)
    shape = tuple(images.shape)
    out = torch.empty(shape, dtype=torch.uint8, device=device)
    if not len(images):
        return out
    pin = device.type == "cuda"
    rows = max(1, min(len(images), chunk_bytes // max(1, images[0].nbytes)))
    buffers = [torch.empty((rows,) + shape[1:], dtype=torch.uint8, pin_memory=pin) for _ in range(2)]
    copied: list = [None, None]  # per buffer: the event after which the GPU has read it
    for k, start in enumerate(range(0, len(images), rows)):
        stop = min(len(images), start + rows)
        if copied[k % 2] is not None:
            copied[k % 2].synchronize()  # never overwrite a buffer the GPU is still reading
        staging = buffers[k % 2][:stop - start]
        np.copyto(staging.numpy(), images[start:stop])  # reads the memory map straight into the buffer
        out[start:stop].copy_(staging, non_blocking=pin)
        if pin:
            copied[k % 2] = torch.cuda.Event()
            copied[k % 2].record()
    if pin:
        torch.cuda.current_stream(device).synchronize()
    return out


class CachedBatches:
    """Iterates (images, labels) batches over an in-memory uint8 array, optionally kept on the device.

    images: (N, H, W, 3) uint8, a numpy array (memory-mapped or not) or a torch tensor (which may
    already be on the device). Images go to the device as uint8 (a quarter of float32's bytes),
    through pinned memory when they stay on the host; crop, flip and normalisation run there.
    `dtype` is the dtype of the yielded images (bf16 saves autocast a cast on the GPU).
    """

    def __init__(self, images, labels, *, batch_size: int, device: torch.device | str, shuffle: bool,
                 seed: int = 0, preset: TrainPreset | None = None, on_device: bool = False,
                 drop_last: bool = False, dtype: torch.dtype = torch.float32):
        device = torch.device(device)
        if not torch.is_tensor(images):
            images = np.asarray(images)
        shape, dtype_in = tuple(images.shape), str(images.dtype).replace("torch.", "")
        if dtype_in != "uint8" or len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {shape} {dtype_in}")
        labels = labels if torch.is_tensor(labels) else torch.from_numpy(np.asarray(labels, dtype=np.int64))
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        on_gpu_already = torch.is_tensor(images) and images.device.type != "cpu"
        self.on_device = device.type != "cpu" and (on_device or on_gpu_already)
        if torch.is_tensor(images):
            storage = images.to(device) if self.on_device else images.cpu()
        elif self.on_device:
            storage = to_device(images, device)
        else:  # into memory, once: no disk reads per batch
            storage = torch.from_numpy(np.array(images, order="C"))
        labels = labels.to(device) if self.on_device else labels.cpu()
        self.images, self.labels = storage.contiguous(), labels.long()
        self.batch_size, self.device, self.shuffle = batch_size, device, shuffle
        self.preset, self.drop_last = preset, drop_last
        self.pin = device.type == "cuda" and not self.on_device
        self.generator = torch.Generator().manual_seed(seed)
        self.normalize = Normalize(device, dtype)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This epoch's image order and augmentation choices, drawn from the CPU generator."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[:len(self) * self.batch_size]
        params = None
        if self.preset is not None and not self.preset.identity:
            params = self.preset.sample(len(order), self.generator)
        return order, params

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.pin:
            return self.images.index_select(0, idx)
        # into page-locked memory (the caching host allocator recycles it once the copy is done),
        # so that the copy to the GPU runs asynchronously
        buf = torch.empty((len(idx),) + tuple(self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
        torch.index_select(self.images, 0, idx, out=buf)
        return buf.to(self.device, non_blocking=True)

    def __iter__(self):
        order, params = self._epoch_plan()
        # one transfer per epoch (none per batch) where the data live on the device
        order = order.to(self.images.device, non_blocking=True)
        labels = self.labels[order]
        if self.pin:
            labels = labels.pin_memory()
        if params is not None:
            params = params.to(self.device, non_blocking=self.pin)
        b = self.batch_size
        for start in range(0, len(order), b):
            x = self._gather(order[start:start + b])
            y = labels[start:start + b].to(self.device, non_blocking=True)
            if params is not None:
                x = self.preset.apply(x, params[start:start + b])
            yield self.normalize(x), y
