"""Architectures by name, and loading any supported model file into a ready-to-attack ``nn.Module``.

Every model takes images in [0, 1] and normalises inside itself (or not at all). The same names build the
Tiny-ImageNet variants: all heads pool adaptively, so ``build_model("resnet18", num_classes=200)`` is WEAT's
Tiny-ImageNet ResNet-18.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from classifiers.models.checkpoints import read_checkpoint
from classifiers.models.resnet import preact_resnet18, preact_resnet20, resnet18
from classifiers.models.resnet_cifar import CifarResNet, load_akamaster_resnet
from classifiers.models.shared_robust import load_shared_robust_model, shared_robust_name
from classifiers.models.wide_resnet import wrn28_10, wrn34_10

#: Marks checkpoints written by :mod:`classifiers.training`.
CHECKPOINT_FORMAT = "rlrobust-classifier/1"


def _cifar_resnet(depth: int) -> Callable[..., nn.Module]:
    def build(num_classes: int = 10, mean=None, std=None) -> nn.Module:
        if mean is None:  # CifarResNet always normalises; identity constants keep inputs as they are
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return CifarResNet(depth, num_classes, tuple(mean), tuple(std))

    build.__doc__ = f"CIFAR ResNet-{depth} with the parameter-free 'option A' shortcut (the akamaster layout)."
    return build


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet20": _cifar_resnet(20),
    "resnet32": _cifar_resnet(32),
    "resnet44": _cifar_resnet(44),
    "resnet56": _cifar_resnet(56),
    "preact_resnet20": preact_resnet20,
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "wrn34_10": wrn34_10,
    "wrn28_10": wrn28_10,
}


def build_model(
    arch: str,
    num_classes: int = 10,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """A freshly initialised ``arch`` for ``num_classes`` classes (normalising with ``mean``/``std`` if given)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {sorted(ARCHITECTURES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std for normalisation, or neither")
    norm = {} if mean is None else {"mean": tuple(mean), "std": tuple(std)}
    return ARCHITECTURES[arch](num_classes=num_classes, **norm)


def load_classifier(path: str | Path, *, num_classes: int | None = None) -> nn.Module:
    """Load a model file of any supported kind, in eval mode.

    Recognised: checkpoints of :mod:`classifiers.training` (architecture stored inside), the akamaster CIFAR
    ResNets (``resnet20-*.th`` ...) and the shared robust CIFAR-10 models (by file name). ``num_classes``, when
    given, must match the model's.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    name = shared_robust_name(path)
    if isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT:
        model = model_from_checkpoint(checkpoint, path)  # ours first: a run may be named like a shared model
    elif name is not None:
        model = load_shared_robust_model(path, name)
    elif isinstance(checkpoint, dict) and "state_dict" in checkpoint and path.name.startswith("resnet"):
        model = load_akamaster_resnet(path)
    else:
        raise ValueError(
            f"{path} is not a model file this loader knows: expected a checkpoint of scripts/train_classifier.py, "
            f"an akamaster resnetNN-*.th or one of the shared robust models"
        )
    classes = output_classes(model)
    if num_classes is not None and classes != num_classes:
        raise ValueError(f"{path} has {classes} output classes but the data has {num_classes}")
    check_finite_weights(model, path)
    return model.eval()


def check_finite_weights(model: nn.Module, path: str | Path = "model") -> None:
    """Refuse a model with a NaN or infinite weight or buffer (a diverged run): its accuracy would be meaningless."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path} has non-finite (NaN or inf) values in {name}: a diverged or damaged model")


def model_from_checkpoint(checkpoint: dict, path: str | Path = "checkpoint") -> nn.Module:
    """Rebuild the network of a training checkpoint and load its weights."""
    try:
        arch, classes, norm, state = (checkpoint[k] for k in ("arch", "num_classes", "normalization", "model"))
    except KeyError as err:
        raise ValueError(f"{path} is an incomplete training checkpoint (no {err.args[0]!r})") from None
    model = build_model(arch, classes, **(norm or {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit {arch} with {classes} classes: {err}") from None
    return model


def output_classes(model: nn.Module) -> int:
    """Number of outputs of the model's last linear layer."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no linear output layer")
    return linears[-1].out_features
