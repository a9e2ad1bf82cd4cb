"""Random crop with zero padding and horizontal flip for a whole batch at once, on the batch's device.

The standard CIFAR / Tiny-ImageNet training augmentation (``RandomCrop(size, padding=4)`` then
``RandomHorizontalFlip()``), done as one padded copy and one gather for the batch instead of a Python call per
image. Works on uint8 (N, H, W, C) images, before they are turned into floats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each image of ``images`` (N, H, W, C) cropped back to H x W at a uniform offset of its zero-padded
    version, and mirrored left-right with probability 1/2 when ``flip``."""
    if images.ndim != 4:
        raise ValueError(f"expected a batch (N, H, W, C), got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, h, w, _ = images.shape
    device = images.device
    padded = F.pad(images, (0, 0, padding, padding, padding, padding)) if padding else images
    top = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
    rows = top + torch.arange(h, device=device)  # (N, H)
    cols = left + torch.arange(w, device=device)  # (N, W)
    if flip:
        mirrored = torch.rand((n, 1), device=device, generator=generator) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]
