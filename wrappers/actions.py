"""How a victim's output becomes an action, and what an attack on a continuous-action victim compares.

Every victim is a network from a float batch of observations to one tensor per row (the :class:`ActionHead`
says how to read it):

- :class:`DiscreteHead`: action scores (N, n_actions), Q-values or logits; the action is the argmax.
- :class:`DeterministicHead`: actions (N, A) (TD3, DDPG, a plain actor ``obs -> action``).
- :class:`GaussianHead`: rows ``[mean, log_std]`` (N, 2A) of a diagonal Gaussian policy (SB3 PPO/A2C, SAC before
  its tanh, an actor returning a ``torch.distributions.Normal``); the action is the mean.

``squashed`` heads (SB3's SAC, TD3, DDPG) act in [-1, 1] after a tanh and rescale to the action space's bounds;
the critic of those models takes the [-1, 1] action. Reported actions are always in the environment's units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from rlrobust.attacks import gaussian_kl, squared_distance
from rlrobust.attacks.losses import LossFn

#: ``critic(observations, actions) -> Q`` (N,) or (N, 1), or a tuple of such (twin critics: the minimum is used).
Critic = Callable[[torch.Tensor, torch.Tensor], object]


class ActionHead:
    """Base class: how to read actions from a victim's output (N, D)."""

    continuous: bool = True
    kind: str = ""

    def actions(self, output: torch.Tensor) -> torch.Tensor:
        """The action each row stands for, in the environment's units (int (N,) or float (N, A))."""
        raise NotImplementedError

    def policy_actions(self, output: torch.Tensor) -> torch.Tensor:
        """The action as the victim's own critic takes it (differentiable; [-1, 1] for squashed heads)."""
        raise NotImplementedError

    def mad_loss(self) -> LossFn:
        """SA-PPO's maximal action deviation for this kind of policy: output vs clean output."""
        raise NotImplementedError


class DiscreteHead(ActionHead):
    """Action scores (N, n_actions); the greedy action is the argmax.

    >>> DiscreteHead().actions(torch.tensor([[0.1, 0.9]])).tolist()
    [1]
    """

    continuous = False
    kind = "discrete"

    def actions(self, output: torch.Tensor) -> torch.Tensor:
        return output.argmax(dim=1)


class _ContinuousHead(ActionHead):
    def __init__(self, low: np.ndarray, high: np.ndarray, squashed: bool) -> None:
        self.low = torch.as_tensor(np.asarray(low, dtype=np.float32))
        self.high = torch.as_tensor(np.asarray(high, dtype=np.float32))
        self.squashed = squashed
        self.action_dim = int(self.low.numel())

    def _to_env(self, policy_action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> the space's bounds for squashed heads (SB3's ``unscale_action``); clipped to finite bounds
        otherwise, as SB3 clips a Gaussian policy's action before stepping."""
        low, high = self.low.to(policy_action.device), self.high.to(policy_action.device)
        if self.squashed:
            return low + 0.5 * (policy_action + 1.0) * (high - low)
        return torch.maximum(torch.minimum(policy_action, high), low)

    def actions(self, output: torch.Tensor) -> torch.Tensor:
        return self._to_env(self.policy_actions(output))


class DeterministicHead(_ContinuousHead):
    """Actions (N, A); ``squashed``: in [-1, 1], rescaled to the action space's bounds.

    >>> head = DeterministicHead(np.array([-2.0]), np.array([2.0]), squashed=True)
    >>> head.actions(torch.tensor([[0.5]])).tolist()
    [[1.0]]
    """

    kind = "deterministic"

    def policy_actions(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def mad_loss(self) -> LossFn:
        return squared_distance


class GaussianHead(_ContinuousHead):
    """Rows ``[mean, log_std]`` (N, 2A) of a diagonal Gaussian; ``squashed``: tanh of the sample (SAC).

    >>> head = GaussianHead(np.array([-1.0]), np.array([1.0]), squashed=False)
    >>> head.actions(torch.tensor([[0.3, -1.0]])).tolist()  # the mean
    [[0.30000001192092896]]
    """

    kind = "gaussian"

    def policy_actions(self, output: torch.Tensor) -> torch.Tensor:
        mean = output[:, : self.action_dim]
        return torch.tanh(mean) if self.squashed else mean

    def mad_loss(self) -> LossFn:
        return gaussian_kl  # the KL is unchanged by the tanh, a bijection


class GaussianOutput(nn.Module):
    """A network returning a diagonal ``torch.distributions.Normal`` over the actions, as rows ``[mean, log_std]``."""

    def __init__(self, network: Callable) -> None:
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return gaussian_rows(self.network(obs))


def gaussian_rows(distribution: object) -> torch.Tensor:
    """Rows ``[mean, log_std]`` (N, 2A) of a diagonal Normal (or an ``Independent`` of one), or a clear error.

    >>> gaussian_rows(torch.distributions.Normal(torch.zeros(1, 2), torch.ones(1, 2))).tolist()
    [[0.0, 0.0, 0.0, 0.0]]
    """
    inner = distribution.base_dist if isinstance(distribution, torch.distributions.Independent) else distribution
    if not isinstance(inner, torch.distributions.Normal):
        raise TypeError(
            f"a continuous-action victim returning a distribution must return a (diagonal) Normal over the "
            f"actions, got {type(distribution).__name__}"
        )
    mean = inner.mean
    return torch.cat([mean, inner.stddev.expand_as(mean).log()], dim=1)


class SquashedGaussianOutput(nn.Module):
    """SB3 SAC's actor as rows ``[mean, log_std]`` before its tanh."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, log_std, _ = self.actor.get_action_dist_params(obs)
        return torch.cat([mean, log_std.expand_as(mean)], dim=1)


class CriticLoss:
    """The critic attack (Pattanaik et al. 2018, as SA-PPO runs it): ``-Q(s, pi(s'))``, ascended, so the
    perturbation drives the victim to the action its own critic values least. ``y`` is the clean observation."""

    def __init__(self, critic: Critic, head: ActionHead) -> None:
        self.critic = critic
        self.head = head

    def __call__(self, output: torch.Tensor, clean_observations: torch.Tensor) -> torch.Tensor:
        q = self.critic(clean_observations, self.head.policy_actions(output))
        if isinstance(q, (tuple, list)):
            q = torch.stack([v.reshape(-1) for v in q]).amin(dim=0)
        q = torch.as_tensor(q)
        if q.numel() != output.shape[0]:
            raise ValueError(f"the critic must return one value per row ({output.shape[0]}), got {tuple(q.shape)}")
        return -q.reshape(-1)


def lowest_value(values: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """SA-PPO's critic attack on a PPO victim, which has no Q-function: ``-V(s')``, ascended, so the perturbation
    makes the victim's own value network rate the state it sees as poor. ``values`` are V of the perturbed
    observations (N, 1); ``clean`` is unused.

    >>> lowest_value(torch.tensor([[2.0], [-1.0]]), torch.zeros(2, 1)).tolist()
    [-2.0, 1.0]
    """
    return -values[:, 0]
