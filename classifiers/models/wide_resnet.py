"""Wide ResNets (Zagoruyko & Komodakis 2016): WRN-34-10 (Madry et al., TRADES, MART) and WRN-28-10.

Pre-activation blocks, three stages of ``(depth - 4) / 6`` blocks with 16k, 32k and 64k channels, BN-ReLU and
global average pooling before the classifier (adaptive, so 64x64 inputs work too). Module names follow the
layout of the public TRADES / MART checkpoints (``block1.layer.0.bn1``, ``convShortcut``, ``fc``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from classifiers.models.normalize import Normalize


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut (1x1 projection when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == planes and stride == 1
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.dropout:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal_in_out else self.convShortcut(pre))


class WideStage(nn.Module):
    def __init__(self, blocks: int, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, dropout)
                for i in range(blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``; ``mean``/``std`` ``None`` takes [0, 1] inputs unnormalised."""

    def __init__(
        self,
        depth: int = 34,
        widen: int = 10,
        *,
        num_classes: int = 10,
        dropout: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 28, 34), got {depth}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.normalize = Normalize(mean, std) if mean is not None else nn.Identity()
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = WideStage(blocks, widths[0], widths[1], 1, dropout)
        self.block2 = WideStage(blocks, widths[1], widths[2], 2, dropout)
        self.block3 = WideStage(blocks, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wrn34_10(num_classes: int = 10, **norm) -> WideResNet:
    """WRN-34-10 (46.2M parameters for 10 classes)."""
    return WideResNet(34, 10, num_classes=num_classes, **norm)


def wrn28_10(num_classes: int = 10, **norm) -> WideResNet:
    """WRN-28-10 (36.5M parameters for 10 classes)."""
    return WideResNet(28, 10, num_classes=num_classes, **norm)
