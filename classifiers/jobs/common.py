"""What the classifier jobs share: the run flags of :mod:`rlrobust.cli` (checked device, seed, threads, output
folder), the data flags, loading a model with its data, and each job's own run folder (claimed, locked, recorded in
run.json)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from classifiers.data import DATASETS, ImageDataset, dataset_spec, load_dataset
from classifiers.evaluation.cells import clear_cells
from classifiers.models import load_classifier
from rlrobust import cli
from rlrobust.files import sha256_of
from rlrobust.runs import (
    INTERRUPTED_STATUS,
    RunLock,
    claim_output_dir,
    fresh_run_dir,
    sigterm_as_interrupt,
    write_run_record,
)

MAX_SEED = 2**63 - 1  # torch's seeds; these jobs draw no numpy numbers
#: Flags that do not change a job's results, so a resume may change them.
NOT_SETTINGS = ("out", "resume", "overwrite", "quiet", "threads", "device")


def add_common_flags(parser: argparse.ArgumentParser, job: str) -> None:
    """The shared ``--out`` (``--resume``, ``--overwrite``), ``--device``, ``--seed``, ``--threads`` and
    ``--quiet`` of :mod:`rlrobust.cli`, with their hidden old names."""
    cli.add_output_flags(
        parser, job, out_help=f"folder for tables and figures (default: a new runs/{job}/<model>-<time>)"
    )
    cli.add_runtime_flags(parser, seed_max=MAX_SEED)


def add_data_flags(
    parser: argparse.ArgumentParser, default: str = "cifar10-shared", split_help: str = "default: the test split"
) -> None:
    """``--dataset``, ``--data-dir``, ``--split`` and ``--images`` (the first N images)."""
    parser.add_argument("--dataset", default=default, choices=sorted(DATASETS))
    parser.add_argument("--data-dir", type=Path, help="folder of the dataset's files (shared data: default)")
    parser.add_argument("--split", help=split_help)
    parser.add_argument("--images", type=cli.count(1), help="use the first N images (default: all)")


def setup(args: argparse.Namespace) -> torch.device:
    """Seed torch, set the thread count and return the (already checked) device.

    ``--device cuda:N`` also becomes the current CUDA device, so that libraries which place work on "the" GPU
    (torch-fidelity's ``cuda=True``, a bare ``torch.cuda.synchronize()``) use GPU N, not GPU 0.
    """
    cli.use_threads(args.threads)
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
