"""ResNet-18 and pre-activation ResNets for small images (He et al. 2016a/b), as used for adversarial training.

CIFAR variants: a 3x3 stride-1 stem and no max-pool, so a 32x32 input reaches the last stage at 4x4. The head
pools adaptively, so the same networks take 64x64 Tiny-ImageNet images (WEAT: "the same net with adaptive
average pooling"). The module names follow the layout most public CIFAR checkpoints use (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.shortcut.0``, ``linear``), so such weights load without renaming. Inputs are in
[0, 1]; normalisation, when any, is the first layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from classifiers.models.normalize import Normalize


def _shortcut(in_planes: int, planes: int, stride: int, *, with_bn: bool) -> nn.Sequential:
    """Identity when the shape is kept, else a strided 1x1 projection (with BN in the post-activation net)."""
    if stride == 1 and in_planes == planes:
        return nn.Sequential()
    layers: list[nn.Module] = [nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)]
    if with_bn:
        layers.append(nn.BatchNorm2d(planes))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Post-activation block: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU.

    The shortcut is the identity or, when the shape changes, a 1x1 projection with BN ("option B"), unless
    another one is given (the parameter-free "option A" of :mod:`classifiers.models.resnet_cifar`).
    """

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut if shortcut is not None else _shortcut(in_planes, planes, stride, with_bn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv-BN-ReLU-conv, plus the shortcut; nothing after the sum.

    The residual stream is never passed through a ReLU, which is where the SAP paper puts its pruning
    (BN -> ReLU -> SAP -> conv).
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = _shortcut(in_planes, planes, stride, with_bn=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if len(self.shortcut) else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class SmallImageResNet(nn.Module):
    """A ResNet for small images: 3x3 stem, stages of ``blocks`` at ``widths`` (first stage stride 1, then 2).

    Args:
        blocks: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 3, 3) for ResNet-20.
        widths: channels per stage.
        preact: pre-activation blocks (and a final BN-ReLU before pooling) instead of post-activation ones.
        mean, std: per-channel normalisation done inside; ``None`` takes [0, 1] inputs as they are (WEAT).
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        *,
        num_classes: int = 10,
        preact: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ValueError(f"blocks and widths need one entry per stage, got {blocks} and {widths}")
        self.preact = preact
        self.normalize = Normalize(mean, std) if mean is not None else nn.Identity()
        block = PreActBlock if preact else BasicBlock
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes, stages = widths[0], []
        for i, (count, planes) in enumerate(zip(blocks, widths, strict=True)):
            layers = [
                block(in_planes if j == 0 else planes, planes, 2 if (i > 0 and j == 0) else 1) for j in range(count)
            ]
            stages.append(nn.Sequential(*layers))
            in_planes = planes
        self.stages = len(stages)
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        if preact:
            self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        if not self.preact:
            out = F.relu(self.bn1(out))
        for i in range(1, self.stages + 1):
            out = getattr(self, f"layer{i}")(out)
        if self.preact:
            out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes: int = 10, **norm) -> SmallImageResNet:
    """CIFAR ResNet-18 (11.2M parameters for 10 classes): WEAT's and most AT papers' network."""
    return SmallImageResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes=num_classes, **norm)


def preact_resnet18(num_classes: int = 10, **norm) -> SmallImageResNet:
    """Pre-activation ResNet-18 (He et al. 2016b), the other common AT baseline network."""
    return SmallImageResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes=num_classes, preact=True, **norm)


def preact_resnet20(num_classes: int = 10, **norm) -> SmallImageResNet:
    """Pre-activation ResNet-20 (16/32/64 channels, 3 blocks a stage): the SAP paper's own network layout."""
    return SmallImageResNet((3, 3, 3), (16, 32, 64), num_classes=num_classes, preact=True, **norm)
