"""The settings of a Double DQN run (:class:`TrainConfig`) with the SAP paper's recipe as defaults, and their checks.

The defaults are the paper's appendix (Dhillon et al., ICLR 2018, after Mnih et al. 2015 and van Hasselt et al.
2016); every one is a field of :class:`TrainConfig` and a flag of ``scripts/train_ddqn.py``. Every setting is
checked (type, finite, in range: :data:`LIMITS`; consistent) before a run directory is made.

>>> config = TrainConfig(game="pong", total_steps=10_000, learning_starts=1_000).validate()
>>> config.game, config.update_schedule()
('Pong', (4, 1))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from agents.env import resolve_game
from agents.networks import Q_NETWORKS
from agents.optim import OPTIMIZERS
from agents.robust_loss import METHODS, SCHEDULES, RobustSettings
from agents.vec_env import BACKENDS
from rlrobust.cli import check_finite_fields

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
    "robust_kappa": (0, None),
    "robust_eps": (0, 1),
    "robust_eps_start": (0, None),
    "robust_eps_steps": (0, None),
    "robust_pgd_steps": (1, None),
    "robust_share": (0, 1),
}
LOW_OPEN = ("learning_rate", "robust_share")
ROBUST_CHOICES = ("none", *METHODS)

# Settings whose default changed: a run folder whose config.json lacks one was written before the change and
# resumes with the old value (the other missing settings take today's defaults).
FORMER_DEFAULTS: dict[str, object] = {"optimizer": "torch-rmsprop"}

# Settings that may change when a run is resumed (where and how fast it runs, how long, what it logs); the others
# define the experiment.
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
class TrainConfig:
    """Every setting of a run. Step counts are agent steps (one action = ``frame_skip`` emulator frames)."""

    game: str = "Bowling"
    total_steps: int = 100_000_000
    learning_starts: int = 50_000  # Mnih et al. 2015's replay start size (uniform random actions until then)
    buffer_size: int = 1_000_000
    batch_size: int = 32
    gamma: float = 0.99
    learning_rate: float = 0.00025
    optimizer: str = "deepmind-rmsprop"  # DeepMind's step (eps inside the root, the minibatch's summed gradient)
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
    robust: str = "none"  # state-adversarial training: none, sa-pgd (SA-DQN's regulariser) or pgd-at
    robust_kappa: float = 0.005  # SA-DQN's weight of its regulariser
    robust_eps: float = 1 / 255  # the final budget, on the [0, 1] scale (1/255 = one grey level)
    robust_eps_start: int = 1_500_000  # the agent step at which eps starts to grow from 0 (SA-DQN's)
    robust_eps_steps: int = 4_000_000  # agent steps the ramp from 0 to robust_eps takes (SA-DQN's)
    robust_schedule: str = "smoothed"  # SA-DQN's smoothed ramp (polynomial, then linear) or linear
    robust_pgd_steps: int = 5  # PGD steps per minibatch (SA-DQN trains with 5)
    robust_share: float = 0.5  # pgd-at: the share of each minibatch replaced by PGD points
    init_from: str = ""  # start from this agent's weights (any file load_agent reads); "" = fresh weights

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first bad setting; returns self with the game name resolved.

        >>> TrainConfig(gamma=1.5).validate()
        Traceback (most recent call last):
        ValueError: gamma must lie in [0, 1], got 1.5
        """
        self._check_types()
        check_finite_fields(self)
        self._check_limits()
        self.game = resolve_game(self.game)
        self._check_consistency()
        self._check_choices()
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

    def _check_limits(self) -> None:
        """Each numeric setting lies in its interval of :data:`LIMITS`."""
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if (low is not None and (value < low or (name in LOW_OPEN and value == low))) or (
                high is not None and value > high
            ):
                raise ValueError(f"{name} must lie in {_interval(name, low, high)}, got {value}")

    def _check_choices(self) -> None:
        """The named settings are among their choices, and a CUDA device exists where one is asked for."""
        if self.network not in Q_NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; choose one of {sorted(Q_NETWORKS)}")
        if self.vec_backend not in BACKENDS:
            raise ValueError(f"unknown vec_backend {self.vec_backend!r}; choose one of {BACKENDS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.robust not in ROBUST_CHOICES:
            raise ValueError(f"robust must be one of {ROBUST_CHOICES}, got {self.robust!r}")
        if self.robust_schedule not in SCHEDULES:
            raise ValueError(f"robust_schedule must be one of {SCHEDULES}, got {self.robust_schedule!r}")
        if self.optimizer == "deepmind-rmsprop" and self.rmsprop_alpha == 1:
            raise ValueError("rmsprop_alpha must lie in [0, 1) for deepmind-rmsprop, got 1")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for but torch sees no CUDA device")

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
        agent steps with ``num_envs`` games: e.g. 1 env -> (4, 1), 2 -> (2, 1), 8 -> (1, 2), 6 -> (2, 3).

        >>> TrainConfig(num_envs=6).update_schedule()
        (2, 3)
        """
        common = math.gcd(self.train_freq, self.num_envs)
        return self.train_freq // common, self.num_envs // common

    def robust_settings(self) -> RobustSettings | None:
        """The robust-training settings the model takes (None for plain training).

        >>> TrainConfig(robust="sa-pgd").robust_settings().pgd_steps
        5
        """
        if self.robust == "none":
            return None
        return RobustSettings(
            self.robust,
            kappa=self.robust_kappa,
            eps=self.robust_eps,
            eps_start=self.robust_eps_start,
            eps_steps=self.robust_eps_steps,
            schedule=self.robust_schedule,
            pgd_steps=self.robust_pgd_steps,
            share=self.robust_share,
        )

    def compiles_update(self, from_step: int = 0) -> bool:
        """Whether the update goes through ``torch.compile``: ``on``, or ``auto`` when the steps from
        ``from_step`` to ``total_steps`` hold at least :data:`COMPILE_MIN_UPDATES` updates, enough to repay the
        one-off compile time (5-30 s) with the 15-25 % faster update it buys on a CPU.

        >>> TrainConfig(total_steps=100_000, learning_starts=10_000).compiles_update()  # 22,500 updates
        True
        """
        if self.compile != "auto":
            return self.compile == "on"
        learning_steps = self.total_steps - max(from_step, self.learning_starts)
        return learning_steps // self.train_freq >= COMPILE_MIN_UPDATES


def _interval(name: str, low: float | None, high: float | None) -> str:
    left = "(" if low is None or name in LOW_OPEN else "["
    right = ")" if high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
