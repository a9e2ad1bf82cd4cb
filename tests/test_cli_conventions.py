"""Every job's command line follows the one convention (rlrobust/cli.py, README's developer notes): the shared
flags under their agreed names and kinds, old names only as hidden aliases that parse to the same value, and a
help that shows each default once. Each job's parser is built without running the job."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlrobust import cli


@dataclass(frozen=True)
class Job:
    """A job: its console name, its module (with ``build_parser()``) and the least argv its parser accepts."""

    name: str
    module: str
    argv: tuple[str, ...] = ()


JOBS = [
    Job("train-ddqn", "agents.jobs.train_ddqn"),
    Job("eval-sap", "agents.jobs.eval_rl_sap"),
    Job("attack-policy", "agents.jobs.attack_policy"),
    Job("robustness-report", "agents.jobs.robustness_report", ("agent.pt@Pong",)),
    Job("demo-core", "agents.jobs.demo_core"),
    Job("train-classifier", "classifiers.jobs.train_classifier", ("--method", "standard")),
    Job("eval-classifier", "classifiers.jobs.eval_classifier", ("--model", "m.pt")),
    Job("sap-experiments", "classifiers.jobs.sap_experiments", ("--model", "m.pt")),
    Job("energy-analysis", "classifiers.jobs.energy_analysis", ("--model", "m.pt")),
    Job("generate", "classifiers.jobs.generate", ("--model", "m.pt")),
]

#: Old names: if a job offers one at all, it must be a hidden alias.
OLD_NAMES = (
    "--out-dir",
    "--logdir",
    "--torch-threads",
    "--no-progress",
    "--max-steps",
    "--agent",
    "--sap-passes",
    "--eot",
    "--adaptive-eot",
    "--adaptive-steps",
    "--lambdas",
    "--budgets",
)


def parser_of(job: Job) -> argparse.ArgumentParser:
    return importlib.import_module(job.module).build_parser()


def is_count(kind) -> bool:
    return getattr(kind, "__name__", "") == "integer"


def is_flag(action: argparse.Action) -> bool:
    return action.nargs == 0 and action.const is True and action.default is False


#: flag -> what its action must be, where a job offers it.
CANONICAL = {
    "--out": lambda a: a.type is Path and a.nargs is None,
    "--runs": lambda a: a.type is Path and a.default == Path("runs"),
    "--resume": is_flag,
    "--overwrite": is_flag,
    "--device": lambda a: a.type in (cli.device, cli.auto_or_device),
    "--seed": lambda a: is_count(a.type) and a.default == 0,
    "--threads": lambda a: is_count(a.type) and a.default == 0,
    "--quiet": is_flag,
    "--eps": lambda a: getattr(a.type, "__name__", "") == "number" and a.type("8/255") == 8 / 255,
    "--samples": lambda a: is_count(a.type),
    "--eot-samples": lambda a: is_count(a.type),
    "--pgd-steps": lambda a: is_count(a.type),
    "--attack-steps": lambda a: is_count(a.type),
    "--apgd-steps": lambda a: is_count(a.type),
    "--max-episode-steps": lambda a: is_count(a.type),
}


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.name)
def test_the_shared_flags_follow_the_convention(job: Job) -> None:
    parser = parser_of(job)
    hidden = cli.hidden_aliases(parser)  # an old name kept for one release is no offer of the flag's new meaning
    offered = {
        flag: cli.find_action(parser, flag)
        for flag in CANONICAL
        if flag in parser._option_string_actions and flag not in hidden
    }
    wrong = sorted(flag for flag, action in offered.items() if not CANONICAL[flag](action))
    assert not wrong, f"{job.name}: {wrong} do not follow the convention"
    visible_old = [name for name in OLD_NAMES if name in parser._option_string_actions and name not in hidden]
    assert not visible_old, f"{job.name} still offers {visible_old} as flags of their own"


def sample_value(action: argparse.Action) -> list[str]:
    """A value the action accepts, as words on a command line."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(next(iter(action.choices)))]
    if action.type in (cli.device, cli.auto_or_device):
        return ["cpu"]
    if is_count(action.type) or getattr(action.type, "__name__", "") == "number":
        return ["1"]
    return ["some/where"]


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[dict, str]:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        args = parser.parse_args(argv)
    return vars(args), err.getvalue()


def aliases_of_every_job() -> list[tuple[Job, str, str]]:
    return [(job, old, new) for job in JOBS for old, new in cli.hidden_aliases(parser_of(job)).items()]


@pytest.mark.parametrize("job, old, new", aliases_of_every_job(), ids=lambda x: getattr(x, "name", x))
def test_every_hidden_alias_parses_as_its_new_name_with_a_note(job: Job, old: str, new: str) -> None:
    parser = parser_of(job)
    target = cli.find_action(parser, new)
    value = sample_value(target)
    old_args, note = parse(parser, [*job.argv, old, *value])
    new_args, quiet = parse(parser_of(job), [*job.argv, *([new] if new.startswith("-") else []), *value])
    assert old_args == new_args
    assert note.startswith(f"note: {old} is now ") and "the old name goes in the next release" in note
    assert note.count("\n") == 1 and not quiet
    assert not re.search(rf"{re.escape(old)}(?![\w-])", parser.format_help()), f"{old} shows in {job.name} --help"


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.name)
def test_help_shows_each_default_once(job: Job) -> None:
    text = parser_of(job).format_help()
    entries = re.split(r"\n(?=  -|  [A-Z])", text)  # one entry per option or positional
    doubled = [entry for entry in entries if entry.lower().count("default:") > 1]
    assert not doubled, doubled
    assert "(default: None)" not in text and "(default: none)" not in text


def test_train_ddqn_takes_the_old_resume_folder_form(capsys) -> None:
    from agents.jobs.train_ddqn import resume_folder_alias

    assert resume_folder_alias(["--resume", "runs/a", "--total-steps", "9"]) == [
        "--out", "runs/a", "--resume", "--total-steps", "9"
    ]  # fmt: skip
    assert resume_folder_alias(["--resume=runs/a"]) == ["--out", "runs/a", "--resume"]
    assert resume_folder_alias(["--out", "runs/a", "--resume"]) == ["--out", "runs/a", "--resume"]  # the new form
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["note: --resume RUN_DIR is now --out RUN_DIR --resume (the old name goes in the next release)"] * 2


def test_demo_core_old_mc_samples_sets_both_pass_counts(capsys) -> None:
    from agents.jobs.demo_core import build_parser

    args = build_parser().parse_args(["--mc-samples", "3"])
    assert (args.samples, args.eot_samples) == (3, 3)
    assert "--mc-samples is now --samples and --eot-samples" in capsys.readouterr().err
    assert "--mc-samples" not in build_parser().format_help()


def test_config_flags_read_optional_numbers_and_lists():
    """``X | None`` is read as X; ``list[X]`` takes several values, each of the field's checked type."""

    @dataclass
    class Settings:
        steps: int | None = None
        milestones: list[int] = field(default_factory=list)

    parser = argparse.ArgumentParser()
    cli.add_config_flags(parser, Settings, types={"steps": cli.count(), "milestones": cli.count()})
    args = parser.parse_args(["--steps", "3", "--milestones", "100", "130"])
    assert (args.steps, args.milestones) == (3, [100, 130])
    with pytest.raises(SystemExit):
        parser.parse_args(["--milestones", "100", "0"])
