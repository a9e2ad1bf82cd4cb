"""Benchmark of the core against its peer, on the same model and batch in one run.

Attacks: FGSM, PGD-10 and EOT-PGD (n = 10 stochastic passes per step, on the model with SAP-100) -- ours
against torchattacks. SAP: the forward time of SAP-100 (exact and independent sampling) against the dense
forward. Models: the SAP paper's ResNet-20 (32x32 images in [0, 1]) and the Nature DQN (4x84x84 frames on the
0-255 scale; torchattacks only knows [0, 1], so it attacks the same network behind a x255 input layer).
AutoAttack-standard (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020): ours against torchattacks' ``AutoAttack``
on the shared adversarially trained CIFAR-10 CNN-A-Adv and the first lossless test images (a random ResNet-20 on
random images without the shared data), seconds and robust accuracy of each, since AutoAttack's time depends on how
many inputs survive each stage. Both run at the published 100 steps and at torchattacks' default of 10.

    python benchmarks/bench_core.py                  # small batches on a CPU, large ones on a GPU
    python benchmarks/bench_core.py --sections autoattack --threads 1 --autoattack-eps 2/255 8/255
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from agents import NatureQNetwork
from classifiers.data import load_dataset, to_float
from classifiers.models import load_classifier, resnet20
from rlrobust import cli
from rlrobust.attacks import fgsm, pgd
from rlrobust.attacks.autoattack import autoattack_stages, run_stages
from rlrobust.cli import shared_data_dir
from rlrobust.files import sha256_of
from rlrobust.reporting import markdown_table
from rlrobust.sap import insert_sap

try:
    import torchattacks
except ImportError:  # the table then shows our times alone
    torchattacks = None


class FromUnitRange(nn.Module):
    """Feeds [0, 1] inputs to a network that expects 0-255 frames (for torchattacks' fixed range)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 255.0)


def timed_pair(
    ours: Callable[[], object],
    peer: Callable[[], object] | None,
    device: str,
    min_repeats: int,
    seconds: float,
) -> tuple[float, float, int]:
    """Median wall times in ms of ``ours`` and ``peer``, run alternately after one warm-up run of each.

    Alternation spreads machine noise over both sides; cheap work is repeated until ``seconds`` have passed
    (at most 30 times), expensive work ``min_repeats`` times. Returns (ours_ms, peer_ms, repeats).
    """

    def once(fn):
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000

    ours()
    if peer:
        peer()
    ours_ms, peer_ms = [], []
    began = time.perf_counter()
    while len(ours_ms) < 30 and (len(ours_ms) < min_repeats or time.perf_counter() - began < seconds):
        ours_ms.append(once(ours))
        if peer:
            peer_ms.append(once(peer))
    return statistics.median(ours_ms), statistics.median(peer_ms) if peer else float("nan"), len(ours_ms)


def attack_rows(name, net, x_unit, scale, device, timing, eot_batch, eot_samples=10):
    """Time our attacks and torchattacks' on ``net``; ``scale`` is the network's input range width."""
    eps, alpha = 8 / 255, 2 / 255
    y = net(x_unit * scale).argmax(1)
    peer_net = net if scale == 1.0 else FromUnitRange(net).eval()
    sap_net = insert_sap(copy.deepcopy(net))
    peer_sap = sap_net if scale == 1.0 else FromUnitRange(sap_net).eval()
    bounds = (0.0, scale)
    x = x_unit * scale
    g = torch.Generator(device=device).manual_seed(0)
    cases = [
        (
            "FGSM",
            lambda: fgsm(net, x, y, eps=eps * scale, bounds=bounds),
            (lambda: torchattacks.FGSM(peer_net, eps=eps)(x_unit, y)) if torchattacks else None,
        ),
        (
            "PGD-10",
            lambda: pgd(net, x, y, eps=eps * scale, step=alpha * scale, steps=10, bounds=bounds, generator=g),
            (lambda: torchattacks.PGD(peer_net, eps=eps, alpha=alpha, steps=10)(x_unit, y)) if torchattacks else None,
        ),
        (
            f"EOT-PGD-10 (n={eot_samples}) on SAP-100",
            lambda: pgd(
                sap_net,
                x,
                y,
                eps=eps * scale,
                step=alpha * scale,
                steps=10,
                bounds=bounds,
                eot_samples=eot_samples,
                eot_batch_size=eot_batch,
                generator=g,
            ),
            (lambda: torchattacks.EOTPGD(peer_sap, eps=eps, alpha=alpha, steps=10, eot_iter=eot_samples)(x_unit, y))
            if torchattacks
            else None,
        ),
    ]
    rows = []
    for attack, ours, theirs in cases:
        ours_ms, theirs_ms, runs = timed_pair(ours, theirs, device, *timing)
        rows.append(
            {
                "model": name,
                "batch": x.shape[0],
                "work": attack,
                "ours_ms": round(ours_ms, 1),
                "peer": "torchattacks",
                "peer_ms": round(theirs_ms, 1),
                "ours/peer": round(ours_ms / theirs_ms, 2),
                "runs": runs,
            }
        )
    return rows


@torch.no_grad()
def sap_rows(name, net, x, device, timing):
    rows = []
    for sampling in ("exact", "independent"):
        sap_net = insert_sap(copy.deepcopy(net), sampling=sampling)
        sap_ms, dense_ms, runs = timed_pair(lambda m=sap_net: m(x), lambda: net(x), device, *timing)
        rows.append(
            {
                "model": name,
                "batch": x.shape[0],
                "work": f"SAP-100 forward ({sampling})",
                "ours_ms": round(sap_ms, 1),
                "peer": "dense forward",
                "peer_ms": round(dense_ms, 1),
                "ours/peer": round(sap_ms / dense_ms, 2),
                "runs": runs,
            }
        )
    return rows


#: AutoAttack's published iteration count for APGD, APGD-T and FAB (Croce & Hein 2020), and torchattacks 3.5.1's
#: default for the same attacks inside its ``AutoAttack`` (it does not raise them to the published 100).
PUBLISHED_STEPS, TORCHATTACKS_STEPS = 100, 10
SECTIONS = ("attacks", "sap", "autoattack")
AUTOATTACK_MODEL = "cifar10_robust_models/alpha-beta-CROWN/cifar_cnn_a_adv.model"


@dataclass(frozen=True)
class AutoAttackInputs:
    """The model and labelled images both AutoAttacks attack, and what they are (for the table)."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    name: str
    data: str
    sha256: str | None = None


def autoattack_inputs(model_path: Path | None, images: int, device: str) -> AutoAttackInputs:
    """The shared robust CIFAR-10 model on the first ``images`` lossless test images, or, where the shared data is
    absent and no model was named, a random ResNet-20 on random images labelled with its own predictions.

    The images are made contiguous (NCHW): torchattacks' FAB calls ``view`` on the input gradient, which fails on
    the channels-last layout our loader keeps.
    """
    path = model_path or shared_data_dir() / AUTOATTACK_MODEL
    try:
        model = load_classifier(path).to(device).eval()
        data = load_dataset("cifar10-shared", "test")
    except FileNotFoundError:
        if model_path is not None:
            raise
        net = resnet20().to(device).eval()
        x = torch.rand(images, 3, 32, 32, device=device)
        with torch.no_grad():
            y = net(x).argmax(1)
        return AutoAttackInputs(net, x, y, "ResNet-20 (random weights)", "random images")
    n = min(images, len(data))
    x = to_float(data.images[:n]).contiguous().to(device)
    data_name = "cifar10-shared test (lossless)"
    return AutoAttackInputs(model, x, data.labels[:n].to(device), path.name, data_name, sha256_of(path))


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Which rows ``model`` classifies correctly (the same measure for both sides)."""
    with torch.no_grad():
        return model(x).argmax(1) == y


def checked_robust_accuracy(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, eps: float):
    """Robust accuracy of ``x_adv``, refusing a batch that left the L-inf ball or [0, 1] (its accuracy is void)."""
    if (x_adv - x).abs().max() > eps + 1e-6 or x_adv.min() < 0 or x_adv.max() > 1:
        raise ValueError(f"an attack left the eps={eps:.5f} L-inf ball or [0, 1]")
    return correct(model, x_adv, y).float().mean().item()


def peer_autoattack(model: nn.Module, eps: float, steps: int, skip_fab: bool, queries: int = 5000):
    """torchattacks' ``AutoAttack`` standard (Linf, seed 0), its APGD, APGD-T and FAB-T run for ``steps``
    iterations and its Square for ``queries``; without FAB-T where ``skip_fab`` (its APGD-CE, APGD-T and Square)."""
    peer = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
    stages = peer._autoattack.attacks
    for stage in stages:
        if hasattr(stage, "steps"):
            stage.steps = steps
        if hasattr(stage, "n_queries"):
            stage.n_queries = queries
    if skip_fab:
        stages[:] = [s for s in stages if type(s).__name__ != "FAB"]
    return peer


def timed(fn: Callable[[], torch.Tensor], device: str) -> tuple[torch.Tensor, float]:
    """``fn()`` and its wall time in seconds (once: AutoAttack runs for seconds, not milliseconds)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def autoattack_pair(inputs: AutoAttackInputs, eps: float, steps: int, device: str, queries: int = 5000) -> dict:
    """One row: our AutoAttack-standard against torchattacks' at the same budget and steps, in the same run.

    If torchattacks raises (its FAB fails on some models with torch 2.13), both sides drop FAB-T and the note says
    why; without torchattacks our side alone is reported.
    """
    model, x, y = inputs.model, inputs.x, inputs.y
    stages = autoattack_stages("standard", steps=steps, queries=queries)
    row = {
        "model": inputs.name,
        "images": x.shape[0],
        "eps": f"{round(eps * 255, 2):g}/255",
        "steps": steps,
        "queries": queries,
        "clean": round(correct(model, x, y).float().mean().item(), 4),
    }
    note = ""
    theirs = None
    if torchattacks is not None:
        try:
            theirs = timed(lambda: peer_autoattack(model, eps, steps, False, queries)(x, y), device)
        except Exception as err:  # any failure of the peer is reported, not fatal
            note = f"torchattacks raised {type(err).__name__}: {str(err).splitlines()[0][:80]}; both without FAB-T"
            stages = [s for s in stages if s.name != "fab-t"]
            try:
                theirs = timed(lambda: peer_autoattack(model, eps, steps, True, queries)(x, y), device)
            except Exception as again:  # then our side alone, and why
                note = f"torchattacks raised {type(again).__name__} even without FAB-T: pair skipped"
                return row | {"note": note}
    g = torch.Generator(device=device).manual_seed(0)
    (x_ours, log), ours_s = timed(
        lambda: run_stages(model, x, y, stages, eps=eps, norm="linf", bounds=(0.0, 1.0), generator=g), device
    )
    ours_acc = checked_robust_accuracy(model, x, x_ours, y, eps)
    row |= {"attacks": "+".join(s.name for s in stages), "ours_s": round(ours_s, 1), "ours_robust": round(ours_acc, 4)}
    row["ours_after_each"] = " ".join(f"{e['robust_accuracy']:.3f}" for e in log[1:])
    row["ours_stage_s"] = " ".join(f"{e['seconds']:.1f}" for e in log[1:])
    if theirs is not None:
        peer_acc = checked_robust_accuracy(model, x, theirs[0], y, eps)
        row |= {"peer": "torchattacks", "peer_s": round(theirs[1], 1), "peer_robust": round(peer_acc, 4)}
        row |= {"diff_points": round(100 * (ours_acc - peer_acc), 1), "ours/peer": round(ours_s / theirs[1], 2)}
    row["note"] = note or ("" if torchattacks else "torchattacks absent")
    return row


def autoattack_rows(
    inputs: AutoAttackInputs, epsilons: list[float], steps: list[int], device: str, queries: int = 5000
) -> list[dict]:
    """A row per budget and step count; print each as it finishes (a run takes minutes on a CPU)."""
    rows = []
    for eps in epsilons:
        for n in steps:
            rows.append(autoattack_pair(inputs, eps, n, device, queries))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resnet-batch", type=cli.count(), help="default: 512 on a GPU, 16 on a CPU")
    parser.add_argument("--dqn-batch", type=cli.count(), help="default: 256 on a GPU, 16 on a CPU")
    parser.add_argument("--min-repeats", type=cli.count(), default=3, help="timed runs of each at least (alternating)")
    parser.add_argument("--seconds", type=cli.real(0, low_open=True), default=10.0, help="repeat cheap work this long")
    parser.add_argument(
        "--eot-batch", type=cli.count(), default=None, help="rows per forward for EOT (default: core's)"
    )
    parser.add_argument("--eot-samples", type=cli.count(), default=10, help="passes per EOT gradient, both sides")
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="which tables to run (default: all)"
    )
    parser.add_argument(
        "--autoattack-images", type=cli.count(), help="AutoAttack test images (default: 1,000 on a GPU, 64 on a CPU)"
    )
    parser.add_argument(
        "--autoattack-eps", type=cli.real(0, 1, low_open=True), nargs="+", default=[8 / 255], help="L-inf budgets"
    )
    parser.add_argument(
        "--autoattack-steps",
        type=cli.count(),
        nargs="+",
        default=[PUBLISHED_STEPS, TORCHATTACKS_STEPS],
        help="APGD/APGD-T/FAB iterations, the same on both sides (default: 100, AutoAttack's, and 10, torchattacks')",
    )
    parser.add_argument(
        "--autoattack-queries", type=cli.count(), default=5000, help="Square's queries, both sides (default: 5,000)"
    )
    parser.add_argument("--autoattack-model", type=Path, help=f"model file (default: shared {AUTOATTACK_MODEL})")
    parser.add_argument("--threads", type=cli.count(), help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.autoattack_model is not None and not args.autoattack_model.is_file():
        parser.error(f"--autoattack-model: no such file: {args.autoattack_model}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    on_gpu = device.startswith("cuda")
    args.resnet_batch = args.resnet_batch or (512 if on_gpu else 16)
    args.dqn_batch = args.dqn_batch or (256 if on_gpu else 16)
    args.autoattack_images = args.autoattack_images or (1000 if on_gpu else 64)
    resnet = resnet20().to(device).eval()
    dqn = NatureQNetwork(18).to(device).eval()
    images = torch.rand(args.resnet_batch, 3, 32, 32, device=device)
    frames = torch.rand(args.dqn_batch, 4, 84, 84, device=device)

    rows = []
    timing = (args.min_repeats, args.seconds)
    if "attacks" in args.sections:
        rows += attack_rows("ResNet-20", resnet, images, 1.0, device, timing, args.eot_batch, args.eot_samples)
        rows += attack_rows("Nature DQN", dqn, frames, 255.0, device, timing, args.eot_batch, args.eot_samples)
    if "sap" in args.sections:
        rows += sap_rows("ResNet-20", resnet, images, device, timing)
        rows += sap_rows("Nature DQN", dqn, frames * 255, device, timing)
    aa_rows, aa_source = [], {}
    if "autoattack" in args.sections:
        inputs = autoattack_inputs(args.autoattack_model, args.autoattack_images, device)
        aa_source = {"model": inputs.name, "model_sha256": inputs.sha256, "data": inputs.data}
        aa_rows = autoattack_rows(inputs, args.autoattack_eps, args.autoattack_steps, device, args.autoattack_queries)

    label = (
        torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"\ntorch {torch.__version__}, torchattacks {getattr(torchattacks, '__version__', 'absent')}, {label}\n")
    if rows:
        print("Medians of alternating runs after a warm-up\n")
        print(markdown_table(rows))
    if aa_rows:
        print(
            f"AutoAttack-standard (L-inf), ours against torchattacks {getattr(torchattacks, '__version__', '')}'s "
            f"AutoAttack (seed 0) with its APGD/APGD-T/FAB steps set to `steps`, on {aa_source['data']}; one run each, "
            "seconds of wall time; robust accuracy measured alike on both outputs (ours_after_each, ours_stage_s: "
            f"robust accuracy after, and seconds of, each of our attacks); model sha256 {aa_source['model_sha256']}\n"
        )
        print(markdown_table(aa_rows))
    if args.json:
        record = {"device": label, "torch": torch.__version__, "rows": rows}
        record |= {"autoattack": aa_source, "autoattack_rows": aa_rows}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    cli.run_main(main)  # a bad flag or file: one error line, status 2
