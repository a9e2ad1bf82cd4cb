"""Small environments and victims shared by the wrapper tests (no tests here).

``FrameToy`` imitates an Atari env at a tenth of the cost: uint8 (4, 12, 12) frame stacks on the 0-255 scale,
a new random frame each step (from the env's seeded generator, so it is reproducible) pushed onto the stack,
three actions and fixed-length episodes. ``FrameNet`` is a small conv Q-network that scales frames by 1/255
inside, like the real agents. ``VectorToy`` has per-element bounds, some infinite, for clipping tests.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tests.conftest import one_torch_thread  # noqa: F401  (the wrapper tests import it from here)

FRAMES = (4, 12, 12)


class FrameToy(gym.Env):
    """Frame stacks of random frames; reward 1 when the action matches the newest frame's brightest third."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, length: int = 20, dtype: type = np.uint8, high: float = 255.0, size: int = FRAMES[1]) -> None:
        self.length = length
        self.observation_space = spaces.Box(0, high, (FRAMES[0], size, size), dtype=dtype)
        self.action_space = spaces.Discrete(3)
        self._stack = np.zeros(self.observation_space.shape, dtype=dtype)
        self._t = 0

    def _frame(self) -> np.ndarray:
        high = self.observation_space.high.flat[0]
        frame = self.np_random.uniform(0, high, self.observation_space.shape[1:])
        return frame.astype(self.observation_space.dtype)

    def _push(self) -> np.ndarray:
        self._stack = np.concatenate([self._stack[1:], self._frame()[None]])
        return self._stack.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        for _ in range(FRAMES[0]):
            obs = self._push()
        return obs, {}

    def step(self, action):
        thirds = np.array_split(self._stack[-1].astype(np.float64), 3)
        best = int(np.argmax([third.mean() for third in thirds]))
        self._t += 1
        return self._push(), float(action == best), self._t >= self.length, False, {}


class FrameNet(nn.Module):
    """A small Q-network / policy for FrameToy: frames on the 0-255 scale (or [0, 1] with ``scale=1``)."""

    def __init__(self, n_actions: int = 3, scale: float = 255.0) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(4, 8, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 5 * 5, 16),
            nn.ReLU(),
            nn.Linear(16, n_actions),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body(frames.float() / self.scale)


class VectorToy(gym.Env):
    """3-vector observations with bounds (-inf, inf), (0, 1), (-1, 1): per-element and unbounded ranges."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(
            np.array([-np.inf, 0, -1], dtype=np.float32), np.array([np.inf, 1, 1], dtype=np.float32)
        )
        self.action_space = spaces.Discrete(2)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.array(
            [self.np_random.normal() * 5, self.np_random.uniform(), self.np_random.uniform(-1, 1)], dtype=np.float32
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, self._t >= 10, False, {}


class LyingToy(FrameToy):
    """Declares [0, 1] float frames but returns values up to 2: an observation outside its space."""

    def __init__(self) -> None:
        super().__init__(dtype=np.float32, high=1.0)

    def _frame(self) -> np.ndarray:
        return np.full(self.observation_space.shape[1:], 2.0, dtype=np.float32)


class DiscreteToy(gym.Env):
    """An environment whose observations are not a Box."""

    observation_space = spaces.Discrete(5)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, True, False, {}


def frame_net(seed: int = 0, **kwargs) -> FrameNet:
    torch.manual_seed(seed)
    return FrameNet(**kwargs).eval()


def vector_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2)).eval()


class LinearNet(nn.Module):
    """Linear scores of the frames scaled to [0, 1], with unit-variance weights: a victim an attack can steer."""

    def __init__(self, n_actions: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(int(np.prod(FRAMES)), n_actions)
        nn.init.normal_(self.linear.weight)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.linear(frames.float().flatten(1) / 255.0)


def linear_net(seed: int = 0) -> LinearNet:
    torch.manual_seed(seed)
    return LinearNet().eval()


class RowByRow(nn.Module):
    """Score a batch one row at a time, so that a batch and its rows run the very same kernels.

    Batched CPU kernels may sum in another order than a batch of one, and a sign step or an argmax turns a
    one-ulp difference of a near-zero gradient entry (or of two near-equal scores) into a different decision. A
    victim that scores rows alone makes every such decision bit-identical in a vector of environments and in the
    same environments wrapped one by one, so the comparison checks the wrappers' rows, seeds and schedules, not
    the kernels' summation order.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.network(x[i : i + 1]) for i in range(x.shape[0])])


def assert_same_perturbation(actual: np.ndarray, expected: np.ndarray, eps: float) -> None:
    """Equal up to float32 rounding on the scale of the values and the budget.

    Steps that rescale by a norm (L2) still reduce whole rows, whose sums may round differently in a batch than
    alone; that moves values by a few ulps of their magnitude, never by anything near a step. The tolerance,
    1e-5 of (largest value + eps), is about a hundred float32 ulps: far below any wrong step, row or seed.
    """
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    atol = 1e-5 * (np.abs(expected64).max() + eps)
    differ = np.abs(actual64 - expected64) > atol
    assert not differ.any(), (
        f"{differ.sum()} of {differ.size} values differ by more than {atol:.3g} "
        f"(largest {np.abs(actual64 - expected64).max():.6g})"
    )
