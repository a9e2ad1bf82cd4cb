"""Bad-input corpus of scripts/train_ddqn.py: every case ends with one ``error:`` line and status 2, before any run
directory is created (``--runs {out}`` stays empty) and, for a resume, without touching the run's files."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from agents.training import TrainConfig
from rlrobust.cli import hidden_aliases
from rlrobust.runs import RunLock
from tests.corpus import Case, run_case

RUN_CONFIG = TrainConfig(total_steps=1_000, learning_starts=100, buffer_size=500, exploration_steps=200)


@dataclass(frozen=True)
class RunCase(Case):
    """A case whose ``{tmp}`` first gets a prepared folder (see SETUPS), e.g. a run directory to resume."""

    setup: str = ""


def new(*argv: str, message: str) -> RunCase:
    """A new run's flags, always with ``--runs {out}`` (which must stay empty)."""
    return RunCase("train_ddqn", (*argv, "--runs", "{out}"), message)


def resume(setup: str, *argv: str, message: str) -> RunCase:
    """A resume of the run directory ``{tmp}/run`` that ``setup`` prepares."""
    return RunCase("train_ddqn", ("--out", "{tmp}/run", "--resume", *argv), message, setup=setup)


CASES = [
    # every numeric flag is finite and in its range
    new("--lr", "nan", message="argument --lr: must be a finite number"),
    new("--lr", "inf", message="argument --lr: must be a finite number"),
    new("--lr", "0", message="argument --lr: must lie in (0, inf)"),
    new("--lr=-1e-4", message="argument --lr: must lie in (0, inf)"),
    new("--max-grad-norm", "nan", message="argument --max-grad-norm: must be a finite number"),
    new("--max-grad-norm", "-1", message="argument --max-grad-norm: must lie in [0, inf)"),
    new("--frame-margin", "inf", message="argument --frame-margin: must be a finite number"),
    new("--frame-margin", "2", message="argument --frame-margin: must lie in [0, 1]"),
    new("--gamma", "nan", message="argument --gamma: must be a finite number"),
    new("--gamma", "1.5", message="argument --gamma: must lie in [0, 1]"),
    new("--rmsprop-alpha=-inf", message="argument --rmsprop-alpha: must be a finite number"),
    new("--rmsprop-eps", "-0.01", message="argument --rmsprop-eps: must lie in [0, inf)"),
    new("--epsilon-start", "-0.1", message="argument --epsilon-start: must lie in [0, 1]"),
    new("--epsilon-final", "2", message="argument --epsilon-final: must lie in [0, 1]"),
    new("--eval-epsilon", "inf", message="argument --eval-epsilon: must be a finite number"),
    new("--sticky-actions", "1.01", message="argument --sticky-actions: must lie in [0, 1]"),
    new("--batch-size", "0", message="argument --batch-size: must be an integer >= 1"),
    new("--batch-size", "1.5", message="argument --batch-size: not an integer"),
    new("--total-steps", "0", message="argument --total-steps: must be an integer >= 1"),
    new("--total-steps", "1e6", message="argument --total-steps: not an integer"),
    new("--learning-starts", "-5", message="argument --learning-starts: must be an integer >= 0"),
    new("--target-update", "ten", message="argument --target-update: not an integer"),
    new("--num-envs", "0", message="argument --num-envs: must be an integer >= 1"),
    new("--seed", "-1", message="argument --seed: must be an integer in [0, 2147483647]"),
    new("--keep-checkpoints", "0", message="argument --keep-checkpoints: must be an integer >= 1"),
    new("--eval-max-steps", "0", message="argument --eval-max-steps: must be an integer >= 1"),
    new("--buffer-size", "0", message="argument --buffer-size: must be an integer >= 1"),
    new("--train-freq", "0", message="argument --train-freq: must be an integer >= 1"),
    new("--frame-skip", "0", message="argument --frame-skip: must be an integer >= 1"),
    new("--max-episode-steps", "0", message="argument --max-episode-steps: must be an integer >= 1"),
    new("--log-every", "0", message="argument --log-every: must be an integer >= 1"),
    new("--noop-max", "-1", message="argument --noop-max: must be an integer >= 0"),
    new("--exploration-steps", "-1", message="argument --exploration-steps: must be an integer >= 0"),
    new("--threads", "-2", message="argument --threads: must be an integer >= 0"),
    new("--torch-threads", "-2", message="argument --torch-threads: must be an integer >= 0"),  # the old name
    new("--checkpoint-every", "-1", message="argument --checkpoint-every: must be an integer >= 0"),
    new("--robust-kappa", "nan", message="argument --robust-kappa: must be a finite number"),
    new("--robust-kappa", "-0.1", message="argument --robust-kappa: must lie in [0, inf)"),
    new("--robust-eps", "8", message="argument --robust-eps: must lie in [0, 1]"),
    new("--robust-eps", "inf", message="argument --robust-eps: must be a finite number"),
    new("--robust-eps-start", "-1", message="argument --robust-eps-start: must be an integer >= 0"),
    new("--robust-eps-steps", "1.5", message="argument --robust-eps-steps: not an integer"),
    new("--robust-pgd-steps", "0", message="argument --robust-pgd-steps: must be an integer >= 1"),
    new("--robust-share", "0", message="argument --robust-share: must lie in (0, 1]"),
    new("--robust", "trades", message="argument --robust: invalid choice: 'trades'"),
    new("--optimizer", "adam", message="argument --optimizer: invalid choice: 'adam'"),
    new("--eval-every", "-1", message="argument --eval-every: must be an integer >= 0"),
    new("--eval-episodes", "-1", message="argument --eval-episodes: must be an integer >= 0"),
    # unknown names
    new("--game", "Bowlnig", message="unknown Atari game 'Bowlnig'; did you mean Bowling"),
    new("--network", "resnet", message="unknown network 'resnet'"),
    new("--vec-backend", "mpi", message="unknown vec_backend 'mpi'"),
    new("--compile", "yes", message="argument --compile: invalid choice: 'yes'"),
    # settings that are each fine but cannot work together
    new("--learning-starts", "2000", "--buffer-size", "1000", message="learning_starts (2000) exceeds buffer_size"),
    new("--batch-size", "64", "--buffer-size", "32", "--learning-starts", "10", message="batch_size (64) exceeds"),
    new("--total-steps", "1000", message="learning_starts (50000) is not below total_steps (1000)"),
    new("--epsilon-start", "0.1", "--epsilon-final", "0.5", message="epsilon_final (0.5) exceeds epsilon_start"),
    # where the run directory would go
    RunCase("train_ddqn", ("--runs", "{tmp}/file"), "exists and is not a folder", setup="file"),
    RunCase("train_ddqn", ("--logdir", "{tmp}/file/runs"), "exists and is not a folder", setup="file"),
    RunCase("train_ddqn", ("--runs", "{tmp}/locked/runs"), "is not writable", setup="unwritable"),
    # resuming something that cannot be resumed, or changing the experiment
    resume("", message="is not a training run directory (no config.json)"),
    resume("file_run", message="is not a training run directory"),
    resume("no_checkpoint", message="has no checkpoint to resume from"),
    resume("checkpoint", "--runs", "{out}", message="--runs does not apply with --resume"),
    RunCase("train_ddqn", ("--resume", "{tmp}/run", "--game", "Pong"), "cannot change game", setup="checkpoint"),
    RunCase("train_ddqn", ("--resume",), "--resume needs --out"),
    resume("checkpoint", "--game", "Pong", message="cannot change game when resuming"),
    resume("checkpoint", "--lr", "0.001", "--seed", "3", message="cannot change learning_rate, seed when resuming"),
    resume("checkpoint", "--total-steps", "300", message="total_steps (300) is below the step of step_"),
    resume("checkpoint", "--total-steps", "nan", message="argument --total-steps: not an integer"),
    resume("truncated_checkpoint", message="no readable checkpoint in"),
    resume("json_garbage", message="is not readable JSON"),
    resume("json_nan", message="learning_rate must be a finite number, got nan"),
    resume("json_string", message="total_steps must be of type int, got '1000'"),
    resume("json_no_config", message="holds no 'config' settings"),
    resume("locked", message="is in use by another running job"),
]


# ------------------------------------------------------------------------------------------------- setups
def write_config(run_dir: Path, config: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"config": config, "resumes": []}, indent=2))


def write_checkpoint(path: Path, step: int) -> None:
    """A checkpoint as read_checkpoint sees one (counters, weights-only tensors), without training a model."""

    def tensors(value) -> bytes:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()

    data = {"num_timesteps": step, "_n_updates": 10, "_n_calls": step, "_episode_num": 1}
    data |= {"exploration_rate": 0.5, "_current_progress_remaining": 0.5}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("policy.pth", tensors({"q_net.network.head.2.bias": torch.zeros(6)}))
        archive.writestr("policy.optimizer.pth", tensors({"state": {}, "param_groups": []}))


def run_with(change: Callable[[dict], None] | None = None, checkpoint: str | None = None):
    def setup(tmp: Path) -> None:
        config = dataclasses.asdict(RUN_CONFIG)
        if change is not None:
            change(config)
        write_config(tmp / "run", config)
        if checkpoint == "good":
            write_checkpoint(tmp / "run" / "checkpoints" / "step_000000000400.zip", 400)
        elif checkpoint == "truncated":
            write_checkpoint(tmp / "run" / "checkpoints" / "step_000000000400.zip", 400)
            path = tmp / "run" / "checkpoints" / "step_000000000400.zip"
            path.write_bytes(path.read_bytes()[:200])

    return setup


def file_at(name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).write_text("not a folder\n")

    return setup


def unwritable(tmp: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    (tmp / "locked").mkdir()
    (tmp / "locked").chmod(0o555)


def locked(tmp: Path):
    run_with(checkpoint="good")(tmp)
    lock = RunLock(tmp / "run").__enter__()
    return lambda: lock.__exit__(None, None, None)


def json_garbage(tmp: Path) -> None:
    run_with(checkpoint="good")(tmp)
    (tmp / "run" / "config.json").write_text('{"config": {"game": "Bowling",')


def json_no_config(tmp: Path) -> None:
    run_with(checkpoint="good")(tmp)
    (tmp / "run" / "config.json").write_text('{"settings": {}}')


SETUPS: dict[str, Callable[[Path], object]] = {
    "": lambda tmp: None,
    "file": file_at("file"),
    "unwritable": unwritable,
    "file_run": file_at("run"),
    "no_checkpoint": run_with(),
    "checkpoint": run_with(checkpoint="good"),
    "truncated_checkpoint": run_with(checkpoint="truncated"),
    "json_garbage": json_garbage,
    "json_nan": run_with(lambda c: c.update(learning_rate=float("nan")), checkpoint="good"),
    "json_string": run_with(lambda c: c.update(total_steps="1000"), checkpoint="good"),
    "json_no_config": json_no_config,
    "locked": locked,
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_in_one_line(case: RunCase, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cleanup = SETUPS[case.setup](tmp_path)
    run_dir = tmp_path / "run"
    before = snapshot(run_dir) if run_dir.is_dir() else None
    try:
        run_case(case, tmp_path, capsys)
        after = snapshot(run_dir) if before is not None else None
    finally:
        if callable(cleanup):
            cleanup()
    assert after == before  # a refused resume records nothing and changes nothing in the run directory


def test_the_corpus_covers_every_numeric_flag() -> None:
    from tests.corpus import load_script

    script = load_script("train_ddqn")
    parser = script.build_parser()
    numeric = {flag for flag, action in parser._option_string_actions.items() if action.dest in script.LIMITS}
    numeric -= set(hidden_aliases(parser))
    tried = {case.argv[0].split("=")[0] for case in CASES}
    assert len(CASES) >= 35
    assert numeric <= tried, sorted(numeric - tried)
