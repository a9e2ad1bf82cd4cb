"""Atomic training checkpoints: everything needed to resume exactly, written through a temporary file."""

from __future__ import annotations

from pathlib import Path

import torch

from classifiers.models.checkpoints import read_checkpoint
from classifiers.models.registry import CHECKPOINT_FORMAT
from rlrobust.files import atomic_write

LAST = "last.pt"
BEST = "best_robust.pt"


def save_atomic(state: dict, path: str | Path) -> Path:
    """``torch.save`` through :func:`rlrobust.files.atomic_write`: a crash never leaves half a file."""
    return atomic_write(path, lambda handle: torch.save(state, handle))


def load_training_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by the trainer; anything else (missing, corrupt, foreign) raises a clear error."""
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of this project (format {CHECKPOINT_FORMAT})")
    missing = {"model", "optimizer", "scheduler", "epoch", "config", "best", "history"} - set(checkpoint)
    if missing:
        raise ValueError(f"{path} is an incomplete training checkpoint: missing {sorted(missing)}")
    return checkpoint
