"""When to attack: a schedule picks, for a batch of observations, the rows to perturb.

A schedule sees each observation's index within its episode (0 for the reset observation), the victim's
mean scores on the clean observations (None without a victim) and one random generator per environment, so a
vector of environments and the same environments wrapped one by one make the same choices.

- :class:`EveryStep` (the default): every observation.
- :class:`EveryKthStep`: observations ``offset, offset + k, ...`` of each episode.
- :class:`WithProbability`: each observation independently with probability ``p``.
- :class:`StrategicallyTimed`: Lin et al. (2017), "Tactics of adversarial attack on deep reinforcement
  learning agents": only when the victim's preference is strong, i.e. when the gap between the largest and
  the smallest action probability, ``max softmax(scores / T) - min softmax(scores / T)``, is at least
  ``threshold`` (their beta; for a DQN the Q-values become probabilities through the softmax at temperature T).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rlrobust.checks import check_count, check_number, check_positive


class AttackSchedule:
    """Base class: override :meth:`select`. ``needs_victim`` says whether it reads the victim's scores."""

    needs_victim: bool = False

    def select(
        self, episode_steps: np.ndarray, scores: torch.Tensor | None, rngs: Sequence[np.random.Generator]
    ) -> np.ndarray:
        """Boolean mask (N,): which of the N observations to attack."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class EveryStep(AttackSchedule):
    """Attack every observation.

    >>> EveryStep().select(np.arange(3), None, []).tolist()
    [True, True, True]
    """

    def select(self, episode_steps, scores, rngs):
        return np.ones(len(episode_steps), dtype=bool)


class EveryKthStep(AttackSchedule):
    """Attack observations ``offset, offset + k, offset + 2k, ...`` of each episode (0 = the reset one).

    >>> EveryKthStep(3, offset=1).select(np.arange(8), None, []).tolist()
    [False, True, False, False, True, False, False, True]
    """

    def __init__(self, k: int, offset: int = 0) -> None:
        self.k = check_count(k, "k")
        self.offset = check_count(offset, "offset", minimum=0)

    def select(self, episode_steps, scores, rngs):
        steps = np.asarray(episode_steps) - self.offset
        return (steps >= 0) & (steps % self.k == 0)


class WithProbability(AttackSchedule):
    """Attack each observation independently with probability ``p`` (one draw per environment and step).

    >>> rngs = [np.random.default_rng(seed) for seed in range(1000)]
    >>> float(WithProbability(0.25).select(np.zeros(1000), None, rngs).mean())  # about a quarter
    0.225
    """

    def __init__(self, p: float) -> None:
        p = check_number(p, "the attack probability p")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the attack probability p must lie in [0, 1], got {p}")
        self.p = p

    def select(self, episode_steps, scores, rngs):
        return np.array([rng.random() < self.p for rng in rngs], dtype=bool)


class StrategicallyTimed(AttackSchedule):
    """Lin et al.'s strategically-timed attack: attack when ``max - min`` of ``softmax(scores / T)`` >= threshold.

    >>> scores = torch.tensor([[5.0, 0.0, 0.0], [1.0, 1.0, 1.1]])  # a clear preference, then nearly none
    >>> StrategicallyTimed(0.5).select(np.zeros(2), scores, []).tolist()
    [True, False]

    With a wrapper: ``AdversarialObservation(env, victim, eps=2, schedule=StrategicallyTimed(0.8))``.
    """

    needs_victim = True

    def __init__(self, threshold: float, temperature: float = 1.0) -> None:
        threshold = check_number(threshold, "threshold")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a gap between probabilities and must lie in [0, 1], got {threshold}")
        self.threshold = threshold
        self.temperature = check_positive(temperature, "temperature")

    def preference(self, scores: torch.Tensor) -> torch.Tensor:
        """Lin et al.'s c(s): the largest minus the smallest action probability, per observation."""
        probs = (scores.float() / self.temperature).softmax(dim=1)
        return probs.amax(dim=1) - probs.amin(dim=1)

    def select(self, episode_steps, scores, rngs):
        if scores is None:
            raise ValueError("the strategically-timed schedule needs a victim to read its action preferences")
        return (self.preference(scores) >= self.threshold).cpu().numpy()


def resolve_schedule(schedule: AttackSchedule | str | None) -> AttackSchedule:
    """``None`` or ``"always"`` -> :class:`EveryStep`; a schedule object is used as it is."""
    if schedule is None or schedule in ("always", "every_step"):
        return EveryStep()
    if isinstance(schedule, AttackSchedule):
        return schedule
    raise ValueError(
        f"schedule must be an AttackSchedule (EveryStep(), EveryKthStep(k), WithProbability(p), "
        f"StrategicallyTimed(threshold)) or 'always', got {schedule!r}"
    )
