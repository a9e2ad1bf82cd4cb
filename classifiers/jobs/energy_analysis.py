"""WEAT's energy lens: how attacks move a classifier's energies, and how energies evolve over adversarial training.

    python scripts/energy_analysis.py --model $SHARED/cifar10_robust_models/alpha-beta-CROWN/resnet4b.pth \
        --model $SHARED/cifar10_models/akamaster_pytorch_resnet_cifar10/resnet20-12fca82f.th --images 500
    python scripts/energy_analysis.py --training-runs runs/pgd_at runs/trades   # curves from training logs

With ``--model`` (repeatable): histograms of ``E(x)`` and ``E(x, y)`` for natural images and their untargeted (PGD,
APGD-T) and targeted (PGD toward a random wrong class) adversarial versions, and a table of the mean shifts (the
paper: untargeted attacks lower ``E(x)``, targeted ones raise it). With ``--training-runs`` (run folders of
scripts/train_classifier.py): natural and adversarial energy against the epoch with the three phases marked, and the
runs' energy gaps side by side (TRADES against PGD-AT). Writes energy_shift.*, energy_<model>.png, energy_curves.*
and energy_curves.png, with run.json, under ``--out`` (default: a new runs/energy_analysis/<model>-<time>; a folder
holding another run is refused unless --resume, which reruns it with the same settings, or --overwrite). Every row of
energy_shift names its model file and sha256. ($SHARED: ../shared/data)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from classifiers.experiments.energy_curves import curve_rows, plot_curves, read_run
from classifiers.experiments.energy_lens import KINDS, LensSettings, measure_energies, plot_histograms, summary_rows
from classifiers.experiments.figures import write_scalars
from classifiers.jobs import common
from rlrobust import cli
from rlrobust.reporting import write_tables

JOB = "energy_analysis"


def build_parser() -> argparse.ArgumentParser:
    """This job's flags."""
    parser = cli.job_parser(__doc__)
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model file (repeatable)")
    parser.add_argument(
        "--training-runs", type=Path, nargs="+", default=[], metavar="RUN",
        help="run folders of train_classifier (their metrics.csv)",
    )  # fmt: skip
    cli.alias(parser, "--runs", "--training-runs")  # --runs is the shared flag of the folder runs are made in
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="inputs to compare")
    cli.add_budget_flag(parser, "L-inf, on --scale", 8.0, high=255, low_open=True, many=False)
    parser.add_argument(
        "--scale", type=cli.real(1, 255), default=255.0, choices=[1.0, 255.0], help="255: pixel units; 1: [0, 1]"
    )
    cli.add_steps_flags(parser, pgd_steps=20, apgd_steps=50, pgd_aliases=("--steps",))
    cli.add_count_flag(parser, "--target-classes", 3, "APGD-T's wrong classes tried in turn")
    cli.add_count_flag(parser, "--batch-size", 128, "images per batch")
    common.add_data_flags(parser)
    common.add_common_flags(parser, JOB)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, checked against each other."""
    parser = build_parser()
    args = cli.parse_checked(parser, argv)
    if not args.model and not args.training_runs:
        parser.error("give --model (energies under attack) and/or --training-runs (energy curves of training runs)")
    if args.eps > args.scale:
        parser.error(f"--eps must lie in (0, {args.scale:g}] (the --scale)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = common.setup(args)
    runs = [read_run(path) for path in args.training_runs]
    data, models = None, []
    if args.model:
        data = common.load_data(args).to(device)
        if "apgd-t" in args.kinds and args.target_classes > data.num_classes - 1:
            raise ValueError(f"--target-classes {args.target_classes} but {data.name} has only "
                             f"{data.num_classes - 1} wrong classes")  # fmt: skip
        models = [(path, common.load_model(path, data, device), common.model_id(path)) for path in args.model]
    ids = {f"model{i}_{k}": v for i, (_, _, facts) in enumerate(models) for k, v in facts.items()}
    extra = {"data": data.name, "image_count": len(data)} if data is not None else {}
    settings = common.run_settings(args, **ids, **extra)
    inputs = {f"model{i}": path for i, (path, _, _) in enumerate(models)}
    inputs.update({f"run{i}": path / "metrics.csv" for i, path in enumerate(args.training_runs)})
    stem = args.model[0].stem if args.model else "runs"
    with common.run_folder(args, JOB, stem, settings, inputs) as out:
        try:
            if models:
                analyse_models(args, out, data, models)
            if runs:
                rows = curve_rows(runs)
                paths = write_tables(rows, out, "energy_curves", title="Energies over adversarial training")
                plot_curves(runs, out / "energy_curves.png")
                print(paths["md"].read_text())
                print(f"Curves: {out / 'energy_curves.png'}")
        except KeyboardInterrupt:
            return common.interrupted(out)
    return 0


def analyse_models(args: argparse.Namespace, out: Path, data, models: list) -> None:
    """Energies of natural and attacked images under each model: table (rows naming the model), histograms."""
    settings = LensSettings(
        eps=args.eps / args.scale,
        steps=args.pgd_steps,
        apgd_steps=args.apgd_steps,
        target_classes=args.target_classes,
        batch_size=args.batch_size,
    )
    budget = f"{args.eps:g}/255" if args.scale == 255 else f"{args.eps:g}"
    rows = []
    for path, model, facts in models:
        energies = measure_energies(model, data, args.kinds, settings, seed=args.seed, progress=not args.quiet)
        rows += [{**r, **facts} for r in summary_rows(energies, path.name)]
        plot_histograms(energies, out / f"energy_{path.stem}.png", title=f"{path.name}, {len(data)} images")
    notes = (
        f"{len(data)} images of {data.name}; L-inf eps {budget}; PGD {args.pgd_steps} steps of eps/4 with a random "
        f"start; APGD-T {args.apgd_steps} steps over {args.target_classes} target classes; pgd-targeted descends "
        f"cross-entropy toward a random wrong class. E(x) = -logsumexp f(x); E(x,y) with the true label. Shifts are "
        f"against the natural images; 'share E(x) raised' counts images whose E(x) went up. Seed {args.seed}."
        + "".join(f" Note: {n}." for n in data.notes)
    )
    paths = write_tables(rows, out, "energy_shift", title="Energies of natural and adversarial inputs", notes=notes)
    write_scalars(out, rows, lambda r: f"energy/{r['model']}", "E(x) mean", lambda r: KINDS.index(r["input"]))
    print(paths["md"].read_text())
    print(f"Histograms: {out}/energy_*.png")
