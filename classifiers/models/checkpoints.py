"""Reading model files with errors that say what is wrong (missing, truncated, not a checkpoint)."""

from __future__ import annotations

from pathlib import Path

from rlrobust.files import load_weights


def read_checkpoint(path: str | Path) -> object:
    """``torch.load`` on CPU with ``weights_only=True``; a missing or unreadable file raises a clear error."""
    return load_weights(Path(path), "checkpoint")
