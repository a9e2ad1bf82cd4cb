"""Our Q-networks inside stable-baselines3's DQN policy, so SB3 trains, saves and loads them unchanged.

SB3's ``QNetwork`` is a features extractor plus an MLP and scales images in its own preprocessing. Here the
online and target networks are a :class:`~agents.networks.NatureQNetwork` (or the NeurIPS-2013 one) held as
``q_net.network``: frames go in as uint8 on the 0-255 scale and the network scales them itself, so the trained
module is exactly what ``agents.load_agent`` returns for attacks and SAP -- ReLUs as modules, nothing to strip.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.dqn.policies import DQNPolicy

from agents.networks import FRAME_SHAPE, build_q_network


class AtariQNetwork(BasePolicy):
    """SB3's Q-network role, filled by one of our networks (``self.network``)."""

    action_space: spaces.Discrete

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, network: str = "nature") -> None:
        if not isinstance(observation_space, spaces.Box) or tuple(observation_space.shape) != FRAME_SHAPE:
            raise ValueError(f"Atari Q-networks take (4, 84, 84) frame stacks, got observations {observation_space}")
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"Q-networks need a Discrete action space, got {action_space}")
        super().__init__(observation_space, action_space, normalize_images=False)
        self.network_name = network
        self.network = build_q_network(network, int(action_space.n))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.network(obs)

    def _predict(self, observation: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "network": self.network_name}


class AtariQPolicy(DQNPolicy):
    """DQN policy (online + target network and their optimizer) built from :class:`AtariQNetwork`.

    :param network: ``"nature"`` (the SAP paper's network, default) or ``"neurips"``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        network: str = "nature",
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.RMSprop,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.network_name = network  # read by make_q_net, which DQNPolicy.__init__ already calls
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            normalize_images=False,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def make_q_net(self) -> AtariQNetwork:
        return AtariQNetwork(self.observation_space, self.action_space, self.network_name).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "lr_schedule": self._dummy_schedule,
            "network": self.network_name,
            "optimizer_class": self.optimizer_class,
            "optimizer_kwargs": self.optimizer_kwargs,
        }
