"""The small robust CIFAR-10 networks of the verification literature, to load their published weights.

Architectures as the shared data README describes them (alpha-beta-CROWN's ResNet-2B/4B, the SDP-FO benchmark's
CNN-A-Adv, ERAN's ConvSmall-PGD, Wong et al.'s cifar_small). Each comes with the normalisation it was trained
with, inside the model, so all take [0, 1] images. :func:`load_shared_robust_model` picks the layout from the
file name and unpacks the several checkpoint formats (plain state dict, ``{"state_dict": ...}``, a list of state
dicts, a cascade).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from classifiers.models.checkpoints import read_checkpoint
from classifiers.models.normalize import Normalize

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)


class BiasBlock(nn.Module):
    """conv3x3-ReLU-conv3x3 (with biases, no BN) plus the shortcut (1x1 conv when the shape changes), ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.shortcut(x))


class VerifiedResNet(nn.Module):
    """alpha-beta-CROWN's ResNet-2B / 4B: strided stem, bias-only blocks, a two-layer MLP head."""

    def __init__(self, stem: int, stages: list[list[tuple[int, int]]], flat: int) -> None:
        super().__init__()
        self.normalize = Normalize(CIFAR_MEAN, (0.2471, 0.2435, 0.2616))
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1)
        in_planes = stem
        for i, stage in enumerate(stages, start=1):
            blocks = []
            for planes, stride in stage:
                blocks.append(BiasBlock(in_planes, planes, stride))
                in_planes = planes
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.n_stages = len(stages)
        self.linear1 = nn.Linear(flat, 100)
        self.linear2 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(self.normalize(x)))
        for i in range(1, self.n_stages + 1):
            out = getattr(self, f"layer{i}")(out)
        return self.linear2(F.relu(self.linear1(out.flatten(1))))


class NormalizedSequential(nn.Module):
    """A published ``nn.Sequential`` (its state-dict keys kept under ``net.``) behind its input normalisation."""

    def __init__(self, net: nn.Sequential, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def small_cnn(padding: int, flat: int) -> nn.Sequential:
    """Conv(3,16,4,s2)-ReLU-Conv(16,32,4,s2)-ReLU-Flatten-Linear(flat,100)-ReLU-Linear(100,10)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=2, padding=padding),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=padding),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(flat, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


@dataclass(frozen=True)
class SharedModel:
    """A published robust model: how to build it, where its state dict sits in the file, what it reports."""

    build: Callable[[], nn.Module]
    inner: str  # the submodule the file's state dict belongs to ("" for the whole model)
    trained_eps: str
    source: str


SHARED_ROBUST_MODELS: dict[str, SharedModel] = {
    "resnet2b": SharedModel(
        lambda: VerifiedResNet(8, [[(16, 2), (16, 1)]], 16 * 8 * 8),
        "",
        "2/255",
        "alpha-beta-CROWN complete_verifier/models/cifar10_resnet/resnet2b.pth",
    ),
    "resnet4b": SharedModel(
        lambda: VerifiedResNet(16, [[(32, 2), (32, 1)], [(32, 2), (32, 1)]], 32 * 4 * 4),
        "",
        "2/255",
        "alpha-beta-CROWN complete_verifier/models/cifar10_resnet/resnet4b.pth",
    ),
    "cifar_cnn_a_adv": SharedModel(
        lambda: NormalizedSequential(
            small_cnn(1, 2048),
            tuple(c / 255 for c in (125.3, 123.0, 113.9)),
            tuple(c / 255 for c in (63.0, 62.1, 66.7)),
        ),
        "net",
        "2/255",
        "alpha-beta-CROWN complete_verifier/models/sdp/cifar_cnn_a_adv.model",
    ),
    "cifar_conv_small_pgd": SharedModel(
        lambda: NormalizedSequential(small_cnn(0, 1152), CIFAR_MEAN, (0.2023, 0.1994, 0.2010)),
        "net",
        "PGD",
        "alpha-beta-CROWN complete_verifier/models/eran/cifar_conv_small_pgd.pth",
    ),
    "cifar_small_8px": SharedModel(
        lambda: NormalizedSequential(small_cnn(1, 2048), (0.485, 0.456, 0.406), (0.225, 0.225, 0.225)),
        "net",
        "8/255 (provable)",
        "locuslab/convex_adversarial models_scaled/cifar_small_8px.pth (cascade[0])",
    ),
}


def shared_robust_name(path: str | Path) -> str | None:
    """The :data:`SHARED_ROBUST_MODELS` key whose name the file name starts with, if any."""
    stem = Path(path).name
    for name in sorted(SHARED_ROBUST_MODELS, key=len, reverse=True):
        if stem.startswith(name):
            return name
    return None


def load_shared_robust_model(path: str | Path, name: str | None = None) -> nn.Module:
    """Load one of :data:`SHARED_ROBUST_MODELS` from its published file (layout chosen by file name or ``name``)."""
    name = name or shared_robust_name(path)
    if name not in SHARED_ROBUST_MODELS:
        raise ValueError(
            f"cannot tell which robust model {Path(path).name} is; name one of {sorted(SHARED_ROBUST_MODELS)}"
        )
    spec = SHARED_ROBUST_MODELS[name]
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if isinstance(state, list | tuple):  # ERAN: a list of one state dict; Wong et al.: a cascade, use the first
        state = state[0] if state else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict for {name}")
    model = spec.build()
    target = model.get_submodule(spec.inner) if spec.inner else model
    try:
        target.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match the {name} architecture: {err}") from None
    return model.eval()
