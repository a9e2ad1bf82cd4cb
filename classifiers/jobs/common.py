"""What the classifier jobs share: checked device, seed, threads and output flags, loading a model with its data, each
job's own run folder (claimed, locked, recorded in run.json), and turning expected errors into one ``error: ...`` line
instead of a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classifiers.data import DATASETS, ImageDataset, dataset_spec, load_dataset
from classifiers.evaluation.cells import clear_cells
from classifiers.models import load_classifier
from rlrobust.cli import USER_ERRORS as CORE_USER_ERRORS
from rlrobust.cli import count, device
from rlrobust.cli import run_main as run_cli
from rlrobust.files import sha256_of
from rlrobust.runs import (
    INTERRUPTED_STATUS,
    RunLock,
    claim_output_dir,
    fresh_run_dir,
    sigterm_as_interrupt,
    write_run_record,
)

#: Errors a user can cause (bad file, data or setting, a missing optional library); one line by :func:`run_main`.
USER_ERRORS = (*CORE_USER_ERRORS, ImportError)
MAX_SEED = 2**63 - 1
#: Flags that do not change a job's results, so a resume may change them.
NOT_SETTINGS = ("out", "resume", "overwrite", "quiet", "threads", "device")


def add_common_flags(parser: argparse.ArgumentParser, job: str) -> None:
    """``--device``, ``--seed``, ``--threads``, ``--out``, ``--resume``, ``--overwrite`` and ``--quiet``."""
    parser.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=count(0, MAX_SEED), default=0)
    parser.add_argument("--threads", type=count(1, 4096), help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--out", type=Path, help=f"folder for tables and figures (default: a new runs/{job}/<model>-<time>)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (same settings)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_data_flags(parser: argparse.ArgumentParser, default: str = "cifar10-shared") -> None:
    """``--dataset``, ``--data-dir``, ``--split`` and ``--images`` (the first N images)."""
    parser.add_argument("--dataset", default=default, choices=sorted(DATASETS))
    parser.add_argument("--data-dir", type=Path, help="folder of the dataset's files (shared data: default)")
    parser.add_argument("--split", help="default: the dataset's test split")
    parser.add_argument("--images", type=count(1), help="use the first N images (default: all)")


def parse_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``argv`` parsed, with the run flags checked: ``--resume`` needs ``--out`` and excludes ``--overwrite``."""
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    if args.resume and args.out is None:
        parser.error("--resume needs --out, the folder of the run to continue")
    return args


def setup(args: argparse.Namespace) -> torch.device:
    """Seed torch, set the thread count and return the (already checked) device.

    ``--device cuda:N`` also becomes the current CUDA device, so that libraries which place work on "the" GPU
    (torch-fidelity's ``cuda=True``, a bare ``torch.cuda.synchronize()``) use GPU N, not GPU 0.
    """
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    chosen = torch.device(args.device)
    if chosen.type == "cuda" and chosen.index is not None:
        torch.cuda.set_device(chosen)
    return chosen


def load_data(args: argparse.Namespace, split: str | None = None) -> ImageDataset:
    """The dataset the flags name (``split``, else ``--split``, else its test split), cut to ``--images``."""
    spec = dataset_spec(args.dataset)
    data = load_dataset(args.dataset, split or args.split or spec.test_split, args.data_dir)
    if getattr(args, "images", None):
        if args.images > len(data):
            raise ValueError(f"--images {args.images} but {data.name} holds only {len(data)} images")
        data = data.subset(slice(0, args.images))
    return data


def load_model(path: Path, data: ImageDataset, device: torch.device) -> nn.Module:
    """A model file of any supported kind, in eval mode on ``device``, checked against the data's classes."""
    return load_classifier(path, num_classes=data.num_classes).to(device).eval()


def model_id(path: Path) -> dict[str, str]:
    """What a result row says about its model: file name and sha256."""
    return {"model_file": Path(path).name, "model_sha256": sha256_of(path)}


def run_settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Every flag that can change the results (not --out, --device, --quiet, ...), plus ``extra`` facts such as
    the input files' sha256: what run.json records and what a resume must match."""
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_SETTINGS}
    return {**settings, **extra}


@contextmanager
def run_folder(
    args: argparse.Namespace, job: str, stem: str, settings: Mapping[str, Any], inputs: Mapping[str, Any]
) -> Iterator[Path]:
    """This job's output folder: ``--out`` (or a fresh default) claimed (refused if it holds another run, unless
    --resume with the same settings or --overwrite), locked while the block runs, with run.json written and SIGTERM
    turned into ``KeyboardInterrupt``."""
    out = claim_output_dir(
        args.out or fresh_run_dir(Path("runs") / job, stem), settings, resume=args.resume, overwrite=args.overwrite
    )
    with RunLock(out), sigterm_as_interrupt():
        if args.overwrite:
            clear_cells(out)
        write_run_record(out, job, settings, inputs)
        yield out


def interrupted_with_cells(out: Path, partial: str) -> int:
    """Say what a job stopped by Ctrl-C or SIGTERM kept (``partial``: "k of n cells") and how to continue it;
    returns status 130."""
    print(f"interrupted: {partial} finished and kept in {out} (partial tables written there); continue with the "
          f"same command and --resume --out {out}", file=sys.stderr)  # fmt: skip
    return INTERRUPTED_STATUS


def interrupted(out: Path) -> int:
    """Say how to redo a job stopped by Ctrl-C or SIGTERM that keeps no partial results; returns status 130."""
    print(f"interrupted: the results in {out} are incomplete; run the same command with --resume --out {out} to redo "
          "it there", file=sys.stderr)  # fmt: skip
    return INTERRUPTED_STATUS


def run_main(main: Callable[[], object]) -> None:
    """Run a script's ``main``; a user error (a missing optional library included) ends it with one ``error:`` line."""
    run_cli(main, USER_ERRORS)
