"""The same wrappers for ``gymnasium.vector`` environments: one attack call for the whole batch.

Works with Gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` (``gym.make_vec``) and with ale-py's
``AtariVectorEnv`` (whose uint8 (4, 84, 84) stacks are the same observations as ``agents.make_atari_env``'s;
in its asynchronous mode, ``batch_size < num_envs``, the rows are mapped to environments by
``info["env_id"]``). Autoreset must be ``NEXT_STEP`` (the default) or ``DISABLED``: under ``SAME_STEP`` the
final observation would sit unperturbed in ``info``. ``reset(seed=s)`` seeds environment ``i``'s attack
randomness with ``s + i``, as Gymnasium seeds the sub-environments, so environment ``i`` is perturbed exactly
as a single wrapped environment reset with ``s + i`` would be, given the same observations.

``info["attack"]`` holds arrays over the environments; ``info["attack_episode"]`` holds arrays that are
meaningful where ``info["_attack_episode"]`` is True (the environments whose episode ended this step), as
Gymnasium's ``RecordEpisodeStatistics`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import RecordConstructorArgs
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from wrappers.engine import ObservationPerturber, adversarial_perturber, noise_perturber
from wrappers.episodes import EPISODE_KEY, STEP_KEY, EpisodeTally, spread


class VectorPerturbedObservation(VectorWrapper):
    """Base of the vector wrappers: perturbs each batch of observations with one :class:`ObservationPerturber`.

    >>> import gymnasium as gym
    >>> from wrappers import VectorPerturbedObservation, noise_perturber
    >>> envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    >>> perturber = noise_perturber(envs.single_observation_space, envs.single_action_space, eps=0.05, num_rows=2)
    >>> obs, info = VectorPerturbedObservation(envs, perturber).reset(seed=0)
    >>> info["attack"]["linf"].round(3).tolist()
    [0.05, 0.05]
    """

    def __init__(self, env: VectorEnv, perturber: ObservationPerturber) -> None:
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError(
                f"vector observation wrappers need autoreset_mode NEXT_STEP or DISABLED, got {mode}: under "
                f"SAME_STEP the final observation is returned in info, where it would stay unperturbed"
            )
        self.perturber = perturber
        self.single_observation_space = perturber.observation_space
        self.observation_space = batch_space(perturber.observation_space, env.observation_space.shape[0])
        self.tally = EpisodeTally(
            self.num_envs, tracks_actions=perturber.victim is not None, continuous=perturber.head.continuous
        )
        self._ended = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        mask = (options or {}).get("reset_mask")  # read first: some vector envs pop it from the options
        observations, infos = self.env.reset(seed=seed, options=options)
        rows = self._rows(infos, len(observations))
        restarted = np.arange(self.num_envs) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
        if seed is not None and mask is None:
            self.perturber.seed(seed)
        self.tally.restart(restarted)
        self._ended[restarted] = False
        return self._perturb(observations, infos, rows, counted=np.isin(rows, restarted))

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        rows = self._rows(infos, len(observations))
        restarted = rows[self._ended[rows]]  # NEXT_STEP: these rows now show a reset observation
        self.tally.restart(restarted)
        self._ended[restarted] = False
        observations, infos = self._perturb(observations, infos, rows)
        done = np.logical_or(terminations, truncations)
        if done.any():
            ended = rows[done]
            self._ended[ended] = True
            infos = {
                **infos,
                EPISODE_KEY: spread(self.tally.summary(ended), np.flatnonzero(done), len(rows)),
                f"_{EPISODE_KEY}": done,
            }
        return observations, rewards, terminations, truncations, infos

    def _perturb(
        self, observations: Any, infos: dict, rows: np.ndarray, counted: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict]:
        result = self.perturber(observations, rows, self.tally.episode_steps(rows))
        self.tally.add(rows, result, counted)
        fields = result.fields()
        return result.observations, {**infos, STEP_KEY: fields, f"_{STEP_KEY}": np.ones(len(rows), dtype=bool)}

    def _rows(self, infos: dict, batch: int) -> np.ndarray:
        """Environment index of each row: ``info["env_id"]`` (ale-py's async batches), else 0..N-1."""
        env_id = infos.get("env_id") if isinstance(infos, dict) else None
        if env_id is not None and len(env_id) == batch:
            return np.asarray(env_id, dtype=np.int64)
        return np.arange(batch, dtype=np.int64)


class VectorAdversarialObservation(VectorPerturbedObservation, RecordConstructorArgs):
    """:class:`wrappers.AdversarialObservation` for a vector env; the same keywords, one batched attack per step.

    >>> import gymnasium as gym
    >>> import torch
    >>> from wrappers import VectorAdversarialObservation
    >>> _ = torch.manual_seed(0)
    >>> envs = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    >>> env = VectorAdversarialObservation(envs, torch.nn.Linear(4, 2), attack="pgd", eps=0.1, seed=0)
    >>> obs, info = env.reset(seed=0)
    >>> obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
    >>> obs.shape, info["attack"]["attacked"].tolist()  # one PGD call attacked all three environments
    ((3, 4), [True, True, True])
    >>> bool((info["attack"]["linf"] <= 0.1 + 1e-6).all())
    True
    """

    def __init__(self, env: VectorEnv, victim: object, *, eps: float, attack: Any = None, **options: Any) -> None:
        RecordConstructorArgs.__init__(self, _disable_deepcopy=True, victim=victim, eps=eps, attack=attack, **options)
        perturber = adversarial_perturber(
            env.single_observation_space,
            env.single_action_space,
            victim,
            eps=eps,
            attack=attack,
            num_rows=env.num_envs,
            **options,
        )
        VectorPerturbedObservation.__init__(self, env, perturber)


class VectorRandomNoiseObservation(VectorPerturbedObservation, RecordConstructorArgs):
    """:class:`wrappers.RandomNoiseObservation` for a vector env; the same keywords.

    >>> import gymnasium as gym
    >>> from wrappers import VectorRandomNoiseObservation
    >>> envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    >>> obs, info = VectorRandomNoiseObservation(envs, eps=0.1, kind="uniform", seed=0).reset(seed=0)
    >>> bool((info["attack"]["linf"] <= 0.1 + 1e-6).all())  # uniform noise in the budget ball
    True
    """

    def __init__(self, env: VectorEnv, *, eps: float, kind: str = "sign", **options: Any) -> None:
        RecordConstructorArgs.__init__(self, _disable_deepcopy=True, eps=eps, kind=kind, **options)
        perturber = noise_perturber(
            env.single_observation_space, env.single_action_space, eps=eps, kind=kind, num_rows=env.num_envs, **options
        )
        VectorPerturbedObservation.__init__(self, env, perturber)
