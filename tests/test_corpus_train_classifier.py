"""The bad-input corpus of ``scripts/train_classifier.py``: every nonsense setting, unknown name, missing or wrong
folder and clash with another run ends with one ``error:`` line, exit status 2 and nothing written (see
:mod:`tests.corpus`). The synthetic dataset needs no files, so these cases cost milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifiers.training import make_config
from classifiers.training import trainer as trainer_module
from classifiers.training.trainer import JOB, run_settings
from rlrobust.runs import RunLock, write_run_record
from tests.corpus import Case, run_case


def case(
    *flags: str, message: str, method: str | None = "standard", dataset: str | None = "synthetic", out: str = "{out}"
) -> Case:
    """``flags`` first (so that they name the case), then the method, dataset and ``--out``."""
    base = (*(("--method", method) if method else ()), *(("--dataset", dataset) if dataset else ()))
    return Case("train_classifier", (*flags, *base, "--out", out), message)


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """A case that slips through to the epochs fails at once instead of training a network for minutes."""

    def refuse(*args, **kwargs):
        raise AssertionError("a bad input reached the training loop")

    monkeypatch.setattr(trainer_module, "EpochLog", refuse)


FINITE = "must be a finite number"
AT_LEAST_ONE = "must be an integer >= 1"

CASES = [
    # non-finite and out-of-range reals
    case("--lr", "nan", message=f"--lr: {FINITE}"),
    case("--lr", "inf", message=f"--lr: {FINITE}"),
    case("--lr", "0", message="--lr: must lie in (0, inf)"),
    case("--lr", "-0.1", message="--lr: must lie in (0, inf)"),
    case("--weight-decay", "nan", message=f"--weight-decay: {FINITE}"),
    case("--weight-decay=-1e-4", message="--weight-decay: must lie in [0, inf)"),
    case("--momentum", "1", message="--momentum: must lie in [0, 1)"),
    case("--momentum", "-0.5", message="--momentum: must lie in [0, 1)"),
    case("--pct-start", "0", message="--pct-start: must lie in (0, 1)"),
    case("--pct-start", "1", message="--pct-start: must lie in (0, 1)"),
    case("--gamma", "0", message="--gamma: must lie in (0, 1]"),
    case("--gamma", "2", message="--gamma: must lie in (0, 1]"),
    case("--eps", "2", message="--eps: must lie in [0, 1]"),
    case("--eps=-8/255", message="--eps: must lie in [0, 1]"),
    case("--step", "0", message="--step: must lie in (0, 1]"),
    case("--step", "-1", message="--step: must lie in (0, 1]"),  # a negative step made the inner PGD do nothing
    case("--step", "inf", message=f"--step: {FINITE}"),
    case("--eval-step", "0", message="--eval-step: must lie in (0, 1]"),
    case("--eval-step=-2/255", message="--eval-step: must lie in (0, 1]"),
    case("--attack-steps", "-2", message=f"--attack-steps: {AT_LEAST_ONE}"),
    case("--eval-eps", "1.5", message="--eval-eps: must lie in [0, 1]"),
    case("--eval-step", "nan", message=f"--eval-step: {FINITE}"),
    case("--fgsm-eps", "inf", message=f"--fgsm-eps: {FINITE}"),
    case("--beta", "-1", message="--beta: must lie in [0, inf)"),
    case("--adv-fraction", "0", message="--adv-fraction: must lie in (0, 1]", method="adv"),
    # fraction syntax
    case("--eps", "8/", message="--eps: not a number or fraction"),
    case("--eps", "8/0", message="--eps: not a number or fraction"),
    case("--eps", "1/2/3", message="--eps: not a number or fraction"),
    case("--step", "two", message="--step: not a number or fraction"),
    # zero, negative and fractional counts
    case("--holdout-size", "0", message=f"--holdout-size: {AT_LEAST_ONE}"),
    case("--holdout-size", "-3", message=f"--holdout-size: {AT_LEAST_ONE}"),
    case("--train-size", "-5", message=f"--train-size: {AT_LEAST_ONE}"),
    case("--train-size", "0", message=f"--train-size: {AT_LEAST_ONE}"),
    case("--max-batches", "0", message=f"--max-batches: {AT_LEAST_ONE}"),
    case("--max-batches", "-1", message=f"--max-batches: {AT_LEAST_ONE}"),
    case("--batch-size", "0", message=f"--batch-size: {AT_LEAST_ONE}"),
    case("--epochs", "0", message=f"--epochs: {AT_LEAST_ONE}"),
    case("--epochs", "2.5", message="--epochs: not an integer"),
    case("--attack-steps", "0", message=f"--attack-steps: {AT_LEAST_ONE}"),
    case("--eval-steps", "-1", message=f"--eval-steps: {AT_LEAST_ONE}"),
    case("--select-from-epoch", "0", message=f"--select-from-epoch: {AT_LEAST_ONE}"),
    case("--step-epochs", "0", message=f"--step-epochs: {AT_LEAST_ONE}"),
    case("--seed", "-1", message="--seed: must be an integer in [0, 4294967295]"),
    case("--padding", "-1", message="--padding: must be an integer >= 0"),
    case("--padding", "32", message="padding must be below the image size 32"),
    case("--milestones", "0", "--schedule", "multistep", message=f"--milestones: {AT_LEAST_ONE}"),
    case("--milestones", "5", "3", message="milestones must be strictly increasing"),
    case("--milestones", "5", "5", message="milestones must be strictly increasing"),
    # unknown names
    case("--dataset", "imagenet", message="--dataset: invalid choice: 'imagenet'", dataset=None),
    case("--arch", "vgg", message="--arch: invalid choice: 'vgg'"),
    case("--method", "fast_at", message="--method: invalid choice: 'fast_at'", method=None),
    case("--preset", "weat2", message="--preset: invalid choice: 'weat2'"),
    case("--schedule", "cosine", message="--schedule: invalid choice: 'cosine'"),
    case("--amp", "fp16", message="--amp: invalid choice: 'fp16'"),
    case("--holdout-source", "val", message="--holdout-source: invalid choice: 'val'"),
    case("--device", "tpu", message="--device: not a torch device: 'tpu'"),
    case("--device", "cuda:99", message="--device: 'cuda:99'"),
    case("--learning-rate", "0.1", message="unrecognized arguments: --learning-rate"),
    case(message="the following arguments are required: --method", method=None),
    # data that cannot serve
    case("--dataset", "cifar10", message="dataset 'cifar10' needs --data-dir", dataset=None),
    case("--dataset", "svhn", message="dataset 'svhn' needs --data-dir", dataset=None),
    case("--data-dir", "{tmp}/absent", message="does not exist"),
    case("--dataset", "cifar10-shared", message="has no training split", dataset=None),
    case("--train-size", "5000", message="train_size 5000 exceeds the 2048 synthetic training images"),
    case("--holdout-source", "test", "--holdout-size", "600", message="holdout_size 600 exceeds the 512"),
    case("--holdout-size", "2048", message="holdout_size 2048 leaves no training images of the 2048 synthetic"),
    case("--train-size", "300", "--holdout-size", "300", message="holdout_size 300 leaves no training"),
    case("--epochs", "1", "--max-batches", "2", "--schedule", "onecycle", message="onecycle needs at least 3 batches"),
    # contradictory run flags
    case("--resume", "--overwrite", message="--overwrite: not allowed with argument --resume"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_with_one_line(case, tmp_path, capsys):
    run_case(case, tmp_path, capsys)


# --- cases that need a folder prepared first (their --out is not {out}, which must stay empty) ---------------


def _earlier_run(folder: Path) -> None:
    """A folder as a finished run of the base command (``standard`` on ``synthetic``) leaves it."""
    config = make_config("standard", dataset="synthetic", out_dir=str(folder))
    write_run_record(folder, JOB, run_settings(config), {"dataset": "synthetic"})
    (folder / "last.pt").write_bytes(b"weights of the earlier run")


def _foreign_files(folder: Path) -> None:
    folder.mkdir()
    (folder / "notes.txt").write_text("someone else's")


def _a_file(path: Path) -> None:
    path.write_text("not a folder")


OTHER = "{tmp}/other"
PREPARED = [
    (case(message="already holds results of another run", out=OTHER), _earlier_run),
    (case("--resume", "--lr", "0.1", message="other settings (lr: 0.5 -> 0.1)", out=OTHER), _earlier_run),
    (case("--resume", "--epochs", "7", message="other settings (epochs: 150 -> 7)", out=OTHER), _earlier_run),
    (case("--resume", message="it has no run.json", out=OTHER), _foreign_files),
    (case(message="exists and is not a folder", out=OTHER), _a_file),
    (case("--data-dir", OTHER, message="is not a folder"), _a_file),
    (
        case("--data-dir", OTHER, message="CIFAR-10 train split not found", dataset="cifar10"),
        lambda folder: folder.mkdir(),
    ),
]


@pytest.mark.parametrize(("case", "prepare"), PREPARED, ids=[f"{p.__name__}:{c.message}" for c, p in PREPARED])
def test_bad_folders_are_refused_and_left_alone(case, prepare, tmp_path, capsys):
    other = tmp_path / "other"
    prepare(other)
    before = _snapshot(other)
    run_case(case, tmp_path, capsys)
    assert _snapshot(other) == before  # the other run's (or user's) files are untouched


def test_a_folder_in_use_by_a_running_job_is_refused(tmp_path, capsys):
    """Two trainings into one folder at once: the second is refused while the first holds the lock."""
    with RunLock(tmp_path / "other"):
        line = run_case(case(message="in use by another running job", out=OTHER), tmp_path, capsys)
    assert "pid" in line


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(PREPARED) + 1 >= 35


def _snapshot(path: Path) -> object:
    if path.is_file():
        return path.read_bytes()
    if not path.is_dir():
        return None
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
