"""Evaluate a classifier's robustness: clean accuracy and FGSM / iterative / PGD / APGD over budgets, with EOT for
stochastic models (e.g. with SAP inserted) and transfer attacks from another model.

    python scripts/eval_classifier.py --model ../shared/data/cifar10_robust_models/alpha-beta-CROWN/resnet4b.pth
    python scripts/eval_classifier.py --model runs/classifier/best_robust.pt --dataset cifar10 --data-dir data \
        --attacks pgd apgd-ce apgd-dlr apgd-t --eps 8 --scale 255
    python scripts/eval_classifier.py --model resnet20-12fca82f.th --attacks fgsm iterative \
        --eps 0 1 2 4 8 16 32 64 --sap 1.0 --samples 100 --eot 10       # the SAP paper's table, adaptively
    python scripts/eval_classifier.py --model sap_target.pt --transfer-from dense.pt --attacks pgd --eps 8

Budgets are L-inf on the ``--scale`` (255: the SAP paper's lambda in pixel units; 1: eps on [0, 1] images). The
default data are the 1,017 lossless real CIFAR-10 test images of the shared data folder. Writes results.csv/.json/.md
(the Markdown pivots robust accuracy by budget) and accuracy_vs_budget.png under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.data import DATASETS, dataset_spec, load_dataset
from classifiers.evaluation import ATTACK_NAMES, EvaluationSettings, build_attacks, evaluate_robustness
from classifiers.evaluation.plots import plot_accuracy_vs_budget
from classifiers.models import load_classifier
from rlrobust.cli import run_main
from rlrobust.reporting import pivot, write_tables
from rlrobust.sap import insert_sap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="training checkpoint, akamaster .th or shared model")
    parser.add_argument("--dataset", default="cifar10-shared", choices=sorted(DATASETS))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--split", help="default: the dataset's test split")
    parser.add_argument("--images", type=int, help="evaluate the first N images (default: all)")
    parser.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"], choices=ATTACK_NAMES)
    parser.add_argument("--eps", type=float, nargs="+", default=[0, 1, 2, 4, 8], help="budgets on --scale")
    parser.add_argument("--scale", type=float, default=255.0, choices=[1.0, 255.0], help="255: pixel units; 1: [0, 1]")
    parser.add_argument("--iterative-step", type=float, default=1.0, help="step of the iterative attack, on --scale")
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--pgd-step-frac", type=float, default=0.25, help="PGD step as a fraction of eps")
    parser.add_argument("--restarts", type=int, default=1, help="PGD restarts")
    parser.add_argument("--apgd-steps", type=int, default=100)
    parser.add_argument("--apgd-restarts", type=int, default=1)
    parser.add_argument("--apgd-targets", type=int, default=9, help="target classes of apgd-t")
    parser.add_argument("--sap", type=float, help="insert SAP with this fraction (1.0 = SAP-100) into the target")
    parser.add_argument("--sap-sampling", default="exact", choices=["exact", "independent"])
    parser.add_argument("--samples", type=int, default=1, help="passes per prediction (mean softmax)")
    parser.add_argument("--eot", type=int, default=1, help="passes per attack gradient (EOT)")
    parser.add_argument("--transfer-from", type=Path, help="compute the attacks on this model instead")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/eval_classifier"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    counts = ("images", "pgd_steps", "restarts", "apgd_steps", "apgd_restarts", "apgd_targets", "samples", "eot")
    for name in counts:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if any(e < 0 or e > args.scale for e in args.eps):
        parser.error(f"--eps must lie in [0, {args.scale:g}] (the --scale)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    spec = dataset_spec(args.dataset)
    data = load_dataset(args.dataset, args.split or spec.test_split, args.data_dir)
    if args.images:
        data = data.subset(slice(0, args.images))
    data = data.to(args.device)
    model = load_classifier(args.model, num_classes=data.num_classes).to(args.device)
    source = None
    if args.transfer_from:
        source = load_classifier(args.transfer_from, num_classes=data.num_classes).to(args.device)
    if args.sap is not None:
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        model = insert_sap(copy.deepcopy(model), args.sap, sampling=args.sap_sampling, generator=generator)
    settings = EvaluationSettings(
        iterative_step=args.iterative_step / args.scale,
        pgd_steps=args.pgd_steps,
        pgd_step_frac=args.pgd_step_frac,
        pgd_restarts=args.restarts,
        apgd_steps=args.apgd_steps,
        apgd_restarts=args.apgd_restarts,
        apgd_targets=args.apgd_targets,
        eot=args.eot,
    )
    attacks = build_attacks(args.attacks, [e / args.scale for e in args.eps], settings)
    rows = evaluate_robustness(
        model,
        data,
        attacks,
        batch_size=args.batch_size,
        samples=args.samples,
        source=source,
        seed=args.seed,
        progress=not args.quiet,
    )
    write_outputs(args, rows, data)


def write_outputs(args: argparse.Namespace, rows: list[dict], data) -> None:
    target = args.model.name + (f" + SAP-{args.sap * 100:g}" if args.sap is not None else "")
    notes = (
        f"Model {args.model}{' with SAP ' + str(args.sap) if args.sap is not None else ''}; {len(data)} images of "
        f"{data.name}; L-inf budgets in 0-255 units (eps_255). robust_accuracy = correct on the clean image and the "
        f"attacked one. PGD: {args.pgd_steps} steps of {args.pgd_step_frac:g} eps, random start, {args.restarts} "
        f"restart(s); APGD: {args.apgd_steps} steps, {args.apgd_restarts} restart(s); predictions: mean softmax of "
        f"{args.samples} pass(es); gradients: EOT over {args.eot} pass(es)."
        + (f" Attacks computed on {args.transfer_from} (transfer)." if args.transfer_from else "")
        + "".join(f" Note: {n}." for n in data.notes)
    )
    wide = pivot([r for r in rows if r["attack"] != "clean"], ("attack",), "eps_255", "robust_accuracy")
    clean = next(r["robust_accuracy"] for r in rows if r["attack"] == "clean")
    wide.insert(0, {k: ("clean" if k == "attack" else clean) for k in (wide[0] if wide else {"attack": ""})})
    paths = write_tables(rows, args.out, title=f"Robustness of {target}", notes=notes, markdown_rows=wide)
    png = plot_accuracy_vs_budget(rows, args.out / "accuracy_vs_budget.png", title=target)
    with SummaryWriter(str(args.out / "tensorboard")) as writer:
        for r in rows:
            writer.add_scalar(f"robust_accuracy/{r['attack']}", r["robust_accuracy"], round(r["eps_255"]))
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}; plot: {png}")


if __name__ == "__main__":
    run_main(main)
