"""Benchmark of the core against its peer, on the same model and batch in one run.

Attacks: FGSM, PGD-10 and EOT-PGD (n = 10 stochastic passes per step, on the model with SAP-100) -- ours
against torchattacks. SAP: the forward time of SAP-100 (exact and independent sampling) against the dense
forward. Models: the SAP paper's ResNet-20 (32x32 images in [0, 1]) and the Nature DQN (4x84x84 frames on the
0-255 scale; torchattacks only knows [0, 1], so it attacks the same network behind a x255 input layer).

    python benchmarks/bench_core.py                  # small batches on a CPU, large ones on a GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import NatureQNetwork
from classifiers.models import resnet20
from rlrobust import cli
from rlrobust.attacks import fgsm, pgd
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
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
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


def attack_rows(name, net, x_unit, scale, device, timing, eot_batch):
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
            "EOT-PGD-10 (n=10) on SAP-100",
            lambda: pgd(
                sap_net,
                x,
                y,
                eps=eps * scale,
                step=alpha * scale,
                steps=10,
                bounds=bounds,
                eot_samples=10,
                eot_batch_size=eot_batch,
                generator=g,
            ),
            (lambda: torchattacks.EOTPGD(peer_sap, eps=eps, alpha=alpha, steps=10, eot_iter=10)(x_unit, y))
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
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = args.device
    on_gpu = device.startswith("cuda")
    args.resnet_batch = args.resnet_batch or (512 if on_gpu else 16)
    args.dqn_batch = args.dqn_batch or (256 if on_gpu else 16)
    resnet = resnet20().to(device).eval()
    dqn = NatureQNetwork(18).to(device).eval()
    images = torch.rand(args.resnet_batch, 3, 32, 32, device=device)
    frames = torch.rand(args.dqn_batch, 4, 84, 84, device=device)

    rows = []
    timing = (args.min_repeats, args.seconds)
    rows += attack_rows("ResNet-20", resnet, images, 1.0, device, timing, args.eot_batch)
    rows += attack_rows("Nature DQN", dqn, frames, 255.0, device, timing, args.eot_batch)
    rows += sap_rows("ResNet-20", resnet, images, device, timing)
    rows += sap_rows("Nature DQN", dqn, frames * 255, device, timing)

    label = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"\ntorch {torch.__version__}, torchattacks {getattr(torchattacks, '__version__', 'absent')}, {label}, "
        "medians of alternating runs after a warm-up\n"
    )
    print(markdown_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"device": label, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
