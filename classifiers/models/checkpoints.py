"""Reading model files with errors that say what is wrong (missing, truncated, not a checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch


def read_checkpoint(path: str | Path) -> object:
    """``torch.load`` on CPU with ``weights_only=True``; a missing or unreadable file raises a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated, corrupt or foreign files
        raise ValueError(f"cannot read checkpoint {path} (corrupt, truncated or not a torch file): {err}") from None
