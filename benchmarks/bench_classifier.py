"""Throughput of PGD-10 adversarial training: our trainer against a plain reference loop, in one run.

Both train a CIFAR ResNet-18 (``--arch``) with PGD-AT (eps 8/255, step 2/255, 10 steps, CE; SGD 0.1 / 0.9 /
5e-4) at batch 128 (``--batch-size``) on CIFAR-shaped data (generated, 32x32x3 uint8). They differ only in
engineering:

- ours: ``classifiers.training.train`` -- the dataset on the device as uint8, batched crop+flip there, bf16
  autocast and channels-last on CUDA (fp32 on CPU), optional ``torch.compile``;
- reference: what typical research code does -- a ``Dataset`` whose ``__getitem__`` crops and flips one image at
  a time, a ``DataLoader``, batches copied to the device, fp32 NCHW, a hand-written PGD loop.

Images per second are measured after warm-up batches (compilation, cuDNN autotuning): for ours, as the difference of
two runs of the trainer with ``warmup`` and ``warmup + batches`` batches (the trainer times its batch loop only);
for the reference, by timing its loop after ``warmup`` batches. "s / epoch" extrapolates to CIFAR-10's 50,000
training images.

    python benchmarks/bench_classifier.py                       # CPU: 2 warm-up + 3 timed batches
    python benchmarks/bench_classifier.py --batches 100         # a GPU: 100 timed batches
    python benchmarks/bench_classifier.py --compile
    python benchmarks/bench_classifier.py --arch resnet20 --batch-size 32      # a small CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from classifiers.data import load_dataset
from classifiers.models import ARCHITECTURES, build_model
from classifiers.training import make_config, train
from rlrobust import cli
from rlrobust.reporting import write_tables

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10
CIFAR_TRAIN_IMAGES = 50_000


class PerImageCifar(Dataset):
    """Typical research code: one image at a time, random crop (pad 4) and flip in ``__getitem__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i].permute(2, 0, 1).float() / 255  # CHW float, as ToTensor gives
        image = F.pad(image, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        image = image[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(2)
        return image, self.labels[i]


def reference_pgd(model, x, y):
    """PGD as written in most AT repositories: random start, sign steps, clamp to the ball and [0, 1]."""
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    return x_adv.detach()


def reference_images_per_second(
    data, device: str, arch: str, batch_size: int, warmup: int, batches: int, workers: int
) -> float:
    torch.manual_seed(0)
    model = build_model(arch).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(
        PerImageCifar(data.images, data.labels),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        drop_last=True,
    )
    started, seen = None, 0
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            _sync(device)
            started = time.perf_counter()
        if i == warmup + batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        model.eval()
        x_adv = reference_pgd(model, x, y)
        model.train()
        loss = F.cross_entropy(model(x_adv), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y) if i >= warmup else 0
    _sync(device)
    return seen / (time.perf_counter() - started)


def ours_seconds(
    n_batches: int, device: str, arch: str, batch_size: int, compile_model: bool, dataset: str, amp: str = "auto"
) -> float:
    with tempfile.TemporaryDirectory() as out:
        config = make_config(
            "pgd_at",
            dataset=dataset,
            arch=arch,
            epochs=1,
            batch_size=batch_size,
            max_batches=n_batches,
            schedule="constant",
            holdout_size=8,
            eval_steps=1,
            device=device,
            compile=compile_model,
            amp=amp,
            select_from_epoch=1,
            out_dir=out,
        )
        summary = train(config, progress=False)
        return summary["last"]["time.train_s"]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--device", type=cli.device, default="cuda" if on_gpu else "cpu")
    parser.add_argument("--batches", type=cli.count(), default=100 if on_gpu else 3, help="timed batches")
    parser.add_argument("--warmup", type=cli.count(0), default=5 if on_gpu else 2)
    parser.add_argument("--compile", action="store_true", help="torch.compile in our trainer")
    parser.add_argument(
        "--amp", default="auto", choices=["auto", "bf16", "off"], help="our trainer's autocast (auto: bf16 on CUDA)"
    )
    parser.add_argument("--arch", default="resnet18", choices=sorted(ARCHITECTURES), help="the issue's: resnet18")
    parser.add_argument("--batch-size", type=cli.count(), default=128, help="the issue's: 128")
    parser.add_argument("--workers", type=cli.count(0), default=4 if on_gpu else 0, help="reference DataLoader workers")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_classifier"))
    args = parser.parse_args()
    if args.warmup < 1 or args.batches < 1 or args.batch_size < 1:
        parser.error("--warmup, --batches and --batch-size must be >= 1")
    needed = (args.warmup + args.batches) * args.batch_size
    dataset = "synthetic" if needed <= 2048 else "synthetic-large"
    if needed > 50_000:
        parser.error(f"{needed} images asked for; the generated set has 50,000 (one CIFAR-10 epoch)")
    data = load_dataset(dataset, "train")  # the trainer loads the same images (same seed)
    shape = (args.arch, args.batch_size)
    short = ours_seconds(args.warmup, args.device, *shape, args.compile, dataset, args.amp)
    long = ours_seconds(args.warmup + args.batches, args.device, *shape, args.compile, dataset, args.amp)
    ours = args.batches * args.batch_size / max(long - short, 1e-9)
    reference = reference_images_per_second(data, args.device, *shape, args.warmup, args.batches, args.workers)
    device_name = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    on_cuda = args.device.startswith("cuda")
    bf16 = args.amp == "bf16" or (args.amp == "auto" and on_cuda)  # the trainer's own rule for "auto"
    ours_setting = "uint8 data on device, batched crop+flip" + (", bf16 autocast" if bf16 else ", fp32")
    ours_setting += ", channels-last" if on_cuda else ""
    rows = [
        {
            "loop": "ours (classifiers.training)",
            "setting": ours_setting + (", torch.compile" if args.compile else ""),
            "images_per_s": round(ours, 1),
            "s_per_cifar10_epoch": round(CIFAR_TRAIN_IMAGES / ours),
        },
        {
            "loop": "reference (plain loop)",
            "setting": f"per-image transforms, DataLoader({args.workers} workers), fp32 NCHW",
            "images_per_s": round(reference, 1),
            "s_per_cifar10_epoch": round(CIFAR_TRAIN_IMAGES / reference),
        },
    ]
    notes = (
        f"PGD-10 AT of a CIFAR {args.arch}, batch {args.batch_size}, on {device_name}, torch {torch.__version__}; "
        f"{args.batches} timed batches after {args.warmup} warm-up batches; speed-up {ours / reference:.2f}x."
    )
    paths = write_tables(
        rows, args.out, "bench_classifier", title="PGD-10 adversarial training throughput", notes=notes
    )
    print(paths["md"].read_text())
    print(json.dumps({"ours_images_per_s": ours, "reference_images_per_s": reference, "speedup": ours / reference}))


if __name__ == "__main__":
    cli.run_main(main)  # a bad flag or file: one error line, status 2
