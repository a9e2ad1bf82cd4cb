"""Per-episode bookkeeping for every environment row: observations seen, attacks made, actions changed.

The wrappers put two entries into ``info``:

- ``info["attack"]`` at every reset and step: ``attacked``, ``linf`` and ``l2`` (the perturbation's norms in
  observation units) and, with a victim, ``clean_action``, ``perturbed_action`` and ``action_changed``.
- ``info["attack_episode"]`` when an episode ends: ``observations`` (every observation the wrapper returned in
  the episode, the reset one and the final one included), ``attacks``, ``attack_rate`` (attacks /
  observations) and, with a victim, ``action_changes`` and ``action_change_rate`` (changes / observations).

The norms are in the budget's units (the observation's, divided by the ``scale`` where one is given). For a
continuous-action victim the actions are vectors (A,), ``action_changed`` means the action moved at all,
``info["attack"]`` adds ``action_distance`` (L2, environment units) and ``info["attack_episode"]``
``mean_action_distance`` (over the episode's observations).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wrappers.engine import Perturbed

STEP_KEY = "attack"
EPISODE_KEY = "attack_episode"


class EpisodeTally:
    """Running counts of the current episode of each of ``num_rows`` environments."""

    def __init__(self, num_rows: int, tracks_actions: bool, continuous: bool = False) -> None:
        self.tracks_actions = tracks_actions
        self.continuous = continuous
        self.action_distance = np.zeros(num_rows, dtype=np.float64)
        self.observations = np.zeros(num_rows, dtype=np.int64)
        self.attacks = np.zeros(num_rows, dtype=np.int64)
        self.action_changes = np.zeros(num_rows, dtype=np.int64)

    def episode_steps(self, rows: Sequence[int]) -> np.ndarray:
        """Index within its episode of each row's next observation (0: the reset observation)."""
        return self.observations[np.asarray(rows, dtype=np.int64)]

    def add(self, rows: Sequence[int], result: Perturbed, counted: np.ndarray | None = None) -> None:
        """Count one observation per row (only the ``counted`` ones, if given)."""
        rows = np.asarray(rows, dtype=np.int64)
        keep = np.ones(len(rows), dtype=bool) if counted is None else np.asarray(counted, dtype=bool)
        self.observations[rows[keep]] += 1
        self.attacks[rows[keep]] += result.attacked[keep]
        if self.tracks_actions:
            self.action_changes[rows[keep]] += result.action_changed[keep]
        if self.continuous:
            self.action_distance[rows[keep]] += result.action_distance[keep]

    def restart(self, rows: Sequence[int] | np.ndarray) -> None:
        """Zero the counts of ``rows`` (a new episode begins)."""
        rows = np.asarray(rows, dtype=np.int64)
        self.observations[rows] = 0
        self.attacks[rows] = 0
        self.action_changes[rows] = 0
        self.action_distance[rows] = 0.0

    def summary(self, rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The finished episodes' figures for ``rows`` (arrays, one entry per row)."""
        rows = np.asarray(rows, dtype=np.int64)
        seen = self.observations[rows]
        per_observation = np.maximum(seen, 1)
        out = {
            "observations": seen.copy(),
            "attacks": self.attacks[rows].copy(),
            "attack_rate": self.attacks[rows] / per_observation,
        }
        if self.tracks_actions:
            out["action_changes"] = self.action_changes[rows].copy()
            out["action_change_rate"] = self.action_changes[rows] / per_observation
        if self.continuous:
            out["mean_action_distance"] = self.action_distance[rows] / per_observation
        return out


def row_info(arrays: dict[str, np.ndarray], row: int) -> dict[str, object]:
    """One row of a dict of arrays as Python scalars, or lists for vector entries (a single environment's ``info``).

    >>> row_info({"attacked": np.array([True]), "clean_action": np.array([[0.5, -1.0]])}, 0)
    {'attacked': True, 'clean_action': [0.5, -1.0]}
    """
    return {key: value[row].tolist() for key, value in arrays.items()}


def spread(arrays: dict[str, np.ndarray], rows: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Arrays over ``size`` environments holding ``arrays`` at ``rows`` and zeros elsewhere (vector ``info``)."""
    out = {}
    for key, value in arrays.items():
        full = np.zeros((size, *value.shape[1:]), dtype=value.dtype)
        full[rows] = value
        out[key] = full
    return out
