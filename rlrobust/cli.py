"""What every command line shares: checked numeric flag types, and ending on a user's mistake with one
``error: ...`` line and exit status 2 (argparse's convention), never a traceback.

Every numeric flag of every script goes through one of the types below, so a non-finite number, a count below its
minimum or a value outside its range is refused before any work starts, in the same words everywhere:

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--lr", type=real(low=0, low_open=True))
>>> _ = parser.add_argument("--eps", type=real(low=0, high=1))
>>> _ = parser.add_argument("--steps", type=count())
>>> parser.parse_args(["--lr", "1e-3", "--eps", "8/255", "--steps", "10"]).eps == 8 / 255
True
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

#: What a user can cause with a bad flag, file or setting; everything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
USAGE_ERROR_STATUS = 2  # argparse's exit status for a bad command line; ours for every user error


def run_main(main: Callable[[], object], errors: tuple[type[Exception], ...] = USER_ERRORS) -> None:
    """Call ``main()``; one of ``errors`` ends the program with ``error: <message>`` on stderr and status 2.

    A ``SystemExit`` raised by ``main`` (argparse, or an explicit exit code) passes through unchanged.
    """
    try:
        result = main()
    except errors as err:
        first, *more = (str(err) or type(err).__name__).splitlines() or [type(err).__name__]
        print(f"error: {first}", file=sys.stderr)
        for line in more:  # a hint on further lines (a command to try) stays readable, indented
            print(f"  {line.strip()}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR_STATUS) from None
    if isinstance(result, int) and not isinstance(result, bool) and result:
        raise SystemExit(result)


def parse_number(text: str) -> float:
    """A finite float from ``text``: a decimal (``0.03``, ``1e-4``) or a fraction (``8/255``).

    >>> parse_number("8/255") == 8 / 255
    True
    """
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            value = float(numerator) / float(denominator)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def real(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse type: a finite number (fractions allowed) in ``[low, high]`` (open ends where asked).

    >>> real(0, 1)("0.5")
    0.5
    """
    interval = _interval(low, high, low_open, high_open)

    def convert(text: str) -> float:
        value = parse_number(text)
        if (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and (value > high or (high_open and value == high))
        ):
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text}")
        return value

    convert.__name__ = "number"  # argparse names the type in its messages
    return convert


def count(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[minimum, maximum]``.

    >>> count()("3")
    3
    """

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


def device(text: str) -> str:
    """An argparse type: a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked before
    any work so that a typo or a missing GPU is one clear line, not a traceback minutes into a run."""
    import torch

    try:
        chosen = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine; use cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif chosen.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine; use cpu")
    elif chosen.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use cpu, cuda, cuda:N or mps")
    return str(chosen)


def auto_or_device(text: str) -> str:
    """An argparse type for the trainers: ``auto`` (CUDA where there is one, else the CPU) or a :func:`device`."""
    return text if text == "auto" else device(text)


def check_finite_fields(obj: object, names: tuple[str, ...] | None = None) -> None:
    """Raise ``ValueError`` naming the first float attribute of ``obj`` (a dataclass config) that is NaN or
    infinite; ``names`` limits the check (default: every float field)."""
    import dataclasses

    fields = names or tuple(f.name for f in dataclasses.fields(obj))  # type: ignore[arg-type]
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low is None or low_open else "["
    right = ")" if high is None or high_open else "]"
    return f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
