"""Play an agent in an environment and keep observations: real frames for attacks and tests."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm import tqdm


@torch.no_grad()
def greedy_actions(q_network: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Argmax-Q action for each frame stack."""
    return q_network(frames).argmax(dim=1)


def collect_observations(
    env: gym.Env,
    q_network: nn.Module,
    count: int,
    *,
    every: int = 4,
    epsilon: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Play epsilon-greedy and keep every ``every``-th observation until ``count`` are kept; (count, *obs)."""
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    kept = []
    device = next(q_network.parameters()).device
    with tqdm(total=count, desc="collecting frames", disable=not progress, leave=False) as bar:
        step = 0
        while len(kept) < count:
            if step % every == 0:
                kept.append(np.asarray(obs).copy())
                bar.update(1)
            if rng.random() < epsilon:
                action = env.action_space.sample()
            else:
                action = int(greedy_actions(q_network, torch.as_tensor(np.asarray(obs))[None].to(device))[0])
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
            step += 1
    return np.stack(kept)


@torch.no_grad()
def play_episodes(
    env: gym.Env,
    q_network: nn.Module,
    episodes: int,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
    desc: str = "playing",
) -> list[tuple[float, int]]:
    """Play ``episodes`` whole episodes epsilon-greedily (0 = greedy); returns (raw score, length) of each.

    ``env`` should end its episodes by itself (the ALE frame cap does); ``should_stop`` is polled every step so
    that a Ctrl-C during a long evaluation is honoured; an episode it cuts short is not returned. ``progress``
    shows a bar of games, with the steps of the game being played (a long game shows it is not stuck).
    """
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    device = next(q_network.parameters()).device
    results: list[tuple[float, int]] = []
    with tqdm(total=episodes, desc=desc, unit="game", leave=False, disable=not progress, mininterval=1.0) as bar:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            score, length, over = 0.0, 0, False
            while not over:
                if should_stop is not None and should_stop():
                    return results
                if rng.random() < epsilon:
                    action = env.action_space.sample()
                else:
                    action = int(greedy_actions(q_network, torch.as_tensor(np.asarray(obs))[None].to(device))[0])
                obs, reward, terminated, truncated, _ = env.step(action)
                score += float(reward)
                length += 1
                over = terminated or truncated
                if progress and length % 250 == 0:
                    bar.set_postfix_str(f"game {episode + 1}: {length:,} steps", refresh=False)
                    bar.update(0)  # redraws at most once per mininterval
            results.append((score, length))
            bar.update(1)
    return results
