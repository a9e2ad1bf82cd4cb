"""How an evaluated agent acts, and what it records while it does.

The agent acts greedily on the mean scores of ``passes`` passes (1 for a deterministic network), optionally
epsilon-greedy (each environment draws from its own seeded stream). At every step it also scores the clean
observation, which :class:`RecordCleanObservations` (placed under any attack wrapper) hands it, so the
action-change rate is that of the acting agent itself, whoever the attacker differentiated; and it records Lin et
al.'s action preference c(s) = max - min of softmax(scores), from which the strategically-timed attack's threshold
is calibrated on the clean play.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorWrapper
from torch import nn

from rlrobust.stochastic import mean_scores

CLEAN_KEY = "clean_observation"
_EXPLORE_SALT = 0xE9_5EED


class RecordCleanObservations(VectorWrapper):
    """Copies each batch of observations into ``info[CLEAN_KEY]``; placed under an attack wrapper, it lets the
    agent see what the attack changed."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observations, infos = self.env.reset(**kwargs)
        return observations, {**infos, CLEAN_KEY: np.array(observations, copy=True)}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        return observations, rewards, terminated, truncated, {**infos, CLEAN_KEY: np.array(observations, copy=True)}


class GreedyAgent:
    """Acts on the mean scores of ``passes`` passes, greedily or epsilon-greedily (``exploration``), and records
    per step whether its greedy action differs from the one on the clean observation (a fresh set of passes) and
    its action preference."""

    def __init__(
        self,
        network: nn.Module,
        passes: int,
        device: str | torch.device,
        *,
        exploration: float = 0.0,
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        if not 0.0 <= exploration <= 1.0:
            raise ValueError(f"exploration (epsilon-greedy) must lie in [0, 1], got {exploration}")
        self.network = network
        self.passes = passes
        self.device = torch.device(device)
        self.exploration = exploration
        self.rngs = [np.random.default_rng([seed, i, _EXPLORE_SALT]) for i in range(num_envs)]
        self.changed: list[np.ndarray] = []
        self.preferences: list[np.ndarray] = []

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        seen = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=self.device)
        clean = infos.get(CLEAN_KEY)
        batch = seen if clean is None else torch.cat([seen, torch.as_tensor(clean, device=self.device).float()])
        scores = mean_scores(self.network, batch, self.passes)
        actions = scores.argmax(1).cpu().numpy()
        acted = actions[: len(seen)]
        self.changed.append(acted != actions[len(seen) :] if clean is not None else np.zeros(len(seen), dtype=bool))
        probs = scores[: len(seen)].float().softmax(1)
        self.preferences.append((probs.amax(1) - probs.amin(1)).cpu().numpy())
        return self._explore(acted, scores.shape[1])

    def _explore(self, greedy: np.ndarray, n_actions: int) -> np.ndarray:
        if self.exploration == 0.0:
            return greedy
        actions = greedy.copy()
        for i, rng in enumerate(self.rngs[: len(actions)]):
            if rng.random() < self.exploration:
                actions[i] = rng.integers(n_actions)
        return actions

    def changes(self, lengths: Sequence[int]) -> np.ndarray:
        """Action changes within each environment's first episode (its first ``lengths[i]`` steps)."""
        history = np.stack(self.changed)
        return np.array([history[:length, i].sum() for i, length in enumerate(lengths)])

    def preference_quantile(self, lengths: Sequence[int], rate: float) -> float:
        """The preference threshold above which a share ``rate`` of the first episodes' steps lie."""
        history = np.stack(self.preferences)
        pooled = np.concatenate([history[:length, i] for i, length in enumerate(lengths)])
        return float(np.quantile(pooled, 1.0 - rate))
