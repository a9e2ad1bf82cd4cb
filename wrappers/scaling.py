"""Per-dimension budgets for vector observations: a scale per observation value, the budget stated in scaled units.

On CartPole the cart position spans +-4.8 and the pole angle +-0.42; one eps for both is large for one and
negligible for the other. With ``scale=s`` the attack perturbs ``x / s`` within ``eps``, so value ``i`` moves by
at most ``eps * s[i]``. SA-PPO (Zhang et al. 2020) states its MuJoCo budgets on observations normalised by the
running standard deviation: ``scale="std"`` with the std of a batch of observations or of SB3's ``VecNormalize``
statistics (``sqrt(var + epsilon)``, the divisor ``VecNormalize`` itself uses) gives the same budgets on the raw
observations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Rescaled(nn.Module):
    """The victim seen as a function of scaled observations ``x / scale`` (the attack's coordinates)."""

    def __init__(self, victim: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.victim = victim
        self.scale = scale

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        return self.victim(scaled * self.scale)


def observation_scale(scale: object, shape: tuple[int, ...], scale_from: object = None) -> np.ndarray | None:
    """The per-value scale (float32, ``shape``) for ``scale`` (None, a vector, or ``"std"`` of ``scale_from``).

    >>> observation_scale([1.0, 2.0], (2,)).tolist()
    [1.0, 2.0]
    >>> observation_scale("std", (2,), scale_from=np.array([[0.0, 0.0], [2.0, 4.0]])).tolist()
    [1.0, 2.0]
    >>> observation_scale([1.0, 0.0], (2,))
    Traceback (most recent call last):
    ValueError: scale must be finite and > 0 in every dimension; scale[1] = 0
    """
    if scale is None:
        if scale_from is not None:
            raise ValueError('scale_from is only read with scale="std"')
        return None
    if isinstance(scale, str):
        if scale != "std":
            raise ValueError(f'scale must be None, a vector of positive numbers or "std", got {scale!r}')
        values = _std_of(scale_from, shape)
    else:
        if scale_from is not None:
            raise ValueError('scale_from is only read with scale="std"; an explicit scale needs none')
        values = _as_array(scale, "scale")
        if values.size != int(np.prod(shape)) or values.ndim not in (1, len(shape)):
            raise ValueError(
                f"scale has {values.size} values (shape {values.shape}) but the observation has "
                f"{int(np.prod(shape))} (shape {shape}); give one scale per observation value"
            )
    values = values.reshape(shape)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        index = where[0] if len(where) == 1 else where
        raise ValueError(f"scale must be finite and > 0 in every dimension; scale[{index}] = {values[where]:g}")
    return values.astype(np.float32)


def _std_of(source: object, shape: tuple[int, ...]) -> np.ndarray:
    """Standard deviation per value from a batch (N, *shape) or from VecNormalize-style running statistics."""
    if source is None:
        raise ValueError(
            'scale="std" needs scale_from: a batch of observations (N, *shape), or SB3 VecNormalize (its obs_rms)'
        )
    running = getattr(source, "obs_rms", None)
    if running is not None:  # SB3 VecNormalize: it divides by sqrt(var + epsilon)
        var = _as_array(running.var, "VecNormalize's obs_rms.var")
        return np.sqrt(var + float(getattr(source, "epsilon", 0.0))).reshape(shape)
    if not callable(getattr(source, "var", callable)):  # a RunningMeanStd (an array's var is a method)
        return np.sqrt(_as_array(source.var, "the running variance")).reshape(shape)
    batch = _as_array(source, "scale_from")
    if batch.shape[1:] != shape or batch.shape[0] < 2:
        raise ValueError(
            f"scale_from must be a batch of at least 2 observations of shape (N, *{shape}), got {batch.shape}"
        )
    return batch.std(axis=0)


def _as_array(values: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers, got {type(values).__name__}") from err
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array
