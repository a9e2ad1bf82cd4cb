"""Train a Double DQN on an Atari game with the SAP paper's recipe: run directory, logging, checkpoints, resume.

The defaults are the paper's appendix (Dhillon et al., ICLR 2018, after Mnih et al. 2015 and van Hasselt et al.
2016); every one is a field of :class:`TrainConfig` and a flag of ``scripts/train_ddqn.py``. A run directory holds
``config.json`` (settings, versions, git commit), ``tensorboard/``, ``checkpoints/``, ``evaluations.*``,
``final_model.zip`` (SB3 format), ``q_network.pt`` (plain state dict) and ``summary.json``.

Reliability: every setting is checked (finite, in range, consistent; :data:`LIMITS`) before a run directory is
made; a job holds a lock on its run directory; Ctrl-C and SIGTERM checkpoint and stop; the first NaN or infinite
loss or weight stops the run (:class:`TrainingDiverged`) without saving it; a resume unpickles nothing (the model
is rebuilt from ``config.json`` plus the checkpoint's tensors and counters), skips a truncated newest checkpoint
for an older one, and is recorded in ``config.json`` only once its checkpoint has loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from torch.utils.tensorboard import SummaryWriter

from agents.callbacks import PeriodicCheckpoint, PeriodicEvaluation, StopOnRequest, StopRequest, TrainingMonitor
from agents.checkpoints import (
    CONFIG_FILE,
    FINAL_MODEL,
    Q_NETWORK_FILE,
    checkpoint_step,
    checkpoints,
    latest_checkpoint,
    save_checkpoint,
    save_model,
    save_q_network,
)
from agents.double_dqn import DoubleDQN
from agents.env import make_atari_env, resolve_game
from agents.networks import Q_NETWORKS
from agents.replay import FrameReplayBuffer
from agents.sb3_zip import SB3Zip, read_sb3_zip
from agents.vec_env import BACKENDS, make_atari_vec_env
from rlrobust.cli import check_finite_fields
from rlrobust.files import check_writable
from rlrobust.reporting import atomic_write_text
from rlrobust.runs import RunLock, environment, fresh_run_dir

SUMMARY_FILE = "summary.json"
COMPILE_CHOICES = ("auto", "on", "off")
COMPILE_MIN_UPDATES = 10_000  # 'auto' compiles runs with this many updates or more (40,000 agent steps)
MAX_SEED = 2**31 - 1  # numpy's seeds stop at 2**32 - 1; resumes and evaluations add step counts to the seed

# The allowed range of every numeric setting, in one place: TrainConfig.validate and the flags of train_ddqn.py
# both check it. field -> (lowest, highest), inclusive, None = unbounded; LOW_OPEN fields must exceed their lowest.
LIMITS: dict[str, tuple[float | None, float | None]] = {
    "total_steps": (1, None),
    "learning_starts": (0, None),
    "buffer_size": (1, None),
    "batch_size": (1, None),
    "gamma": (0, 1),
    "learning_rate": (0, None),
    "rmsprop_alpha": (0, 1),
    "rmsprop_eps": (0, None),
    "target_update": (1, None),
    "train_freq": (1, None),
    "epsilon_start": (0, 1),
    "epsilon_final": (0, 1),
    "exploration_steps": (0, None),
    "max_grad_norm": (0, None),
    "num_envs": (1, None),
    "noop_max": (0, None),
    "frame_skip": (1, None),
    "sticky_actions": (0, 1),
    "max_episode_steps": (1, None),
    "seed": (0, MAX_SEED),
    "torch_threads": (0, None),
    "frame_margin": (0, 1),
    "checkpoint_every": (0, None),
    "keep_checkpoints": (1, None),
    "eval_every": (0, None),
    "eval_episodes": (0, None),
    "eval_epsilon": (0, 1),
    "eval_max_steps": (1, None),
    "log_every": (1, None),
}
LOW_OPEN = ("learning_rate",)


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the run stopped without writing a final model."""


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
    eval_max_steps: int = 4_500  # evaluation games end after 18,000 frames (Nature's 5 minutes), not ALE's 30
    log_every: int = 1_000

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first bad setting; returns self with the game name resolved."""
        self._check_types()
        check_finite_fields(self)
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if (low is not None and (value < low or (name in LOW_OPEN and value == low))) or (
                high is not None and value > high
            ):
                raise ValueError(f"{name} must lie in {_interval(name, low, high)}, got {value}")
        self.game = resolve_game(self.game)
        self._check_consistency()
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

    def _check_types(self) -> None:
        """Each setting has its default's type (a hand-edited config.json may say "100" or true for a number)."""
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), type(field.default)
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if kind is float:  # an integer is a fine float
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok:
                raise ValueError(f"{field.name} must be of type {kind.__name__}, got {value!r}")

    def _check_consistency(self) -> None:
        """Settings that are each in range but cannot work together."""
        if self.learning_starts > self.buffer_size:
            raise ValueError(
                f"learning_starts ({self.learning_starts}) exceeds buffer_size ({self.buffer_size}): "
                "learning would wait for more transitions than the replay can hold"
            )
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) exceeds buffer_size ({self.buffer_size})")
        if self.learning_starts >= self.total_steps:
            raise ValueError(
                f"learning_starts ({self.learning_starts}) is not below total_steps ({self.total_steps}): "
                "the run would end before its first update and leave an untrained model; pass a smaller "
                f"--learning-starts (e.g. {self.total_steps // 10})"
            )
        if self.epsilon_final > self.epsilon_start:
            raise ValueError(
                f"epsilon_final ({self.epsilon_final}) exceeds epsilon_start ({self.epsilon_start}): "
                "exploration would grow during training"
            )

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
    "eval_max_steps",
    "log_every",
)


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    interrupted: bool
    checkpoint: Path | None
    final_model: Path | None
    seconds: float


# ---------------------------------------------------------------------------------------------- run directory
def new_run_dir(config: TrainConfig, logdir: str | Path = "runs") -> Path:
    """A fresh ``<logdir>/<Game>-ddqn-seed<S>-<YYYYmmdd-HHMMSS>[-n]`` directory."""
    path = fresh_run_dir(logdir, f"{resolve_game(config.game)}-ddqn-seed{config.seed}")
    path.mkdir(parents=True)
    return path


def read_config(run_dir: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's settings and the whole ``config.json`` record."""
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
    return TrainConfig(**{k: v for k, v in record["config"].items() if k in known}), record


def environment_record() -> dict[str, Any]:
    """Versions (the RL libraries included), machine and git commit, for config.json."""
    return environment(("torch", "numpy", "gymnasium", "ale_py", "stable_baselines3"))


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
    """Whole games (no life-loss terminals), the same preprocessing as ``make_atari_env`` for attacks, each ended
    after ``eval_max_steps`` agent steps: a barely trained agent may never end a game by itself."""
    return make_atari_env(
        config.game,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        sticky_actions=config.sticky_actions,
        max_episode_steps=min(config.max_episode_steps, config.eval_max_steps),
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


# ---------------------------------------------------------------------------------------------- running
def create_run(config: TrainConfig, logdir: str | Path = "runs") -> Path:
    """Validate ``config``, create its run directory and write ``config.json``; returns the directory."""
    config.validate()
    check_writable(logdir, "--logdir")
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
    """The settings and newest readable checkpoint to continue ``run_dir`` with. Writes nothing: the resume is
    recorded in ``config.json`` once the checkpoint has loaded (see :func:`run`).

    ``overrides`` may change the settings in :data:`RESUMABLE` (e.g. a larger ``total_steps``); changing any
    other is an error. A newest checkpoint that cannot be read (a truncated file) is skipped with a warning for
    the next older one. The replay memory is not in the checkpoint: it is refilled with ``learning_starts``
    transitions (epsilon-greedy with the resumed epsilon) before learning resumes.
    """
    run_dir = Path(run_dir)
    config, _ = read_config(run_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if getattr(config, k) != v}
    fixed = sorted(set(overrides) - set(RESUMABLE))
    if fixed:
        raise ValueError(f"cannot change {', '.join(fixed)} when resuming {run_dir} (they define the experiment)")
    config = dataclasses.replace(config, **overrides).validate()  # a hand-edited config.json is checked too
    checkpoint, step = newest_readable_checkpoint(run_dir)
    if config.total_steps < step:
        raise ValueError(
            f"total_steps ({config.total_steps:,}) is below the step of {checkpoint.name} ({step:,}): "
            "pass a larger --total-steps to continue the run"
        )
    return config, checkpoint


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


def start_run(config: TrainConfig, logdir: str | Path = "runs", *, progress: bool = True) -> RunResult:
    """Create a run directory for ``config`` and train from scratch."""
    return run(config, create_run(config, logdir), progress=progress)


def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, progress: bool = True) -> RunResult:
    """Continue a run from its newest checkpoint: step count, epsilon schedule, optimizer, TensorBoard curves."""
    config, checkpoint = prepare_resume(run_dir, overrides)
    return run(config, Path(run_dir), checkpoint=checkpoint, progress=progress)


def run(config: TrainConfig, run_dir: Path, *, checkpoint: Path | None = None, progress: bool = True) -> RunResult:
    """Train in ``run_dir`` until ``config.total_steps``, Ctrl-C or SIGTERM; always leaves a checkpoint, and a
    final model only when training ended. Holds a lock on ``run_dir`` (a second job there is refused); raises
    :class:`TrainingDiverged` at the first non-finite loss or weight, keeping the last good checkpoint."""
    run_dir = Path(run_dir)
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        with RunLock(run_dir):
            return _train(config, run_dir, checkpoint, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, run_dir: Path, checkpoint: Path | None, progress: bool) -> RunResult:
    started = time.perf_counter()
    stop = StopRequest()
    env = make_training_env(config)
    try:
        with stop.on_sigint():  # SIGINT and SIGTERM from here on: checkpoint, then stop
            model = build_model(config, env) if checkpoint is None else _resumed_model(config, run_dir, checkpoint, env)
            # Our logs go to TensorBoard; SB3's default logger would leave an empty /tmp/SB3-<time> directory per run.
            model.set_logger(Logger(folder=None, output_formats=[]))
            start_step = model.num_timesteps
            _announce(model, config, checkpoint is not None, progress)
            writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if checkpoint else None)
            try:
                monitor, evaluation, checkpointing = _callbacks(config, run_dir, writer, stop, progress)
                remaining = config.total_steps - start_step
                if remaining > 0:
                    callbacks = CallbackList([monitor, evaluation, checkpointing, StopOnRequest(stop)])
                    model.learn(
                        remaining, callback=callbacks, reset_num_timesteps=checkpoint is None, log_interval=None
                    )
                problem = model.training_problem()
                saved = final = None
                if problem is None:  # never save a model with NaN or infinite weights
                    saved = save_checkpoint(model, run_dir, config.keep_checkpoints)
                    if not stop.requested:
                        final = save_model(model, run_dir / FINAL_MODEL)
                        save_q_network(model, run_dir / Q_NETWORK_FILE)
            finally:
                writer.close()
    finally:
        env.close()
    last_good = saved or latest_checkpoint(run_dir)
    result = RunResult(run_dir, model.num_timesteps, stop.requested, last_good, final, time.perf_counter() - started)
    _write_summary(result, start_step, evaluation.rows, monitor.scores, problem)
    if problem is not None:
        raise TrainingDiverged(
            f"training diverged: {problem}. Nothing after it was saved and no final model was written; the last "
            f"good checkpoint is {last_good} (try a lower --lr or --max-grad-norm 10)"
        )
    return result


def _resumed_model(config: TrainConfig, run_dir: Path, checkpoint: Path, env) -> DoubleDQN:
    """Load ``checkpoint``; once it has loaded, set aside newer unreadable checkpoints (so that pruning keeps the
    good ones) and record the resume in ``config.json``."""
    model = load_for_resume(config, checkpoint, env)
    for newer in checkpoints(run_dir):
        if checkpoint_step(newer) > model.num_timesteps and not _readable(newer):
            newer.rename(newer.with_name(newer.name + ".unreadable"))
            warnings.warn(f"renamed the unreadable {newer.name} to {newer.name}.unreadable", stacklevel=2)
    _record_resume(run_dir, config, checkpoint)
    return model


def _readable(path: Path) -> bool:
    try:
        read_checkpoint(path)
    except ValueError:
        return False
    return True


def _record_resume(run_dir: Path, config: TrainConfig, checkpoint: Path) -> None:
    """Append the resume (checkpoint, time, changed settings, command) to ``config.json`` and store the settings
    now in force."""
    _, record = read_config(run_dir)
    before = record["config"]
    now = dataclasses.asdict(config)
    changed = {k: v for k, v in now.items() if k in before and before[k] != v}
    record["config"] = now
    record["resumes"].append(
        {
            "checkpoint": checkpoint.name,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "overrides": changed,
            "command": sys.argv,
        }
    )
    _write_json(run_dir / CONFIG_FILE, record)


def _announce(model: DoubleDQN, config: TrainConfig, resumed: bool, progress: bool) -> None:
    """One line each for what makes a session look stuck: the first, compiling update and a replay refill."""
    if model.compile_update and progress:
        print("The update runs through torch.compile: the first one takes 5-30 s longer (--compile off: eager).")
    if resumed and config.learning_starts > 0 and model.num_timesteps < config.total_steps:
        print(
            f"The replay memory is not saved in checkpoints: refilling it with {config.learning_starts:,} agent "
            f"steps (epsilon {model.exploration_rate:.3f}) before learning resumes."
        )


def _callbacks(
    config: TrainConfig, run_dir: Path, writer: SummaryWriter, stop: StopRequest, progress: bool
) -> tuple[TrainingMonitor, PeriodicEvaluation, PeriodicCheckpoint]:
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
        progress=progress,
    )
    checkpointing = PeriodicCheckpoint(run_dir, every=config.checkpoint_every, keep=config.keep_checkpoints)
    return monitor, evaluation, checkpointing


def _previous_evaluations(run_dir: Path) -> list[dict]:
    path = run_dir / "evaluations.json"
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


def _write_summary(
    result: RunResult, start_step: int, evaluations: list[dict], recent_scores, problem: str | None = None
) -> None:
    steps = result.steps - start_step
    _write_json(
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


def _interval(name: str, low: float | None, high: float | None) -> str:
    left = "(" if low is None or name in LOW_OPEN else "["
    right = ")" if high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
