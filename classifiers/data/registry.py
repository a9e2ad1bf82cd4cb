"""Datasets by name, with their shapes, splits and where their files come from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from classifiers.data.cifar import load_cifar
from classifiers.data.dataset import ImageDataset
from classifiers.data.shared import load_cifar10_shared, load_cifar10_shared_jpeg, load_tiny_imagenet_shared
from classifiers.data.svhn import load_svhn
from classifiers.data.synthetic import make_synthetic
from classifiers.data.tiny_imagenet import load_tiny_imagenet


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset: ``load(data_dir, split)``, its splits (train first, then evaluation)."""

    load: Callable[[Path | None, str], ImageDataset]
    num_classes: int
    image_size: int
    splits: tuple[str, ...]
    description: str

    @property
    def train_split(self) -> str | None:
        return "train" if "train" in self.splits else None

    @property
    def test_split(self) -> str:
        return next(s for s in ("test", "val") if s in self.splits)


def _needs_dir(load: Callable[..., ImageDataset]) -> Callable[[Path | None, str], ImageDataset]:
    def wrapped(data_dir: Path | None, split: str) -> ImageDataset:
        if data_dir is None:
            raise ValueError("this dataset needs --data-dir (the folder holding its files)")
        return load(data_dir, split)

    return wrapped


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        _needs_dir(partial(load_cifar, classes=10)), 10, 32, ("train", "test"), "CIFAR-10 python pickles"
    ),
    "cifar100": DatasetSpec(
        _needs_dir(partial(load_cifar, classes=100)), 100, 32, ("train", "test"), "CIFAR-100 python pickles"
    ),
    "svhn": DatasetSpec(_needs_dir(load_svhn), 10, 32, ("train", "test", "extra"), "SVHN cropped digits .mat"),
    "tiny-imagenet": DatasetSpec(
        _needs_dir(load_tiny_imagenet), 200, 64, ("train", "val"), "Tiny-ImageNet-200 folders"
    ),
    "cifar10-shared": DatasetSpec(
        lambda d, s: load_cifar10_shared(d), 10, 32, ("test",), "shared lossless CIFAR-10 test 0..1016"
    ),
    "cifar10-shared-jpeg": DatasetSpec(
        lambda d, s: load_cifar10_shared_jpeg(d), 10, 32, ("test",), "shared CIFAR-10 test set as JPEG q75 (lossy)"
    ),
    "tiny-imagenet-shared": DatasetSpec(
        lambda d, s: load_tiny_imagenet_shared(d), 200, 64, ("val",), "shared Tiny-ImageNet val subset (2,000)"
    ),
    "synthetic": DatasetSpec(
        lambda d, s: make_synthetic(2048 if s == "train" else 512, split=s),
        10,
        32,
        ("train", "test"),
        "generated, CIFAR-shaped (2,048 / 512)",
    ),
    "synthetic-large": DatasetSpec(
        lambda d, s: make_synthetic(50_000 if s == "train" else 10_000, split=s),
        10,
        32,
        ("train", "test"),
        "generated, CIFAR-10-sized (50,000 / 10,000), for benchmarks",
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, split: str, data_dir: str | Path | None = None) -> ImageDataset:
    """Dataset ``name``'s ``split`` as uint8 tensors on the CPU (move it with ``.to(device)``)."""
    spec = dataset_spec(name)
    if split not in spec.splits:
        raise ValueError(f"dataset {name!r} has no {split!r} split; it has {list(spec.splits)}")
    dataset = spec.load(Path(data_dir) if data_dir is not None else None, split)
    if dataset.num_classes != spec.num_classes:
        raise ValueError(f"{name}: expected {spec.num_classes} classes, the files hold {dataset.num_classes}")
    return dataset
