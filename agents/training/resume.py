"""Continuing a Double DQN run from its newest readable checkpoint, unpickling nothing.

The model is rebuilt from ``config.json`` plus the checkpoint's tensors and plain counters; a truncated newest
checkpoint is skipped for an older one (and set aside once the older one has loaded, so that pruning keeps the
good ones); the resume is recorded in ``config.json`` only once its checkpoint has loaded. Only the settings in
:data:`~agents.training.config.RESUMABLE` may change; the others define the experiment.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

from agents.checkpoints import checkpoint_step, checkpoints
from agents.double_dqn import DoubleDQN
from agents.sb3_zip import SB3Zip, read_sb3_zip
from agents.training.build import build_model
from agents.training.config import RESUMABLE, TrainConfig
from agents.training.records import read_config, record_resume
from rlrobust.runs import settings_changes

# Plain counters of a checkpoint that a resumed model continues from (what DoubleDQN.load would restore), with
# their types; the networks and the optimizer come from the zip's tensors, everything else from config.json.
RESUME_COUNTERS: dict[str, type] = {
    "num_timesteps": int,
    "_n_updates": int,
    "_n_calls": int,  # vector steps: the phase of the target-network copies
    "_episode_num": int,
    "exploration_rate": float,
    "_current_progress_remaining": float,
}


def prepare_resume(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, Path]:
    """The settings and newest readable checkpoint to continue ``run_dir`` with. Writes nothing: the resume is
    recorded in ``config.json`` once the checkpoint has loaded (see :func:`resumed_model`).

    ``overrides`` may change the settings in :data:`RESUMABLE` (e.g. a larger ``total_steps``); changing any
    other is an error. A newest checkpoint that cannot be read (a truncated file) is skipped with a warning for
    the next older one. The replay memory is not in the checkpoint: it is refilled with ``learning_starts``
    transitions (epsilon-greedy with the resumed epsilon) before learning resumes.
    """
    run_dir = Path(run_dir)
    config, _ = read_config(run_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if getattr(config, k) != v}
    fixed = settings_changes({k: getattr(config, k) for k in overrides}, overrides, ignore=RESUMABLE)
    if fixed:
        names = ", ".join(sorted(set(overrides) - set(RESUMABLE)))
        raise ValueError(f"cannot change {names} when resuming {run_dir} (they define the experiment: {fixed})")
    config = dataclasses.replace(config, **overrides).validate()  # a hand-edited config.json is checked too
    checkpoint, step = newest_readable_checkpoint(run_dir)
    if config.total_steps < step:
        raise ValueError(
            f"total_steps ({config.total_steps:,}) is below the step of {checkpoint.name} ({step:,}): "
            "pass a larger --total-steps to continue the run"
        )
    return config, checkpoint


def read_checkpoint(path: Path) -> SB3Zip:
    """A checkpoint's tensors and counters, read without unpickling; ``ValueError`` if truncated or foreign."""
    saved = read_sb3_zip(path, optimizer=True)
    if saved.optimizer is None:
        raise ValueError(f"checkpoint {path} holds no optimizer state (not a checkpoint of train_ddqn.py?)")
    for name, kind in RESUME_COUNTERS.items():
        value = saved.scalar(name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"checkpoint {path}: its {name} is {value!r}, not a {kind.__name__} >= 0")
    return saved


def newest_readable_checkpoint(run_dir: Path) -> tuple[Path, int]:
    """The newest checkpoint of ``run_dir`` that reads back whole, and its agent step; each newer, unreadable one
    (a truncated copy, a full disk) is skipped with a warning. Raises if there is none."""
    found = checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from (checkpoints/step_*.zip)")
    problems = []
    for path in reversed(found):
        try:
            saved = read_checkpoint(path)
        except ValueError as err:
            problems.append(str(err))
            continue
        for problem in problems:
            warnings.warn(f"skipping an unreadable checkpoint: {problem}; using {path.name}", stacklevel=2)
        return path, saved.scalar("num_timesteps")
    raise ValueError(f"no readable checkpoint in {run_dir / 'checkpoints'} (the newest: {problems[0]})")


def load_for_resume(config: TrainConfig, checkpoint: Path, env) -> DoubleDQN:
    """The checkpointed model on a new env, with the resumable settings of ``config`` applied.

    Nothing in the checkpoint is unpickled: the model is built from ``config`` (as a new run's) and then given
    the checkpoint's online and target networks, optimizer state and counters (agent steps, updates, vector steps,
    episodes, epsilon).
    """
    saved = read_checkpoint(checkpoint)
    model = build_model(config, env)
    try:
        model.policy.load_state_dict(saved.policy)
        model.policy.optimizer.load_state_dict(saved.optimizer)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint {checkpoint} does not fit this run's network and optimizer: {first}") from None
    for name, kind in RESUME_COUNTERS.items():
        setattr(model, name, kind(saved.scalar(name)))
    model._checked_step = model.num_timesteps  # its weights are checked finite when it is saved
    model.compile_update = config.compiles_update(from_step=model.num_timesteps)
    model.set_random_seed(config.seed + model.num_timesteps)  # fresh, reproducible streams after the restart
    return model


def resumed_model(config: TrainConfig, run_dir: Path, checkpoint: Path, env) -> DoubleDQN:
    """Load ``checkpoint``; once it has loaded, set aside newer unreadable checkpoints (so that pruning keeps the
    good ones) and record the resume in ``config.json``."""
    model = load_for_resume(config, checkpoint, env)
    for newer in checkpoints(run_dir):
        if checkpoint_step(newer) > model.num_timesteps and not _readable(newer):
            newer.rename(newer.with_name(newer.name + ".unreadable"))
            warnings.warn(f"renamed the unreadable {newer.name} to {newer.name}.unreadable", stacklevel=2)
    record_resume(run_dir, config, checkpoint)
    return model


def _readable(path: Path) -> bool:
    try:
        read_checkpoint(path)
    except ValueError:
        return False
    return True
