"""The wrappers as Stable-Baselines3 ``VecEnv`` wrappers, so ``evaluate_policy`` (and training) work unchanged.

    venv = AdversarialVecEnv(make_atari_env("PongNoFrameskip-v4", n_envs=8), model, eps=2)  # model: SB3 DQN/PPO
    mean, std = evaluate_policy(model, venv, n_eval_episodes=10)

The whole batch is attacked in one call. SB3 resets finished environments inside ``step``; their final
observation, in ``info["terminal_observation"]``, is perturbed as well (it is the last observation of the
episode, and the one SB3 bootstraps from on truncation), and it closes the episode's counts. ``seed(s)`` seeds
environment ``i``'s attack randomness with ``s + i`` at the next reset, as SB3 seeds the environments.
Each environment's ``info`` gets ``"attack"`` (and ``"terminal_attack"`` for the terminal observation) every
step and ``"attack_episode"`` when its episode ends, with the fields of :mod:`wrappers.episodes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from wrappers.engine import ObservationPerturber, adversarial_perturber, noise_perturber
from wrappers.episodes import EPISODE_KEY, STEP_KEY, EpisodeTally, row_info

TERMINAL_KEY = "terminal_observation"


class PerturbedVecEnv(VecEnvWrapper):
    """Base of the SB3 wrappers: perturbs each batch of observations with one :class:`ObservationPerturber`.

    >>> import gymnasium as gym
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from wrappers import PerturbedVecEnv, noise_perturber
    >>> venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
    >>> perturber = noise_perturber(venv.observation_space, venv.action_space, eps=0.05, num_rows=2)
    >>> PerturbedVecEnv(venv, perturber).reset().shape
    (2, 4)
    """

    def __init__(self, venv: VecEnv, perturber: ObservationPerturber) -> None:
        super().__init__(venv, observation_space=perturber.observation_space)
        self.perturber = perturber
        self.tally = EpisodeTally(
            venv.num_envs, tracks_actions=perturber.victim is not None, continuous=perturber.head.continuous
        )
        self._rows = np.arange(venv.num_envs)
        self._next_seed: int | None = None

    def seed(self, seed: int | None = None) -> Any:
        self._next_seed = seed
        return self.venv.seed(seed)

    def reset(self) -> VecEnvObs:
        observations = self.venv.reset()
        if self._next_seed is not None:
            self.perturber.seed(self._next_seed)
            self._next_seed = None
        self.tally.restart(self._rows)
        result = self.perturber(observations, self._rows, self.tally.episode_steps(self._rows))
        self.tally.add(self._rows, result)
        fields = result.fields()
        self.reset_infos = [{**info, STEP_KEY: row_info(fields, i)} for i, info in enumerate(self.venv.reset_infos)]
        return result.observations

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, dones, infos = self.venv.step_wait()
        self._close_episodes(np.flatnonzero(dones), infos)
        result = self.perturber(observations, self._rows, self.tally.episode_steps(self._rows))
        self.tally.add(self._rows, result)
        fields = result.fields()
        for i, info in enumerate(infos):
            info[STEP_KEY] = row_info(fields, i)
        return result.observations, rewards, dones, infos

    def _close_episodes(self, ended: np.ndarray, infos: list[dict]) -> None:
        """Perturb and count the terminal observations of the ``ended`` rows, report, start new episodes."""
        with_terminal = np.array([i for i in ended if TERMINAL_KEY in infos[i]], dtype=np.int64)
        if with_terminal.size:
            terminal = np.stack([np.asarray(infos[i][TERMINAL_KEY]) for i in with_terminal])
            result = self.perturber(terminal, with_terminal, self.tally.episode_steps(with_terminal))
            self.tally.add(with_terminal, result)
            fields = result.fields()
            for j, i in enumerate(with_terminal):
                infos[i][TERMINAL_KEY] = result.observations[j]
                infos[i]["terminal_attack"] = row_info(fields, j)
        if ended.size:
            summary = self.tally.summary(ended)
            for j, i in enumerate(ended):
                infos[i][EPISODE_KEY] = row_info(summary, j)
            self.tally.restart(ended)


class AdversarialVecEnv(PerturbedVecEnv):
    """:class:`wrappers.AdversarialObservation` for an SB3 ``VecEnv``; the same keywords.

    >>> import gymnasium as gym
    >>> import numpy as np
    >>> import torch
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from wrappers import AdversarialVecEnv
    >>> _ = torch.manual_seed(0)
    >>> venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
    >>> env = AdversarialVecEnv(venv, torch.nn.Linear(4, 2), attack="fgsm", eps=0.1, seed=0)
    >>> obs = env.reset()
    >>> obs, rewards, dones, infos = env.step(np.array([0, 1]))
    >>> infos[0]["attack"]["attacked"], round(infos[0]["attack"]["linf"], 3)
    (True, 0.1)

    A Stable-Baselines3 model works as the victim too (it is reduced to its network), so ``evaluate_policy(model,
    AdversarialVecEnv(venv, model, eps=2))`` scores a trained agent under attack.
    """

    def __init__(self, venv: VecEnv, victim: object, *, eps: float, attack: Any = None, **options: Any) -> None:
        perturber = adversarial_perturber(
            venv.observation_space,
            venv.action_space,
            victim,
            eps=eps,
            attack=attack,
            num_rows=venv.num_envs,
            **options,
        )
        super().__init__(venv, perturber)


class RandomNoiseVecEnv(PerturbedVecEnv):
    """:class:`wrappers.RandomNoiseObservation` for an SB3 ``VecEnv``; the same keywords.

    >>> import gymnasium as gym
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from wrappers import RandomNoiseVecEnv
    >>> env = RandomNoiseVecEnv(DummyVecEnv([lambda: gym.make("CartPole-v1")]), eps=0.1, seed=0)
    >>> obs = env.reset()
    >>> env.reset_infos[0]["attack"]["attacked"]
    True
    """

    def __init__(self, venv: VecEnv, *, eps: float, kind: str = "sign", **options: Any) -> None:
        perturber = noise_perturber(
            venv.observation_space, venv.action_space, eps=eps, kind=kind, num_rows=venv.num_envs, **options
        )
        super().__init__(venv, perturber)
