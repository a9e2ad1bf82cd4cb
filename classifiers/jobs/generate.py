"""Generate images from a (robust) classifier read as an energy-based model, WEAT's recipe: per class, SGLD with
momentum down E(x, y) from a class-wise PCA sample of the training images.

    python scripts/generate.py --model $SHARED/cifar10_robust_models/alpha-beta-CROWN/resnet4b.pth --classes 0 1 \
        --per-class 16 --steps 50
    python scripts/generate.py --model runs/weat/best_robust.pt --dataset cifar10 --data-dir data --split train \
        --inception-weights weights-inception-2015-12-05-6726825d.pth          # also IS and FID

The PCA is fitted on ``--split`` of ``--dataset`` (default: its training split, else its test split; the shared CIFAR-10
images have only a test split). Writes under ``--out``: samples.pt (uint8 NHWC images, labels), class_<k>.png grids
(PCA starts above samples), energy_trace.png, generation.csv/.json/.md, TensorBoard, and fidelity.json when IS/FID are
computed, and run.json (default: a new runs/generate/<model>-<time>; a folder holding another run is refused unless
--resume, which reruns it with the same settings, or --overwrite). Every table row names the model file and its
sha256. IS/FID need torch-fidelity and its Inception weights file, which nothing here downloads. ($SHARED:
../shared/data)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from classifiers.data import dataset_spec
from classifiers.experiments.fidelity import check_inception_weights, import_torch_fidelity, inception_metrics
from classifiers.experiments.figures import write_scalars
from classifiers.experiments.sampling import (
    SamplerSettings,
    generate,
    plot_class_grid,
    plot_energy_traces,
    sample_rows,
    save_samples,
    stacked,
)
from classifiers.jobs import common
from rlrobust import cli
from rlrobust.cli import count, real
from rlrobust.reporting import atomic_write_text, write_tables

JOB = "generate"


def build_parser() -> argparse.ArgumentParser:
    """This job's flags."""
    defaults = SamplerSettings()
    parser = cli.job_parser(__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--classes", type=count(0), nargs="+", help="class indices (default: all)")
    parser.add_argument("--per-class", type=count(1, 100_000), default=defaults.per_class, help="samples per class")
    parser.add_argument("--steps", type=count(1), default=defaults.steps, help="SGLD steps")
    parser.add_argument(
        "--step-size", type=real(0, 1000, low_open=True), default=defaults.step_size, help="SGLD step size eta"
    )
    parser.add_argument("--momentum", type=real(0, 1, high_open=True), default=defaults.momentum)
    parser.add_argument("--noise-std", type=real(0, 1), default=defaults.noise_std, help="sigma of the SGLD noise")
    parser.add_argument(
        "--retained-variance", type=real(0, 1, low_open=True), default=defaults.retained_variance, help="PCA variance"
    )
    parser.add_argument("--pca-sigma", type=real(0, 100), default=defaults.pca_sigma, help="spread of the PCA start")
    parser.add_argument("--max-fit-images", type=count(2), default=defaults.max_fit_images, help="PCA images per class")
    parser.add_argument("--inception-weights", type=Path, help="torch-fidelity's Inception file: adds IS and FID")
    parser.add_argument("--reference-images", type=count(1), default=10000, help="FID reference images (first N)")
    common.add_data_flags(parser, split_help="default: the training split, else the test split")
    common.add_common_flags(parser, JOB)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_checked(build_parser(), argv)
    if args.inception_weights is not None:  # fail before the sampling, not after it
        check_inception_weights(args.inception_weights)
        import_torch_fidelity()
    device = common.setup(args)
    spec = dataset_spec(args.dataset)
    train = common.load_data(args, args.split or spec.train_split or spec.test_split)
    model = common.load_model(args.model, train, device)
    classes = args.classes if args.classes is not None else list(range(train.num_classes))
    bad = [c for c in classes if c >= train.num_classes]
    if bad:
        raise ValueError(f"--classes {bad} outside [0, {train.num_classes}) of {train.name}")
    settings = SamplerSettings(
        steps=args.steps,
        step_size=args.step_size,
        momentum=args.momentum,
        noise_std=args.noise_std,
        retained_variance=args.retained_variance,
        pca_sigma=args.pca_sigma,
        per_class=args.per_class,
        max_fit_images=args.max_fit_images,
    )
    ids = common.model_id(args.model)
    run_settings = common.run_settings(args, **ids, data=train.name, image_count=len(train))
    inputs = {"model": args.model, "data": f"{train.name} ({len(train)} images)"}
    if args.inception_weights is not None:
        inputs["inception_weights"] = args.inception_weights
    with common.run_folder(args, JOB, args.model.stem, run_settings, inputs) as out:
        try:
            results = generate(model, train, classes, settings, seed=args.seed, progress=not args.quiet)
            write_outputs(args, out, model, train, results, ids, device)
        except KeyboardInterrupt:
            return common.interrupted(out)
    return 0


def write_outputs(args: argparse.Namespace, out: Path, model, train, results, ids: dict[str, str], device) -> None:
    """Samples, grids, the table (rows naming the model), traces and, with Inception weights, IS and FID."""
    rows = [{**r, **ids} for r in sample_rows(model, results)]
    notes = (
        f"Model {args.model} (sha256 {ids['model_sha256']}); PCA of {train.name} ({args.retained_variance:g} of the "
        f"variance, start spread {args.pca_sigma:g}); SGLD {args.steps} steps, step size {args.step_size:g}, momentum "
        f"{args.momentum:g}, noise std {args.noise_std:g}; seed {args.seed}. E(x,y) = -f(x)[y]; lower is more likely "
        "under the model."
    )
    paths = write_tables(rows, out, "generation", title="Samples from the classifier's energy", notes=notes)
    save_samples(results, out / "samples.pt")
    for r in results:
        plot_class_grid(r, out / f"class_{r.label}.png")
    plot_energy_traces(results, out / "energy_trace.png")
    trace_rows = [{"class": r.name, "step": i, "E(x,y)": e} for r in results for i, e in enumerate(r.energy_trace)]
    write_scalars(out, trace_rows, lambda r: f"sgld_energy/{r['class']}", "E(x,y)", lambda r: r["step"])
    print(paths["md"].read_text())
    if args.inception_weights is not None:
        samples = stacked(results)[0]
        reference = train.images[: args.reference_images]
        scores = inception_metrics(samples, reference, args.inception_weights, cuda=device.type == "cuda")
        atomic_write_text(out / "fidelity.json", json.dumps({**scores, **ids}, indent=2) + "\n")
        print(f"IS {scores['inception_score']:.3f} +- {scores['inception_score_std']:.3f}, FID {scores['fid']:.2f}")
    else:
        print("IS/FID not computed: pass --inception-weights weights-inception-2015-12-05-6726825d.pth to add them.")
    print(f"Samples: {out}/samples.pt; grids: {out}/class_*.png; table: {paths['md']}")
