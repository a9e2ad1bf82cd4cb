"""Training configuration and the papers' recipes as presets.

A preset fills every field; command-line flags then override single fields. ``method`` alone picks its paper's
preset: ``standard`` -> ``sap-dense``, ``adv`` -> ``sap-adv``, the adversarial methods -> ``weat``.

- ``sap-dense`` (SAP paper, dense ResNet-20): SGD momentum 0.9, weight decay 1e-4, batch 512, lr 0.5 for 100
  epochs, 0.05 for 30, 0.005 for 20 (150 epochs). The paper's network is a pre-activation ResNet-20.
- ``sap-adv`` (SAP paper, ADV): as above but 80 % clean / 20 % FGSM lambda = 2 from the previous epoch's model,
  lr 0.5 halved every 10 epochs, 100 epochs.
- ``weat`` (WEAT code defaults, also used for PGD-AT, TRADES and MART so that they compare like for like): CIFAR
  ResNet-18, SGD lr 0.1, momentum 0.9, weight decay 5e-4, OneCycle (max lr 0.1, pct_start 0.25) stepped per batch,
  100 epochs, batch 128, random crop (pad 4) + flip, no input normalisation, eps 8/255, step 2/255, 10 steps,
  beta 6, model selection by PGD-20 (step 2/255) after epoch 90.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from classifiers.data.registry import DATASETS
from classifiers.models.registry import ARCHITECTURES
from classifiers.training.methods import METHODS

SCHEDULES = ("onecycle", "multistep", "step", "constant")


@dataclass
class TrainConfig:
    # what
    dataset: str = "cifar10"
    data_dir: str | None = None
    arch: str = "resnet18"
    method: str = "trades"
    preset: str = "weat"
    # optimisation
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "onecycle"
    pct_start: float = 0.25  # onecycle
    milestones: list[int] = field(default_factory=list)  # multistep (epochs)
    gamma: float = 0.1  # multistep / step factor
    step_epochs: int = 10  # step: decay every this many epochs
    # data
    augment: bool = True
    padding: int = 4
    flip: bool = True
    normalize: bool = False  # normalise inputs inside the model with the training set's channel statistics
    holdout_source: str = "test"  # "test": the first holdout_size test images; "train": held out of training
    holdout_size: int = 1000
    # inner maximisation and method settings
    eps: float = 8 / 255
    step: float = 2 / 255
    attack_steps: int = 10
    beta: float = 6.0
    adv_fraction: float = 0.2
    fgsm_eps: float = 2 / 255
    # held-out robust evaluation each epoch and model selection
    eval_eps: float = 8 / 255
    eval_step: float = 2 / 255
    eval_steps: int = 20
    select_from_epoch: int = 90  # best-robust checkpoint considered from this epoch on (1-based)
    # engineering
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # "auto": bf16 autocast on CUDA, none on CPU; "bf16"; "off"
    channels_last: str = "auto"  # "auto": on CUDA only; "on"; "off"
    compile: bool = False
    sync_bn: bool = False
    max_batches: int | None = None  # cap batches per epoch (smoke runs, benchmarks)
    train_size: int | None = None  # use only the first N training images (smoke runs)
    out_dir: str = "runs/classifier"

    def validate(self) -> TrainConfig:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; available: {sorted(DATASETS)}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; available: {sorted(ARCHITECTURES)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; available: {list(METHODS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; available: {list(SCHEDULES)}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be auto, bf16 or off, got {self.amp!r}")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"channels_last must be auto, on or off, got {self.channels_last!r}")
        if self.holdout_source not in ("test", "train"):
            raise ValueError(f"holdout_source must be 'test' or 'train', got {self.holdout_source!r}")
        for name in ("epochs", "batch_size", "attack_steps", "eval_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eps", "fgsm_eps", "eval_eps"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1] (images are in [0, 1]; 8/255 = {8 / 255:.4f})")
        if self.lr <= 0 or self.beta < 0 or self.holdout_size < 0:
            raise ValueError("lr must be > 0, beta >= 0 and holdout_size >= 0")
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"


PRESETS: dict[str, dict[str, object]] = {
    "sap-dense": {
        "arch": "preact_resnet20",
        "method": "standard",
        "epochs": 150,
        "batch_size": 512,
        "lr": 0.5,
        "weight_decay": 1e-4,
        "schedule": "multistep",
        "milestones": [100, 130],
        "gamma": 0.1,
        "eval_eps": 8 / 255,
        "select_from_epoch": 1,
    },
    "sap-adv": {
        "arch": "preact_resnet20",
        "method": "adv",
        "epochs": 100,
        "batch_size": 512,
        "lr": 0.5,
        "weight_decay": 1e-4,
        "schedule": "step",
        "step_epochs": 10,
        "gamma": 0.5,
        "adv_fraction": 0.2,
        "fgsm_eps": 2 / 255,
        "select_from_epoch": 1,
    },
    "weat": {
        "arch": "resnet18",
        "epochs": 100,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "pct_start": 0.25,
        "eps": 8 / 255,
        "step": 2 / 255,
        "attack_steps": 10,
        "beta": 6.0,
        "eval_steps": 20,
        "eval_step": 2 / 255,
        "select_from_epoch": 90,
    },
}
DEFAULT_PRESET = {"standard": "sap-dense", "adv": "sap-adv"}  # every other method: "weat"
DATASET_ADJUSTMENTS: dict[str, dict[str, object]] = {
    "svhn": {"flip": False},  # mirrored digits are other digits (or none)
    "synthetic": {"holdout_size": 256},
}


def make_config(method: str, preset: str | None = None, **overrides: object) -> TrainConfig:
    """The config of ``preset`` (default: ``method``'s paper), the dataset's adjustments, then ``overrides``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {list(METHODS)}")
    preset = preset or DEFAULT_PRESET.get(method, "weat")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
    values = {**PRESETS[preset], "method": method, "preset": preset}
    dataset = overrides.get("dataset", TrainConfig.dataset)
    values.update(DATASET_ADJUSTMENTS.get(str(dataset), {}))
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()


def load_config(path: str | Path) -> TrainConfig:
    """A config saved by the trainer (``config.json``)."""
    return TrainConfig(**json.loads(Path(path).read_text())).validate()
