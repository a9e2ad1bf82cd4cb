"""Train a Double DQN on an Atari game with the SAP paper's recipe: run directory, logging, checkpoints, resume.

The defaults are the paper's appendix (Dhillon et al., ICLR 2018, after Mnih et al. 2015 and van Hasselt et al.
2016); every one is a field of :class:`TrainConfig` and a flag of ``scripts/train_ddqn.py``. A run directory holds
``config.json`` (settings, versions, git commit), ``tensorboard/``, ``checkpoints/``, ``evaluations.*``,
``final_model.zip`` (SB3 format), ``q_network.pt`` (plain state dict) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from torch.utils.tensorboard import SummaryWriter

from agents.callbacks import PeriodicCheckpoint, PeriodicEvaluation, StopOnRequest, StopRequest, TrainingMonitor
from agents.checkpoints import (
    CONFIG_FILE,
    FINAL_MODEL,
    Q_NETWORK_FILE,
    latest_checkpoint,
    save_checkpoint,
    save_model,
    save_q_network,
)
from agents.double_dqn import DoubleDQN
from agents.env import make_atari_env, resolve_game
from agents.networks import Q_NETWORKS
from agents.replay import FrameReplayBuffer
from agents.vec_env import BACKENDS, make_atari_vec_env
from rlrobust.reporting import atomic_write_text

SUMMARY_FILE = "summary.json"
COMPILE_CHOICES = ("auto", "on", "off")
COMPILE_MIN_UPDATES = 10_000  # 'auto' compiles runs with this many updates or more (40,000 agent steps)


@dataclass
class TrainConfig:
    """Every setting of a run. Step counts are agent steps (one action = ``frame_skip`` emulator frames)."""

    game: str = "Bowling"
    total_steps: int = 100_000_000
    learning_starts: int = 50_000  # Mnih et al. 2015's replay start size (uniform random actions until then)
    buffer_size: int = 1_000_000
    batch_size: int = 32
    gamma: float = 0.99
    learning_rate: float = 0.00025
    rmsprop_alpha: float = 0.95  # the paper's "momentum 0.95": decay of RMSProp's squared-gradient average
    rmsprop_eps: float = 0.01
    rmsprop_centered: bool = True  # DeepMind's RMSProp also tracks the mean gradient (decay 0.95, tied to alpha)
    target_update: int = 10_000
    train_freq: int = 4  # agent steps per gradient update, kept for any num_envs
    epsilon_start: float = 1.0
    epsilon_final: float = 0.1
    exploration_steps: int = 1_000_000
    max_grad_norm: float = 0.0  # 0 = no clipping (the papers clip the TD error through the Huber loss only)
    network: str = "nature"
    num_envs: int = 1
    vec_backend: str = "sync"
    noop_max: int = 30
    frame_skip: int = 4
    sticky_actions: float = 0.0
    terminal_on_life_loss: bool = True  # for learning only; scores are per whole game
    clip_rewards: bool = True  # for learning only; scores are logged unclipped
    max_episode_steps: int = 27_000  # ALE's 108,000-frame cap
    seed: int = 0
    device: str = "auto"
    torch_threads: int = 0  # 0 = torch's default
    compile: str = "auto"  # torch.compile the update: on, off, or auto (on for runs of >= COMPILE_MIN_UPDATES updates)
    replay_on_device: bool = True  # keep the replay's frames on the training device (GPU) when there is one
    frame_margin: float = 1 / 32
    checkpoint_every: int = 500_000
    keep_checkpoints: int = 2
    eval_every: int = 500_000
    eval_episodes: int = 5
    eval_epsilon: float = 0.0
    log_every: int = 1_000

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first bad setting; returns self with the game name resolved."""
        self.game = resolve_game(self.game)
        positive = ("total_steps", "buffer_size", "batch_size", "train_freq", "target_update", "num_envs")
        positive += ("frame_skip", "max_episode_steps", "log_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ("learning_starts", "exploration_steps", "noop_max", "checkpoint_every", "eval_every")
        non_negative += ("eval_episodes", "torch_threads", "max_grad_norm", "frame_margin", "rmsprop_eps")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "epsilon_start", "epsilon_final", "eval_epsilon", "sticky_actions", "rmsprop_alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.learning_starts > self.buffer_size:
            raise ValueError(
                f"learning_starts ({self.learning_starts}) exceeds buffer_size ({self.buffer_size}): "
                "learning would wait for more transitions than the replay can hold"
            )
        if self.network not in Q_NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; choose one of {sorted(Q_NETWORKS)}")
        if self.vec_backend not in BACKENDS:
            raise ValueError(f"unknown vec_backend {self.vec_backend!r}; choose one of {BACKENDS}")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for but torch sees no CUDA device")
        return self

    def update_schedule(self) -> tuple[int, int]:
        """(SB3 ``train_freq`` in vector steps, ``gradient_steps`` per call) giving one update per ``train_freq``
        agent steps with ``num_envs`` games: e.g. 1 env -> (4, 1), 2 -> (2, 1), 8 -> (1, 2), 6 -> (2, 3)."""
        common = math.gcd(self.train_freq, self.num_envs)
        return self.train_freq // common, self.num_envs // common

    def compiles_update(self, from_step: int = 0) -> bool:
        """Whether the update goes through ``torch.compile``: ``on``, or ``auto`` when the steps from
        ``from_step`` to ``total_steps`` hold at least :data:`COMPILE_MIN_UPDATES` updates, enough to repay the
        one-off compile time (5-30 s) with the 15-25 % faster update it buys on a CPU."""
        if self.compile != "auto":
            return self.compile == "on"
        learning_steps = self.total_steps - max(from_step, self.learning_starts)
        return learning_steps // self.train_freq >= COMPILE_MIN_UPDATES


# Settings that may change when a run is resumed; the others define the experiment.
RESUMABLE = (
    "total_steps",
    "learning_starts",
    "buffer_size",
    "num_envs",
    "vec_backend",
    "device",
    "torch_threads",
    "compile",
    "replay_on_device",
    "frame_margin",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "eval_episodes",
    "eval_epsilon",
    "log_every",
)


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    interrupted: bool
    checkpoint: Path
    final_model: Path | None
    seconds: float


# ---------------------------------------------------------------------------------------------- run directory
def new_run_dir(config: TrainConfig, logdir: str | Path = "runs") -> Path:
    """A fresh ``<logdir>/<Game>-ddqn-seed<S>-<YYYYmmdd-HHMMSS>[-n]`` directory."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(logdir) / f"{resolve_game(config.game)}-ddqn-seed{config.seed}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def read_config(run_dir: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's settings and the whole ``config.json`` record."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory (no {CONFIG_FILE})")
    record = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in record["config"].items() if k in known}), record


def environment_record() -> dict[str, Any]:
    """Versions, machine and git commit, for config.json."""
    import ale_py
    import gymnasium
    import stable_baselines3

    repo = Path(__file__).resolve().parents[1]
    return {
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "gymnasium": gymnasium.__version__,
            "ale_py": ale_py.__version__,
            "stable_baselines3": stable_baselines3.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "git": _git_state(repo),
    }


def _git_state(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _write_json(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- building
def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def make_training_env(config: TrainConfig):
    return make_atari_vec_env(
        config.game,
        config.num_envs,
        backend=config.vec_backend,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        sticky_actions=config.sticky_actions,
        terminal_on_life_loss=config.terminal_on_life_loss,
        clip_rewards=config.clip_rewards,
        max_episode_steps=config.max_episode_steps,
    )


def make_eval_env(config: TrainConfig):
    """Whole games (no life-loss terminals), the same preprocessing as ``make_atari_env`` for attacks."""
    return make_atari_env(
        config.game,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        sticky_actions=config.sticky_actions,
        max_episode_steps=config.max_episode_steps,
    )


def replay_kwargs(config: TrainConfig) -> dict[str, Any]:
    return {"frame_margin": config.frame_margin, "storage_device": None if config.replay_on_device else "cpu"}


def dqn_settings(config: TrainConfig) -> dict[str, Any]:
    """The keyword arguments SB3's ``DQN`` and our ``DoubleDQN`` share, from ``config`` (the benchmark gives SB3's
    DQN exactly these): schedule, replay size, target copies, epsilon range, centred RMSProp, seed and device."""
    train_freq, gradient_steps = config.update_schedule()
    return {
        "learning_rate": config.learning_rate,
        "buffer_size": config.buffer_size,
        "learning_starts": config.learning_starts,
        "batch_size": config.batch_size,
        "tau": 1.0,
        "gamma": config.gamma,
        "train_freq": train_freq,
        "gradient_steps": gradient_steps,
        "target_update_interval": config.target_update,
        "exploration_initial_eps": config.epsilon_start,
        "exploration_final_eps": config.epsilon_final,
        "policy_kwargs": {
            "optimizer_class": torch.optim.RMSprop,
            "optimizer_kwargs": {
                "alpha": config.rmsprop_alpha,
                "eps": config.rmsprop_eps,
                "momentum": 0.0,
                "centered": config.rmsprop_centered,
            },
        },
        "seed": config.seed,
        "device": resolve_device(config.device),
    }


def build_model(config: TrainConfig, env, *, model_class: type[DoubleDQN] = DoubleDQN) -> DoubleDQN:
    """A fresh DoubleDQN (or subclass) with the config's hyper-parameters on ``env``."""
    settings = dqn_settings(config)
    settings["policy_kwargs"]["network"] = config.network
    return model_class(
        "AtariQPolicy",
        env,
        replay_buffer_class=FrameReplayBuffer,
        replay_buffer_kwargs=replay_kwargs(config),
        exploration_steps=config.exploration_steps,
        compile_update=config.compiles_update(),
        max_grad_norm=config.max_grad_norm or None,
        **settings,
    )


def load_for_resume(config: TrainConfig, checkpoint: Path, env) -> DoubleDQN:
    """The checkpointed model on a new env, with the resumable settings of ``config`` applied."""
    train_freq, gradient_steps = config.update_schedule()
    model = DoubleDQN.load(
        checkpoint,
        env=env,
        device=resolve_device(config.device),
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        replay_buffer_kwargs=replay_kwargs(config),
        train_freq=train_freq,
        gradient_steps=gradient_steps,
    )
    model.compile_update = config.compiles_update(from_step=model.num_timesteps)
    model.set_random_seed(config.seed + model.num_timesteps)  # fresh, reproducible streams after the restart
    return model


# ---------------------------------------------------------------------------------------------- running
def create_run(config: TrainConfig, logdir: str | Path = "runs") -> Path:
    """Validate ``config``, create its run directory and write ``config.json``; returns the directory."""
    config.validate()
    run_dir = new_run_dir(config, logdir)
    record = {
        "config": dataclasses.asdict(config),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        **environment_record(),
        "resumes": [],
    }
    _write_json(run_dir / CONFIG_FILE, record)
    return run_dir


def prepare_resume(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, Path]:
    """The settings and newest checkpoint to continue ``run_dir`` with; records the resume in ``config.json``.

    ``overrides`` may change the settings in :data:`RESUMABLE` (e.g. a larger ``total_steps``); changing any
    other is an error. The replay memory is not in the checkpoint: it is refilled with ``learning_starts``
    transitions (epsilon-greedy with the resumed epsilon) before learning resumes.
    """
    run_dir = Path(run_dir)
    config, record = read_config(run_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if getattr(config, k) != v}
    fixed = sorted(set(overrides) - set(RESUMABLE))
    if fixed:
        raise ValueError(f"cannot change {', '.join(fixed)} when resuming {run_dir} (they define the experiment)")
    config = dataclasses.replace(config, **overrides).validate()
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to resume from (checkpoints/step_*.zip)")
    record["config"] = dataclasses.asdict(config)
    record["resumes"].append(
        {
            "checkpoint": checkpoint.name,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "overrides": overrides,
            "command": sys.argv,
        }
    )
    _write_json(run_dir / CONFIG_FILE, record)
    return config, checkpoint


def start_run(config: TrainConfig, logdir: str | Path = "runs", *, progress: bool = True) -> RunResult:
    """Create a run directory for ``config`` and train from scratch."""
    return run(config, create_run(config, logdir), progress=progress)


def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, progress: bool = True) -> RunResult:
    """Continue a run from its newest checkpoint: step count, epsilon schedule, optimizer, TensorBoard curves."""
    config, checkpoint = prepare_resume(run_dir, overrides)
    return run(config, Path(run_dir), checkpoint=checkpoint, progress=progress)


def run(config: TrainConfig, run_dir: Path, *, checkpoint: Path | None = None, progress: bool = True) -> RunResult:
    """Train in ``run_dir`` until ``config.total_steps`` or Ctrl-C; always leaves a checkpoint."""
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        return _train(config, run_dir, checkpoint, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, run_dir: Path, checkpoint: Path | None, progress: bool) -> RunResult:
    started = time.perf_counter()
    env = make_training_env(config)
    try:
        model = build_model(config, env) if checkpoint is None else load_for_resume(config, checkpoint, env)
        # Our logs go to TensorBoard; SB3's default logger would leave an empty /tmp/SB3-<time> directory per run.
        model.set_logger(Logger(folder=None, output_formats=[]))
        start_step = model.num_timesteps
        if model.compile_update and progress:
            print("The update runs through torch.compile: the first one takes 5-30 s longer (--compile off: eager).")
        stop = StopRequest()
        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if checkpoint else None)
        monitor = TrainingMonitor(writer, config.total_steps, log_every=config.log_every, progress=progress)
        evaluation = PeriodicEvaluation(
            lambda: make_eval_env(config),
            writer,
            run_dir,
            every=config.eval_every,
            episodes=config.eval_episodes,
            epsilon=config.eval_epsilon,
            seed=config.seed + 10_000,
            stop=stop,
            history=_previous_evaluations(run_dir),
        )
        checkpointing = PeriodicCheckpoint(run_dir, every=config.checkpoint_every, keep=config.keep_checkpoints)
        callbacks = CallbackList([monitor, checkpointing, evaluation, StopOnRequest(stop)])
        remaining = config.total_steps - start_step
        try:
            with stop.on_sigint():
                if remaining > 0:
                    model.learn(
                        remaining, callback=callbacks, reset_num_timesteps=checkpoint is None, log_interval=None
                    )
                saved = save_checkpoint(model, run_dir, config.keep_checkpoints)
        finally:
            writer.close()
        final = None
        if not stop.requested:
            final = save_model(model, run_dir / FINAL_MODEL)
            save_q_network(model, run_dir / Q_NETWORK_FILE)
    finally:
        env.close()
    result = RunResult(run_dir, model.num_timesteps, stop.requested, saved, final, time.perf_counter() - started)
    _write_summary(result, start_step, evaluation.rows, monitor.scores)
    return result


def _previous_evaluations(run_dir: Path) -> list[dict]:
    path = run_dir / "evaluations.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else []


def _write_summary(result: RunResult, start_step: int, evaluations: list[dict], recent_scores) -> None:
    steps = result.steps - start_step
    _write_json(
        result.run_dir / SUMMARY_FILE,
        {
            "steps": result.steps,
            "interrupted": result.interrupted,
            "this_session": {
                "steps": steps,
                "seconds": round(result.seconds, 1),
                "steps_per_sec": round(steps / result.seconds, 2) if result.seconds > 0 else None,
            },
            "recent_training_scores": list(recent_scores),
            "last_evaluation": evaluations[-1] if evaluations else None,
            "checkpoint": str(result.checkpoint),
            "final_model": str(result.final_model) if result.final_model else None,
        },
    )
