"""Train a Double DQN on an Atari game with the SAP paper's recipe: run directory, logging, checkpoints, resume.

One module a job, every public name importable from here:

- :mod:`~agents.training.config`: :class:`TrainConfig` (the paper's settings as defaults) and its checks;
- :mod:`~agents.training.build`: the training and evaluation games, a fresh model;
- :mod:`~agents.training.records`: the run directory, ``config.json`` (settings, command, versions, git commit,
  resumes) and ``summary.json``;
- :mod:`~agents.training.resume`: continuing from the newest readable checkpoint, unpickling nothing;
- :mod:`~agents.training.session`: the training session itself (``start_run``, ``resume_run``, ``run``).

``start_run(TrainConfig(game="Pong"), "runs")`` trains with the full recipe; ``resume_run(run_dir,
{"total_steps": ...})`` continues a run.
"""

from agents.training.build import (
    build_model,
    dqn_settings,
    load_initial_weights,
    make_eval_env,
    make_training_env,
    replay_kwargs,
    resolve_device,
)
from agents.training.config import (
    COMPILE_CHOICES,
    COMPILE_MIN_UPDATES,
    FORMER_DEFAULTS,
    LIMITS,
    LOW_OPEN,
    MAX_SEED,
    RESUMABLE,
    ROBUST_CHOICES,
    TrainConfig,
)
from agents.training.records import (
    RUN_OUTPUTS,
    SUMMARY_FILE,
    RunResult,
    create_run,
    environment_record,
    new_run_dir,
    read_config,
    read_evaluations,
    record_resume,
    write_summary,
)
from agents.training.resume import (
    RESUME_COUNTERS,
    load_for_resume,
    newest_readable_checkpoint,
    prepare_resume,
    read_checkpoint,
    resumed_model,
)
from agents.training.session import TrainingDiverged, resume_run, run, start_run

__all__ = [
    "COMPILE_CHOICES",
    "COMPILE_MIN_UPDATES",
    "FORMER_DEFAULTS",
    "LIMITS",
    "LOW_OPEN",
    "MAX_SEED",
    "RESUMABLE",
    "RESUME_COUNTERS",
    "ROBUST_CHOICES",
    "RUN_OUTPUTS",
    "SUMMARY_FILE",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "build_model",
    "create_run",
    "dqn_settings",
    "environment_record",
    "load_for_resume",
    "load_initial_weights",
    "make_eval_env",
    "make_training_env",
    "new_run_dir",
    "newest_readable_checkpoint",
    "prepare_resume",
    "read_checkpoint",
    "read_config",
    "read_evaluations",
    "record_resume",
    "replay_kwargs",
    "resolve_device",
    "resume_run",
    "resumed_model",
    "run",
    "start_run",
    "write_summary",
]
