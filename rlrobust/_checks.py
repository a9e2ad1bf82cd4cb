"""Input validation shared by the core; code outside ``rlrobust`` imports it as :mod:`rlrobust.checks`.

Every public entry point checks its arguments here so that bad input fails early with a message that
names the argument, the value and what was expected, instead of a shape error deep inside a model.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

Bounds = tuple[float, float]
NORMS = ("linf", "l2")

#: Turns the values a check read back (as floats) into its error message, or None when they pass.
Judge = Callable[[list[float]], str | None]


class DeviceChecks:
    """Value checks whose verdicts wait on the device, so that one read-back settles them all.

    Each check adds the few values it judges (an input's min and max, a "scores were finite" flag) and a judge that
    turns them, on the host, into an error message or None. :meth:`settle` reads every pending value in one
    transfer and raises the first failing check's ``ValueError``, in the order the checks were added, so deferred
    checks fail with the same errors as the same checks made at once. On a GPU each read-back is a host-device
    synchronisation; an attack defers its checks to one read at its end instead of one read per check.

    >>> checks = DeviceChecks()
    >>> check_input(torch.tensor([[0.5, 2.0]]), (0.0, 1.0), checks=checks)  # nothing read yet
    >>> checks.settle()
    Traceback (most recent call last):
    ValueError: x has values in [0.5, 2], outside bounds (0, 1); ...
    """

    def __init__(self) -> None:
        self._pending: list[tuple[torch.Tensor | Callable[[], torch.Tensor | None], Judge]] = []

    def add(self, values: torch.Tensor | Callable[[], torch.Tensor | None], judge: Judge) -> None:
        """Queue ``judge`` of ``values``: a tensor, or a callable giving it at :meth:`settle` (for a verdict that
        grows until then, such as a flag folded over an attack's passes; None there: nothing to judge)."""
        self._pending.append((values, judge))

    def settle(self) -> None:
        """Read every pending value back at once (one transfer per device) and raise the first check's error."""
        pending, self._pending = self._pending, []
        tensors = [values() if callable(values) else values for values, _ in pending]
        flat = [t.detach().reshape(-1).to(torch.float64) if t is not None else None for t in tensors]
        read: dict[torch.device, list[float]] = {}
        for device in dict.fromkeys(t.device for t in flat if t is not None):
            read[device] = torch.cat([t for t in flat if t is not None and t.device == device]).tolist()
        offsets = dict.fromkeys(read, 0)
        for t, (_, judge) in zip(flat, pending, strict=True):
            if t is None:
                continue
            start, offsets[t.device] = offsets[t.device], offsets[t.device] + t.numel()
            message = judge(read[t.device][start : offsets[t.device]])
            if message is not None:
                raise ValueError(message)

    @classmethod
    @contextlib.contextmanager
    def deferred(cls) -> Iterator[DeviceChecks]:
        """Checks settled when the block ends, and before any exception leaves it: a failed check explains what
        went wrong after it (a model fed NaN, a loss fed a label outside the classes), so its error comes first.

        Inside another deferred block the checks join that one, so the outermost block reads every check of the
        calls inside it back at once (two attacks in a row: one read-back, not two).

        >>> with DeviceChecks.deferred() as checks:
        ...     check_input(torch.zeros(1, 2), (0.0, 1.0), checks=checks)
        ...     with DeviceChecks.deferred() as inner:
        ...         inner is checks
        True
        """
        outer = _OPEN.get()
        if outer is not None:
            yield outer
            return
        checks = cls()
        token = _OPEN.set(checks)
        try:
            yield checks
        except Exception:
            try:
                checks.settle()
            except ValueError as failed:
                raise failed from None
            raise
        finally:
            _OPEN.reset(token)
        checks.settle()


#: The checks of the outermost open ``DeviceChecks.deferred()`` block in this context, if any.
_OPEN: contextvars.ContextVar[DeviceChecks | None] = contextvars.ContextVar("rlrobust_open_checks", default=None)


def judge_values(values: torch.Tensor, judge: Judge, checks: DeviceChecks | None) -> None:
    """Add a check to ``checks``, or, without them, read ``values`` back now and raise its error at once."""
    if checks is not None:
        checks.add(values, judge)
        return
    message = judge(values.detach().reshape(-1).to(torch.float64).tolist())
    if message is not None:
        raise ValueError(message)


def check_bounds(bounds: Sequence[float]) -> Bounds:
    """Return ``bounds`` as a ``(low, high)`` float pair, or raise if it is not a finite, ordered pair."""
    try:
        low, high = bounds  # a string such as "01" unpacks too: its characters are refused below
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (low, high) of numbers, got {bounds!r}") from None
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"bounds must be a pair (low, high) of numbers, got {bounds!r}")
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"bounds must be finite, got ({low}, {high})")
    if low >= high:
        raise ValueError(f"bounds must satisfy low < high, got ({low}, {high}) (inverted or empty range)")
    return low, high


def check_norm(norm: str) -> str:
    """Return the norm name if it is one we implement."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def check_eps(eps: float, bounds: Bounds, norm: str = "linf", name: str = "eps") -> float:
    """Validate a perturbation budget in the units of ``bounds``.

    An L-inf budget wider than the value range is always a unit mistake (typically 8 instead of 8/255 on
    [0, 1] images), so it is rejected with a hint.
    """
    eps = _as_float(eps, name)
    if eps < 0:
        raise ValueError(f"{name} must be >= 0, got {eps}")
    if not math.isfinite(eps):
        raise ValueError(f"{name} must be finite, got {eps}")
    width = bounds[1] - bounds[0]
    if norm == "linf" and eps > width:
        raise ValueError(
            f"{name}={eps} is larger than the value range {bounds} (width {width}); budgets are in the "
            f"input's own units: for [0, 1] images use e.g. 8/255, for 0-255 Atari frames use e.g. 2"
        )
    return eps


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as a float if it is finite and > 0."""
    value = _as_float(value, name)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_number(value: float, name: str) -> float:
    """Return ``value`` as a float if it is a finite number (not a string, a bool or NaN)."""
    value = _as_float(value, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def check_count(value: int, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer (Python or numpy, not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_flag(value: bool, name: str) -> bool:
    """Return ``value`` if it is a bool: a string such as "no" is truthy and would silently mean True."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


BOUNDS_HINT = "pass the bounds of the input's own scale (e.g. bounds=(0, 255) for raw Atari frames)"


def check_input(
    x: torch.Tensor, bounds: Bounds, name: str = "x", hint: str = BOUNDS_HINT, checks: DeviceChecks | None = None
) -> None:
    """Check that ``x`` is a floating batch (N, ...) with finite values inside ``bounds``; ``hint`` ends the
    message of values outside them. The values are judged at once (one read-back), or when ``checks`` settle."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert integer frames with "
            f"{name}.float() (values stay on their own scale, e.g. 0-255 with bounds=(0, 255))"
        )
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch with shape (N, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    extremes = torch.stack(torch.aminmax(x.detach()))  # one pass; NaN and inf surface here
    judge_values(extremes, functools.partial(_input_problem, bounds=bounds, name=name, hint=hint), checks)


def _input_problem(extremes: list[float], bounds: Bounds, name: str, hint: str) -> str | None:
    x_min, x_max = extremes
    if not (math.isfinite(x_min) and math.isfinite(x_max)):
        return f"{name} contains NaN or infinite values"
    low, high = bounds
    slack = 1e-5 * (high - low)
    if x_min < low - slack or x_max > high + slack:
        return f"{name} has values in [{x_min:.6g}, {x_max:.6g}], outside bounds ({low:g}, {high:g}); {hint}"
    return None


def check_scores(scores: object, rows: int) -> torch.Tensor:
    """Check that a model returned scores of shape (rows, C)."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"the model must return a tensor of scores (N, C), got {type(scores).__name__}; wrap models that "
            f"return tuples or dicts so that they return the logits / Q-values alone"
        )
    if scores.ndim != 2 or scores.shape[0] != rows:
        raise ValueError(
            f"the model must map a batch of {rows} inputs to scores of shape ({rows}, C), "
            f"got shape {tuple(scores.shape)}"
        )
    return scores


def check_labels(
    y: object, rows: int, num_classes: int | None, name: str = "y", checks: DeviceChecks | None = None
) -> torch.Tensor:
    """Check that ``y`` holds one integer class index in [0, C) per row (``num_classes=None``: C not yet known,
    only negative indices are refused). The values are judged at once (one read-back), or when ``checks`` settle."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of class indices, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (rows,):
        raise ValueError(f"{name} must have shape ({rows},), one label per input, got {tuple(y.shape)}")
    if rows:
        extremes = torch.stack(torch.aminmax(y.detach()))
        judge_values(extremes, functools.partial(_label_problem, y=y, num_classes=num_classes, name=name), checks)
    return y.long()


def _label_problem(extremes: list[float], y: torch.Tensor, num_classes: int | None, name: str) -> str | None:
    low, high = extremes  # as floats: exact in sign and order; the message reads the integers themselves
    if num_classes is None:
        if low < 0:
            return f"{name} has negative labels (min {y.min().item()}); class indices start at 0"
    elif low < 0 or high >= num_classes:
        return (
            f"{name} has labels in [{y.min().item()}, {y.max().item()}], outside [0, {num_classes}) for "
            f"scores with {num_classes} columns"
        )
    return None


def _as_float(value: object, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN")
    return value


def _is_number(value: object) -> bool:
    """A real number (Python, numpy or a one-element tensor), not a bool and not a string."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.dtype.is_complex and value.dtype != torch.bool
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Check that a random generator is a ``torch.Generator`` on the device of the tensors it draws for."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"the random generator is on {generator.device} but the tensors are on {device}; "
            f"create it with torch.Generator(device='{device.type}')"
        )


def check_attack(
    model: object,
    x: torch.Tensor,
    eps: float,
    bounds: Sequence[float],
    norm: str,
    checks: DeviceChecks | None = None,
) -> tuple:
    """The checks every attack starts with: a callable model, the bounds, the norm, a budget in the bounds' units
    and a finite input inside them (its values judged at once, or when ``checks`` settle); returns
    ``(bounds, norm, eps)`` as checked."""
    if not callable(model):
        raise TypeError(f"model must be a callable mapping inputs to scores, got {type(model).__name__}")
    bounds = check_bounds(bounds)
    norm = check_norm(norm)
    eps = check_eps(eps, bounds, norm)
    check_input(x, bounds, checks=checks)
    return bounds, norm, eps
