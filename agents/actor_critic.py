"""The PPO/A2C actor-critic of the shared Atari policies, and loading its state dicts.

The layout is the one of ikostrikov's ``pytorch-a2c-ppo-acktr-gail`` ``CNNBase`` (non-recurrent), as the
``davide97l/rl-policies-attacks-defenses`` agents in ``shared/data/atari`` use it: three convolutions and a
512-unit layer shared by a Categorical policy head and a value head. Parameter names match those files
(``base.main.0/2/4/7``, ``base.critic_linear``, ``dist.linear``), so a state dict loads unchanged.

Frames are taken on the 0-255 scale (uint8 or float, so an attacked frame may sit between grey levels) and
scaled by 1/255 inside, like :mod:`agents.networks`; the ReLUs are modules, so SAP can be inserted post hoc.
``forward`` returns the action logits: the scores an attack or an observation wrapper needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from agents.checkpoints import read_state_dict
from agents.networks import atari_conv_stack, scaled_frames

HIDDEN = 512


class _ConvTrunk(nn.Module):
    """``CNNBase``: conv 32 8x8/4, conv 64 4x4/2, conv 32 3x3/1, fc 512 (ReLU after each), and the critic."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(*atari_conv_stack(32), nn.Flatten(), nn.Linear(32 * 7 * 7, HIDDEN), nn.ReLU())
        self.critic_linear = nn.Linear(HIDDEN, 1)


class _CategoricalHead(nn.Module):
    """The policy head: one logit per action."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.linear = nn.Linear(HIDDEN, n_actions)


class ActorCritic(nn.Module):
    """Actor-critic for (N, 4, 84, 84) frame stacks; ``forward`` gives action logits, :meth:`value` the critic."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.base = _ConvTrunk()
        self.dist = _CategoricalHead(n_actions)

    def hidden(self, frames: torch.Tensor) -> torch.Tensor:
        """The shared 512-unit representation of each frame stack."""
        return self.base.main(scaled_frames(frames))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.dist.linear(self.hidden(frames))

    def value(self, frames: torch.Tensor) -> torch.Tensor:
        """State values, shape (N, 1)."""
        return self.base.critic_linear(self.hidden(frames))

    def logits_and_value(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads from one pass through the trunk."""
        h = self.hidden(frames)
        return self.dist.linear(h), self.base.critic_linear(h)


def load_actor_critic(path: str | Path) -> ActorCritic:
    """Return the actor-critic stored at ``path`` (a plain state dict, or ``{"state_dict": ...}``), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"actor-critic checkpoint not found: {path}")
    state = read_state_dict(path)
    head = state.get("dist.linear.weight")
    if head is None or head.ndim != 2:
        raise ValueError(
            f"{path} is not an actor-critic state dict (no 'dist.linear.weight'; first keys: {list(state)[:4]}); "
            f"Q-networks load with agents.load_agent"
        )
    model = ActorCritic(n_actions=head.shape[0])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} has actor-critic keys but does not fit the CNNBase layout: {err}") from err
    return model.eval()
