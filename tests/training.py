"""Training inputs for the tests: a tiny hand-made cache as carcolor.data.cache.load_prepared gives it, and a
cell's training configuration (the defaults' train section with a few settings changed)."""
from __future__ import annotations

import numpy as np

from carcolor import defaults
from carcolor.data import prepare
from carcolor.training import train

CLASSES = ["Black", "White", "Red", "Blue"]


def cache(n_per_class: int = 16, n_val_per_class: int = 4, size: int = 32, seed: int = 0,
          n_test_per_class: int = 0) -> dict:
    """4 classes x 16 training images at 32 px, each class a noisy flat colour. The test split, empty
    unless asked for, is drawn after the others, so train and val are the same with or without it; the
    protocol is preparation's (a test split is scored when there is one)."""
    rng = np.random.default_rng(seed)
    palette = np.array([[20, 20, 20], [235, 235, 235], [200, 30, 30], [30, 40, 200]])

    def split(n):
        labels = np.repeat(np.arange(len(CLASSES)), n)
        images = palette[labels][:, None, None, :] + rng.integers(-20, 21, (len(labels), size, size, 3))
        return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)

    data = {"classes": CLASSES, "info": {"protocol": prepare.protocol(n_test_per_class)}}
    for name, n in (("train", n_per_class), ("val", n_val_per_class), ("test", n_test_per_class)):
        data[f"{name}_images"], data[f"{name}_labels"] = split(n)
    return data


def config(**train_settings) -> train.TrainConfig:
    """The default config's training settings with these changed (threads 2 unless given), cell mobilenet_v1-adam-s0."""
    settings = {**defaults.defaults()["train"], "epochs": 2, "batch_size": 16, "eval_batch_size": 64, "lr": 0.002,
                "threads": 2, **train_settings}
    return train.TrainConfig.for_cell(arch=settings.pop("arch", "mobilenet_v1"),
                                      optimizer=settings.pop("optimizer", "adam"), seed=0, settings=settings)
