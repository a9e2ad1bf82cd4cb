"""Finished cells of an evaluation (one attack at one budget, one model variant under one attack and lambda), kept
so that Ctrl-C, SIGTERM or a crash loses at most the cell that was running, and ``--resume`` skips the rest.

Each cell is a few tensors (per-image correctness, predicted probabilities) plus small JSON facts. With an output
folder, the tensors go to ``cells/<hash>.pt`` (written atomically, read back with ``weights_only=True``) and the index
to :class:`rlrobust.runs.CellStore`'s ``cells.json``, which refuses cells saved under other settings. Without one,
cells live in memory only.

Every cell also gets its own seed, derived from the run's seed and the cell's name, so a cell gives the same numbers
whether it runs alone, after others, or after a resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rlrobust.files import atomic_write, load_weights
from rlrobust.runs import CELLS_FILE, CellStore

CELL_FOLDER = "cells"


def cell_seed(seed: int, key: str) -> int:
    """A seed for cell ``key`` of a run seeded with ``seed``: stable across runs, resumes and cell orders."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class TensorCells:
    """Finished cells by key: ``add(key, tensors, facts)``, ``key in cells``, ``get(key) -> (tensors, facts)``."""

    def __init__(self, out: str | Path | None = None, settings: Mapping[str, Any] | None = None) -> None:
        self.out = Path(out) if out is not None else None
        self.store = CellStore(self.out, settings or {}) if self.out is not None else None
        self.memory: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.memory or (self.store is not None and key in self.store)

    def __len__(self) -> int:
        return len(self.store) if self.store is not None else len(self.memory)

    def add(self, key: str, tensors: Mapping[str, torch.Tensor], facts: Mapping[str, Any] | None = None) -> None:
        """Keep a finished cell; with a folder, on disk before it counts as finished."""
        tensors = {name: t.detach().cpu() for name, t in tensors.items()}
        facts = dict(facts or {})
        self.memory[key] = (tensors, facts)
        if self.store is not None:
            name = f"{CELL_FOLDER}/{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
            atomic_write(self.out / name, lambda handle: torch.save(tensors, handle))
            self.store.add(key, {"file": name, **facts})

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The cell's tensors (on the CPU) and facts; a damaged cell file is one clear error."""
        if key in self.memory:
            return self.memory[key]
        entry = dict(self.store.get(key))
        path = self.out / entry.pop("file")
        try:
            tensors = load_weights(path, "saved cell")
        except (ValueError, FileNotFoundError) as err:  # missing, truncated or foreign file
            raise ValueError(f"cannot read the saved cell {key!r} ({err}); use a new --out") from None
        self.memory[key] = (tensors, entry)
        return tensors, entry


def clear_cells(out: str | Path) -> None:
    """Remove the saved cells of a folder (``--overwrite``), so none of the replaced run's cells is reused."""
    out = Path(out)
    (out / CELLS_FILE).unlink(missing_ok=True)
    folder = out / CELL_FOLDER
    if folder.is_dir():
        for path in folder.glob("*.pt"):
            path.unlink()
