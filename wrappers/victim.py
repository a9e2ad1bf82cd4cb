"""Turning what the user passes as a victim into a model: a network from a float batch to one tensor per row,
and the :class:`~wrappers.actions.ActionHead` that says how to read it.

Accepted: any ``torch.nn.Module`` or callable mapping (N, *obs_shape) floats to action scores (N, n_actions)
for a discrete action space (our Q-networks and actor-critics, a CleanRL network, ...), and for a ``Box`` action
space to actions (N, A) (a deterministic actor) or to a ``torch.distributions.Normal`` over them; a
Stable-Baselines3 model or policy, whose network is taken (DQN: the Q-network; QR-DQN from sb3-contrib: the mean
over quantiles; PPO/A2C: the categorical policy's logits or the Gaussian policy's mean and log-std; SAC: its
Gaussian before the tanh; TD3/DDPG: the actor), with the model's critic where it has a Q-function (SAC, TD3,
DDPG). SB3 is only imported if the user has imported it already.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from wrappers.actions import (
    ActionHead,
    Critic,
    DeterministicHead,
    DiscreteHead,
    GaussianHead,
    GaussianOutput,
    SquashedGaussianOutput,
    gaussian_rows,
)
from wrappers.spaces import ObservationBox

Victim = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PreparedVictim:
    """A victim ready for the attacks: its network, how to read its output, and its critic (if any)."""

    network: Victim
    head: ActionHead
    critic: Critic | None = None  # Q(observations, actions) (SAC, TD3, DDPG, or the user's)
    value: Victim | None = None  # V(observations) (N, 1) (PPO, A2C): SA-PPO's critic attack on PPO minimises it


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


class PolicyGaussian(nn.Module):
    """An SB3 actor-critic policy with a diagonal Gaussian action distribution, as rows ``[mean, log_std]``.

    With a state-independent std (``DiagGaussianDistribution``) the mean is computed as SB3's ``get_distribution``
    computes it, without building the distribution objects (a third of the cost of a PGD step on a MuJoCo MLP);
    gSDE goes through ``get_distribution``.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        from stable_baselines3.common.distributions import DiagGaussianDistribution

        self.policy = policy
        self.direct = isinstance(policy.action_dist, DiagGaussianDistribution)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        policy = self.policy
        if not self.direct:
            return gaussian_rows(policy.get_distribution(obs).distribution)
        from stable_baselines3.common.preprocessing import preprocess_obs

        features = policy.pi_features_extractor(
            preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
        )
        mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
        return torch.cat([mean, policy.log_std.expand_as(mean)], dim=1)


class PolicyValue(nn.Module):
    """An SB3 actor-critic policy's value network V(s), (N, 1)."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.predict_values(obs)


class ChannelsLast(nn.Module):
    """Feed channel-last observations (N, H, W, C) to a network that expects channel-first (N, C, H, W)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.network(obs.permute(0, 3, 1, 2))


def resolve_victim(victim: object, observation_shape: tuple[int, ...]) -> Victim:
    """The network of ``victim``; SB3 models and policies are reduced to their network."""
    if victim is None:
        raise TypeError("victim is required: a torch module (or callable) mapping observations to action scores")
    policy = _sb3_policy(victim)
    if policy is None:
        if not callable(victim):
            raise TypeError(
                f"victim must be a torch module or callable mapping a batch of observations to action scores "
                f"(N, n_actions) or actions (N, A), or a Stable-Baselines3 model; got {type(victim).__name__}"
            )
        return victim
    return _fit_layout(_policy_network(policy), tuple(policy.observation_space.shape), observation_shape)


def prepare_victim(
    victim: object, box: ObservationBox, action_space: spaces.Space, critic: Critic | None = None
) -> PreparedVictim:
    """The network, head and critic of ``victim`` for this environment, checked on one sample observation.

    ``critic``: ``critic(observations, actions) -> Q`` for the critic attack, where the victim brings none.
    """
    network = resolve_victim(victim, box.shape)
    policy = _sb3_policy(victim)
    if policy is not None:
        head, own_critic = _sb3_head(policy, action_space)
        critic = critic if critic is not None else own_critic
        value = _fit_layout(PolicyValue(policy), tuple(policy.observation_space.shape), box.shape)
    else:
        network, head = _plain_head(network, box, action_space)
        value = None
    if critic is not None and not callable(critic):
        raise TypeError(f"critic must be a callable (observations, actions) -> Q, got {type(critic).__name__}")
    has_value = head.continuous and hasattr(policy, "predict_values") and not hasattr(policy, "actor")
    prepared = PreparedVictim(network, head, critic, value if has_value else None)
    check_victim(prepared, box, action_space)
    return prepared


def victim_device(victim: Victim, device: str | torch.device | None) -> torch.device:
    """Where observations must go: ``device`` if given, else where the victim's parameters live (CPU if none)."""
    if device is not None:
        return torch.device(device)
    if isinstance(victim, nn.Module):
        for tensor in victim.parameters():
            return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def check_victim(victim: PreparedVictim, box: ObservationBox, action_space: object) -> int:
    """Run the victim once on a sample observation; return its output width, or raise naming the problem."""
    scores = _sample_output(victim.network, box)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"the victim must return a tensor of action scores (N, n_actions), or of actions (N, A) or a Normal "
            f"distribution over them for a continuous action space; got {type(scores).__name__}"
        )
    if scores.ndim != 2 or scores.shape[0] != 1:
        raise ValueError(
            f"the victim must map a batch of 1 observation to scores of shape (1, n_actions) (or actions (1, A)), "
            f"got shape {tuple(scores.shape)}"
        )
    head = victim.head
    if not head.continuous:
        if isinstance(action_space, spaces.Discrete) and scores.shape[1] != action_space.n:
            raise ValueError(
                f"the victim returns {scores.shape[1]} scores per observation but the action space has "
                f"{action_space.n} actions ({action_space}); is it the victim for this environment?"
            )
        if scores.shape[1] < 2:
            raise ValueError(f"the victim must score at least 2 actions, got shape {tuple(scores.shape)}")
        return int(scores.shape[1])
    width = head.action_dim * (2 if head.kind == "gaussian" else 1)
    if scores.shape[1] != width:
        raise ValueError(
            f"the victim's output of shape {tuple(scores.shape)} does not match the action space {action_space}: "
            f"a {head.kind} policy over {head.action_dim} action dimensions gives (1, {width})"
        )
    return width


def _sample_output(network: Victim, box: ObservationBox) -> object:
    sample = box.clip(torch.zeros((1, *box.shape), device=box.device))
    try:
        return network(sample)
    except Exception as err:  # the victim's own error, rethrown with what it was given
        raise ValueError(
            f"the victim failed on a batch of observations of shape {tuple(sample.shape)} (float32 in the "
            f"observation space's own units): {type(err).__name__}: {err}"
        ) from err


@torch.no_grad()
def _plain_head(network: Victim, box: ObservationBox, action_space: object) -> tuple[Victim, ActionHead]:
    """A plain network's head, told by the action space and what the network returns on one sample."""
    if not isinstance(action_space, spaces.Box):
        if isinstance(_sample_output(network, box), torch.distributions.Categorical):
            return CategoricalLogits(network), DiscreteHead()
        return network, DiscreteHead()
    low, high = _action_bounds(action_space)
    output = _sample_output(network, box)
    if isinstance(output, torch.distributions.Distribution):
        gaussian_rows(output)  # a Normal, or one clear error
        return GaussianOutput(network), GaussianHead(low, high, squashed=False)
    if isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[1] != low.size:
        raise ValueError(
            f"the victim returns {tuple(output.shape)} for one observation, which matches neither the action "
            f"space {action_space} (actions (1, {low.size})) nor a distribution over it; return the actions, or "
            f"a torch.distributions.Normal"
        )
    return network, DeterministicHead(low, high, squashed=False)


def _action_bounds(action_space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    if len(action_space.shape) != 1:
        raise ValueError(f"continuous-action victims need a 1-D Box action space (A,), got {action_space}")
    return np.asarray(action_space.low, dtype=np.float32), np.asarray(action_space.high, dtype=np.float32)


class CategoricalLogits(nn.Module):
    """A network returning a ``torch.distributions.Categorical``, reduced to its logits."""

    def __init__(self, network: Callable) -> None:
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.network(obs).logits


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
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "get_action_dist_params"):  # SAC
        if getattr(actor, "use_sde", False):
            raise TypeError("SAC with gSDE (use_sde=True) has no per-state Gaussian to attack; use use_sde=False")
        return SquashedGaussianOutput(actor)
    if actor is not None and hasattr(actor, "mu"):  # TD3, DDPG
        return actor
    if hasattr(policy, "get_distribution"):  # PPO, A2C
        if _distribution_kind(policy) == "categorical":
            return PolicyLogits(policy)
        return PolicyGaussian(policy)
    raise TypeError(f"unsupported Stable-Baselines3 policy {type(policy).__name__}: no Q-network, actor or policy")


def _distribution_kind(policy: nn.Module) -> str:
    from stable_baselines3.common.distributions import (
        CategoricalDistribution,
        DiagGaussianDistribution,
        StateDependentNoiseDistribution,
    )

    dist = policy.action_dist
    if isinstance(dist, CategoricalDistribution):
        return "categorical"
    squashed = isinstance(dist, StateDependentNoiseDistribution) and dist.bijector is not None
    if isinstance(dist, (DiagGaussianDistribution, StateDependentNoiseDistribution)) and not squashed:
        return "gaussian"
    raise TypeError(
        f"only categorical and (unsquashed) diagonal Gaussian action distributions can be attacked, got "
        f"{type(dist).__name__}"
    )


def _sb3_head(policy: nn.Module, action_space: object) -> tuple[ActionHead, Critic | None]:
    """The head and the critic of an SB3 policy (whose network :func:`_policy_network` took)."""
    if not isinstance(action_space, spaces.Box):
        return DiscreteHead(), None
    low, high = _action_bounds(action_space)
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "get_action_dist_params"):
        return GaussianHead(low, high, squashed=True), policy.critic
    if actor is not None and hasattr(actor, "mu"):
        return DeterministicHead(low, high, squashed=True), policy.critic
    return GaussianHead(low, high, squashed=False), None


def _fit_layout(network: nn.Module, expected: tuple[int, ...], given: tuple[int, ...]) -> nn.Module:
    """Adapt SB3's channel-first image networks to channel-last observations (SB3 transposes those itself)."""
    if expected == given:
        return network
    if len(given) == 3 and expected == (given[2], given[0], given[1]):
        return ChannelsLast(network)
    raise ValueError(
        f"the Stable-Baselines3 model expects observations of shape {expected}, the environment gives {given}"
    )
