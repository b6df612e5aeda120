"""Optimizers by name: `adam`, `adamax`, or any other torch.optim optimizer the training loop can drive
(case-insensitive)."""
from __future__ import annotations

import inspect

# Names answered without importing torch, so that validating a config stays fast.
COMMON = {"adam": "Adam", "adamax": "Adamax", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
          "nadam": "NAdam", "radam": "RAdam", "adagrad": "Adagrad", "adadelta": "Adadelta"}


def _all() -> dict[str, type]:
    import torch.optim

    return {name.lower(): getattr(torch.optim, name) for name in dir(torch.optim)
            if isinstance(getattr(torch.optim, name), type)
            and issubclass(getattr(torch.optim, name), torch.optim.Optimizer) and name != "Optimizer"}


def needs_closure(cls: type) -> bool:
    """Whether an optimizer's step requires a closure that re-evaluates the loss (LBFGS does): the
    training loop takes one plain step per batch, so it cannot drive such an optimizer."""
    closure = inspect.signature(cls.step).parameters.get("closure")
    return closure is not None and closure.default is inspect.Parameter.empty


def available() -> dict[str, str]:
    """Lower-case name -> torch.optim class name, for every optimizer the training loop can drive."""
    return {name: cls.__name__ for name, cls in _all().items() if not needs_closure(cls)}


def check_optimizer(name: str) -> None:
    """Raise ValueError naming the valid choices when `name` is no optimizer the loop can drive."""
    if name.lower() in COMMON:
        return
    every = _all()
    if name.lower() in every and needs_closure(every[name.lower()]):
        raise ValueError(f"optimizer {name!r} (torch.optim.{every[name.lower()].__name__}) needs a closure that "
                         f"re-evaluates the loss at every step, and the training loop takes one plain step per "
                         f"batch: choose another. Valid: {', '.join(sorted(available()))}.")
    if name.lower() not in every:
        raise ValueError(f"unknown optimizer {name!r}. Valid: {', '.join(sorted(available()))}.")


def _optimizer_class(name: str):
    import torch.optim

    check_optimizer(name)
    return getattr(torch.optim, COMMON.get(name.lower()) or available()[name.lower()])


def build_optimizer(name: str, params, *, lr: float, weight_decay: float = 0.0, **kwargs):
    """torch.optim.<name>(params, lr=lr, weight_decay=weight_decay, **kwargs)."""
    cls = _optimizer_class(name)
    try:
        return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)
    except TypeError as exc:
        raise ValueError(f"optimizer {name!r} rejects the settings {kwargs}: {exc}") from exc


def optimizer_settings(name: str, kwargs: dict) -> tuple[dict, str]:
    """The optimizer's keyword arguments, with torch.optim's foreach implementation unless chosen.

    torch.optim picks foreach only for CUDA tensors and has a fused Adam but no fused Adamax; asking
    for foreach everywhere times both optimizers' steps with the same kind of implementation.
    Returns the arguments and the implementation's name ('foreach', 'fused' or 'for-loop').
    """
    kwargs = dict(kwargs)
    accepted = inspect.signature(_optimizer_class(name).__init__).parameters
    if "foreach" in accepted and "foreach" not in kwargs and not kwargs.get("fused"):
        kwargs["foreach"] = True
    if kwargs.get("fused"):
        impl = "fused"
    elif kwargs.get("foreach"):
        impl = "foreach"
    else:
        impl = "for-loop"
    return kwargs, impl
