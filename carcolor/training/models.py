"""Models by name: the two of the study, plus any torchvision or timm architecture."""
from __future__ import annotations

import difflib

# The study's two models. MobileNetV1 comes from timm, whose `mobilenetv1_100` follows the paper
# (4.23 M parameters and 569 M MACs at 224 px with 1,000 classes).
REGISTRY = {
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "mobilenet_v1": ("timm", "mobilenetv1_100"),
}


def _known() -> tuple[set[str], set[str]]:
    import timm
    import torchvision

    return set(torchvision.models.list_models()), set(timm.list_models())


def check_arch(name: str) -> None:
    """Raise ValueError naming the valid choices when `name` is no known architecture."""
    if name in REGISTRY:
        return
    tv, tm = _known()
    if name in tv or name in tm:
        return
    close = difflib.get_close_matches(name, sorted(set(REGISTRY) | tv | tm), n=3)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ValueError(f"unknown architecture {name!r}. Valid: {', '.join(REGISTRY)}, or any torchvision "
                     f"model name (torchvision.models.list_models()) or timm model name "
                     f"(timm.list_models()).{hint}")


def build_model(name: str, num_classes: int, *, pretrained: bool = False):
    """A freshly initialised model with `num_classes` outputs (ImageNet weights if pretrained)."""
    check_arch(name)
    library, real = REGISTRY.get(name, (None, name))
    if library is None:
        tv, _ = _known()
        library = "torchvision" if name in tv else "timm"
    if library == "torchvision":
        import torchvision

        if not pretrained:
            return torchvision.models.get_model(real, weights=None, num_classes=num_classes)
        model = torchvision.models.get_model(real, weights="DEFAULT")
        return _replace_head(model, num_classes)
    import timm

    return timm.create_model(real, pretrained=pretrained, num_classes=num_classes)


def _replace_head(model, num_classes: int):
    import torch.nn as nn

    for attr in ("classifier", "fc", "head", "heads"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return model
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, num_classes)
            return model
    raise ValueError(f"cannot find the classification head of {type(model).__name__} to resize it")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model, image_size: int) -> int:
    """Multiply-accumulates of one forward pass on one image of image_size x image_size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
