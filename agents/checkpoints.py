"""Checkpoints of a training run, written atomically (temporary file in the same folder, fsync, rename).

A checkpoint is stable-baselines3's own zip (``agents.load_agent`` reads it, and a resume rebuilds the model from
config.json plus its tensors and plain counters, unpickling nothing): the online and target networks, the
optimizer state and the counters (agent steps, updates, episodes, epsilon).
The replay memory is not saved -- it would be gigabytes -- and a resumed run refills it before learning again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rlrobust.files import atomic_write, load_weights

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
FINAL_MODEL = "final_model.zip"
Q_NETWORK_FILE = "q_network.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.zip$")


def save_model(model: BaseAlgorithm, path: Path) -> Path:
    """``model.save`` made atomic."""
    return atomic_write(path, model.save)


def save_q_network(model: BaseAlgorithm, path: Path) -> Path:
    """The online Q-network alone, as a plain state dict (loadable with torch only)."""
    state = {k: v.detach().cpu() for k, v in model.q_net.network.state_dict().items()}
    return atomic_write(path, lambda handle: torch.save(state, handle))


def save_checkpoint(model: BaseAlgorithm, run_dir: Path, keep: int = 2) -> Path:
    """Write ``checkpoints/step_<agent steps>.zip`` and delete all but the newest ``keep`` (>= 1)."""
    path = save_model(model, Path(run_dir) / CHECKPOINT_DIR / f"step_{model.num_timesteps:012d}.zip")
    for old in checkpoints(run_dir)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's step checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = [p for p in folder.glob("step_*.zip") if _STEP_FILE.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path: Path) -> int:
    """The agent step in a checkpoint's name (``step_<N>.zip``)."""
    match = _STEP_FILE.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named like a checkpoint (step_<N>.zip)")
    return int(match.group(1))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest step checkpoint of a run, or None."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict (or ``{"state_dict": ...}``) of tensors, without unpickling code."""
    state = load_weights(path, "agent checkpoint")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    return state


def run_dir_of(path: Path) -> Path | None:
    """The training run a path belongs to (the run directory itself, its final model or one of its checkpoints)."""
    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


def recorded_game(path: Path) -> str | None:
    """The game the run holding ``path`` was trained on, from its ``config.json``; None for foreign checkpoints."""
    run_dir = run_dir_of(path)
    if run_dir is None:
        return None
    try:
        game = json.loads((run_dir / CONFIG_FILE).read_text())["config"]["game"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return game if isinstance(game, str) else None


def latest_run(logdir: Path) -> Path | None:
    """The most recently written training run under ``logdir`` that has a model to load, or None."""
    logdir = Path(logdir)
    runs = [d for d in logdir.iterdir() if d.is_dir()] if logdir.is_dir() else []
    models = {d: d / FINAL_MODEL if (d / FINAL_MODEL).is_file() else latest_checkpoint(d) for d in runs}
    usable = [d for d, model in models.items() if model is not None and (d / CONFIG_FILE).is_file()]
    return max(usable, key=lambda d: models[d].stat().st_mtime, default=None)
