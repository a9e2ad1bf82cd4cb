"""Play a policy in a (wrapped) vector env and collect the first episode of every environment.

Counting only each environment's first episode avoids the bias of "the first K episodes to finish", which
favours short episodes (under attack, the lost ones). Episodes can be capped at ``max_steps`` steps; a capped
episode, or one the environment truncated (ALE's frame cap), is reported with ``truncated=True`` and the return it
had reached. Attack figures are read from the
wrappers' per-step ``info["attack"]``, so they are exact for capped episodes too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv
from tqdm import tqdm

from wrappers.episodes import STEP_KEY

Policy = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def greedy_policy(act: Policy, fire_action: int | None = None) -> Policy:
    """``act(observations, infos) -> actions`` as int64, pressing ``fire_action`` in each environment that just
    lost a life (``None``: never).

    Games such as Breakout wait for FIRE after a lost life and a greedy agent may never press it; ``infos["lives"]``
    (ale-py's vector env reports it) tells when.

    >>> policy = greedy_policy(lambda observations, infos: np.zeros(2), fire_action=1)
    >>> policy(None, {"lives": np.array([3, 3])}).tolist()
    [0, 0]
    >>> policy(None, {"lives": np.array([2, 3])}).tolist()  # the first game lost a life: FIRE there
    [1, 0]
    """
    last_lives: list[np.ndarray] = []

    def policy(observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        actions = np.asarray(act(observations, infos)).astype(np.int64)
        lives = infos.get("lives")
        if fire_action is None or lives is None:
            return actions
        if last_lives:
            actions = np.where(lives < last_lives[0], fire_action, actions)
        last_lives[:] = [np.asarray(lives).copy()]
        return actions

    return policy


@dataclass
class EpisodeRecord:
    """One environment's first episode."""

    env: int
    score: float
    length: int
    truncated: bool
    observations: int
    attacks: int
    action_changes: int  # -1 where no victim reported actions
    mean_linf: float  # mean L-inf size of the perturbation over attacked observations (0 if none)

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def first_episodes(
    env: VectorEnv,
    policy: Policy,
    *,
    seed: int | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    description: str = "episodes",
) -> list[EpisodeRecord]:
    """Step ``env`` with ``policy(observations, infos) -> actions`` until every environment's first episode ends.

    >>> import gymnasium as gym
    >>> import torch
    >>> from wrappers import VectorAdversarialObservation
    >>> _ = torch.manual_seed(0)
    >>> envs = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    >>> env = VectorAdversarialObservation(envs, torch.nn.Linear(4, 2), eps=0.1, seed=0)
    >>> push_left = lambda observations, infos: np.zeros(3, dtype=np.int64)
    >>> records = first_episodes(env, push_left, seed=0, max_steps=50, progress=False)
    >>> [(r.score, r.length, r.attacks) for r in records]  # every observation attacked, the reset one included
    [(11.0, 11, 12), (10.0, 10, 11), (9.0, 9, 10)]
    """
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be an integer >= 1 or None, got {max_steps!r}")
    n = env.num_envs
    observations, infos = env.reset(seed=seed)
    score = np.zeros(n)
    length = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n, dtype=np.int64)
    attacks = np.zeros(n, dtype=np.int64)
    changes = np.zeros(n, dtype=np.int64)
    linf_sum = np.zeros(n)
    tracks_actions = True
    running = np.ones(n, dtype=bool)
    truncated_by_cap = np.zeros(n, dtype=bool)

    def count(infos: dict[str, Any]) -> None:
        nonlocal tracks_actions
        step = infos.get(STEP_KEY)
        if step is None:
            return
        seen[running] += 1
        attacks[running] += step["attacked"][running]
        linf_sum[running] += step["linf"][running]
        if "action_changed" in step:
            changes[running] += step["action_changed"][running]
        else:
            tracks_actions = False

    count(infos)
    # The bar counts agent steps (an attacked game can take minutes per episode); with a cap it also credits the
    # steps a game that ended early did not need, so it fills exactly and its ETA is an upper bound.
    total = n * max_steps if max_steps is not None else None
    with tqdm(total=total, desc=description, unit="step", disable=not progress, leave=False) as bar:
        while running.any():
            actions = policy(observations, infos)
            observations, rewards, terminated, truncated, infos = env.step(actions)
            stepped = int(running.sum())
            score[running] += rewards[running]
            length[running] += 1
            count(infos)
            finished = running & (np.logical_or(terminated, truncated))
            truncated_by_cap |= finished & np.asarray(truncated, dtype=bool) & ~np.asarray(terminated, dtype=bool)
            if max_steps is not None:
                capped = running & ~finished & (length >= max_steps)
                truncated_by_cap |= capped
                finished |= capped
            running &= ~finished
            unused = int((max_steps - length[finished]).sum()) if max_steps is not None else 0
            bar.set_postfix_str(f"{n - int(running.sum())}/{n} episodes done", refresh=False)
            bar.update(stepped + unused)
    return [
        EpisodeRecord(
            env=i,
            score=float(score[i]),
            length=int(length[i]),
            truncated=bool(truncated_by_cap[i]),
            observations=int(seen[i]),
            attacks=int(attacks[i]),
            action_changes=int(changes[i]) if tracks_actions else -1,
            mean_linf=float(linf_sum[i] / attacks[i]) if attacks[i] else 0.0,
        )
        for i in range(n)
    ]


def summarise(records: list[EpisodeRecord]) -> dict[str, float | int]:
    """Mean and spread of the scores, and the attack figures pooled over all observations of the episodes.

    >>> records = [EpisodeRecord(0, 11.0, 11, False, 12, 12, 1, 0.1), EpisodeRecord(1, 9.0, 9, False, 10, 10, 1, 0.1)]
    >>> figures = summarise(records)
    >>> figures["mean_score"], figures["std_score"], round(figures["action_change_rate"], 3)
    (10.0, 1.414..., 0.091)
    """
    scores = np.array([r.score for r in records])
    seen = sum(r.observations for r in records)
    attacks = sum(r.attacks for r in records)
    out: dict[str, float | int] = {
        "episodes": len(records),
        "mean_score": float(scores.mean()),
        "std_score": float(scores.std(ddof=1)) if len(records) > 1 else 0.0,
        "capped": sum(r.truncated for r in records),
        "mean_length": float(np.mean([r.length for r in records])),
        "attack_rate": attacks / seen if seen else 0.0,
        "mean_linf": sum(r.mean_linf * r.attacks for r in records) / attacks if attacks else 0.0,
    }
    tracked = all(r.action_changes >= 0 for r in records)
    changes = sum(r.action_changes for r in records)
    out["action_change_rate"] = (changes / seen if seen else 0.0) if tracked else float("nan")
    return out
