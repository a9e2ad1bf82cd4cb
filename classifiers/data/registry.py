"""Datasets by name, with their shapes, splits and where their files come from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from classifiers.data.cifar import LAYOUTS, load_cifar
from classifiers.data.dataset import ImageDataset
from classifiers.data.files import find_folder
from classifiers.data.shared import (
    CIFAR_JPEG,
    CIFAR_LOSSLESS,
    TINY_SUBSET,
    load_cifar10_shared,
    load_cifar10_shared_jpeg,
    load_cifar10_shared_split,
    load_tiny_imagenet_shared,
)
from classifiers.data.svhn import SVHN_FILES, load_svhn
from classifiers.data.synthetic import make_synthetic
from classifiers.data.tiny_imagenet import load_tiny_imagenet
from rlrobust.cli import shared_data_dir


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset: ``load(data_dir, split)``, its splits (train first, then evaluation)."""

    load: Callable[[Path | None, str], ImageDataset]
    num_classes: int
    image_size: int
    splits: tuple[str, ...]
    description: str
    needs_dir: bool = False  # its files are found only through --data-dir
    files: Callable[[Path | None], dict[str, Path]] | None = None  # what it reads, by name (None: generated)

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


def _cifar_files(classes: int) -> Callable[[Path | None], dict[str, Path]]:
    layout = LAYOUTS[classes]
    names = [*layout.files["train"], *layout.files["test"], layout.meta]

    def files(data_dir: Path | None) -> dict[str, Path]:
        folder = find_folder(data_dir, layout.folder, names) if data_dir is not None else None
        return {} if folder is None else {name: folder / name for name in names}

    return files


def _svhn_files(data_dir: Path | None) -> dict[str, Path]:
    found = {}
    for split in ("train", "test"):
        folder = find_folder(data_dir, "svhn", [SVHN_FILES[split]]) if data_dir is not None else None
        if folder is not None:
            found[SVHN_FILES[split]] = folder / SVHN_FILES[split]
    return found


def _tiny_files(data_dir: Path | None) -> dict[str, Path]:
    folder = find_folder(data_dir, "tiny-imagenet-200", ["wnids.txt"]) if data_dir is not None else None
    return {} if folder is None else {"tiny-imagenet-200": folder}  # hashed as one folder


def _shared_files(*relative: str) -> Callable[[Path | None], dict[str, Path]]:
    def files(data_dir: Path | None) -> dict[str, Path]:
        return {name: Path(data_dir or shared_data_dir()) / name for name in relative}

    return files


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        _needs_dir(partial(load_cifar, classes=10)),
        10,
        32,
        ("train", "test"),
        "CIFAR-10 python pickles",
        True,
        _cifar_files(10),
    ),
    "cifar100": DatasetSpec(
        _needs_dir(partial(load_cifar, classes=100)),
        100,
        32,
        ("train", "test"),
        "CIFAR-100 python pickles",
        True,
        _cifar_files(100),
    ),
    "svhn": DatasetSpec(
        _needs_dir(load_svhn), 10, 32, ("train", "test", "extra"), "SVHN cropped digits .mat", True, _svhn_files
    ),
    "tiny-imagenet": DatasetSpec(
        _needs_dir(load_tiny_imagenet), 200, 64, ("train", "val"), "Tiny-ImageNet-200 folders", True, _tiny_files
    ),
    "cifar10-shared": DatasetSpec(
        lambda d, s: load_cifar10_shared(d),
        10,
        32,
        ("test",),
        "shared lossless CIFAR-10 test 0..1016",
        files=_shared_files(CIFAR_LOSSLESS),
    ),
    "cifar10-shared-jpeg": DatasetSpec(
        lambda d, s: load_cifar10_shared_jpeg(d),
        10,
        32,
        ("test",),
        "shared CIFAR-10 test set as JPEG q75 (lossy)",
        files=_shared_files(CIFAR_LOSSLESS, CIFAR_JPEG),
    ),
    "cifar10-shared-split": DatasetSpec(
        load_cifar10_shared_split,
        10,
        32,
        ("train", "test"),
        "shared CIFAR-10 test set split: train = JPEG 1,017-9,999 (lossy), test = lossless 0-1,016",
        files=_shared_files(CIFAR_LOSSLESS, CIFAR_JPEG),
    ),
    "tiny-imagenet-shared": DatasetSpec(
        lambda d, s: load_tiny_imagenet_shared(d),
        200,
        64,
        ("val",),
        "shared Tiny-ImageNet val subset (2,000)",
        files=_shared_files(*TINY_SUBSET),
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


def dataset_files(name: str, data_dir: str | Path | None = None) -> dict[str, Path]:
    """The files dataset ``name`` is read from under ``data_dir`` (those that exist), by name, so that a run can
    record their sha256; empty for a generated dataset."""
    spec = dataset_spec(name)
    if spec.files is None:
        return {}
    found = spec.files(Path(data_dir) if data_dir is not None else None)
    return {key: path for key, path in found.items() if path.exists()}


def load_dataset(name: str, split: str, data_dir: str | Path | None = None) -> ImageDataset:
    """Dataset ``name``'s ``split`` as uint8 tensors on the CPU (move it with ``.to(device)``)."""
    spec = dataset_spec(name)
    if split not in spec.splits:
        raise ValueError(f"dataset {name!r} has no {split!r} split; it has {list(spec.splits)}")
    dataset = spec.load(Path(data_dir) if data_dir is not None else None, split)
    if dataset.num_classes != spec.num_classes:
        raise ValueError(f"{name}: expected {spec.num_classes} classes, the files hold {dataset.num_classes}")
    return dataset
