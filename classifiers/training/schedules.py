"""Learning-rate schedules of the presets, and whether each is stepped per batch or per epoch."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

from classifiers.training.config import TrainConfig


def check_schedule(config: TrainConfig, steps_per_epoch: int) -> None:
    """Refuse a schedule that cannot run this many batches (before any model is built)."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle" and total < 3:
        raise ValueError(f"onecycle needs at least 3 batches in all, got {total}; use --schedule constant")


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> tuple[LRScheduler, bool]:
    """The schedule of ``config`` and ``True`` if it is stepped after every batch (else after every epoch).

    - ``onecycle``: ``OneCycleLR(max_lr=lr, pct_start)`` over all batches, PyTorch's defaults otherwise (as WEAT);
      runs of fewer than ``1.5 / pct_start`` batches get a warm-up of 1.5 batches, the least OneCycleLR accepts.
    - ``multistep``: ``lr * gamma^k`` after the k-th of ``milestones`` epochs (the SAP dense recipe: 100, 130).
    - ``step``: ``lr * gamma`` every ``step_epochs`` epochs (the SAP ADV recipe: halved every 10).
    - ``constant``.
    """
    check_schedule(config, steps_per_epoch)
    if config.schedule == "onecycle":
        total = config.epochs * steps_per_epoch
        # OneCycleLR divides by zero unless its warm-up spans more than one batch; only tiny smoke runs hit this
        pct_start = max(config.pct_start, 1.5 / total)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=pct_start
        )
        return scheduler, True
    if config.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(config.milestones), gamma=config.gamma
        ), False
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_epochs, gamma=config.gamma), False
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0), False
