"""Summaries of a play's episode scores: mean, standard error and a 95 % Student-t interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (standard tables); beyond, the normal's.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
# Further rows (30 repeated as the first), ending with the normal's quantile at infinitely many degrees of freedom.
_T975_LARGE = {30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980, math.inf: 1.959964}


def t_quantile_975(dof: int) -> float:
    """The 97.5 % quantile of Student's t with ``dof`` degrees of freedom: the table's row, and between rows (above
    30) the standard reading, linear in 1/dof, within 0.001 of the exact value (taking the next row instead would
    narrow the interval, e.g. 2.000 for the 2.010 of 50 episodes).

    >>> t_quantile_975(9)
    2.262
    """
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    for (low, t_low), (high, t_high) in pairwise(_T975_LARGE.items()):
        if dof <= high:
            share = (1 / low - 1 / dof) / (1 / low - 1 / high)
            return t_low + share * (t_high - t_low)
    raise AssertionError("unreachable: the last row is at infinity")


def standard_error(scores: Sequence[float]) -> float:
    """Standard error of the mean score (sample standard deviation / sqrt(n)); NaN for a single episode."""
    return float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else float("nan")


def summary(scores: Sequence[float]) -> dict[str, float]:
    """``mean``, ``se`` and the 95 % interval ``ci95_low``/``ci95_high`` (NaN with one episode).

    >>> summary([1.0, 3.0])["mean"]
    2.0
    """
    mean = float(np.mean(scores))
    se = standard_error(scores)
    half = t_quantile_975(len(scores) - 1) * se if len(scores) > 1 else float("nan")
    return {"mean": mean, "se": se, "ci95_low": mean - half, "ci95_high": mean + half}
