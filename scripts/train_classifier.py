"""Train an image classifier with one of the papers' methods and recipes.

    python scripts/train_classifier.py --dataset cifar10 --data-dir data --method weat_adv      # WEAT recipe
    python scripts/train_classifier.py --dataset cifar10 --data-dir data --method standard     # SAP dense recipe
    python scripts/train_classifier.py --dataset synthetic --method trades --epochs 2 --max-batches 5
    torchrun --nproc_per_node=4 scripts/train_classifier.py --dataset cifar10 --data-dir data --method trades
    python scripts/train_classifier.py ... --resume                                             # continue a run

``--method`` picks its paper's preset (standard: sap-dense, adv: sap-adv, others: weat); every other flag overrides
one field of it. Budgets accept fractions: ``--eps 8/255``. Outputs under ``--out-dir``: config.json, metrics.csv,
tensorboard/, last.pt (every epoch, atomic) and best_robust.pt (best held-out PGD accuracy).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.data import DATASETS
from classifiers.models import ARCHITECTURES
from classifiers.training import METHODS, PRESETS, TrainConfig, make_config, train
from classifiers.training.config import SCHEDULES
from rlrobust.cli import run_main

CHOICES = {
    "dataset": sorted(DATASETS),
    "arch": sorted(ARCHITECTURES),
    "schedule": list(SCHEDULES),
    "amp": ["auto", "bf16", "off"],
    "channels_last": ["auto", "on", "off"],
    "holdout_source": ["test", "train"],
}


def number(text: str) -> float:
    """A float, or a fraction such as 8/255."""
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="recipe to start from (default: the method's paper)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("method", "preset"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif kind.startswith("list"):
            parser.add_argument(flag, type=int, nargs="*", default=None, metavar="EPOCH")
        elif kind.startswith("float"):
            parser.add_argument(flag, type=number, default=None)
        elif kind.startswith("int"):
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, default=None, choices=CHOICES.get(f.name))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in ("method", "preset")
    }
    config = make_config(args.method, args.preset, **overrides)
    summary = train(config, resume=args.resume, progress=not args.quiet)
    best = summary["best"]
    print(f"done: {summary['out_dir']}/metrics.csv, tensorboard/, last.pt, best_robust.pt")
    if best["epoch"]:
        print(f"best held-out PGD accuracy {best['pgd_acc']:.4f} at epoch {best['epoch']}")


if __name__ == "__main__":
    run_main(main)
