"""The training loop, top to bottom: data on the device, model, optimiser, then epochs of
(adversarial batch -> loss -> step), a held-out check with energies, a log row and an atomic checkpoint.

Everything that differs between methods lives in :mod:`classifiers.training.methods`; this file is the same for
all of them. Fast paths (used on CUDA, see :mod:`rlrobust.distributed`): whole dataset on the GPU,
batched augmentation there, bf16 autocast, channels-last, optional ``torch.compile``, DDP under ``torchrun``.

Randomness is drawn from generators re-seeded from (seed, rank, epoch) at the start of every epoch, so a run
resumed from its last checkpoint continues exactly as the uninterrupted run would have.

Reliability: the output folder is claimed before any work (another run's folder is refused unless ``resume`` or
``overwrite``) and locked while training; ``run.json`` records the settings and the data files' sha256; Ctrl-C and
SIGTERM stop the run keeping the last finished epoch (:class:`TrainingInterrupted`); a non-finite loss or model
stops it before anything of that epoch is saved (:class:`NonFiniteTraining`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from classifiers.data import DeviceBatches, dataset_spec, load_dataset
from classifiers.data.dataset import ImageDataset
from classifiers.models import CHECKPOINT_FORMAT, build_model
from classifiers.training.checkpoint import BEST, LAST, load_training_checkpoint, save_atomic
from classifiers.training.config import TrainConfig
from classifiers.training.holdout import evaluate_holdout
from classifiers.training.methods import AttackSettings, TrainingMethod, make_method
from classifiers.training.run_folder import (
    JOB,
    RESUMABLE_CHANGES,
    RUN_OUTPUTS,
    check_same_data,
    check_same_run,
    claim_run_folder,
    data_inputs,
    remove_run_outputs,
    run_settings,
    write_run_files,
)
from classifiers.training.run_log import EpochLog
from classifiers.training.schedules import check_schedule, make_scheduler
from rlrobust.attacks._base import scores_unwatched
from rlrobust.distributed import Runtime, all_reduce_sum, barrier, start_runtime, stop_runtime
from rlrobust.runs import RunLock, sigterm_as_interrupt

__all__ = [  # the run folder's names stay importable from here
    "JOB",
    "RESUMABLE_CHANGES",
    "RUN_OUTPUTS",
    "NonFiniteTraining",
    "TrainingInterrupted",
    "data_inputs",
    "remove_run_outputs",
    "run_settings",
    "train",
    "training_and_selection_data",
]
CHECK_EVERY = 20  # batches between host reads of the running loss (progress bar and divergence check)


class NonFiniteTraining(ValueError):
    """The loss or the model became NaN or infinite; nothing of that epoch was saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training; ``epochs_saved`` epochs are in ``out_dir/last.pt``."""

    def __init__(self, out_dir: Path, epochs_saved: int, epochs: int) -> None:
        super().__init__(f"interrupted with {epochs_saved} of {epochs} epochs saved in {out_dir / LAST}")
        self.out_dir, self.epochs_saved, self.epochs = out_dir, epochs_saved, epochs


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


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train as ``config`` says; writes ``config.json``, ``run.json``, ``metrics.csv``, TensorBoard logs,
    ``last.pt`` and ``best_robust.pt`` under ``config.out_dir``; returns a summary.

    A folder holding another run is refused unless ``resume`` (continue it from ``last.pt``; its settings must
    match) or ``overwrite`` (its outputs are removed first). Under ``torchrun`` only rank 0 claims, locks and
    writes. Ctrl-C or SIGTERM raise :class:`TrainingInterrupted` after keeping the last finished epoch.
    """
    config.validate()
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run or replace it, not both")
    _check_data_dir(config)
    out = Path(config.out_dir)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        claim_run_folder(out, config, resume=resume, overwrite=overwrite)
    with sigterm_as_interrupt(), RunLock(out) if is_main else contextlib.nullcontext():
        if is_main:
            claim_run_folder(
                out, config, resume=resume, overwrite=overwrite
            )  # again under the lock: no job got in between
        if is_main and overwrite:
            remove_run_outputs(out)
        runtime = start_runtime(config.device, config.amp, config.channels_last)
        try:
            return _train(config, runtime, resume=resume, progress=progress)
        finally:
            stop_runtime(runtime)


def _check_data_dir(config: TrainConfig) -> None:
    """A dataset read from files needs ``--data-dir``, and a given one must be an existing folder."""
    if config.data_dir is None:
        if dataset_spec(config.dataset).needs_dir:
            raise ValueError(f"dataset {config.dataset!r} needs --data-dir (the folder holding its files)")
        return
    folder = Path(config.data_dir)
    if not folder.exists():
        raise FileNotFoundError(f"--data-dir {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"--data-dir {folder} is not a folder")


def training_and_selection_data(config: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """The images trained on and the held-out images checked each epoch (which pick ``best_robust.pt``).

    ``holdout_source="train"`` (every preset's default) holds ``holdout_size`` random training images out of
    training, so that model selection never sees the test split and a later evaluation on it stays unbiased, as
    in the WEAT code; ``"test"`` (the first ``holdout_size`` test images) is kept only to reproduce older runs.

    >>> from classifiers.training import make_config
    >>> trained, selection = training_and_selection_data(make_config("pgd_at", dataset="synthetic"))
    >>> len(trained), len(selection)  # 2,048 synthetic training images, 256 of them held out
    (1792, 256)
    """
    spec = dataset_spec(config.dataset)
    train_data = load_dataset(config.dataset, "train", config.data_dir)
    if config.train_size:
        _check_size("train_size", config.train_size, len(train_data), f"{config.dataset} training images")
        train_data = train_data.subset(slice(0, config.train_size))
    if config.holdout_source == "train":
        if config.holdout_size >= len(train_data):
            raise ValueError(
                f"holdout_size {config.holdout_size} leaves no training images of the {len(train_data)} "
                f"{config.dataset} training images; lower --holdout-size or raise --train-size"
            )
        return train_data.split(config.holdout_size, seed=config.seed)
    holdout = load_dataset(config.dataset, spec.test_split, config.data_dir)
    _check_size("holdout_size", config.holdout_size, len(holdout), f"{config.dataset} {spec.test_split} images")
    return train_data, holdout.subset(slice(0, config.holdout_size))


@dataclass
class _Setup:
    """What a run trains with, built once before its first epoch."""

    config: TrainConfig
    runtime: Runtime
    train_data: ImageDataset
    holdout: ImageDataset
    batches: DeviceBatches
    steps_per_epoch: int
    normalization: dict | None
    model: nn.Module  # the bare model: its state dict is what the checkpoints hold
    fast: nn.Module  # the model, compiled if asked: the attacks' and the held-out check's
    net: nn.Module  # PairForward(fast), wrapped for DDP under torchrun: the training forward
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    per_batch: bool  # the schedule steps after every batch (else after every epoch)
    method: TrainingMethod
    attack_generator: torch.Generator


@dataclass
class _Progress:
    """Where training stands: epochs saved in ``last.pt``, the best held-out PGD accuracy so far, a row an epoch."""

    saved: int = 0
    best: dict = field(default_factory=lambda: {"pgd_acc": -1.0, "epoch": 0})
    history: list[dict] = field(default_factory=list)


def _train(config: TrainConfig, runtime: Runtime, *, resume: bool, progress: bool) -> dict:
    """Build, restore, then train epoch by epoch: one pass over the batches, then the held-out check and saves."""
    out = Path(config.out_dir)
    setup = _build(config, runtime)
    state = _restore(setup, out, resume)
    log = _start_records(setup, out, resume, state.history) if runtime.is_main else None
    try:
        for epoch in range(state.saved, config.epochs):
            totals, seconds, lr = _train_epoch(setup, epoch, state.saved, progress)
            _end_epoch(setup, state, epoch, _epoch_row(setup, epoch, totals, seconds, lr), out, log)
    except KeyboardInterrupt as err:
        raise TrainingInterrupted(out, state.saved, config.epochs) from err
    finally:
        if log is not None:
            log.close()
    last = state.history[-1] if state.history else None
    return {"out_dir": str(out), "epochs": config.epochs, "best": state.best, "last": last}


def _build(config: TrainConfig, runtime: Runtime) -> _Setup:
    """Data on the device, the networks, the optimiser with its schedule, and the method."""
    train_data, holdout, batches, steps_per_epoch = _load_data(config, runtime)
    model, fast, net, normalization = _build_networks(config, runtime, train_data)
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
    generator = torch.Generator(device=runtime.device)
    return _Setup(
        config, runtime, train_data, holdout, batches, steps_per_epoch, normalization, model, fast, net,
        optimizer, scheduler, per_batch, method, generator,
    )  # fmt: skip


def _load_data(config: TrainConfig, runtime: Runtime) -> tuple[ImageDataset, ImageDataset, DeviceBatches, int]:
    """The training and held-out images as uint8 tensors moved to the device once, the training batches (this
    process's share of each), and the batches an epoch takes."""
    train_data, holdout = training_and_selection_data(config)
    train_data, holdout = train_data.to(runtime.device), holdout.to(runtime.device)
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
    check_schedule(config, steps_per_epoch)
    return train_data, holdout, batches, steps_per_epoch


def _build_networks(
    config: TrainConfig, runtime: Runtime, train_data: ImageDataset
) -> tuple[nn.Module, nn.Module, nn.Module, dict | None]:
    """(bare model, the model compiled if asked, the training forward wrapped for DDP, the input normalisation)."""
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    normalization = dict(zip(("mean", "std"), train_data.channel_stats(), strict=True)) if config.normalize else None
    model = build_model(config.arch, train_data.num_classes, **(normalization or {})).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and runtime.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    fast = torch.compile(model) if config.compile else model  # used by the attacks and the training forward
    net: nn.Module = PairForward(fast)
    if runtime.distributed:
        device = runtime.device
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return model, fast, net, normalization


def _restore(setup: _Setup, out: Path, resume: bool) -> _Progress:
    """Model, optimiser, schedule and progress from ``last.pt`` when resuming (its settings must match)."""
    if resume and (out / LAST).is_file():
        checkpoint = load_training_checkpoint(out / LAST)
        check_same_run(checkpoint["config"], setup.config)
        setup.model.load_state_dict(checkpoint["model"])
        setup.optimizer.load_state_dict(checkpoint["optimizer"])
        setup.scheduler.load_state_dict(checkpoint["scheduler"])
        return _Progress(checkpoint["epoch"], checkpoint["best"], checkpoint["history"])
    if resume and setup.runtime.is_main:
        print(f"no checkpoint at {out / LAST}; starting from scratch")
    return _Progress()


def _start_records(setup: _Setup, out: Path, resume: bool, history: list[dict]) -> EpochLog:
    """Rank 0's records of the run: ``config.json``, ``environment.json``, ``run.json`` (refusing to resume on other
    data files) and the epoch log, continued from ``history``."""
    config = setup.config
    inputs = data_inputs(config)
    if resume:
        check_same_data(out, inputs)
    write_run_files(out, config, setup.runtime, inputs)
    log = EpochLog(out, resume_rows=history)
    print(f"training {config.arch} on {config.dataset} with {setup.method.describe()} -> {out}")
    return log


def _train_epoch(setup: _Setup, epoch: int, saved: int, progress: bool) -> tuple[torch.Tensor, float, float]:
    """One pass over the training batches: (totals summed over ranks -- images, loss sum, correct natural,
    correct adversarial, non-finite model --, seconds, learning rate). Raises :class:`NonFiniteTraining` at a
    non-finite loss or model, before anything of the epoch is saved (``saved``: the epochs in ``last.pt``)."""
    config, runtime = setup.config, setup.runtime
    setup.batches.set_epoch(epoch)
    setup.attack_generator.manual_seed((config.seed * 100_003 + epoch) * 1_009 + runtime.rank + 7)
    setup.method.start_epoch(setup.model, epoch)
    setup.net.train()
    # images, loss sum, correct natural / adversarial, non-finite model: summed on the device, no sync
    totals = torch.zeros(5, device=runtime.device, dtype=torch.float64)
    started = time.perf_counter()
    bar = tqdm(
        setup.batches,
        total=setup.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not (progress and runtime.is_main),
        leave=False,
    )
    for batch_index, (x, y) in enumerate(bar):
        if batch_index == setup.steps_per_epoch:
            break
        loss, natural, adversarial = _train_step(setup, x, y)
        with torch.no_grad():  # device-side sums: no host-device copy, so no synchronisation per batch
            totals[0] += len(y)
            totals[1] += loss.detach().double() * len(y)
            totals[2] += _correct(natural, y)
            totals[3] += _correct(adversarial, y)
        if batch_index % CHECK_EVERY == 0:  # one host read every CHECK_EVERY batches
            if not math.isfinite(totals[1].item()) and not runtime.distributed:  # ranks agree only at the epoch end
                raise _diverged(config, epoch, saved, f"the loss became non-finite by batch {batch_index + 1}")
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)
    seconds, lr = time.perf_counter() - started, setup.optimizer.param_groups[0]["lr"]
    if not setup.per_batch:
        setup.scheduler.step()
    totals[4] = _non_finite_state(setup.model)
    totals = all_reduce_sum(totals, runtime)
    if not torch.isfinite(totals[1]) or totals[4] > 0:  # the same verdict on every rank, before any save
        detail = "the loss became non-finite" if not torch.isfinite(totals[1]) else "the weights became non-finite"
        raise _diverged(config, epoch, saved, detail)
    return totals, seconds, lr


def _train_step(
    setup: _Setup, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One batch: the method's adversarial batch (model in eval mode), the loss, one optimiser step; returns
    (loss, natural logits, adversarial logits)."""
    method, net, runtime = setup.method, setup.net, setup.runtime
    x_adv = None
    if method.uses_adversarial:  # inner maximisation with the model in eval mode
        net.eval()
        with runtime.autocast(), scores_unwatched():  # a non-finite model: caught later, as diverged
            x_adv = method.perturb(setup.fast, x, y, setup.attack_generator)
        net.train()
    with runtime.autocast():
        natural, adversarial = net(x if method.uses_natural else None, x_adv)
        loss = method.loss(natural, adversarial, y)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    setup.optimizer.step()
    if setup.per_batch:
        setup.scheduler.step()
    return loss, natural, adversarial


def _epoch_row(setup: _Setup, epoch: int, totals: torch.Tensor, seconds: float, lr: float) -> dict:
    """The epoch's log row: training loss and accuracies, the held-out check (clean, PGD, energies), speed."""
    config, method = setup.config, setup.method
    metrics = evaluate_holdout(
        setup.fast,
        setup.holdout,
        setup.runtime,
        eps=config.eval_eps,
        step=config.eval_step,
        steps=config.eval_steps,
        seed=config.seed + epoch,
    )
    images = max(totals[0].item(), 1.0)
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train.loss": totals[1].item() / images,
        **({"train.acc_nat": totals[2].item() / images} if method.uses_natural else {}),
        **({"train.acc_adv": totals[3].item() / images} if method.uses_adversarial else {}),
        **{f"holdout.{k}": v for k, v in metrics.items()},
        "time.train_s": seconds,
        "time.images_per_s": totals[0].item() / seconds,
    }


def _end_epoch(setup: _Setup, state: _Progress, epoch: int, row: dict, out: Path, log: EpochLog | None) -> None:
    """Record the epoch: its row, the best model if its held-out PGD accuracy is the best so far (from
    ``select_from_epoch`` on), ``last.pt``; then wait for every rank."""
    config = setup.config
    state.history.append(row)
    improved = epoch + 1 >= config.select_from_epoch and row["holdout.pgd_acc"] > state.best["pgd_acc"]
    if improved:
        state.best = {"pgd_acc": row["holdout.pgd_acc"], "epoch": epoch + 1}
    if log is not None:
        log.add(row)
        _save_checkpoints(setup, state, row, out, improved)
        print(_summary_line(row))
    state.saved = epoch + 1
    barrier(setup.runtime)


def _save_checkpoints(setup: _Setup, state: _Progress, row: dict, out: Path, improved: bool) -> None:
    """``best_robust.pt`` when ``improved`` and always ``last.pt`` (with the optimiser, schedule and progress)."""
    config, data = setup.config, setup.train_data
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "arch": config.arch,
        "num_classes": data.num_classes,
        "normalization": setup.normalization,
        "classes": list(data.classes),
        "model": setup.model.state_dict(),
        "epoch": row["epoch"],
        "metrics": row,
        "config": dataclasses.asdict(config),
    }
    if improved:
        save_atomic(checkpoint, out / BEST)
    checkpoint.update(
        optimizer=setup.optimizer.state_dict(),
        scheduler=setup.scheduler.state_dict(),
        best=state.best,
        history=state.history,
    )
    save_atomic(checkpoint, out / LAST)


def _non_finite_state(model: nn.Module) -> torch.Tensor:
    """1.0 on the device if any floating weight or buffer of ``model`` is NaN or infinite, else 0.0 (no sync)."""
    flags = [~torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return torch.stack(flags).any().double() if flags else torch.zeros((), dtype=torch.float64)


def _diverged(config: TrainConfig, epoch: int, saved: int, detail: str) -> NonFiniteTraining:
    """The error of a run that went non-finite in ``epoch`` (0-based), saying what was kept."""
    kept = f"{Path(config.out_dir) / LAST} keeps epoch {saved}" if saved else "no epoch had finished, so none is saved"
    return NonFiniteTraining(
        f"training diverged in epoch {epoch + 1}: {detail}; nothing of that epoch was saved and {kept}. "
        f"Lower --lr (it is {config.lr:g}) or check the data"
    )


def _check_size(name: str, wanted: int, available: int, what: str) -> None:
    if wanted > available:
        raise ValueError(f"{name} {wanted} exceeds the {available} {what}")


def _correct(logits: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    if logits is None:
        return torch.zeros((), device=y.device, dtype=torch.float64)
    return (logits.detach().argmax(1) == y).sum().double()


def _summary_line(row: dict) -> str:
    return (
        f"epoch {row['epoch']}: loss {row['train.loss']:.3f}, held-out clean {row['holdout.clean_acc']:.3f}, "
        f"PGD {row['holdout.pgd_acc']:.3f}, E(x) {row['holdout.energy_nat']:.2f}, "
        f"E(x*) {row['holdout.energy_adv']:.2f}, "
        f"{row['time.images_per_s']:.0f} img/s"
    )
