"""Turning what the user passes as a victim into a model: a callable from a float batch to action scores.

Accepted: any ``torch.nn.Module`` or callable mapping (N, *obs_shape) floats to scores (N, n_actions)
(our Q-networks and actor-critics, a CleanRL network, ...); a Stable-Baselines3 model or policy, whose
network is taken (DQN: the Q-network; QR-DQN from sb3-contrib: the mean over quantiles; PPO/A2C: the
categorical policy's logits). SB3 is only imported if the user has imported it already.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from gymnasium import spaces
from torch import nn

from wrappers.spaces import ObservationBox

Victim = Callable[[torch.Tensor], torch.Tensor]


class QuantileMean(nn.Module):
    """QR-DQN: Q-values as the mean of the predicted quantiles (N, n_quantiles, n_actions) over quantiles."""

    def __init__(self, quantile_net: nn.Module) -> None:
        super().__init__()
        self.quantile_net = quantile_net

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.quantile_net(obs).mean(dim=1)


class PolicyLogits(nn.Module):
    """An SB3 actor-critic policy with a categorical action distribution, reduced to its action logits."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.get_distribution(obs).distribution.logits


class ChannelsLast(nn.Module):
    """Feed channel-last observations (N, H, W, C) to a network that expects channel-first (N, C, H, W)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.network(obs.permute(0, 3, 1, 2))


def resolve_victim(victim: object, observation_shape: tuple[int, ...]) -> Victim:
    """The scoring model for ``victim``; SB3 models and policies are reduced to their network."""
    if victim is None:
        raise TypeError("victim is required: a torch module (or callable) mapping observations to action scores")
    policy = _sb3_policy(victim)
    if policy is None:
        if not callable(victim):
            raise TypeError(
                f"victim must be a torch module or callable mapping a batch of observations to action scores "
                f"(N, n_actions), or a Stable-Baselines3 model; got {type(victim).__name__}"
            )
        return victim
    return _fit_layout(_policy_network(policy), tuple(policy.observation_space.shape), observation_shape)


def victim_device(victim: Victim, device: str | torch.device | None) -> torch.device:
    """Where observations must go: ``device`` if given, else where the victim's parameters live (CPU if none)."""
    if device is not None:
        return torch.device(device)
    if isinstance(victim, nn.Module):
        for tensor in victim.parameters():
            return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def check_victim(victim: Victim, box: ObservationBox, action_space: object) -> int:
    """Run the victim once on a sample observation; return its number of scores, or raise naming the problem."""
    sample = box.clip(torch.zeros((1, *box.shape), device=box.device))
    try:
        scores = victim(sample)
    except Exception as err:  # the victim's own error, rethrown with what it was given
        raise ValueError(
            f"the victim failed on a batch of observations of shape {tuple(sample.shape)} (float32 in the "
            f"observation space's own units): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"the victim must return a tensor of action scores (N, n_actions), got {type(scores).__name__}; "
            f"wrap networks that return tuples or distributions so that they return the logits / Q-values"
        )
    if scores.ndim != 2 or scores.shape[0] != 1:
        raise ValueError(
            f"the victim must map a batch of 1 observation to scores of shape (1, n_actions), got shape "
            f"{tuple(scores.shape)}"
        )
    if isinstance(action_space, spaces.Discrete) and scores.shape[1] != action_space.n:
        raise ValueError(
            f"the victim returns {scores.shape[1]} scores per observation but the action space has "
            f"{action_space.n} actions ({action_space}); is it the victim for this environment?"
        )
    if scores.shape[1] < 2:
        raise ValueError(f"the victim must score at least 2 actions, got shape {tuple(scores.shape)}")
    return int(scores.shape[1])


def _sb3_policy(victim: object) -> nn.Module | None:
    sb3 = sys.modules.get("stable_baselines3")
    if sb3 is None:
        return None
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import BasePolicy

    if isinstance(victim, BaseAlgorithm):
        return victim.policy
    if isinstance(victim, BasePolicy):
        return victim
    return None


def _policy_network(policy: nn.Module) -> nn.Module:
    if hasattr(policy, "quantile_net"):  # sb3-contrib QR-DQN
        return QuantileMean(policy.quantile_net)
    if hasattr(policy, "q_net"):  # DQN
        return policy.q_net
    if hasattr(policy, "get_distribution"):  # PPO, A2C
        from stable_baselines3.common.distributions import CategoricalDistribution

        if not isinstance(policy.action_dist, CategoricalDistribution):
            raise TypeError(
                f"only policies with a categorical (discrete) action distribution have action scores to attack; "
                f"got {type(policy.action_dist).__name__}"
            )
        return PolicyLogits(policy)
    raise TypeError(f"unsupported Stable-Baselines3 policy {type(policy).__name__}: no Q-network or action logits")


def _fit_layout(network: nn.Module, expected: tuple[int, ...], given: tuple[int, ...]) -> nn.Module:
    """Adapt SB3's channel-first image networks to channel-last observations (SB3 transposes those itself)."""
    if expected == given:
        return network
    if len(given) == 3 and expected == (given[2], given[0], given[1]):
        return ChannelsLast(network)
    raise ValueError(
        f"the Stable-Baselines3 model expects observations of shape {expected}, the environment gives {given}"
    )
