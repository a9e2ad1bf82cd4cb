"""Q-networks for 4x84x84 Atari frame stacks, with ReLUs as modules so SAP can be inserted post hoc.

Both take frames on the 0-255 scale, as uint8 or float (an attacked float frame can sit between grey levels),
and scale them by 1/255 inside, so attacks and budgets work in pixel units as in the SAP paper.
"""

from __future__ import annotations

import torch
from torch import nn

FRAME_SHAPE = (4, 84, 84)


def scaled_frames(frames: torch.Tensor) -> torch.Tensor:
    if frames.ndim != 4 or tuple(frames.shape[1:]) != FRAME_SHAPE:
        raise ValueError(f"expected frame stacks of shape (N, 4, 84, 84), got {tuple(frames.shape)}")
    return frames.float() / 255.0


def atari_conv_stack(last_channels: int) -> list[nn.Module]:
    """DeepMind's conv stack on 4x84x84 frames, ReLU after each: conv 32 8x8/4, conv 64 4x4/2, conv
    ``last_channels`` 3x3/1 (out: ``last_channels`` x 7 x 7). The Nature DQN uses 64, the PPO/A2C trunk 32."""
    return [
        nn.Conv2d(4, 32, kernel_size=8, stride=4),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Conv2d(64, last_channels, kernel_size=3, stride=1),
        nn.ReLU(),
    ]


class NatureQNetwork(nn.Module):
    """Mnih et al. (2015) / the SAP paper's appendix: conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, fc 512."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.features = nn.Sequential(*atari_conv_stack(64), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(scaled_frames(frames)))


class NeurIPSQNetwork(nn.Module):
    """Mnih et al. (2013): conv 16 8x8/4, conv 32 4x4/2, fc 256. Parameter names ``conv.*``/``fc.*``."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(4, 16, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2),
            nn.ReLU(),
        )
        self.fc = nn.Sequential(nn.Linear(32 * 9 * 9, 256), nn.ReLU(), nn.Linear(256, n_actions))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(scaled_frames(frames)).flatten(1))


Q_NETWORKS: dict[str, type[nn.Module]] = {"nature": NatureQNetwork, "neurips": NeurIPSQNetwork}


def build_q_network(name: str, n_actions: int) -> nn.Module:
    """A fresh Q-network by name: ``"nature"`` (the SAP paper's) or ``"neurips"`` (Mnih et al., 2013)."""
    if name not in Q_NETWORKS:
        raise ValueError(f"unknown Q-network {name!r}; choose one of {sorted(Q_NETWORKS)}")
    if n_actions < 1:
        raise ValueError(f"n_actions must be >= 1, got {n_actions}")
    return Q_NETWORKS[name](n_actions)
