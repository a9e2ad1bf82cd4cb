"""A Double DQN run's directory and the records in it: ``config.json`` (settings, provenance, resumes),
``summary.json`` (how the last session ended) and the evaluations a resumed run continues.

A run directory holds ``config.json``, ``tensorboard/``, ``checkpoints/``, ``evaluations.*``, ``final_model.zip``
(SB3 format), ``q_network.pt`` (plain state dict) and ``summary.json``. The provenance in ``config.json`` (command,
time, versions, machine, git commit) is :func:`rlrobust.runs.provenance`, as in every job's ``run.json``; every
record is written atomically.

>>> import tempfile
>>> from agents.training.config import FORMER_DEFAULTS, TrainConfig
>>> run_dir = create_run(TrainConfig(total_steps=1_000, learning_starts=100), tempfile.mkdtemp())
>>> config, record = read_config(run_dir)
>>> config.total_steps, sorted(record)
(1000, ['command', 'config', 'created', 'git', 'machine', 'resumes', 'versions'])
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.checkpoints import CHECKPOINT_DIR, CONFIG_FILE, FINAL_MODEL, Q_NETWORK_FILE
from agents.env import resolve_game
from agents.loading import model_file
from agents.training.config import FORMER_DEFAULTS, TrainConfig
from rlrobust.files import atomic_write_json, check_writable, sha256_of
from rlrobust.runs import claim_output_dir, environment, fresh_run_dir, provenance, remove_outputs

SUMMARY_FILE = "summary.json"
EVALUATIONS = "evaluations"  # evaluations.{csv,json,md}
PACKAGES = ("torch", "numpy", "gymnasium", "ale_py", "stable_baselines3")  # versions recorded in config.json
#: What a run writes into its directory; ``create_run(..., overwrite=True)`` removes exactly these.
RUN_OUTPUTS = (
    CONFIG_FILE,
    SUMMARY_FILE,
    "tensorboard",
    CHECKPOINT_DIR,
    FINAL_MODEL,
    Q_NETWORK_FILE,
    *(f"{EVALUATIONS}.{kind}" for kind in ("csv", "json", "md")),
)


@dataclass
class RunResult:
    """How a training session ended: its directory, agent steps reached, whether Ctrl-C or SIGTERM stopped it, the
    last good checkpoint, the final model (None unless training ended) and the session's seconds."""

    run_dir: Path
    steps: int
    interrupted: bool
    checkpoint: Path | None
    final_model: Path | None
    seconds: float


def new_run_dir(config: TrainConfig, logdir: str | Path = "runs") -> Path:
    """A fresh ``<logdir>/<Game>-ddqn-seed<S>-<YYYYmmdd-HHMMSS>[-n]`` directory."""
    path = fresh_run_dir(logdir, f"{resolve_game(config.game)}-ddqn-seed{config.seed}")
    path.mkdir(parents=True)
    return path


def create_run(
    config: TrainConfig, logdir: str | Path = "runs", *, out: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Validate ``config``, create its run directory and write ``config.json``; returns the directory.

    The directory is ``out`` when given (refused if it holds another run's files, unless ``overwrite``: then that
    run's outputs, :data:`RUN_OUTPUTS`, are removed first), else a fresh one under ``logdir``.
    """
    config.validate()
    # the starting agent's path and sha256, read before anything is written (a missing file stops the run here)
    init_from = (
        {"path": str(Path(config.init_from).resolve()), "sha256": agent_sha256(config.init_from)}
        if config.init_from
        else None
    )
    if out is None:
        check_writable(logdir, "--logdir")
        run_dir = new_run_dir(config, logdir)
    else:
        run_dir = claim_output_dir(out, {}, overwrite=overwrite)
        if overwrite:
            remove_outputs(run_dir, RUN_OUTPUTS)
    record = {"config": dataclasses.asdict(config), **provenance(PACKAGES), "resumes": []}
    if config.init_from:
        record["init_from"] = init_from
    atomic_write_json(run_dir / CONFIG_FILE, record)
    return run_dir


def agent_sha256(path: str | Path) -> str:
    """The sha256 of the file ``load_agent`` reads for ``path`` (a run directory's newest model)."""
    return sha256_of(model_file(Path(path)))


def environment_record() -> dict[str, Any]:
    """Versions (the RL libraries included), machine and git commit, as ``config.json`` records them."""
    return environment(PACKAGES)


def read_config(run_dir: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's settings and the whole ``config.json`` record. Settings a run written by an older version lacks
    take today's defaults; settings it has that no longer exist are ignored."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory (no {CONFIG_FILE})")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{path} holds no 'config' settings (not written by train_ddqn.py?)")
    if not isinstance(record.setdefault("resumes", []), list):
        raise ValueError(f"{path}: its 'resumes' entry is not a list")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = FORMER_DEFAULTS | record["config"]  # a setting whose default changed keeps its old one if absent
    return TrainConfig(**{k: v for k, v in settings.items() if k in known}), record


def record_resume(run_dir: Path, config: TrainConfig, checkpoint: Path) -> None:
    """Append the resume (checkpoint, time, changed settings, command, versions, git commit) to ``config.json``
    and store the settings now in force."""
    _, record = read_config(run_dir)
    before = record["config"]
    now = dataclasses.asdict(config)
    found = provenance(PACKAGES)
    record["config"] = now
    record["resumes"].append(
        {
            "checkpoint": checkpoint.name,
            "time": found["created"],
            "overrides": {k: v for k, v in now.items() if k in before and before[k] != v},
            "command": found["command"],
            "versions": found["versions"],
            "git": found["git"],
        }
    )
    atomic_write_json(run_dir / CONFIG_FILE, record)


def read_evaluations(run_dir: Path) -> list[dict]:
    """The rows of ``evaluations.json`` (each with an integer ``step``), for a resumed run to continue; an
    unreadable file is ignored with a warning."""
    path = Path(run_dir) / f"{EVALUATIONS}.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        warnings.warn(
            f"ignoring the unreadable {path} ({err}); earlier evaluations are not in the new one", stacklevel=2
        )
        return []
    rows = data if isinstance(data, list) else []
    return [row for row in rows if isinstance(row, dict) and isinstance(row.get("step"), int)]


def write_summary(
    result: RunResult,
    start_step: int,
    evaluations: list[dict],
    recent_scores: Iterable[float],
    problem: str | None = None,
) -> Path:
    """``summary.json``: steps reached, how the session ended (finished, interrupted, diverged and why), its
    speed, the recent training scores, the last evaluation and the files left."""
    steps = result.steps - start_step
    return atomic_write_json(
        result.run_dir / SUMMARY_FILE,
        {
            "steps": result.steps,
            "interrupted": result.interrupted,
            "diverged": problem,
            "this_session": {
                "steps": steps,
                "seconds": round(result.seconds, 1),
                "steps_per_sec": round(steps / result.seconds, 2) if result.seconds > 0 else None,
            },
            "recent_training_scores": list(recent_scores),
            "last_evaluation": evaluations[-1] if evaluations else None,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "final_model": str(result.final_model) if result.final_model else None,
        },
    )
