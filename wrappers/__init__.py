"""Gymnasium wrappers that perturb observations against a victim network (built on ``rlrobust.attacks``).

One import, any Gymnasium env with a ``Box`` observation space, any victim (a torch module mapping
observations to action scores or continuous actions, or a Stable-Baselines3 DQN / QR-DQN / PPO / A2C / SAC / TD3 /
DDPG model)::

    from wrappers import AdversarialObservation
    env = AdversarialObservation(env, victim, attack="fgsm", eps=2)   # eps in the observation's units

- :class:`AdversarialObservation` / :class:`RandomNoiseObservation`: one environment.
- :class:`VectorAdversarialObservation` / :class:`VectorRandomNoiseObservation`: ``gymnasium.vector`` envs
  (ale-py's ``AtariVectorEnv`` included), one batched attack per step.
- :class:`AdversarialVecEnv` / :class:`RandomNoiseVecEnv`: Stable-Baselines3 ``VecEnv`` wrappers (imported
  lazily, so this package does not need SB3 until they are used).
- Schedules: :class:`EveryStep`, :class:`EveryKthStep`, :class:`WithProbability`, :class:`StrategicallyTimed`.
"""

from __future__ import annotations

from typing import Any

from wrappers.engine import ObservationPerturber, adversarial_perturber, noise_perturber
from wrappers.episodes import EPISODE_KEY, STEP_KEY
from wrappers.observation import AdversarialObservation, PerturbedObservation, RandomNoiseObservation
from wrappers.schedules import AttackSchedule, EveryKthStep, EveryStep, StrategicallyTimed, WithProbability
from wrappers.vector import VectorAdversarialObservation, VectorPerturbedObservation, VectorRandomNoiseObservation

_SB3_NAMES = ("AdversarialVecEnv", "PerturbedVecEnv", "RandomNoiseVecEnv")


def __getattr__(name: str) -> Any:
    if name in _SB3_NAMES:
        from wrappers import sb3

        return getattr(sb3, name)
    raise AttributeError(f"module 'wrappers' has no attribute {name!r}")


__all__ = [
    "EPISODE_KEY",
    "STEP_KEY",
    "AdversarialObservation",
    "AdversarialVecEnv",
    "AttackSchedule",
    "EveryKthStep",
    "EveryStep",
    "ObservationPerturber",
    "PerturbedObservation",
    "PerturbedVecEnv",
    "RandomNoiseObservation",
    "RandomNoiseVecEnv",
    "StrategicallyTimed",
    "VectorAdversarialObservation",
    "VectorPerturbedObservation",
    "VectorRandomNoiseObservation",
    "WithProbability",
    "adversarial_perturber",
    "noise_perturber",
]
