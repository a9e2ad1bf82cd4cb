"""Finding a dataset's folder under ``--data-dir``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def find_folder(data_dir: str | Path, folder_name: str, required: Sequence[str]) -> Path | None:
    """``data_dir/folder_name`` or ``data_dir`` itself, whichever holds all ``required`` files; else None."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / folder_name, data_dir):
        if all((candidate / name).exists() for name in required):
            return candidate
    return None
