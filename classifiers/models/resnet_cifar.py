"""CIFAR ResNet-20/32/44/56 (He et al. 2016, Sec. 4.2), the SAP paper's image model.

Three stages of basic blocks with 16, 32 and 64 channels and a parameter-free "option A" shortcut
(subsample by 2, zero-pad the channels). ReLU is called functionally, as in most CIFAR ResNet code; SAP
insertion handles that. The layout matches the widely used pretrained weights of
akamaster/pytorch_resnet_cifar10, which :func:`load_akamaster_resnet` loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from classifiers.models import resnet
from classifiers.models.checkpoints import read_checkpoint
from classifiers.models.normalize import Normalize

# The normalisation the akamaster checkpoints were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTHS = (20, 32, 44, 56)


class OptionAShortcut(nn.Module):
    """Subsample by 2 and zero-pad the channels (``pad`` on each side): the shortcut without parameters."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(resnet.BasicBlock):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the option-A shortcut where the shape changes, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        changes = stride != 1 or in_planes != planes
        shortcut = OptionAShortcut((planes - in_planes) // 2) if changes else nn.Identity()
        super().__init__(in_planes, planes, stride, shortcut=shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images in [0, 1]; normalisation happens inside."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {depth}")
        blocks = (depth - 2) // 6
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """The SAP paper's ResNet-20."""
    return CifarResNet(20, num_classes)


def load_akamaster_resnet(path: str | Path, depth: int | None = None) -> CifarResNet:
    """Load an akamaster/pytorch_resnet_cifar10 checkpoint (``{"state_dict": ...}`` with ``module.`` keys).

    The depth is read from the file name (``resnet20-*.th``) unless given.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)  # clear errors for a missing, truncated or foreign file
    if depth is None:
        digits = "".join(c for c in path.name.split("-")[0] if c.isdigit())
        depth = int(digits) if digits else 20
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = CifarResNet(depth)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match ResNet-{depth}: missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}"
        )
    return model.eval()
