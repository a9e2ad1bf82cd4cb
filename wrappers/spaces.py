"""The observation space as the attacks see it: a Box, its bounds as tensors, checks and conversions.

Budgets are in the observation's own units, so the space's bounds are the attack's value range: 0-255 for
uint8 Atari frames (the SAP paper's lambda), [0, 1] for normalised observations. The core's attacks take one
scalar range; a Box may have a range per element (and infinite ones), so the attack runs in the envelope
``(min low, max high)`` and the result is then clipped element-wise to the Box.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

#: Stand-in for an infinite bound of a Box inside the attacks' scalar range (they need finite bounds).
_UNBOUNDED = 1e30


class ObservationBox:
    """A validated ``Box`` observation space with its bounds on the attack's device."""

    def __init__(self, space: object, device: torch.device) -> None:
        if not isinstance(space, spaces.Box):
            raise TypeError(
                f"observation wrappers perturb array observations: the observation space must be a gymnasium "
                f"Box, got {type(space).__name__} ({space}); wrap Dict/Tuple observations so that the "
                f"victim's input is one Box (e.g. gymnasium.wrappers.FlattenObservation or FilterObservation)"
            )
        if not np.issubdtype(space.dtype, np.number) or np.issubdtype(space.dtype, np.complexfloating):
            raise TypeError(f"the observation space must hold real numbers, got dtype {space.dtype}")
        if space.shape == ():
            raise ValueError("the observation space must have at least one dimension, got a scalar Box")
        self.space = space
        self.device = device
        self.shape: tuple[int, ...] = tuple(space.shape)
        low = np.asarray(space.low, dtype=np.float64)
        high = np.asarray(space.high, dtype=np.float64)
        self.integer = bool(np.issubdtype(space.dtype, np.integer))
        self.uniform = bool((low == low.flat[0]).all() and (high == high.flat[0]).all())
        finite_low = np.where(np.isfinite(low), low, -_UNBOUNDED)
        finite_high = np.where(np.isfinite(high), high, _UNBOUNDED)
        #: The attacks' scalar value range: the envelope of the element-wise bounds.
        self.bounds: tuple[float, float] = (float(finite_low.min()), float(finite_high.max()))
        self.bounded = bool(np.isfinite(low).all() and np.isfinite(high).all())
        self._low = torch.as_tensor(finite_low, dtype=torch.float32, device=device)
        self._high = torch.as_tensor(finite_high, dtype=torch.float32, device=device)
        # uint8 frames with bounds 0-255 cannot leave the space: no value check is needed on the hot path.
        info = np.iinfo(space.dtype) if self.integer else None
        self._always_inside = bool(
            info is not None and self.uniform and low.flat[0] <= info.min and high.flat[0] >= info.max
        )

    @property
    def grey_level(self) -> float | None:
        """One 255th of the value range (1 on 0-255 frames, 1/255 on [0, 1]), or None if the range is infinite."""
        if not self.bounded or not self.uniform:
            return None
        return (self.bounds[1] - self.bounds[0]) / 255.0

    def scaled_bounds(self, scale: np.ndarray) -> tuple[float, float]:
        """The attacks' scalar value range for observations divided by ``scale`` (element-wise, positive)."""
        low = self._low.cpu().numpy().astype(np.float64) / scale
        high = self._high.cpu().numpy().astype(np.float64) / scale
        return float(max(low.min(), -_UNBOUNDED)), float(min(high.max(), _UNBOUNDED))

    def output_space(self, keep_dtype: bool) -> spaces.Box:
        """The perturbed observations' space: float32 with the same bounds, or the original space."""
        if keep_dtype:
            return self.space
        return spaces.Box(
            low=self.space.low.astype(np.float32), high=self.space.high.astype(np.float32), dtype=np.float32
        )

    def to_tensor(self, observations: object) -> torch.Tensor:
        """A float32 batch (N, *shape) on the device, after checking it lies in the declared space."""
        array = np.asarray(observations)
        if array.shape[1:] != self.shape:
            raise ValueError(
                f"observation of shape {array.shape[1:]} does not match the declared observation space shape "
                f"{self.shape}"
            )
        if not np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_:
            raise TypeError(f"observations must be numeric arrays, got dtype {array.dtype}")
        x = torch.as_tensor(array).to(self.device, dtype=torch.float32, non_blocking=True)
        if not self._always_inside:
            self._check_inside(x)
        return x

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Clip element-wise to the Box (the attacks already clipped to the scalar envelope)."""
        if self.uniform:
            return x.clamp(self.bounds[0], self.bounds[1])
        return torch.minimum(torch.maximum(x, self._low), self._high)

    def from_tensor(self, x: torch.Tensor, keep_dtype: bool) -> np.ndarray:
        """The batch as a numpy array of the output dtype (float32, or the space's dtype if kept)."""
        if keep_dtype and self.integer and not torch.equal(x.round(), x):
            raise RuntimeError(
                "keep_dtype=True but the perturbation is not integral; use the float32 output (the default)"
            )
        dtype = self.space.dtype if keep_dtype else np.float32
        return x.detach().cpu().numpy().astype(dtype, copy=False)

    def _check_inside(self, x: torch.Tensor) -> None:
        below = x < self._low
        above = x > self._high
        bad = below | above | ~torch.isfinite(x)
        if bool(bad.any()):
            where = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
            value = x[where].item()
            low, high = self._low[where[1:]].item(), self._high[where[1:]].item()
            shown_low = low if low > -_UNBOUNDED else -math.inf
            shown_high = high if high < _UNBOUNDED else math.inf
            raise ValueError(
                f"observation outside the declared observation space: value {value:g} at index {where[1:]} "
                f"(batch row {where[0]}) is not in [{shown_low:g}, {shown_high:g}]; the environment's "
                f"observation_space must describe what it returns, since budgets and clipping use its bounds"
            )
