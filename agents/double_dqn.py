"""Double DQN (van Hasselt, Guez & Silver, AAAI 2016) as a thin subclass of stable-baselines3's DQN.

SB3's DQN bootstraps from ``max_a Q_target(s', a)``; Double DQN lets the online network choose the action and
the target network value it: ``r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``. Everything
else -- the rollout loop, VecEnv support, callbacks, ``save``/``load`` -- is SB3's. Besides the target, the
subclass changes what the paper's recipe or speed needs and says why next to each override:

- ``train``: the Double-DQN target; one replay draw per call (all of its gradient steps at once, a single gather
  when the replay lives on the GPU); no host-device sync per update (loss and mean Q are accumulated on the device
  and read when logged); gradient clipping optional (the papers have none); waits until the replay holds
  ``learning_starts`` transitions, so a resumed run refills its replay before it learns again.
- ``exploration_steps``: epsilon anneals over a fixed number of agent steps, as the papers' "first 1M steps",
  instead of SB3's fraction of the run (which would change with ``--total-steps`` and on resume).
- ``predict``: with several envs, one epsilon coin per env (SB3 draws one coin for all of them) and one batched
  forward pass for the greedy ones.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from agents.policies import AtariQPolicy


def double_q_target(
    online: nn.Module,
    target: nn.Module,
    next_obs: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    discounts: torch.Tensor | float,
) -> torch.Tensor:
    """The Double-DQN TD target ``r + discount * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``, (N, 1)."""
    with torch.no_grad():
        next_actions = online(next_obs).argmax(dim=1, keepdim=True)
        next_values = target(next_obs).gather(1, next_actions)
        return rewards + (1 - dones) * discounts * next_values


def linear_epsilon(step: int, start: float, final: float, steps: int) -> float:
    """Epsilon annealed linearly from ``start`` to ``final`` over the first ``steps`` agent steps, then flat."""
    if steps <= 0:
        return final
    return start + (final - start) * min(1.0, step / steps)


class DoubleDQN(DQN):
    """SB3's DQN with the Double-DQN target (see the module docstring for every difference).

    Takes every argument of ``stable_baselines3.DQN`` plus ``exploration_steps`` (anneal epsilon from
    ``exploration_initial_eps`` to ``exploration_final_eps`` over this many agent steps; ``None`` keeps SB3's
    ``exploration_fraction``). ``max_grad_norm=None`` turns gradient clipping off. The policy ``"AtariQPolicy"``
    puts :class:`~agents.networks.NatureQNetwork` inside SB3's policy.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**DQN.policy_aliases, "AtariQPolicy": AtariQPolicy}

    def __init__(self, *args: Any, exploration_steps: int | None = None, **kwargs: Any) -> None:
        self.exploration_steps = exploration_steps
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ exploration
    def _on_step(self) -> None:
        super()._on_step()  # target-network update every target_update_interval agent steps
        if self.exploration_steps is not None:
            self.exploration_rate = linear_epsilon(
                self.num_timesteps, self.exploration_initial_eps, self.exploration_final_eps, self.exploration_steps
            )
            self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        if deterministic or isinstance(observation, dict) or not self.policy.is_vectorized_observation(observation):
            return super().predict(observation, state, episode_start, deterministic)
        n = len(observation)
        explore = np.random.rand(n) < self.exploration_rate
        actions = np.random.randint(self.action_space.n, size=n)
        if not explore.all():
            greedy, _ = self.policy.predict(observation, deterministic=True)
            actions = np.where(explore, actions, greedy)
        return actions, state

    # ------------------------------------------------------------------ learning
    def train(self, gradient_steps: int, batch_size: int = 32) -> None:
        if self.replay_buffer.size() * self.n_envs < self.learning_starts:
            return  # a resumed run refills its (unsaved) replay first
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        batch = self.replay_buffer.sample(batch_size * gradient_steps, env=self._vec_normalize_env)
        clip = self.max_grad_norm is not None and math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0
        for step in range(gradient_steps):
            part = slice(step * batch_size, (step + 1) * batch_size)
            discounts = batch.discounts[part] if batch.discounts is not None else self.gamma
            target = self.td_target(batch.next_observations[part], batch.rewards[part], batch.dones[part], discounts)
            q_values = self.q_net(batch.observations[part])
            chosen = q_values.gather(1, batch.actions[part].long())
            loss = F.smooth_l1_loss(chosen, target)  # Huber: the papers' error clipping to [-1, 1]
            self.policy.optimizer.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            self._loss_sum += loss.detach()
            self._q_sum += q_values.detach().max(dim=1).values.mean()
        self._stat_count += gradient_steps
        self._last_loss = loss.detach()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def td_target(
        self, next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, discounts: torch.Tensor | float
    ) -> torch.Tensor:
        """The TD target of one minibatch: Double DQN's (the one algorithmic change to SB3's DQN)."""
        return double_q_target(self.q_net, self.q_net_target, next_obs, rewards, dones, discounts)

    def _reset_train_stats(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._q_sum = torch.zeros((), device=self.device)
        self._stat_count = 0

    def pop_train_stats(self) -> dict[str, float] | None:
        """Mean Huber loss and mean max-Q of the minibatches since the last call (None if there were none)."""
        if self._stat_count == 0:
            return None
        stats = {"loss": self._loss_sum.item() / self._stat_count, "mean_q": self._q_sum.item() / self._stat_count}
        self._reset_train_stats()
        return stats

    def dump_logs(self) -> None:
        if self._last_loss is not None:  # read here, not per update, to spare a device sync each step
            self.logger.record("train/loss", self._last_loss.item())
        super().dump_logs()

    def _setup_model(self) -> None:
        super()._setup_model()
        self._reset_train_stats()
        self._last_loss: torch.Tensor | None = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_loss_sum", "_q_sum", "_stat_count", "_last_loss"]
