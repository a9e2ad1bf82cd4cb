"""Argument checks with one clear message each: the core's own checks, for the rest of the project to use.

A bad argument fails early with a message that names the argument, the value and what was expected, instead of a
shape error deep inside a model. Checks of tensor values (an input's range, label indices) can wait on the device
in :class:`DeviceChecks`, so that one read-back settles them all.

>>> check_count(3, "steps")
3
>>> check_eps(8, (0.0, 1.0))
Traceback (most recent call last):
ValueError: eps=8.0 is larger than the value range (0.0, 1.0) (width 1.0); budgets are in the input's own units: ...
"""

from rlrobust._checks import (
    BOUNDS_HINT,
    NORMS,
    Bounds,
    DeviceChecks,
    Judge,
    check_attack,
    check_bounds,
    check_count,
    check_eps,
    check_flag,
    check_generator,
    check_input,
    check_labels,
    check_norm,
    check_number,
    check_positive,
    check_scores,
    judge_values,
)

__all__ = [
    "BOUNDS_HINT",
    "NORMS",
    "Bounds",
    "DeviceChecks",
    "Judge",
    "check_attack",
    "check_bounds",
    "check_count",
    "check_eps",
    "check_flag",
    "check_generator",
    "check_input",
    "check_labels",
    "check_norm",
    "check_number",
    "check_positive",
    "check_scores",
    "judge_values",
]
