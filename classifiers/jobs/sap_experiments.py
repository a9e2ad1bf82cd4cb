"""The SAP paper's image experiments: accuracy against the FGSM budget lambda for the dense model, SAP-k, the other
post-hoc stochastic defences, ADV and ADV+SAP, under the paper's attacks (Monte-Carlo FGSM, transfer from the dense
model, the iterative attack) and adaptive ones (EOT-PGD; on SAP also Square and AutoAttack-rand), with calibration.
($SHARED: ../shared/data)

    python scripts/sap_experiments.py --model $SHARED/cifar10_models/akamaster_pytorch_resnet_cifar10/resnet20-*.th
    python scripts/sap_experiments.py --model dense.pt --adv-model adv.pt --samples 100 --fgsm-eot-samples 1 10 100 1000
    python scripts/sap_experiments.py --model dense.pt --models dense SAP:1.0 --eps 0 1 2 4 --samples 10

Models are written ``dense``, ``adv`` or ``[adv+]DEFENCE:VALUE`` (``SAP:1.0`` is SAP-100; ``DRO:0.1``, ``RNA:0.1``,
``RSA:0.1``, ``RNW:0.01``, ``RSW:0.1``, ``DWP:0.5``, ``SWP:1.0``). Budgets are lambda on the 0-255 scale. Writes under
``--out``: results.csv/.json/.md (accuracy and ECE of every model, attack and lambda), calibration.* (ECE of the
paper's attack), reliability_bins.*, paper_comparison.* (ours beside the paper's numbers), accuracy_vs_lambda.png,
calibration.png, TensorBoard scalars and run.json (default: a new runs/sap_experiments/<model>-<time>; a folder holding
another run is refused unless --resume or --overwrite). Every row names its base model file and sha256. Each (model,
attack, lambda) is a cell kept as soon as it finishes: Ctrl-C or SIGTERM writes the partial tables and exits 130, and
``--resume --out DIR`` runs only the missing cells.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from classifiers.evaluation.cells import TensorCells
from classifiers.experiments.calibration_report import reliability_rows, result_rows
from classifiers.experiments.figures import write_scalars
from classifiers.experiments.paper import comparison_rows
from classifiers.experiments.sap_figures import plot_accuracy, plot_reliability
from classifiers.experiments.sap_grid import (
    ADAPTIVE_ATTACKS,
    PAPER_LAMBDAS,
    GridSettings,
    attack_cases,
    grid_result,
    run_grid,
)
from classifiers.experiments.variants import build_variant, parse_variant
from classifiers.jobs import common
from rlrobust import cli
from rlrobust.reporting import pivot, write_tables

JOB = "sap_experiments"
DEFAULT_MODELS = ["dense", "SAP:0.5", "SAP:1.0", "SAP:2.0", "DRO:0.1", "RNA:0.1", "RSA:0.1", "RNW:0.01", "RSW:0.1"]
DEFAULT_MODELS += ["DWP:0.5", "SWP:1.0"]
ADV_MODELS = ["adv", "adv+SAP:1.0"]


def build_parser() -> argparse.ArgumentParser:
    """This job's flags: every budget is lambda on the 0-255 scale (the paper's), fractions allowed."""
    parser = cli.job_parser(__doc__)
    parser.add_argument("--model", type=Path, required=True, help="the dense model (checkpoint, akamaster .th, ...)")
    parser.add_argument("--adv-model", type=Path, help="the adversarially trained model (adds ADV and ADV+SAP-100)")
    parser.add_argument("--models", nargs="+", help=f"variants (default: {' '.join(DEFAULT_MODELS)} [+ adv ones])")
    cli.add_budget_flag(parser, "lambda of the FGSM attacks, 0-255 scale", list(PAPER_LAMBDAS), high=255,
                        aliases=("--lambdas",))  # fmt: skip
    cli.add_pass_flags(parser, 100, 10, eot_aliases=("--adaptive-eot",))  # EOT-PGD's and Square's passes
    add_budgets(parser, "--iterative-eps", [0, 1, 2, 4], "lambda of the iterative attack", "--iterative-lambdas")
    parser.add_argument("--iterative-step", type=cli.real(0, 255, low_open=True), default=1.0, help="k, 0-255 scale")
    cli.add_count_flag(parser, "--iterative-eot-samples", 10, "passes per gradient of the iterative attack on SAP",
                       aliases=("--iterative-mc",))  # fmt: skip
    parser.add_argument(
        "--fgsm-eot-samples", type=cli.count(1), nargs="+", default=[100], metavar="N",
        help="n of the Monte-Carlo FGSM (passes per gradient), one attack per n",
    )  # fmt: skip
    cli.alias(parser, "--mc-samples", "--fgsm-eot-samples")
    add_budgets(parser, "--adaptive-eps", [2, 8], "lambda of the adaptive attacks", "--adaptive-lambdas")
    cli.add_steps_flags(parser, pgd_steps=10, apgd_steps=100, pgd_aliases=("--adaptive-steps",))
    cli.alias(parser, "--rand-steps", "--apgd-steps")  # AutoAttack-rand's APGD
    parser.add_argument(
        "--adaptive-attacks", nargs="+", choices=ADAPTIVE_ATTACKS, default=list(ADAPTIVE_ATTACKS),
        help="adaptive attacks (square and autoattack-rand: on the SAP variants)",
    )  # fmt: skip
    cli.add_count_flag(parser, "--square-queries", 5000, "Square's queries, as AutoAttack's")
    cli.add_count_flag(parser, "--rand-eot-samples", 20, "AutoAttack-rand's passes per gradient, as AutoAttack's",
                       aliases=("--rand-eot",))  # fmt: skip
    parser.add_argument("--sap-sampling", default="exact", choices=["exact", "independent"])
    parser.add_argument("--bins", type=cli.count(1, 1000), default=10, help="confidence bins of the calibration")
    cli.add_count_flag(parser, "--batch-size", 100, "images per batch")
    common.add_data_flags(parser)
    common.add_common_flags(parser, JOB)
    return parser


def add_budgets(parser: argparse.ArgumentParser, flag: str, default: list[float], help: str, old: str) -> None:
    """A list of budgets (0-255 scale, fractions allowed, possibly none) under ``flag``, hidden alias ``old``."""
    parser.add_argument(flag, type=cli.real(0, 255), nargs="*", default=default, metavar="EPS", help=f"{help}, 0-255")
    cli.alias(parser, old, flag)


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_checked(build_parser(), argv)
    variants = [parse_variant(t) for t in args.models or DEFAULT_MODELS + (ADV_MODELS if args.adv_model else [])]
    settings = grid_settings(args)
    device = common.setup(args)
    data = common.load_data(args).to(device)
    bases = {"dense": common.load_model(args.model, data, device)}
    if args.adv_model:
        bases["adv"] = common.load_model(args.adv_model, data, device)
    for variant in variants:  # refuse a variant that cannot be built before any folder is claimed
        build_variant(variant, bases, None, sap_sampling=settings.sap_sampling)
    ids = {"dense": common.model_id(args.model), **({"adv": common.model_id(args.adv_model)} if args.adv_model else {})}
    flat = {f"{base}_{k}": v for base, facts in ids.items() for k, v in facts.items()}
    run_settings = common.run_settings(args, **flat, data=data.name, image_count=len(data))
    inputs = {"model": args.model, "data": f"{data.name} ({len(data)} images)"}
    if args.adv_model:
        inputs["adv_model"] = args.adv_model
    cases = [c for v in variants for c in attack_cases(v, settings)]
    total = len(variants) + sum(1 for c in cases for lam in c.lambdas if lam)
    with common.run_folder(args, JOB, args.model.stem, run_settings, inputs) as out:
        cells = TensorCells(out, run_settings)
        began = time.perf_counter()
        try:
            result = run_grid(bases, variants, data, settings, seed=args.seed, progress=not args.quiet, cells=cells)
            write_outputs(args, out, result, data, time.perf_counter() - began, ids)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what finished, say how to go on
            partial = f"{len(cells)} of {total} cells"
            result = grid_result(cases, data.labels.cpu(), cells)
            write_outputs(args, out, result, data, time.perf_counter() - began, ids, partial=partial)
            return common.interrupted_with_cells(out, partial)
    return 0


def grid_settings(args: argparse.Namespace) -> GridSettings:
    """The grid's settings from the flags."""
    return GridSettings(
        lambdas=tuple(args.eps),
        samples=args.samples,
        mc_samples=tuple(args.fgsm_eot_samples),
        iterative_lambdas=tuple(args.iterative_eps),
        iterative_step=args.iterative_step,
        iterative_mc=args.iterative_eot_samples,
        adaptive_lambdas=tuple(args.adaptive_eps),
        adaptive_steps=args.pgd_steps,
        adaptive_eot=args.eot_samples,
        adaptive_attacks=tuple(args.adaptive_attacks),
        square_queries=args.square_queries,
        rand_steps=args.apgd_steps,
        rand_eot=args.rand_eot_samples,
        batch_size=args.batch_size,
        sap_sampling=args.sap_sampling,
    )


def with_ids(rows: list[dict], ids: dict[str, dict[str, str]]) -> list[dict]:
    """Each row with its base model's file name and sha256 (ADV variants: the --adv-model)."""
    out = []
    for row in rows:
        facts = ids["adv" if str(row["model"]).startswith("ADV") else "dense"]
        out.append({**row, "base_model_file": facts["model_file"], "base_model_sha256": facts["model_sha256"]})
    return out


def write_outputs(
    args: argparse.Namespace, out: Path, result, data, seconds: float, ids: dict[str, dict[str, str]], partial: str = ""
) -> None:
    """Every table (rows naming their model), and the figures and scalars once the grid is complete."""
    rows = with_ids(result_rows(result, args.bins), ids)
    bins = with_ids(reliability_rows(result, args.bins), ids)
    paper_attacks = {(c.variant, c.attack) for c in result.cases if c.paper_attack}
    calibration = [r for r in rows if (r["model"], r["attack"]) in paper_attacks]
    notes = (
        f"Dense model {args.model} (sha256 {ids['dense']['model_sha256']})"
        + (f", ADV model {args.adv_model} (sha256 {ids['adv']['model_sha256']})" if args.adv_model else "")
        + f"; {len(data)} images of {data.name}; lambda on the 0-255 scale. Stochastic models: mean softmax of "
        f"{args.samples} passes; SAP sampling {args.sap_sampling}. Iterative: step {args.iterative_step:g}, "
        f"{args.iterative_eot_samples} passes per gradient on SAP. EOT-PGD: {args.pgd_steps} steps of 0.25 lambda, "
        f"random start, {args.eot_samples} passes per gradient. On SAP also Square ({args.square_queries} queries, "
        f"each the mean of {args.eot_samples} passes) and AutoAttack-rand (APGD-CE, APGD-DLR: {args.apgd_steps} steps, "
        f"EOT over {args.rand_eot_samples} passes), as --adaptive-attacks asks. ECE with {args.bins} equal-width bins. "
        f"Seed {args.seed}; "
        f"{seconds:.0f} s on {args.device}."
        + "".join(f" Note: {n}." for n in data.notes)
        + (f" PARTIAL: interrupted after {partial}; resume with --resume --out {out}." if partial else "")
    )
    mark = f" (partial: {partial})" if partial else ""
    paths = write_tables(
        rows, out, "results", title="SAP experiments: accuracy against lambda" + mark, notes=notes,
        markdown_rows=pivot(rows, ("model", "attack"), "lambda", "accuracy"),
    )  # fmt: skip
    write_tables(
        calibration, out, "calibration", title="Expected calibration error under the paper's attack" + mark,
        notes=notes, markdown_rows=pivot(calibration, ("model", "attack"), "lambda", "ece"),
    )  # fmt: skip
    write_tables(bins, out, "reliability_bins", title="Reliability-diagram bins (paper's attack)" + mark)
    comparison = with_ids(comparison_rows(rows), ids)
    write_tables(
        comparison, out, "paper_comparison", title="Ours beside the SAP paper (its ResNet-20, full test set)" + mark,
        notes="The paper's numbers: Dhillon et al. 2018, Sec. 4 and Fig. 1(c). " + notes,
    )  # fmt: skip
    if partial:
        return
    plot_accuracy(rows, out / "accuracy_vs_lambda.png", title=f"{args.model.name}, {len(data)} images")
    plot_reliability(bins, out / "calibration.png", title="calibration under the paper's attack")
    write_scalars(out, rows, lambda r: f"accuracy/{r['model']}/{r['attack']}", "accuracy", lambda r: int(r["lambda"]))
    print(paths["md"].read_text())
    print(f"Results: {out}/results.*, calibration.*, reliability_bins.*, paper_comparison.*; figures: "
          f"{out}/accuracy_vs_lambda.png, {out}/calibration.png; TensorBoard: {out}/tensorboard")  # fmt: skip


def run(argv: list[str] | None = None) -> None:
    """The command line: :func:`main`, a user error ending it with one ``error: ...`` line and status 2."""
    common.run_main(lambda: main(argv))
