"""The training loop, top to bottom: data on the device, model, optimiser, then epochs of
(adversarial batch -> loss -> step), a held-out check with energies, a log row and an atomic checkpoint.

Everything that differs between methods lives in :mod:`classifiers.training.methods`; this file is the same for
all of them. Fast paths (used on CUDA, see :mod:`classifiers.training.distributed`): whole dataset on the GPU,
batched augmentation there, bf16 autocast, channels-last, optional ``torch.compile``, DDP under ``torchrun``.

Randomness is drawn from generators re-seeded from (seed, rank, epoch) at the start of every epoch, so a run
resumed from its last checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from classifiers.data import DeviceBatches, dataset_spec, load_dataset
from classifiers.models import CHECKPOINT_FORMAT, build_model
from classifiers.training.checkpoint import BEST, LAST, load_training_checkpoint, save_atomic
from classifiers.training.config import TrainConfig
from classifiers.training.distributed import Runtime, all_reduce_sum, barrier, start_runtime, stop_runtime
from classifiers.training.holdout import evaluate_holdout
from classifiers.training.methods import AttackSettings, make_method
from classifiers.training.run_log import EpochLog
from classifiers.training.schedules import make_scheduler
from rlrobust.reporting import atomic_write_text

# Config fields that may change between a run and its resumption (they do not change what is computed).
RESUMABLE_CHANGES = {"data_dir", "device", "amp", "channels_last", "compile", "out_dir"}


class PairForward(nn.Module):
    """Logits of the natural and/or adversarial batch in one call, so that DDP sees one forward per step while
    BatchNorm still sees each batch on its own (as TRADES' two separate forwards do)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, natural: torch.Tensor | None, adversarial: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return (
            self.model(natural) if natural is not None else None,
            self.model(adversarial) if adversarial is not None else None,
        )


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Train as ``config`` says; writes ``config.json``, ``metrics.csv``, TensorBoard logs, ``last.pt`` and
    ``best_robust.pt`` under ``config.out_dir``; returns a summary. ``resume`` continues from ``last.pt``."""
    config.validate()
    runtime = start_runtime(config.device, config.amp, config.channels_last)
    try:
        return _train(config, runtime, resume=resume, progress=progress)
    finally:
        stop_runtime(runtime)


def _train(config: TrainConfig, runtime: Runtime, *, resume: bool, progress: bool) -> dict:
    out = Path(config.out_dir)
    device = runtime.device

    # --- data: whole splits as uint8 tensors, moved to the device once ------------------------------------------
    spec = dataset_spec(config.dataset)
    if spec.train_split is None:
        raise ValueError(f"dataset {config.dataset!r} has no training split (it is for evaluation only)")
    train_data = load_dataset(config.dataset, "train", config.data_dir)
    if config.train_size:
        train_data = train_data.subset(slice(0, config.train_size))
    if config.holdout_source == "train":
        train_data, holdout = train_data.split(config.holdout_size, seed=config.seed)
    else:
        holdout = load_dataset(config.dataset, spec.test_split, config.data_dir)
        holdout = holdout.subset(slice(0, config.holdout_size))
    train_data, holdout = train_data.to(device), holdout.to(device)
    if config.batch_size % runtime.world_size:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly over {runtime.world_size} processes")
    batches = DeviceBatches(
        train_data,
        config.batch_size // runtime.world_size,
        shuffle=True,
        augment=config.augment,
        padding=config.padding,
        flip=config.flip,
        channels_last=runtime.channels_last,
        seed=config.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    steps_per_epoch = min(len(batches), config.max_batches or len(batches))

    # --- model, compiled and wrapped for DDP as asked -------------------------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    normalization = dict(zip(("mean", "std"), train_data.channel_stats(), strict=True)) if config.normalize else None
    model = build_model(config.arch, train_data.num_classes, **(normalization or {})).to(device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and runtime.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    fast = torch.compile(model) if config.compile else model  # used by the attacks and the training forward
    net: nn.Module = PairForward(fast)
    if runtime.distributed:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    # --- optimiser, schedule, method -------------------------------------------------------------------------------
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    scheduler, per_batch = make_scheduler(optimizer, config, steps_per_epoch)
    method = make_method(
        config.method,
        attack=AttackSettings(config.eps, config.step, config.attack_steps),
        beta=config.beta,
        adv_fraction=config.adv_fraction,
        fgsm_eps=config.fgsm_eps,
    )
    attack_generator = torch.Generator(device=device)

    # --- resume ----------------------------------------------------------------------------------------------------
    start_epoch, best, history = 0, {"pgd_acc": -1.0, "epoch": 0}, []
    if resume and (out / LAST).is_file():
        checkpoint = load_training_checkpoint(out / LAST)
        _check_same_run(checkpoint["config"], config)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, best, history = checkpoint["epoch"], checkpoint["best"], checkpoint["history"]
    elif resume and runtime.is_main:
        print(f"no checkpoint at {out / LAST}; starting from scratch")

    log = None
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", config.to_json())
        atomic_write_text(out / "environment.json", json.dumps(_environment(runtime), indent=2) + "\n")
        log = EpochLog(out, resume_rows=history)
        print(f"training {config.arch} on {config.dataset} with {method.describe()} -> {out}")

    # --- epochs ------------------------------------------------------------------------------------------------------
    for epoch in range(start_epoch, config.epochs):
        batches.set_epoch(epoch)
        attack_generator.manual_seed((config.seed * 100_003 + epoch) * 1_009 + runtime.rank + 7)
        method.start_epoch(model, epoch)
        net.train()
        totals = torch.zeros(4, device=device, dtype=torch.float64)  # images, loss sum, correct natural / adv
        started = time.perf_counter()
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (progress and runtime.is_main),
            leave=False,
        )
        for batch_index, (x, y) in enumerate(bar):
            if batch_index == steps_per_epoch:
                break
            x_adv = None
            if method.uses_adversarial:  # inner maximisation with the model in eval mode
                net.eval()
                with runtime.autocast():
                    x_adv = method.perturb(fast, x, y, attack_generator)
                net.train()
            with runtime.autocast():
                natural, adversarial = net(x if method.uses_natural else None, x_adv)
                loss = method.loss(natural, adversarial, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_batch:
                scheduler.step()
            with torch.no_grad():  # device-side sums: no host-device copy, so no synchronisation per batch
                totals[0] += len(y)
                totals[1] += loss.detach().double() * len(y)
                totals[2] += _correct(natural, y)
                totals[3] += _correct(adversarial, y)
            if batch_index % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started
        lr = optimizer.param_groups[0]["lr"]
        if not per_batch:
            scheduler.step()
        totals = all_reduce_sum(totals, runtime)
        images = max(totals[0].item(), 1.0)

        metrics = evaluate_holdout(
            fast,
            holdout,
            runtime,
            eps=config.eval_eps,
            step=config.eval_step,
            steps=config.eval_steps,
            seed=config.seed + epoch,
        )
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train.loss": totals[1].item() / images,
            **({"train.acc_nat": totals[2].item() / images} if method.uses_natural else {}),
            **({"train.acc_adv": totals[3].item() / images} if method.uses_adversarial else {}),
            **{f"holdout.{k}": v for k, v in metrics.items()},
            "time.train_s": train_seconds,
            "time.images_per_s": totals[0].item() / train_seconds,
        }
        history.append(row)
        improved = epoch + 1 >= config.select_from_epoch and metrics["pgd_acc"] > best["pgd_acc"]
        if improved:
            best = {"pgd_acc": metrics["pgd_acc"], "epoch": epoch + 1}
        if runtime.is_main:
            log.add(row)
            state = {
                "format": CHECKPOINT_FORMAT,
                "arch": config.arch,
                "num_classes": train_data.num_classes,
                "normalization": normalization,
                "classes": list(train_data.classes),
                "model": model.state_dict(),
                "epoch": epoch + 1,
                "metrics": row,
                "config": dataclasses.asdict(config),
            }
            if improved:
                save_atomic(state, out / BEST)
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), best=best, history=history)
            save_atomic(state, out / LAST)
            print(_summary_line(row))
        barrier(runtime)

    if log is not None:
        log.close()
    return {"out_dir": str(out), "epochs": config.epochs, "best": best, "last": history[-1] if history else None}


def _correct(logits: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    if logits is None:
        return torch.zeros((), device=y.device, dtype=torch.float64)
    return (logits.detach().argmax(1) == y).sum().double()


def _check_same_run(saved: dict, config: TrainConfig) -> None:
    current = dataclasses.asdict(config)
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"cannot resume: the checkpoint was trained with different settings ({details})")


def _environment(runtime: Runtime) -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(runtime.device),
        "device_name": torch.cuda.get_device_name(runtime.device)
        if runtime.device.type == "cuda"
        else platform.processor(),
        "world_size": runtime.world_size,
        "amp": str(runtime.amp_dtype),
        "channels_last": runtime.channels_last,
    }


def _summary_line(row: dict) -> str:
    return (
        f"epoch {row['epoch']}: loss {row['train.loss']:.3f}, held-out clean {row['holdout.clean_acc']:.3f}, "
        f"PGD {row['holdout.pgd_acc']:.3f}, E(x) {row['holdout.energy_nat']:.2f}, "
        f"E(x*) {row['holdout.energy_adv']:.2f}, "
        f"{row['time.images_per_s']:.0f} img/s"
    )
