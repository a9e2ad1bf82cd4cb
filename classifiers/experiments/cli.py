"""What the experiment scripts share on the command line: device, seed, threads and output flags, loading a model
with its data, and turning expected errors into one ``error: ...`` line instead of a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from classifiers.data import DATASETS, ImageDataset, dataset_spec, load_dataset
from classifiers.models import load_classifier
from rlrobust.cli import USER_ERRORS as CORE_USER_ERRORS
from rlrobust.cli import run_main as run_cli

#: Errors a user can cause (bad file, data or setting, a missing optional library); one line by :func:`run_main`.
USER_ERRORS = (*CORE_USER_ERRORS, ImportError)


def add_common_flags(parser: argparse.ArgumentParser, default_out: str) -> None:
    """``--device``, ``--seed``, ``--threads``, ``--out`` and ``--quiet``."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="folder for tables and figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_data_flags(parser: argparse.ArgumentParser, default: str = "cifar10-shared") -> None:
    """``--dataset``, ``--data-dir``, ``--split`` and ``--images`` (the first N images)."""
    parser.add_argument("--dataset", default=default, choices=sorted(DATASETS))
    parser.add_argument("--data-dir", type=Path, help="folder of the dataset's files (shared data: default)")
    parser.add_argument("--split", help="default: the dataset's test split")
    parser.add_argument("--images", type=int, help="use the first N images (default: all)")


def check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Reject counts below 1 (``None`` means unset and passes)."""
    for name in names:
        values = getattr(args, name)
        for value in values if isinstance(values, list | tuple) else [values]:
            if value is not None and value < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def setup(args: argparse.Namespace) -> torch.device:
    """Seed torch, set the thread count and check the device; returns it."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    torch.manual_seed(args.seed)
    return device


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


def run_main(main: Callable[[], None]) -> None:
    """Run a script's ``main``; a user error (a missing optional library included) ends it with one ``error:`` line."""
    run_cli(main, USER_ERRORS)
