"""Observation wrappers for one Gymnasium environment: adversarial perturbations and matched random noise."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from wrappers.engine import ObservationPerturber, adversarial_perturber, noise_perturber
from wrappers.episodes import EPISODE_KEY, STEP_KEY, EpisodeTally, row_info

_ROW = [0]


class PerturbedObservation(gym.ObservationWrapper):
    """Base of the single-environment wrappers: runs an :class:`ObservationPerturber` on every observation.

    ``observation(obs)`` perturbs one observation; ``reset`` and ``step`` also put the step's figures into
    ``info["attack"]`` and, when an episode ends, the episode's into ``info["attack_episode"]``.
    ``reset(seed=s)`` reseeds the wrapper's own randomness with ``s`` as well as the environment.

    Use it with a perturber of your own making (:func:`wrappers.noise_perturber` here):

    >>> import gymnasium as gym
    >>> from wrappers import PerturbedObservation, noise_perturber
    >>> base = gym.make("CartPole-v1")
    >>> perturber = noise_perturber(base.observation_space, base.action_space, eps=0.05, seed=0)
    >>> env = PerturbedObservation(base, perturber)
    >>> obs, info = env.reset(seed=0)
    >>> info["attack"]["attacked"], round(info["attack"]["linf"], 3)
    (True, 0.05)
    """

    def __init__(self, env: gym.Env, perturber: ObservationPerturber) -> None:
        gym.ObservationWrapper.__init__(self, env)
        self.perturber = perturber
        self.observation_space = perturber.observation_space
        self.tally = EpisodeTally(1, tracks_actions=perturber.victim is not None, continuous=perturber.head.continuous)
        self._last: dict[str, object] = {}

    def observation(self, observation: Any) -> np.ndarray:
        result = self.perturber(np.asarray(observation)[None], _ROW, self.tally.episode_steps(_ROW))
        self.tally.add(_ROW, result)
        self._last = row_info(result.fields(), 0)
        return result.observations[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.perturber.seed(seed)
        self.tally.restart(_ROW)
        obs = self.observation(obs)
        return obs, {**info, STEP_KEY: self._last}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = self.observation(obs)
        info = {**info, STEP_KEY: self._last}
        if terminated or truncated:
            info[EPISODE_KEY] = row_info(self.tally.summary(_ROW), 0)
        return obs, reward, terminated, truncated, info


class AdversarialObservation(PerturbedObservation, gym.utils.RecordConstructorArgs):
    """Perturb every observation (or those a schedule picks) against a victim network.

    Example (any Gymnasium env with a Box observation space, any victim; here CartPole and a linear policy):

    >>> import gymnasium as gym
    >>> import torch
    >>> from wrappers import AdversarialObservation
    >>> _ = torch.manual_seed(0)
    >>> victim = torch.nn.Linear(4, 2)  # 4 numbers in, a score for each of CartPole's 2 actions
    >>> env = AdversarialObservation(gym.make("CartPole-v1"), victim, attack="fgsm", eps=0.1, seed=0)
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> sorted(info["attack"])
    ['action_changed', 'attacked', 'clean_action', 'l2', 'linf', 'perturbed_action']
    >>> round(info["attack"]["linf"], 3)  # the budget, in the observation's own units
    0.1

    On Atari frames (0-255) the budget is lambda in grey levels:
    ``AdversarialObservation(make_atari_env("Pong"), q_network, attack="pgd", eps=2)``.

    Args:
        env: the environment; its observation space must be a ``Box`` (e.g. uint8 (4, 84, 84) frame stacks).
        victim: a torch module or callable mapping a float batch of observations, in the space's own units,
            to action scores (N, n_actions) (Q-values or policy logits) or, for a ``Box`` action space, to
            actions (N, A) or a ``torch.distributions.Normal`` over them. A Stable-Baselines3 model or policy
            (DQN, QR-DQN, PPO, A2C, SAC, TD3, DDPG) is reduced to its network (and its critic).
        eps: the budget in the observation's own units (lambda on 0-255 for uint8 frames, e.g. 1, 2, 4, 8;
            e.g. 8/255 for observations in [0, 1]).
        attack: ``"fgsm"`` (the default for discrete actions), ``"iterative"`` (the SAP paper's: steps of one
            grey level, ceil(eps / step) of them), ``"pgd"`` (the default for continuous actions; random start, 10
            steps of 2.5 * eps / 10, the core's ``default_pgd_step``) or a callable with the signature of the
            attacks in ``rlrobust.attacks``.
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (the default for discrete actions; Huang et al.: cross-entropy against the clean greedy
            action), ``"margin"``, or a callable ``(scores, actions) -> (N,)`` that the attack increases. For
            continuous actions (SA-PPO): ``"mad"`` (the default: KL between the Gaussian policies, squared distance
            between deterministic actions) or ``"critic"`` (minimise the victim's Q(s, pi(s')), or V(s') for PPO/A2C).
        scale: per-dimension budgets: a vector (one positive number per observation value) or ``"std"`` of
            ``scale_from`` (a batch of observations, or SB3's ``VecNormalize``); value i moves by at most
            ``eps * scale[i]`` and ``eps`` is stated in those normalised units.
        critic: ``critic(observations, actions) -> Q`` for ``loss="critic"`` on a plain actor.
        targeted: push the victim toward its worst action (lowest clean score) instead of away from its best.
        eot_samples: stochastic victims (e.g. with SAP): passes averaged for the gradient (the SAP paper's
            Monte-Carlo attacker) and for the victim's action (the mean scores).
        attack_options: more keywords for the attack (``step``, ``steps``, ``restarts``, ``eot_batch_size``).
        perturb: ``"stack"`` (the default: the whole observation, the tensor the network sees) or ``"newest"``
            (only the newest frame of a stack, as Huang et al.); ``frame_axis`` is the stack axis of one
            observation (0 for (4, 84, 84), -1 for channel-last (84, 84, 4)).
        schedule: when to attack: ``EveryStep()`` (default), ``EveryKthStep(k)``, ``WithProbability(p)`` or
            ``StrategicallyTimed(threshold)`` (Lin et al.).
        keep_dtype: return observations in the space's dtype (uint8) instead of float32; only for
            perturbations of whole numbers (FGSM or iterative with whole eps and step, L-inf).
        device: where the victim runs (default: where its parameters are).
        seed: seeds the wrapper's randomness (PGD starts, schedules, a stochastic victim's draws);
            ``reset(seed=...)`` reseeds it too.
    """

    def __init__(self, env: gym.Env, victim: object, *, eps: float, attack: Any = None, **options: Any) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, _disable_deepcopy=True, victim=victim, eps=eps, attack=attack, **options
        )
        perturber = adversarial_perturber(
            env.observation_space, env.action_space, victim, eps=eps, attack=attack, **options
        )
        PerturbedObservation.__init__(self, env, perturber)


class RandomNoiseObservation(PerturbedObservation, gym.utils.RecordConstructorArgs):
    """Add random noise of the same budget as an attack: the controlled baseline for :class:`AdversarialObservation`.

    Args:
        eps: the budget, in the observation's own units.
        kind: ``"sign"`` (each value moved by exactly +-eps: FGSM's size without its direction), ``"uniform"``
            (uniform in the budget ball) or ``"gaussian"`` (N(0, sigma^2), projected onto the ball).
        victim: optional; with it, ``info`` also reports whether the victim's greedy action changed, and the
            strategically-timed schedule can be used.
        Other keywords (``norm``, ``sigma``, ``eot_samples``, ``perturb``, ``frame_axis``, ``schedule``,
        ``keep_dtype``, ``device``, ``seed``) as for :class:`AdversarialObservation`.

    >>> import gymnasium as gym
    >>> from wrappers import RandomNoiseObservation
    >>> env = RandomNoiseObservation(gym.make("CartPole-v1"), eps=0.1, seed=0)  # no victim: noise only
    >>> obs, info = env.reset(seed=0)
    >>> info["attack"]["attacked"], round(info["attack"]["linf"], 3)  # sign noise: every value moved by eps
    (True, 0.1)
    """

    def __init__(self, env: gym.Env, *, eps: float, kind: str = "sign", **options: Any) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, _disable_deepcopy=True, eps=eps, kind=kind, **options)
        perturber = noise_perturber(env.observation_space, env.action_space, eps=eps, kind=kind, **options)
        PerturbedObservation.__init__(self, env, perturber)
