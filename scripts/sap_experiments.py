"""The SAP paper's image experiments: accuracy against the FGSM budget lambda for the dense model, SAP-k, the other
post-hoc stochastic defences, ADV and ADV+SAP, under the paper's attacks (Monte-Carlo FGSM, transfer from the dense
model, the iterative attack) and an adaptive one (EOT-PGD), with calibration. ($SHARED: ../shared/data)

    python scripts/sap_experiments.py --model $SHARED/cifar10_models/akamaster_pytorch_resnet_cifar10/resnet20-*.th
    python scripts/sap_experiments.py --model dense.pt --adv-model adv.pt --samples 100 --mc-samples 1 10 100 1000
    python scripts/sap_experiments.py --model dense.pt --models dense SAP:1.0 --lambdas 0 1 2 4 --samples 10

Models are written ``dense``, ``adv`` or ``[adv+]DEFENCE:VALUE`` (``SAP:1.0`` is SAP-100; ``DRO:0.1``, ``RNA:0.1``,
``RSA:0.1``, ``RNW:0.01``, ``RSW:0.1``, ``DWP:0.5``, ``SWP:1.0``). Budgets are lambda on the 0-255 scale. Writes under
``--out``: results.csv/.json/.md (accuracy and ECE of every model, attack and lambda), calibration.* (ECE of the
paper's attack), reliability_bins.*, paper_comparison.* (ours beside the paper's numbers), accuracy_vs_lambda.png,
calibration.png and TensorBoard scalars.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.experiments import cli
from classifiers.experiments.calibration_report import reliability_rows, result_rows
from classifiers.experiments.figures import write_scalars
from classifiers.experiments.paper import comparison_rows
from classifiers.experiments.sap_figures import plot_accuracy, plot_reliability
from classifiers.experiments.sap_grid import PAPER_LAMBDAS, GridSettings, run_grid
from classifiers.experiments.variants import parse_variant
from rlrobust.reporting import pivot, write_tables

DEFAULT_MODELS = ["dense", "SAP:0.5", "SAP:1.0", "SAP:2.0", "DRO:0.1", "RNA:0.1", "RSA:0.1", "RNW:0.01", "RSW:0.1"]
DEFAULT_MODELS += ["DWP:0.5", "SWP:1.0"]
ADV_MODELS = ["adv", "adv+SAP:1.0"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the dense model (checkpoint, akamaster .th, ...)")
    parser.add_argument("--adv-model", type=Path, help="the adversarially trained model (adds ADV and ADV+SAP-100)")
    parser.add_argument("--models", nargs="+", help=f"variants (default: {' '.join(DEFAULT_MODELS)} [+ adv ones])")
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(PAPER_LAMBDAS), help="FGSM budgets, 0-255")
    parser.add_argument("--samples", type=int, default=100, help="m: passes per prediction of a stochastic model")
    parser.add_argument("--mc-samples", type=int, nargs="+", default=[100], help="n of the Monte-Carlo FGSM")
    parser.add_argument("--iterative-lambdas", type=float, nargs="*", default=[0, 1, 2, 4])
    parser.add_argument("--iterative-step", type=float, default=1.0, help="k of the iterative attack, 0-255")
    parser.add_argument("--iterative-mc", type=int, default=10, help="passes per iterative gradient on SAP")
    parser.add_argument("--adaptive-lambdas", type=float, nargs="*", default=[2, 8], help="EOT-PGD budgets, 0-255")
    parser.add_argument("--adaptive-steps", type=int, default=10)
    parser.add_argument("--adaptive-eot", type=int, default=10, help="passes per EOT-PGD gradient")
    parser.add_argument("--sap-sampling", default="exact", choices=["exact", "independent"])
    parser.add_argument("--bins", type=int, default=10, help="confidence bins of the calibration")
    parser.add_argument("--batch-size", type=int, default=100)
    cli.add_data_flags(parser)
    cli.add_common_flags(parser, "runs/sap_experiments")
    args = parser.parse_args(argv)
    counts = ("samples", "mc_samples", "iterative_mc", "adaptive_steps", "adaptive_eot", "bins", "batch_size", "images")
    cli.check_counts(parser, args, counts)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = cli.setup(args)
    data = cli.load_data(args).to(device)
    bases = {"dense": cli.load_model(args.model, data, device)}
    if args.adv_model:
        bases["adv"] = cli.load_model(args.adv_model, data, device)
    variants = [parse_variant(t) for t in args.models or DEFAULT_MODELS + (ADV_MODELS if args.adv_model else [])]
    settings = GridSettings(
        lambdas=tuple(args.lambdas),
        samples=args.samples,
        mc_samples=tuple(args.mc_samples),
        iterative_lambdas=tuple(args.iterative_lambdas),
        iterative_step=args.iterative_step,
        iterative_mc=args.iterative_mc,
        adaptive_lambdas=tuple(args.adaptive_lambdas),
        adaptive_steps=args.adaptive_steps,
        adaptive_eot=args.adaptive_eot,
        batch_size=args.batch_size,
        sap_sampling=args.sap_sampling,
    )
    began = time.perf_counter()
    result = run_grid(bases, variants, data, settings, seed=args.seed, progress=not args.quiet)
    write_outputs(args, result, data, time.perf_counter() - began)


def write_outputs(args: argparse.Namespace, result, data, seconds: float) -> None:
    rows = result_rows(result, args.bins)
    bins = reliability_rows(result, args.bins)
    paper_attacks = {(c.variant, c.attack) for c in result.cases if c.paper_attack}
    calibration = [r for r in rows if (r["model"], r["attack"]) in paper_attacks]
    notes = (
        f"Dense model {args.model}"
        + (f", ADV model {args.adv_model}" if args.adv_model else "")
        + f"; {len(data)} images of {data.name}; lambda on the 0-255 scale. Stochastic models: mean softmax of "
        f"{args.samples} passes; SAP sampling {args.sap_sampling}. Iterative: step {args.iterative_step:g}, "
        f"{args.iterative_mc} passes per gradient on SAP. EOT-PGD: {args.adaptive_steps} steps of 0.25 lambda, random "
        f"start, {args.adaptive_eot} passes per gradient. ECE with {args.bins} equal-width bins. Seed {args.seed}; "
        f"{seconds:.0f} s on {args.device}." + "".join(f" Note: {n}." for n in data.notes)
    )
    out = args.out
    paths = write_tables(
        rows, out, "results", title="SAP experiments: accuracy against lambda", notes=notes,
        markdown_rows=pivot(rows, ("model", "attack"), "lambda", "accuracy"),
    )  # fmt: skip
    write_tables(
        calibration, out, "calibration", title="Expected calibration error under the paper's attack", notes=notes,
        markdown_rows=pivot(calibration, ("model", "attack"), "lambda", "ece"),
    )  # fmt: skip
    write_tables(bins, out, "reliability_bins", title="Reliability-diagram bins (paper's attack)")
    comparison = comparison_rows(rows)
    write_tables(
        comparison, out, "paper_comparison", title="Ours beside the SAP paper (its ResNet-20, full test set)",
        notes="The paper's numbers: Dhillon et al. 2018, Sec. 4 and Fig. 1(c). " + notes,
    )  # fmt: skip
    plot_accuracy(rows, out / "accuracy_vs_lambda.png", title=f"{args.model.name}, {len(data)} images")
    plot_reliability(bins, out / "calibration.png", title="calibration under the paper's attack")
    write_scalars(out, rows, lambda r: f"accuracy/{r['model']}/{r['attack']}", "accuracy", lambda r: int(r["lambda"]))
    print(paths["md"].read_text())
    print(f"Results: {out}/results.*, calibration.*, reliability_bins.*, paper_comparison.*; figures: "
          f"{out}/accuracy_vs_lambda.png, {out}/calibration.png; TensorBoard: {out}/tensorboard")  # fmt: skip


if __name__ == "__main__":
    cli.run_main(main)
