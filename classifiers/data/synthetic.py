"""A small generated dataset of CIFAR shape with a learnable signal: for smoke runs, tests and benchmarks.

Each class has its own random low-resolution colour pattern; an image is its class pattern, upsampled, plus
noise. A network learns it within an epoch or two, so training curves move, but it says nothing about real data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from classifiers.data.dataset import ImageDataset


def make_synthetic(
    n: int, *, num_classes: int = 10, image_size: int = 32, noise: float = 0.25, seed: int = 0, split: str = "train"
) -> ImageDataset:
    """``n`` uint8 images of ``image_size`` in ``num_classes`` balanced classes (same patterns for every split)."""
    patterns = torch.rand(num_classes, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    patterns = F.interpolate(patterns, size=image_size, mode="bilinear", align_corners=False)
    generator = torch.Generator().manual_seed(seed + (1 if split == "train" else 2))
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=generator)]
    images = torch.empty((n, image_size, image_size, 3), dtype=torch.uint8)
    for start in range(0, n, 8192):  # in chunks, so a CIFAR-sized set never needs gigabytes of floats
        chunk = patterns[labels[start : start + 8192]]
        chunk = (chunk + noise * torch.randn(chunk.shape, generator=generator)).clamp(0, 1)
        images[start : start + 8192] = (chunk * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return ImageDataset(images, labels, [f"class{i}" for i in range(num_classes)], f"synthetic-{split}")
