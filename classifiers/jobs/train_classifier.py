"""Train an image classifier with one of the papers' methods and recipes.

    python scripts/train_classifier.py --dataset cifar10 --data-dir data --method weat_adv      # WEAT recipe
    python scripts/train_classifier.py --dataset cifar10 --data-dir data --method standard     # SAP dense recipe
    python scripts/train_classifier.py --dataset synthetic --method trades --epochs 2 --max-batches 5
    torchrun --nproc_per_node=4 scripts/train_classifier.py --dataset cifar10 --data-dir data --method trades
    python scripts/train_classifier.py ... --resume                                             # continue a run
    python scripts/train_classifier.py ... --overwrite                                          # replace a run

``--method`` picks its paper's preset (standard: sap-dense, adv: sap-adv, others: weat); every other flag overrides
one field of it. Budgets are on [0, 1] images and accept fractions: ``--eps 8/255``; every number is checked against
its range (``classifiers.training.config.BOUNDS``) before anything runs. Outputs under ``--out``: config.json, run.json
(settings, data files' sha256, versions), metrics.csv, tensorboard/, last.pt (every epoch, atomic) and
best_robust.pt (best PGD accuracy on ``--holdout-size`` images held out of the training split, never test images);
without ``--out``, a fresh ``runs/classifier/<dataset>-<method>-seed<S>-<stamp>``. A folder holding another
run is refused unless ``--resume`` or ``--overwrite``; Ctrl-C or SIGTERM stop after keeping the last finished epoch
(exit status 130); a loss or weight that turns NaN or infinite stops the run before that epoch is saved (exit
status 1).
"""

from __future__ import annotations

import argparse
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
from rlrobust import cli
from rlrobust.runs import DIVERGED_STATUS, INTERRUPTED_STATUS, fresh_run_dir

#: Help of the config flags that need words: budgets state their scale ([0, 1] images), steps their role.
CONFIG_HELP = {
    "eps": "the training attack's L-inf budget on [0, 1] images (8/255)",
    "step": "the training attack's step on [0, 1] images",
    "fgsm_eps": "the ADV method's FGSM budget on [0, 1] images",
    "eval_eps": "budget of the held-out PGD check that picks best_robust.pt, on [0, 1] images",
    "eval_step": "step of the held-out PGD check, on [0, 1] images",
    "eval_steps": "iterations of the held-out PGD check",
    "attack_steps": "iterations of the training attack",
    "milestones": "epochs where the multistep schedule decays the rate",
}
OUT_FLAGS = ("--out", "--out-dir")  # the run folder's flag and its old name
#: Config fields set by the shared flags (``--out``, ``--seed``, ``--device``) or by the method.
NOT_CONFIG_FLAGS = ("method", "preset", "out_dir", "seed", "device")


def build_parser() -> argparse.ArgumentParser:
    """This job's flags: the method, the shared run flags, and one per other field of :class:`TrainConfig` (its
    default: the preset's)."""
    parser = cli.job_parser(__doc__)
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="recipe to start from (default: the method's paper)")
    cli.add_output_flags(
        parser, "classifier", out_help="run folder (default: a fresh runs/classifier/<dataset>-<method>-seed<S>-<time>)"
    )
    cli.add_runtime_flags(parser, device_default="auto")
    types = {name: bound.flag_type() for name, bound in BOUNDS.items()}  # every number has a range
    choices = {name: sorted(options) for name, options in CHOICES.items()}
    types["milestones"] = MILESTONE.flag_type()  # each epoch of the list
    cli.add_config_flags(parser, TrainConfig, help=CONFIG_HELP, types=types, choices=choices, skip=NOT_CONFIG_FLAGS)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, checked (``--resume`` needs ``--out``)."""
    return cli.parse_checked(build_parser(), argv)


def main(argv: list[str] | None = None) -> int:
    """Train; 0 when done, 130 when stopped by Ctrl-C or SIGTERM (with how to resume)."""
    args = parse_args(argv)
    overrides = {k: v for k, v in cli.config_values(args, TrainConfig).items() if k not in ("method", "preset")}
    overrides["out_dir"] = None if args.out is None else str(args.out)
    config = make_config(args.method, args.preset, **overrides)
    if args.out is None:  # a fresh folder per run, so that no run lands in another's
        config.out_dir = str(fresh_run_dir("runs/classifier", f"{config.dataset}-{config.method}-seed{config.seed}"))
    cli.use_threads(args.threads)
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
    if not any(w in OUT_FLAGS or w.startswith(tuple(f"{flag}=" for flag in OUT_FLAGS)) for w in words):
        words += ["--out", config.out_dir]
    command = shlex.join(["python", "scripts/train_classifier.py", *words])
    last = Path(config.out_dir) / "last.pt"
    if isinstance(stop, TrainingInterrupted) and stop.epochs_saved:
        kept = f"{last} keeps epoch {stop.epochs_saved} of {stop.epochs}"
    elif last.is_file():
        kept = f"{last} is as it was"
    else:
        kept = "no epoch had finished, so nothing is saved yet"
    return f"interrupted: {kept}; continue with: {command}"
