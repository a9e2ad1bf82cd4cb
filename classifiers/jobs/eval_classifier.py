"""Evaluate a classifier's robustness: clean accuracy and FGSM / iterative / PGD / APGD over budgets, with EOT for
stochastic models (e.g. with SAP inserted) and transfer attacks from another model.

    python scripts/eval_classifier.py --model ../shared/data/cifar10_robust_models/alpha-beta-CROWN/resnet4b.pth
    python scripts/eval_classifier.py --model runs/classifier/best_robust.pt --dataset cifar10 --data-dir data \
        --attacks pgd apgd-ce apgd-dlr apgd-t --eps 8 --scale 255
    python scripts/eval_classifier.py --model resnet20-12fca82f.th --attacks fgsm iterative \
        --eps 0 1 2 4 8 16 32 64 --sap 1.0 --samples 100 --eot-samples 10      # the SAP paper's table, adaptively
    python scripts/eval_classifier.py --model sap_target.pt --transfer-from dense.pt --attacks pgd --eps 8
    python scripts/eval_classifier.py --model resnet4b.pth --attacks autoattack --version standard --eps 2 8
    python scripts/eval_classifier.py --model resnet20-12fca82f.th --sap 1.0 --samples 20 --attacks autoattack square \
        --version rand --eps 8                                            # AutoAttack-rand and Square on SAP-100

Budgets are L-inf on the ``--scale`` (255: the SAP paper's lambda in pixel units; 1: eps on [0, 1] images). The
default data are the 1,017 lossless real CIFAR-10 test images of the shared data folder. Writes results.csv/.json/.md
(the Markdown pivots robust accuracy by budget; every CSV/JSON row names the model file and its sha256, the data set,
split and image count, and the attack's settings), accuracy_vs_budget.png and run.json under ``--out`` (default: a
new runs/eval_classifier/<model>-<time>; a folder holding another run is refused unless --resume or --overwrite).
Each attack at each budget is a cell kept as soon as it finishes: Ctrl-C or SIGTERM writes the partial tables and
exits 130, and ``--resume --out DIR`` runs only the missing cells.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from classifiers.data import dataset_spec
from classifiers.evaluation import ATTACK_NAMES, EvaluationSettings, build_attacks
from classifiers.evaluation.cells import TensorCells
from classifiers.evaluation.plots import plot_accuracy_vs_budget
from classifiers.evaluation.robustness import CLEAN, run_cells, table_rows
from classifiers.jobs import common
from rlrobust import cli
from rlrobust.attacks.autoattack import VERSIONS
from rlrobust.reporting import pivot, write_tables
from rlrobust.sap import insert_sap

JOB = "eval_classifier"


def build_parser() -> argparse.ArgumentParser:
    """This job's flags."""
    parser = cli.job_parser(__doc__)
    parser.add_argument("--model", type=Path, required=True, help="training checkpoint, akamaster .th or shared model")
    common.add_data_flags(parser)
    parser.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"], choices=ATTACK_NAMES)
    cli.add_budget_flag(parser, "L-inf, on --scale", [0, 1, 2, 4, 8], high=255)
    parser.add_argument(
        "--scale", type=cli.real(1, 255), default=255.0, choices=[1.0, 255.0], help="255: pixel units; 1: [0, 1]"
    )
    parser.add_argument(
        "--iterative-step", type=cli.real(0, 255, low_open=True), default=1.0, help="step of the iterative attack"
    )
    cli.add_steps_flags(parser, pgd_steps=20, apgd_steps=100)
    parser.add_argument("--pgd-step-frac", type=cli.real(0, 2, low_open=True), default=0.25, help="PGD step / eps")
    cli.add_count_flag(parser, "--restarts", 1, "PGD restarts")
    cli.add_count_flag(parser, "--apgd-restarts", 1, "APGD restarts")
    cli.add_count_flag(parser, "--apgd-targets", 9, "target classes of apgd-t, fab-t and autoattack")
    cli.add_count_flag(parser, "--fab-steps", 100, "steps of fab-t per target class")
    cli.add_count_flag(parser, "--fab-restarts", 1, "restarts of fab-t")
    cli.add_count_flag(parser, "--square-queries", 5000, "queries of square and of autoattack's Square")
    cli.add_count_flag(parser, "--square-restarts", 1, "restarts of square")
    parser.add_argument(
        "--version", default="standard", choices=VERSIONS, help="AutoAttack version of --attacks autoattack"
    )
    cli.add_count_flag(
        parser, "--rand-eot-samples", 20, "passes per gradient of autoattack --version rand, as AutoAttack's",
        aliases=("--rand-eot",),
    )  # fmt: skip
    parser.add_argument(
        "--sap",
        type=cli.real(0, 10, low_open=True),
        help="insert SAP with this fraction (1.0 = SAP-100) into the target",
    )
    parser.add_argument("--sap-sampling", default="exact", choices=["exact", "independent"])
    cli.add_pass_flags(parser, 1, 1, eot_aliases=("--eot",))
    parser.add_argument("--transfer-from", type=Path, help="compute the attacks on this model instead")
    cli.add_count_flag(parser, "--batch-size", 256, "images per batch")
    common.add_common_flags(parser, JOB)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, checked against each other."""
    parser = build_parser()
    args = cli.parse_checked(parser, argv)
    if any(e > args.scale for e in args.eps):
        parser.error(f"--eps must lie in [0, {args.scale:g}] (the --scale)")
    if args.iterative_step > args.scale:
        parser.error(f"--iterative-step must lie in (0, {args.scale:g}] (the --scale)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = common.setup(args)
    data = common.load_data(args).to(device)
    targeted = {"apgd-t", "fab-t"} | ({"autoattack"} if args.version != "rand" else set())
    if targeted & set(args.attacks) and args.apgd_targets > data.num_classes - 1:
        raise ValueError(f"--apgd-targets {args.apgd_targets} but {data.name} has only {data.num_classes - 1} wrong "
                         "classes to target")  # fmt: skip
    model = common.load_model(args.model, data, device)
    source = common.load_model(args.transfer_from, data, device) if args.transfer_from else None
    generators = []
    if args.sap is not None:
        generators.append(torch.Generator(device=device).manual_seed(args.seed))
        model = insert_sap(copy.deepcopy(model), args.sap, sampling=args.sap_sampling, generator=generators[0])
    attacks = build_attacks(args.attacks, [e / args.scale for e in args.eps], evaluation_settings(args))
    split = args.split or dataset_spec(args.dataset).test_split
    ids = {**common.model_id(args.model), "dataset": args.dataset, "split": split}
    if args.transfer_from:
        ids.update({f"transfer_{k}": v for k, v in common.model_id(args.transfer_from).items()})
    settings = common.run_settings(args, **ids, data=data.name, image_count=len(data))
    inputs = {"model": args.model, "data": f"{data.name} ({len(data)} images)"}
    if args.transfer_from:
        inputs["transfer_from"] = args.transfer_from
    with common.run_folder(args, JOB, args.model.stem, settings, inputs) as out:
        cells = TensorCells(out, settings)
        transfer = source is not None
        try:
            run_cells(model, data, attacks, cells, batch_size=args.batch_size, samples=args.samples, source=source,
                      seed=args.seed, progress=not args.quiet, generators=generators)  # fmt: skip
            write_outputs(args, out, table_rows(attacks, cells, len(data), transfer=transfer), data, ids)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what finished, say how to go on
            total = 1 + sum(s.eps != 0 for s in attacks)
            partial = f"{len(cells)} of {total} cells"
            write_outputs(args, out, table_rows(attacks, cells, len(data), transfer=transfer), data, ids, partial)
            return common.interrupted_with_cells(out, partial)
    return 0


def evaluation_settings(args: argparse.Namespace) -> EvaluationSettings:
    """The attacks' settings from the flags (steps on [0, 1] images)."""
    return EvaluationSettings(
        iterative_step=args.iterative_step / args.scale,
        pgd_steps=args.pgd_steps,
        pgd_step_frac=args.pgd_step_frac,
        pgd_restarts=args.restarts,
        apgd_steps=args.apgd_steps,
        apgd_restarts=args.apgd_restarts,
        apgd_targets=args.apgd_targets,
        eot=args.eot_samples,
        fab_steps=args.fab_steps,
        fab_restarts=args.fab_restarts,
        square_queries=args.square_queries,
        square_restarts=args.square_restarts,
        version=args.version,
        rand_eot=args.rand_eot_samples,
    )


def write_outputs(
    args: argparse.Namespace, out: Path, rows: list[dict], data, ids: dict[str, str], partial: str = ""
) -> None:
    """The tables (every row naming the model), the plot and TensorBoard scalars; ``partial`` marks an interrupted
    run's tables (no plot or scalars then)."""
    rows = [{**r, **ids} for r in rows]
    target = args.model.name + (f" + SAP-{args.sap * 100:g}" if args.sap is not None else "")
    notes = (
        f"Model {args.model} (sha256 {ids['model_sha256']})"
        + (f" with SAP {args.sap:g}" if args.sap is not None else "")
        + f"; {len(data)} images of {data.name}; L-inf budgets in 0-255 units (eps_255). robust_accuracy = correct on "
        f"the clean image and the attacked one. PGD: {args.pgd_steps} steps of {args.pgd_step_frac:g} eps, random "
        f"start, {args.restarts} restart(s); APGD: {args.apgd_steps} steps, {args.apgd_restarts} restart(s); "
        f"APGD-T and FAB-T: {args.apgd_targets} target classes; FAB-T: {args.fab_steps} steps, {args.fab_restarts} "
        f"restart(s); Square: {args.square_queries} queries, {args.square_restarts} restart(s); AutoAttack version "
        f"{args.version} (rand: EOT over {args.rand_eot_samples} passes); "
        f"predictions: mean softmax of {args.samples} pass(es); gradients: EOT over {args.eot_samples} pass(es); seed "
        f"{args.seed}."
        + (f" Attacks computed on {args.transfer_from} (transfer)." if args.transfer_from else "")
        + "".join(f" Note: {n}." for n in data.notes)
        + (f" PARTIAL: interrupted after {partial}; resume with --resume --out {out}." if partial else "")
    )
    title = f"Robustness of {target}" + (f" (partial: {partial})" if partial else "")
    if not rows:
        print(f"no finished cells yet in {out}")
        return
    wide = pivot([r for r in rows if r["attack"] != CLEAN], ("attack",), "eps_255", "robust_accuracy")
    clean = next(r["robust_accuracy"] for r in rows if r["attack"] == CLEAN)
    wide.insert(0, {k: (CLEAN if k == "attack" else clean) for k in (wide[0] if wide else {"attack": ""})})
    paths = write_tables(rows, out, title=title, notes=notes, markdown_rows=wide)
    if partial:
        return
    png = plot_accuracy_vs_budget(rows, out / "accuracy_vs_budget.png", title=target)
    with SummaryWriter(str(out / "tensorboard")) as writer:
        for r in rows:
            writer.add_scalar(f"robust_accuracy/{r['attack']}", r["robust_accuracy"], round(r["eps_255"]))
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}; plot: {png}")
