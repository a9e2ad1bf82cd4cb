"""Train an image classifier with one of the papers' methods and recipes.

    python scripts/train_classifier.py --dataset cifar10 --data-dir data --method weat_adv      # WEAT recipe
    python scripts/train_classifier.py --dataset cifar10 --data-dir data --method standard     # SAP dense recipe
    python scripts/train_classifier.py --dataset synthetic --method trades --epochs 2 --max-batches 5
    torchrun --nproc_per_node=4 scripts/train_classifier.py --dataset cifar10 --data-dir data --method trades
    python scripts/train_classifier.py ... --resume                                             # continue a run
    python scripts/train_classifier.py ... --overwrite                                          # replace a run

``--method`` picks its paper's preset (standard: sap-dense, adv: sap-adv, others: weat); every other flag overrides
one field of it. Budgets accept fractions: ``--eps 8/255``; every number is checked against its range
(``classifiers.training.config.BOUNDS``) before anything runs. Outputs under ``--out-dir``: config.json, run.json
(settings, data files' sha256, versions), metrics.csv, tensorboard/, last.pt (every epoch, atomic) and
best_robust.pt (best PGD accuracy on ``--holdout-size`` images held out of the training split, never test images);
without ``--out-dir``, a fresh ``runs/classifier/<dataset>-<method>-seed<S>-<stamp>``. A folder holding another
run is refused unless ``--resume`` or ``--overwrite``; Ctrl-C or SIGTERM stop after keeping the last finished epoch
(exit status 130); a loss or weight that turns NaN or infinite stops the run before that epoch is saved (exit
status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from classifiers.training import (
    METHODS,
    PRESETS,
    NonFiniteTraining,
    TrainConfig,
    TrainingInterrupted,
    make_config,
    train,
)
from classifiers.training.config import BOUNDS, CHOICES, MILESTONE
from rlrobust.cli import USER_ERRORS, auto_or_device, run_main
from rlrobust.runs import DIVERGED_STATUS, INTERRUPTED_STATUS, fresh_run_dir


def build_parser() -> argparse.ArgumentParser:
    """This job's flags: the method, the run's own, and one per field of :class:`TrainConfig`."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="recipe to start from (default: the method's paper)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run in OUT_DIR (its outputs are deleted first)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("method", "preset"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif kind.startswith("list"):
            parser.add_argument(flag, type=MILESTONE.flag_type(), nargs="*", default=None, metavar="EPOCH")
        elif kind.startswith(("float", "int")):
            parser.add_argument(flag, type=BOUNDS[f.name].flag_type(), default=None)  # every number has a range
        elif f.name == "device":
            parser.add_argument(flag, type=auto_or_device, default=None, help="auto, cpu, cuda or cuda:N")
        else:
            choices = sorted(CHOICES[f.name]) if f.name in CHOICES else None
            parser.add_argument(flag, default=None, choices=choices)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train; 0 when done, 130 when stopped by Ctrl-C or SIGTERM (with how to resume)."""
    args = parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in ("method", "preset")
    }
    if args.resume and args.out_dir is None:
        raise ValueError("--resume needs --out-dir, the folder of the run to continue")
    config = make_config(args.method, args.preset, **overrides)
    if args.out_dir is None:  # a fresh folder per run, so that no run lands in another's
        config.out_dir = str(fresh_run_dir("runs/classifier", f"{config.dataset}-{config.method}-seed{config.seed}"))
    try:
        summary = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except KeyboardInterrupt as stop:
        print(_interrupted_message(stop, config, argv), file=sys.stderr)
        return INTERRUPTED_STATUS
    except NonFiniteTraining as err:  # a diverged run is not a usage error: status 1, like train_ddqn.py
        print(f"error: {err}", file=sys.stderr)
        return DIVERGED_STATUS
    best = summary["best"]
    print(
        f"done: {summary['out_dir']}/metrics.csv, tensorboard/, last.pt" + (", best_robust.pt" if best["epoch"] else "")
    )
    if best["epoch"]:
        print(f"best held-out PGD accuracy {best['pgd_acc']:.4f} at epoch {best['epoch']}")
    else:
        print(f"no best_robust.pt: no epoch reached --select-from-epoch {config.select_from_epoch}")
    return 0


def _interrupted_message(stop: KeyboardInterrupt, config: TrainConfig, argv: list[str] | None) -> str:
    """What was kept and the command that continues the run."""
    words = list(sys.argv[1:] if argv is None else argv)
    words = [w for w in words if w != "--overwrite"] + ([] if "--resume" in words else ["--resume"])
    if not any(w == "--out-dir" or w.startswith("--out-dir=") for w in words):
        words += ["--out-dir", config.out_dir]
    command = shlex.join(["python", "scripts/train_classifier.py", *words])
    last = Path(config.out_dir) / "last.pt"
    if isinstance(stop, TrainingInterrupted) and stop.epochs_saved:
        kept = f"{last} keeps epoch {stop.epochs_saved} of {stop.epochs}"
    elif last.is_file():
        kept = f"{last} is as it was"
    else:
        kept = "no epoch had finished, so nothing is saved yet"
    return f"interrupted: {kept}; continue with: {command}"


def run(argv: list[str] | None = None) -> None:
    """The command line: :func:`main`, a user error ending it with one ``error: ...`` line and status 2."""
    run_main(lambda: main(argv), USER_ERRORS)
