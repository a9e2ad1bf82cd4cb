"""Read a stable-baselines3 ``.zip`` without running anything it contains.

SB3's own ``load`` unpickles the zip's ``data`` entries with cloudpickle, so a crafted file runs code. Here the
zip's JSON ``data`` is parsed as plain JSON (entries SB3 serialised with cloudpickle keep only their readable
fields, never unpickled) and its tensors are read with ``torch.load(weights_only=True)``. Callers rebuild the
networks themselves from what they know (our config.json, the policy's state-dict shapes).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlrobust.files import load_weights

POLICY = "policy.pth"
OPTIMIZER = "policy.optimizer.pth"
SERIALIZED = ":serialized:"  # SB3's key for a cloudpickled object inside ``data``; never decoded here


@dataclass
class SB3Zip:
    """What a stable-baselines3 zip holds, read without unpickling: ``data`` (plain JSON; cloudpickled entries
    stripped of their pickle), the policy's state dict, and the optimizer's state dict when saved."""

    path: Path
    data: dict[str, Any]
    policy: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None

    def scalar(self, key: str, default: Any = None) -> Any:
        """A plain (JSON-native) value of ``data``, e.g. ``num_timesteps``; ``default`` when absent or pickled."""
        value = self.data.get(key, default)
        return default if isinstance(value, dict) and SERIALIZED in value else value


def is_sb3_zip(path: str | Path) -> bool:
    """Whether ``path`` is a zip holding an SB3 ``policy.pth``."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return POLICY in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def read_sb3_zip(path: str | Path, *, optimizer: bool = False) -> SB3Zip:
    """Read ``path`` (weights only); a missing, truncated or foreign file, or one whose tensors carry code, raises
    ``ValueError`` in one line naming the file and the member at fault."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stable-baselines3 zip not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if POLICY not in names:
                raise ValueError(f"{path} is a zip but not a stable-baselines3 model (no {POLICY})")
            data = _read_json(archive, path) if "data" in names else {}
            policy = _load_tensors(archive, POLICY, path)
            optim = _load_tensors(archive, OPTIMIZER, path) if optimizer and OPTIMIZER in names else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, OSError, EOFError) as err:
        raise ValueError(f"cannot read stable-baselines3 zip {path} (truncated or corrupt?): {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: its 'data' entry is not a JSON object")
    if not isinstance(policy, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in policy.items()
    ):
        raise ValueError(f"{path}: its {POLICY} is not a state dict of tensors")
    return SB3Zip(path, _strip_pickles(data), policy, optim)


def _read_json(archive: zipfile.ZipFile, path: Path) -> Any:
    """The zip's ``data`` entry as plain JSON (SB3's pickled entries stay base64 text, never decoded)."""
    try:
        return json.loads(archive.read("data"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"cannot read stable-baselines3 zip {path}: its 'data' entry is not JSON ({err})") from None


def _load_tensors(archive: zipfile.ZipFile, member: str, path: Path) -> Any:
    return load_weights(archive.read(member), f"{member} of stable-baselines3 zip {path}")


def _strip_pickles(value: Any) -> Any:
    """``value`` with every SB3 ``:serialized:`` payload removed (the readable fields beside it stay)."""
    if isinstance(value, dict):
        return {k: _strip_pickles(v) if k != SERIALIZED else "<not unpickled>" for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_pickles(v) for v in value]
    return value
