"""A whole image dataset as two tensors: uint8 images (N, H, W, C) and int64 labels, moved to a device once.

Images stay uint8 until a batch is taken, a quarter of the memory of float32: CIFAR-10's 50,000 training images
are 150 MiB, Tiny-ImageNet's 100,000 are 1.2 GiB. They are stored channels-last (HWC, the files' own layout),
so ``batch.permute(0, 3, 1, 2)`` is an NCHW view with channels-last strides, the layout convolutions run fastest
in on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch


class DatasetFilesMissing(FileNotFoundError):
    """The files of a dataset are not where they were looked for; the message says which and where to get them."""


@dataclass
class ImageDataset:
    """``images`` uint8 (N, H, W, C) and ``labels`` int64 (N,) on one device, with the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: Sequence[str]
    name: str = "dataset"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"{self.name}: images must be uint8 (N, H, W, C), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )
        self.labels = self.labels.long()
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"{self.name}: labels outside [0, {len(self.classes)})")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same data on ``device`` (one transfer of the whole set)."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, index: torch.Tensor | slice) -> ImageDataset:
        return replace(self, images=self.images[index], labels=self.labels[index])

    def split(self, holdout: int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """A random split into (rest, held-out ``holdout`` images), the same for the same seed."""
        if not 0 < holdout < len(self):
            raise ValueError(f"{self.name}: cannot hold out {holdout} of {len(self)} images")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.device)
        return self.subset(order[holdout:]), self.subset(order[:holdout])

    def floats(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images (all, or ``index``) as float NCHW in [0, 1], channels-last in memory."""
        images = self.images if index is None else self.images[index]
        return to_float(images)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation of the images on [0, 1] (for models that normalise)."""
        channels = self.images.shape[-1]
        total = torch.zeros(channels, dtype=torch.float64, device=self.device)
        squares = torch.zeros(channels, dtype=torch.float64, device=self.device)
        for start in range(0, len(self), 8192):  # in chunks: a float64 copy of Tiny-ImageNet would be 10 GB
            chunk = self.images[start : start + 8192].reshape(-1, channels).double() / 255
            total += chunk.sum(0)
            squares += (chunk * chunk).sum(0)
        count = len(self) * self.images.shape[1] * self.images.shape[2]
        mean = total / count
        std = (squares / count - mean * mean).clamp_min(0).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], keeping the channels-last memory layout."""
    return images.permute(0, 3, 1, 2).float().div_(255)
