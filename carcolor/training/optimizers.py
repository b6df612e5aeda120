"""Optimizers by name: `adam`, `adamax`, or any other torch.optim optimizer (case-insensitive)."""
from __future__ import annotations

# Names answered without importing torch, so that validating a config stays fast.
COMMON = {"adam": "Adam", "adamax": "Adamax", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
          "nadam": "NAdam", "radam": "RAdam", "adagrad": "Adagrad", "adadelta": "Adadelta"}


def available() -> dict[str, str]:
    """Lower-case name -> torch.optim class name, for every optimizer torch.optim provides."""
    import torch.optim

    return {name.lower(): name for name in dir(torch.optim)
            if isinstance(getattr(torch.optim, name), type)
            and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)
            and name != "Optimizer"}


def check_optimizer(name: str) -> None:
    if name.lower() in COMMON:
        return
    names = available()
    if name.lower() not in names:
        raise ValueError(f"unknown optimizer {name!r}. Valid: {', '.join(sorted(names))}.")


def build_optimizer(name: str, params, *, lr: float, weight_decay: float = 0.0, **kwargs):
    """torch.optim.<name>(params, lr=lr, weight_decay=weight_decay, **kwargs)."""
    import torch.optim

    check_optimizer(name)
    cls = getattr(torch.optim, COMMON.get(name.lower()) or available()[name.lower()])
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)
    except TypeError as exc:
        raise ValueError(f"optimizer {name!r} rejects the settings {kwargs}: {exc}") from exc
