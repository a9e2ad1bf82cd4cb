"""Shuffled batches straight from a dataset that already sits on the training device.

No DataLoader workers, no per-image transforms: a permutation of indices, one gather per batch, the batched
augmentation of :mod:`classifiers.data.augment`, and the uint8 -> float conversion, all on the device. Under
``torchrun`` each rank takes every ``world_size``-th index of the same permutation (padded to a multiple of the
world size, as ``DistributedSampler`` does), so the ranks see disjoint shards of each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from classifiers.data.augment import random_crop_flip
from classifiers.data.dataset import ImageDataset, to_float


class DeviceBatches:
    """Iterate ``(images float NCHW in [0, 1], labels)`` over ``dataset`` in batches of ``batch_size``.

    Args:
        shuffle: a new permutation every epoch, from ``seed`` and the epoch number (same on every rank).
        augment: random crop (``padding``) and, if ``flip``, horizontal flip, drawn from a per-rank generator
            seeded by ``seed``, the rank and the epoch (so a resumed run draws the same).
        drop_last: skip the last, smaller batch (keeps BN statistics well defined and shapes static).
        channels_last: keep the channels-last memory layout (else make batches NCHW-contiguous).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        padding: int = 4,
        flip: bool = True,
        drop_last: bool = False,
        channels_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.augment, self.padding, self.flip = shuffle, augment, padding, flip
        self.drop_last, self.channels_last = drop_last, channels_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self._augment_generator = torch.Generator(device=dataset.device)

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` (call before iterating, like ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def shard_size(self) -> int:
        return math.ceil(len(self.dataset) / self.world_size)

    def __len__(self) -> int:
        rows = self.shard_size()
        return rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)

    def indices(self) -> torch.Tensor:
        """This rank's indices for the current epoch."""
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self.shard_size() * self.world_size
        if total > n:  # pad by wrapping around so every rank gets as many rows
            order = torch.cat([order, order[: total - n]])
        return order[self.rank :: self.world_size].to(self.dataset.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices()
        self._augment_generator.manual_seed((self.seed * 100_003 + self.epoch) * 1_009 + self.rank + 1)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.dataset.images[index]
            if self.augment:
                images = random_crop_flip(
                    images, padding=self.padding, flip=self.flip, generator=self._augment_generator
                )
            x = to_float(images)
            yield (x if self.channels_last else x.contiguous()), self.dataset.labels[index]
