"""Perturbing only the newest frame of a frame stack (Huang et al. 2017) instead of the whole stack.

The attack then runs on the newest frame alone, against a view of the victim that puts the clean older
frames back around it, so the budget, the gradient and the random draws all concern that one frame. The
stack axis is an axis of one observation: 0 for Gymnasium's ``FrameStackObservation`` and ale-py's vector
env ((4, 84, 84), newest last), -1 for SB3's channel-last ``VecFrameStack`` ((84, 84, 4)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PERTURB_CHOICES = ("stack", "newest")


def stack_axis(axis: int, observation_shape: tuple[int, ...]) -> int:
    """The stack axis of one observation as a non-negative index, checked against its shape."""
    ndim = len(observation_shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"frame_axis={axis} is out of range for observations of shape {observation_shape}")
    return axis % ndim


class WithOlderFrames(nn.Module):
    """The victim seen as a function of the newest frame, the older frames of each stack held fixed.

    Takes (k * N, ...) newest frames, k >= 1 copies of the batch as the core's EOT passes stack them.
    Being a module that holds the victim keeps the core's check for batch-shared randomness working.
    """

    def __init__(self, victim: Callable[[torch.Tensor], torch.Tensor], older: torch.Tensor, axis: int) -> None:
        super().__init__()
        self.victim = victim
        self.older = older
        self.axis = axis

    def forward(self, newest: torch.Tensor) -> torch.Tensor:
        copies = newest.shape[0] // self.older.shape[0]
        older = self.older.repeat(copies, *([1] * (self.older.ndim - 1))) if copies > 1 else self.older
        return self.victim(torch.cat([older, newest], dim=self.axis))


def split_newest(x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(older frames, newest frame)`` of a batch of stacks; ``axis`` is the stack axis of one observation."""
    size = x.shape[axis + 1]
    return x.narrow(axis + 1, 0, size - 1), x.narrow(axis + 1, size - 1, 1)
