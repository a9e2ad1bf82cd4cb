"""Atomic training checkpoints: everything needed to resume exactly, written through a temporary file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from classifiers.models.checkpoints import read_checkpoint
from classifiers.models.registry import CHECKPOINT_FORMAT

LAST = "last.pt"
BEST = "best_robust.pt"


def save_atomic(state: dict, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_training_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by the trainer; anything else (missing, corrupt, foreign) raises a clear error."""
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of this project (format {CHECKPOINT_FORMAT})")
    missing = {"model", "optimizer", "scheduler", "epoch", "config", "best", "history"} - set(checkpoint)
    if missing:
        raise ValueError(f"{path} is an incomplete training checkpoint: missing {sorted(missing)}")
    return checkpoint
