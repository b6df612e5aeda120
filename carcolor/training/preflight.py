"""What would fail once training starts, found before anything runs: each optimizer built with the
config's settings and stepped once, each architecture built and run forward at the config's image size,
the ImageNet weights when they are asked for.

These build things with torch (seconds), so carcolor.checks runs them once per config and code and
remembers that they passed; its key is this module and what it imports (carcolor.sources), nothing
more. Each problem is a ValueError in one line naming the setting and what to do.
"""
from __future__ import annotations

from . import models, optimizers


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_optimizers(names: list[str], train: dict) -> None:
    """Build each optimizer with the config's settings on a dummy parameter and take one step."""
    import torch

    kwargs = train["optimizer_kwargs"]
    for name in names:
        param = torch.nn.Parameter(torch.ones(1))
        try:
            # One step too, as the training loop takes it: Adam, for one, unpacks `betas` only when it steps.
            opt = optimizers.build_optimizer(name, [param], lr=train["lr"], weight_decay=train["weight_decay"],
                                             **kwargs)
            (param * param).sum().backward()
            opt.step()
        except (TypeError, ValueError, IndexError, KeyError, RuntimeError) as exc:
            raise ValueError(_optimizer_problem(name, train, exc)) from exc


def _optimizer_problem(name: str, train: dict, exc: Exception) -> str:
    reason = first_line(exc.__cause__ or exc)  # build_optimizer wraps torch's TypeError in its own ValueError
    kwargs = train["optimizer_kwargs"]
    if kwargs:
        return f"config 'train.optimizer_kwargs' {kwargs}: optimizer {name!r} rejects it: {reason}"
    # No keyword arguments of the user's: what it rejects is the lr or weight_decay every optimizer is given.
    return (f"config 'grid.optimizers': optimizer {name!r} rejects lr={train['lr']}, "
            f"weight_decay={train['weight_decay']}: {reason}; choose another optimizer or change those settings.")


def check_models(archs: list[str], size: int, classes: int) -> None:
    """Build each architecture untrained and run one forward pass at the image size."""
    for arch in archs:
        _check_forward(_build(arch, classes), arch, size, classes)


def _build(arch: str, classes: int):
    try:
        # Never the pretrained weights: a check must not need the network.
        return models.build_model(arch, classes, pretrained=False).eval()
    except Exception as exc:  # any library's failure; reported in one line and stopped here
        raise ValueError(f"architecture {arch!r} cannot be built with {classes} classes "
                         f"({type(exc).__name__}: {first_line(exc)}); choose another architecture.") from exc


def _check_forward(model, arch: str, size: int, classes: int) -> None:
    import torch

    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, size, size))
    except Exception as exc:  # the models' own asserts and shape errors have no common type
        raise ValueError(f"architecture {arch!r} cannot take {size} px images ({type(exc).__name__}: "
                         f"{first_line(exc)}); set data.image_size to the size it expects or choose "
                         f"another architecture.") from exc
    if tuple(getattr(out, "shape", ())) != (1, classes):
        shape = tuple(getattr(out, "shape", ())) or type(out).__name__
        raise ValueError(f"architecture {arch!r} gives outputs of shape {shape} for one image, not {classes} "
                         f"class scores ((1, {classes})); choose a classification architecture.")


def check_pretrained(archs: list[str], classes: int) -> None:
    """Each architecture's ImageNet weights are in the download cache, or can be fetched now (once;
    training then reads the cache)."""
    for arch in archs:
        try:
            models.build_model(arch, classes, pretrained=True)
        except Exception as exc:  # urllib, huggingface_hub and torch.hub each raise their own kinds
            raise ValueError(f"config 'train.pretrained' is true but the ImageNet weights of {arch!r} are not in "
                             f"the download cache and cannot be fetched ({type(exc).__name__}: {first_line(exc)}); "
                             f"run once where the network is reachable (the weights are cached), or set "
                             f"train.pretrained: false.") from None


def inputs(cfg: dict, classes: int) -> dict:
    """What these checks read of a validated config: their outcome depends on nothing else (a change of,
    say, the data's seed or the drawing needs no new check)."""
    train = {k: cfg["train"][k] for k in ("lr", "weight_decay", "optimizer_kwargs", "pretrained")}
    return {"optimizers": cfg["grid"]["optimizers"], "archs": cfg["grid"]["archs"], "train": train,
            "image_size": cfg["data"]["image_size"], "classes": classes}


def check_all(checked: dict) -> None:
    """Every check of this module on its inputs (`inputs`), cheapest first."""
    check_optimizers(checked["optimizers"], checked["train"])
    check_models(checked["archs"], checked["image_size"], checked["classes"])
    if checked["train"]["pretrained"]:
        check_pretrained(checked["archs"], checked["classes"])
