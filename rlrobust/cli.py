"""What every command line shares: checked numeric flag types, the shared flags under their agreed names (old names
kept as hidden aliases), a help that shows each default once, flags generated from a config dataclass, and ending on
a user's mistake with one ``error: ...`` line and exit status 2 (argparse's convention), never a traceback.

Every numeric flag of every script goes through one of the types below, so a non-finite number, a count below its
minimum or a value outside its range is refused before any work starts, in the same words everywhere:

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--lr", type=real(low=0, low_open=True))
>>> _ = parser.add_argument("--eps", type=real(low=0, high=1))
>>> _ = parser.add_argument("--steps", type=count())
>>> parser.parse_args(["--lr", "1e-3", "--eps", "8/255", "--steps", "10"]).eps == 8 / 255
True

A job's parser takes the shared flags from here, so every job names a thing the same way:

>>> parser = job_parser("Attack an agent.")
>>> add_output_flags(parser, "attack_policy")
>>> add_runtime_flags(parser, device_default="cpu")
>>> add_budget_flag(parser, "pixel units of 0-255 frames", default=[1, 2])
>>> args = parser.parse_args(["--eps", "2/3", "--threads", "2", "--quiet"])
>>> args.eps == [2 / 3], args.threads, args.quiet, args.out
(True, 2, True, None)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import typing
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any

#: What a user can cause with a bad flag, file or setting; everything else is a bug and keeps its traceback.
#: A missing optional library (torchattacks, torch-fidelity, ale-py, ...) is the user's to install: one line too.
USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    ModuleNotFoundError,
)
USAGE_ERROR_STATUS = 2  # argparse's exit status for a bad command line; ours for every user error


def run_main(main: Callable[[], object], errors: tuple[type[Exception], ...] = USER_ERRORS) -> None:
    """Call ``main()``; one of ``errors`` ends the program with ``error: <message>`` on stderr and status 2.

    A ``SystemExit`` raised by ``main`` (argparse, or an explicit exit code) passes through unchanged; a non-zero
    int returned by ``main`` becomes the exit status. Warnings print as one ``warning: <message>`` line each.
    """
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        result = main()
    except errors as err:
        first, *more = (str(err) or type(err).__name__).splitlines() or [type(err).__name__]
        print(f"error: {first}", file=sys.stderr)
        for line in more:  # a hint on further lines (a command to try) stays readable, indented
            print(f"  {line.strip()}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR_STATUS) from None
    finally:
        warnings.formatwarning = shown
    if isinstance(result, int) and not isinstance(result, bool) and result:
        raise SystemExit(result)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


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


# --- parsers, help and hidden aliases -----------------------------------------------------------------------------

#: The stem every hidden alias's note ends with, so that a user knows to change their command.
ALIAS_NOTE = "note: {old} is now {new} (the old name goes in the next release)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default exactly once: ``(default: X)`` is added unless the help text already
    speaks of its default, and left out where there is none to show (no default, a flag that is off, an empty
    text or list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:  # argparse's documented hook
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or (isinstance(default, bool) and action.nargs == 0)
            or (isinstance(default, list | tuple | str) and not default)
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return action.help
        shown = default_text(default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def default_text(value: object) -> str:
    """How help shows a default: lists as the words one would type, floats in short form unless that loses digits.

    >>> default_text([0, 1.0, 8 / 255]), default_text(2.5e-4)
    ('0 1 0.03137254901960784', '0.00025')
    """
    if isinstance(value, list | tuple):
        return " ".join(default_text(item) for item in value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def job_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser for a job: its description (the first paragraph of ``description``, e.g. the job's
    docstring) and the :class:`HelpFormatter` that shows each default once."""
    return argparse.ArgumentParser(prog=prog, description=description.split("\n\n")[0], formatter_class=HelpFormatter)


class _Alias(argparse.Action):
    """An old flag name: does what the new one does, after one note on stderr."""

    def __init__(self, option_strings: list[str], dest: str, target: argparse.Action, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.target, self.new = target, new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        noted = parser.__dict__.setdefault("_aliases_noted", set())  # once per parser and old name
        if option_string not in noted:
            noted.add(option_string)
            print(ALIAS_NOTE.format(old=option_string, new=self.new), file=sys.stderr)
        new_option = self.target.option_strings[0] if self.target.option_strings else None
        self.target(parser, namespace, values, new_option)


def alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Let the old flag ``old`` work as ``new`` (a flag, or the dest of a positional argument) for one more release:
    the same value, absent from ``--help``, with ``note: --old is now --new (...)`` on stderr when used.

    >>> parser = job_parser("demo")
    >>> _ = parser.add_argument("--threads", type=count(0), default=0)
    >>> alias(parser, "--torch-threads", "--threads")
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     parser.parse_args(["--torch-threads", "2"]).threads
    2
    >>> err.getvalue()
    'note: --torch-threads is now --threads (the old name goes in the next release)\\n'
    """
    target = find_action(parser, new)
    nargs = target.nargs
    if not target.option_strings:  # a positional: the old flag takes its value(s)
        nargs = None if nargs in (None, "?") else "+"
        new = f"the positional {target.metavar or target.dest.upper()}"
    parser.add_argument(
        old,
        action=_Alias,
        target=target,
        new=new,
        dest=target.dest,
        nargs=nargs,
        const=target.const,
        type=target.type,
        choices=target.choices,
        metavar=target.metavar,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def find_action(parser: argparse.ArgumentParser, name: str) -> argparse.Action:
    """The action of flag ``name`` (``--out``), or of the positional argument whose dest is ``name``."""
    if name.startswith("-"):
        if name not in parser._option_string_actions:  # argparse's table of flags
            raise ValueError(f"no flag {name} in this parser")
        return parser._option_string_actions[name]
    for action in parser._actions:
        if not action.option_strings and action.dest == name:
            return action
    raise ValueError(f"no positional argument {name!r} in this parser")


def hidden_aliases(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Every hidden alias of ``parser``: old flag -> the new flag (or the positional's dest) it stands for."""
    return {
        old: (action.target.option_strings or [action.target.dest])[0]
        for action in parser._actions
        if isinstance(action, _Alias)
        for old in action.option_strings
    }


# --- the shared flags ---------------------------------------------------------------------------------------------

MAX_SEED = 2**32 - 1  # numpy's seeds stop here
MAX_THREADS = 4096


def add_output_flags(
    parser: argparse.ArgumentParser, job: str, *, resumable: bool = True, out_help: str | None = None
) -> None:
    """``--out DIR`` (hidden alias ``--out-dir``), ``--resume`` (when ``resumable``) and ``--overwrite``, the last
    two exclusive. :func:`check_output_flags` refuses ``--resume`` without ``--out``."""
    out_help = out_help or f"output folder (default: a fresh one under runs/{job}/)"
    parser.add_argument("--out", type=Path, metavar="DIR", help=out_help)
    alias(parser, "--out-dir", "--out")
    again = parser.add_mutually_exclusive_group()
    if resumable:
        again.add_argument("--resume", action="store_true", help="continue the run in --out (same settings)")
    again.add_argument("--overwrite", action="store_true", help="replace the results of the run in --out")


def check_output_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--resume`` needs ``--out``: the folder of the run to continue (argparse's usage error otherwise)."""
    if getattr(args, "resume", False) and args.out is None:
        parser.error("--resume needs --out: the folder of the run to continue")


def parse_checked(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` and apply the shared flags' cross-checks (:func:`check_output_flags`)."""
    args = parser.parse_args(argv)
    check_output_flags(parser, args)
    return args


def add_runs_flag(parser: argparse.ArgumentParser, help: str = "where run folders are created") -> None:
    """``--runs ROOT`` (default ``runs``; hidden alias ``--logdir``)."""
    parser.add_argument("--runs", type=Path, default=Path("runs"), metavar="ROOT", help=help)
    alias(parser, "--logdir", "--runs")


def shared_data_dir() -> Path:
    """The project's shared data folder (trained agents and models, real data) that jobs take their defaults
    from: ``$RLROBUST_SHARED_DATA``, else ``../shared/data`` beside the repository (an editable install's)."""
    return Path(os.environ.get("RLROBUST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def best_device() -> str:
    """``cuda`` where this machine has a GPU, else ``cpu``: the evaluations' default device."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_runtime_flags(
    parser: argparse.ArgumentParser,
    *,
    device_default: str | None = None,
    seed_max: int | None = MAX_SEED,
    seed_help: str = "random seed",
    threads: bool = True,
    quiet: bool = True,
) -> None:
    """``--device`` (checked; ``auto`` allowed when it is the default, as for the trainers; default: a GPU where
    there is one), ``--seed``, ``--threads N`` (0 = torch's default; hidden alias ``--torch-threads``) and
    ``--quiet`` (no progress bars; hidden alias ``--no-progress``)."""
    chosen = device_default or best_device()
    kind = auto_or_device if chosen == "auto" else device
    choices = "auto, cpu, cuda or cuda:N" if chosen == "auto" else "cpu, cuda, cuda:N or mps"
    parser.add_argument("--device", type=kind, default=chosen, help=f"where to compute: {choices}")
    parser.add_argument("--seed", type=count(0, seed_max), default=0, help=seed_help)
    if threads:
        parser.add_argument(
            "--threads",
            type=count(0, MAX_THREADS),
            default=0,
            metavar="N",
            help="CPU threads for torch (0 = torch's default)",
        )
        alias(parser, "--torch-threads", "--threads")
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bars (e.g. in logs)")
        alias(parser, "--no-progress", "--quiet")


def use_threads(threads: int) -> None:
    """Apply ``--threads``: torch's CPU thread count, left at torch's default for 0."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_budget_flag(
    parser: argparse.ArgumentParser,
    scale_help: str,
    default: list[float] | float | None,
    *,
    low: float | None = 0,
    high: float | None = None,
    low_open: bool = False,
    aliases: tuple[str, ...] = (),
    many: bool = True,
) -> None:
    """``--eps`` budgets (several when ``many``), fractions allowed (``8/255``), on the scale ``scale_help`` states,
    checked against ``[low, high]``; ``aliases`` are the job's old names (``--lambdas``, ``--budgets``)."""
    parser.add_argument(
        "--eps",
        type=real(low, high, low_open=low_open),
        nargs="+" if many else None,
        default=list(default) if many and default is not None else default,
        metavar="EPS",
        help=f"{'budgets' if many else 'budget'}: {scale_help}; fractions allowed (8/255)",
    )
    for old in aliases:
        alias(parser, old, "--eps")


def add_count_flag(
    parser: argparse.ArgumentParser,
    name: str,
    default: int | None,
    help: str,
    *,
    minimum: int = 1,
    aliases: tuple[str, ...] = (),
) -> None:
    """A checked integer flag ``name`` (at least ``minimum``) with hidden ``aliases``: the shared shape of every
    count flag below."""
    parser.add_argument(name, type=count(minimum), default=default, metavar="N", help=help)
    for old in aliases:
        alias(parser, old, name)


def add_pass_flags(
    parser: argparse.ArgumentParser,
    samples: int | None,
    eot_samples: int | None,
    *,
    samples_aliases: tuple[str, ...] = (),
    eot_aliases: tuple[str, ...] = (),
) -> None:
    """One name per role of a stochastic model's passes: ``--samples`` = passes per prediction, ``--eot-samples``
    = passes per attack gradient (EOT). ``None`` leaves a flag out (a job without that role)."""
    if samples is not None:
        add_count_flag(parser, "--samples", samples, "passes per prediction (mean output)", aliases=samples_aliases)
    if eot_samples is not None:
        add_count_flag(parser, "--eot-samples", eot_samples, "passes per attack gradient (EOT)", aliases=eot_aliases)


def add_steps_flags(
    parser: argparse.ArgumentParser,
    *,
    pgd_steps: int | None = None,
    attack_steps: int | None = None,
    apgd_steps: int | None = None,
    pgd_aliases: tuple[str, ...] = (),
) -> None:
    """One name per role of attack steps: ``--pgd-steps`` (the evaluation's PGD / EOT-PGD), ``--attack-steps``
    (the training attack's), ``--apgd-steps``. ``None`` leaves a flag out."""
    if pgd_steps is not None:
        add_count_flag(parser, "--pgd-steps", pgd_steps, "iterations of PGD and EOT-PGD", aliases=pgd_aliases)
    if attack_steps is not None:
        add_count_flag(parser, "--attack-steps", attack_steps, "iterations of the training attack")
    if apgd_steps is not None:
        add_count_flag(parser, "--apgd-steps", apgd_steps, "iterations of APGD")


def add_episode_cap_flag(parser: argparse.ArgumentParser, default: int | None, help: str | None = None) -> None:
    """``--max-episode-steps`` (hidden alias ``--max-steps``): the cap on a game's agent steps."""
    add_count_flag(
        parser, "--max-episode-steps", default, help or "cap on a game's agent steps", aliases=("--max-steps",)
    )


def add_agent_argument(
    parser: argparse.ArgumentParser, help: str, *, nargs: str | None = "?", default: object = None
) -> None:
    """The positional ``AGENT`` (a file or run folder; hidden alias ``--agent``). With ``nargs="?"`` it may be
    left out (``default``); the alias then works wherever it stands on the command line."""
    parser.set_defaults(agent=default)  # the positional's own default would overwrite a value given by --agent
    parser.add_argument("agent", type=_path, nargs=nargs, default=argparse.SUPPRESS, metavar="AGENT", help=help)
    alias(parser, "--agent", "agent")


def _path(text: str) -> Path | str:
    """A ``Path``; argparse's own "not given" marker passes through (it runs the type on a text default)."""
    return text if text == argparse.SUPPRESS else Path(text)


# --- flags from a config dataclass --------------------------------------------------------------------------------


def add_config_flags(
    parser: argparse.ArgumentParser,
    config: type,
    *,
    defaults: object | None = None,
    help: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    types: Mapping[str, Callable[[str], Any]] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    skip: Collection[str] = (),
) -> dict[str, str]:
    """A flag for every field of the dataclass ``config`` (but ``skip``): ``--field-name`` (or ``names[field]``),
    dest the field's name; returns field -> flag.

    Types come from the field's annotation: ``bool`` -> ``--x/--no-x``; ``int``/``float`` -> ``types[field]``
    (required: every number has a checked range); ``list`` -> several values of ``types[field]``; ``str`` -> text,
    or one of ``choices[field]``; a field named ``device`` -> :func:`auto_or_device`. Defaults are the fields of the
    instance ``defaults`` (shown in --help), or None (the job fills the rest, e.g. from a preset).

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Config:
    ...     lr: float = 0.1
    ...     epochs: int = 3
    ...     amp: bool = False
    >>> parser = job_parser("demo")
    >>> flags = add_config_flags(parser, Config, defaults=Config(), types={"lr": real(0), "epochs": count()})
    >>> config_from_args(parser.parse_args(["--lr", "1/4", "--amp"]), Config)
    Config(lr=0.25, epochs=3, amp=True)
    """
    hints = typing.get_type_hints(config)
    added = {}
    for field in dataclasses.fields(config):
        if field.name in skip:
            continue
        flag = (names or {}).get(field.name, "--" + field.name.replace("_", "-"))
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "default": getattr(defaults, field.name) if defaults is not None else None,
            "help": (help or {}).get(field.name),
        }
        kwargs.update(_config_flag_kind(field.name, hints[field.name], types or {}, choices or {}))
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()  # the flag's name, not the field's
        parser.add_argument(flag, **kwargs)
        added[field.name] = flag
    return added


def _config_flag_kind(name: str, hint: object, types: Mapping, choices: Mapping) -> dict[str, Any]:
    """How a config field of type ``hint`` is read from the command line (argparse keywords)."""
    optional = typing.get_origin(hint) in (typing.Union, UnionType)  # X | None: read as X
    kinds = {arg for arg in typing.get_args(hint) if arg is not type(None)} if optional else {hint}
    base = typing.get_origin(next(iter(kinds))) or next(iter(kinds))
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if name in types:
        return {"type": types[name], "nargs": "*" if base is list else None}
    if base in (int, float, list):
        raise TypeError(f"config field {name} is a number: give its checked type in types= (every number has a range)")
    if name == "device":
        return {"type": auto_or_device}
    return {"choices": list(choices[name])} if name in choices else {}


def config_values(args: argparse.Namespace, config: type, only: Collection[str] | None = None) -> dict[str, Any]:
    """The values of ``config``'s fields found in ``args`` (those :func:`add_config_flags` added), limited to
    ``only`` when given (e.g. the fields typed on the command line, from :func:`parse_given`)."""
    names = {field.name for field in dataclasses.fields(config)}
    found = vars(args)
    return {k: found[k] for k in sorted(names & found.keys()) if only is None or k in only}


def config_from_args(args: argparse.Namespace, config: type, **fixed: Any) -> Any:
    """An instance of ``config`` from the parsed flags, with ``fixed`` fields set by the job itself."""
    return config(**{**config_values(args, config), **fixed})


def parse_given(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, frozenset[str]]:
    """Parse ``argv``; also say which dests were typed on the command line (a resume changes only those).

    >>> parser = job_parser("demo")
    >>> _ = parser.add_argument("--lr", type=real(0), default=0.1)
    >>> _ = parser.add_argument("--epochs", type=count(), default=3)
    >>> args, given = parse_given(parser, ["--epochs", "3"])
    >>> args.lr, args.epochs, sorted(given)
    (0.1, 3, ['epochs'])
    """
    args = parser.parse_args(argv)
    saved = [(action, action.default) for action in parser._actions], dict(parser._defaults)
    try:  # parse again with no defaults at all: what is left was typed (argparse's own data, restored below)
        for action, _ in saved[0]:
            action.default = argparse.SUPPRESS
        parser._defaults.clear()
        given = frozenset(vars(parser.parse_args(argv)))
    finally:
        for action, default in saved[0]:
            action.default = default
        parser._defaults.update(saved[1])
    return args, given
