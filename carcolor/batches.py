"""Batches straight from the uint8 cache: no JPEG, no per-image Python in the training loop.

Augmentation (random crop from a white-padded image, horizontal flip) and normalisation run on
whole batches as tensor operations. No colour augmentation: hue or saturation jitter would change
the label.
"""
from __future__ import annotations

import numpy as np
import torch

# ImageNet statistics, as used by torchvision's and timm's MobileNets.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class TrainPreset:
    """Random crop (from a white-padded image) and horizontal flip, applied to a NHWC uint8 batch."""

    def __init__(self, *, crop_padding: int = 4, hflip: bool = True):
        self.crop_padding = crop_padding
        self.hflip = hflip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, h, w, _ = x.shape
        p = self.crop_padding
        if p:
            padded = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (p, p, p, p), value=255).permute(0, 2, 3, 1)
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
            x = padded[torch.arange(n, device=x.device)[:, None, None], rows, cols]
        if self.hflip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        return x


class Normalize:
    """NHWC uint8 -> NCHW float (channels_last memory layout), ImageNet-normalised."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32):
        self.mean = torch.tensor(MEAN, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # permute of a contiguous NHWC tensor is already channels_last in memory
        return (x.permute(0, 3, 1, 2).to(self.dtype) - self.mean) / self.std


class CachedBatches:
    """Iterates (images, labels) batches over an in-memory uint8 array, optionally kept on the device."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, device: torch.device,
                 shuffle: bool, seed: int = 0, preset: TrainPreset | None = None,
                 on_device: bool = False, drop_last: bool = False):
        storage = torch.from_numpy(np.array(images))  # into memory, once: no disk reads per batch
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.on_device = on_device and device.type != "cpu"
        if self.on_device:
            storage, self.labels = storage.to(device), self.labels.to(device)
        elif device.type == "cuda":
            storage = storage.pin_memory()
        self.images = storage
        self.batch_size, self.device, self.shuffle = batch_size, device, shuffle
        self.preset, self.drop_last = preset, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.normalize = Normalize(device)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            if self.on_device:
                idx = idx.to(self.device)
            x = self.images[idx].to(self.device, non_blocking=True)
            y = self.labels[idx].to(self.device, non_blocking=True)
            if self.preset is not None:
                x = self.preset(x, self.generator)
            yield self.normalize(x), y
