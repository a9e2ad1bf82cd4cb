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
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from classifiers.data import DeviceBatches, dataset_spec, load_dataset
from classifiers.data.dataset import ImageDataset
from classifiers.data.registry import dataset_files
from classifiers.models import CHECKPOINT_FORMAT, build_model
from classifiers.training.checkpoint import BEST, LAST, load_training_checkpoint, save_atomic
from classifiers.training.config import TrainConfig
from classifiers.training.holdout import evaluate_holdout
from classifiers.training.methods import AttackSettings, make_method
from classifiers.training.run_log import EpochLog
from classifiers.training.schedules import check_schedule, make_scheduler
from rlrobust.attacks import scores_unwatched
from rlrobust.distributed import Runtime, all_reduce_sum, barrier, start_runtime, stop_runtime
from rlrobust.reporting import atomic_write_text
from rlrobust.runs import (
    RUN_FILE,
    RunLock,
    claim_output_dir,
    describe_input,
    read_run_record,
    remove_outputs,
    sigterm_as_interrupt,
    write_run_record,
)

# Config fields that may change between a run and its resumption (they do not change what is computed).
RESUMABLE_CHANGES = {"data_dir", "device", "amp", "channels_last", "compile", "out_dir"}
#: What a run writes into its folder; ``overwrite`` removes exactly these, so nothing of the old run stays mixed in.
RUN_OUTPUTS = ("config.json", "environment.json", RUN_FILE, "metrics.csv", "curves.png", LAST, BEST, "tensorboard")
JOB = "train_classifier"
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
        _claim(out, config, resume=resume, overwrite=overwrite)
    with sigterm_as_interrupt(), RunLock(out) if is_main else contextlib.nullcontext():
        if is_main:
            _claim(out, config, resume=resume, overwrite=overwrite)  # again under the lock: no job got in between
        if is_main and overwrite:
            remove_run_outputs(out)
        runtime = start_runtime(config.device, config.amp, config.channels_last)
        try:
            return _train(config, runtime, resume=resume, progress=progress)
        finally:
            stop_runtime(runtime)


def run_settings(config: TrainConfig) -> dict:
    """The settings that define what a run computes (all but where and how fast): a resumed run must match them."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_CHANGES}


def remove_run_outputs(out: Path) -> None:
    """Delete what an earlier run wrote into ``out`` (:data:`RUN_OUTPUTS`); other files stay."""
    remove_outputs(out, RUN_OUTPUTS)


def _claim(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Take ``out`` for this run or refuse it (see :func:`rlrobust.runs.claim_output_dir`). A run written before
    ``run.json`` existed is resumed on its checkpoint's own settings check."""
    legacy = resume and read_run_record(out) is None and (out / "config.json").is_file() and (out / LAST).is_file()
    if legacy:
        claim_output_dir(out, {}, overwrite=True)  # the checks of a writable folder; nothing is removed
        return
    claim_output_dir(out, run_settings(config), resume=resume, overwrite=overwrite)


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


def _train(config: TrainConfig, runtime: Runtime, *, resume: bool, progress: bool) -> dict:
    out = Path(config.out_dir)
    device = runtime.device

    # --- data: whole splits as uint8 tensors, moved to the device once ------------------------------------------
    train_data, holdout = training_and_selection_data(config)
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
    check_schedule(config, steps_per_epoch)

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
        inputs = data_inputs(config)
        if resume:
            _check_same_data(out, inputs)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", config.to_json())
        atomic_write_text(out / "environment.json", json.dumps(_environment(runtime), indent=2) + "\n")
        write_run_record(out, JOB, run_settings(config), inputs)
        log = EpochLog(out, resume_rows=history)
        print(f"training {config.arch} on {config.dataset} with {method.describe()} -> {out}")

    # --- epochs ------------------------------------------------------------------------------------------------------
    saved = start_epoch  # epochs in last.pt
    try:
        for epoch in range(start_epoch, config.epochs):
            batches.set_epoch(epoch)
            attack_generator.manual_seed((config.seed * 100_003 + epoch) * 1_009 + runtime.rank + 7)
            method.start_epoch(model, epoch)
            net.train()
            # images, loss sum, correct natural / adversarial, non-finite model: summed on the device, no sync
            totals = torch.zeros(5, device=device, dtype=torch.float64)
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
                    with runtime.autocast(), scores_unwatched():  # a non-finite model: caught below, as diverged
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
                if batch_index % CHECK_EVERY == 0:  # one host read every CHECK_EVERY batches
                    running = totals[1].item()
                    if not math.isfinite(running) and not runtime.distributed:  # ranks agree only at the epoch end
                        raise _diverged(config, epoch, saved, f"the loss became non-finite by batch {batch_index + 1}")
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            if runtime.device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds = time.perf_counter() - started
            lr = optimizer.param_groups[0]["lr"]
            if not per_batch:
                scheduler.step()
            totals[4] = _non_finite_state(model)
            totals = all_reduce_sum(totals, runtime)
            if not torch.isfinite(totals[1]) or totals[4] > 0:  # the same verdict on every rank, before any save
                detail = (
                    "the loss became non-finite" if not torch.isfinite(totals[1]) else "the weights became non-finite"
                )
                raise _diverged(config, epoch, saved, detail)
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
                state.update(
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), best=best, history=history
                )
                save_atomic(state, out / LAST)
                print(_summary_line(row))
            saved = epoch + 1
            barrier(runtime)
    except KeyboardInterrupt as err:
        raise TrainingInterrupted(out, saved, config.epochs) from err
    finally:
        if log is not None:
            log.close()
    return {"out_dir": str(out), "epochs": config.epochs, "best": best, "last": history[-1] if history else None}


def data_inputs(config: TrainConfig) -> dict:
    """The data's identity for ``run.json``: the dataset's name and each file it is read from with its sha256."""
    files = dataset_files(config.dataset, config.data_dir)
    inputs: dict = {"dataset": config.dataset}
    if not files:
        inputs["data"] = "generated in code (classifiers.data.synthetic)" if "synthetic" in config.dataset else None
    inputs.update({f"data:{name}": describe_input(path) for name, path in files.items()})
    return inputs


def _check_same_data(out: Path, inputs: dict) -> None:
    """Refuse to resume on data files other than the run's own (as recorded in its ``run.json``)."""
    recorded = (read_run_record(out) or {}).get("inputs", {})
    changed = [
        key
        for key, value in inputs.items()
        if isinstance(value, dict) and isinstance(recorded.get(key), dict)
        and value.get("sha256") != recorded[key].get("sha256")
    ]  # fmt: skip
    changed += [key for key in recorded if key.startswith("data:") and key not in inputs]
    if changed:
        raise ValueError(
            f"cannot resume in {out}: the data differ from the run's ({', '.join(changed)}); use a new --out-dir"
        )


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
