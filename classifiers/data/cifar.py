"""CIFAR-10 and CIFAR-100 from the official "python version" archives (Krizhevsky 2009).

CIFAR-10: ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (pickles with ``data``,
N x 3072 uint8 as R, G and B planes of 32x32, and ``labels``), class names in ``batches.meta``. CIFAR-100:
``cifar-100-python/train`` and ``test`` with ``fine_labels``, names in ``meta``. The pickles were written by
Python 2, so they are read with ``encoding="bytes"``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifiers.data.dataset import DatasetFilesMissing, ImageDataset
from classifiers.data.files import find_folder

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches, labels and class names."""

    folder: str
    files: dict[str, list[str]]
    label_key: str
    meta: str
    meta_key: str


LAYOUTS = {
    10: CifarLayout(
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
        "batches.meta",
        "label_names",
    ),
    100: CifarLayout(
        "cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels", "meta", "fine_label_names"
    ),
}


def read_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys (whether it was written by Python 2 or 3)."""
    try:
        with open(path, "rb") as handle:
            raw = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not a readable CIFAR pickle (truncated or corrupt?): {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def rows_to_images(data: np.ndarray, path: Path) -> np.ndarray:
    """CIFAR rows (N, 3072: R, G, B planes) -> uint8 (N, 32, 32, 3)."""
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected data of shape (N, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _names(meta: Path, key: str, count: int) -> list[str]:
    if meta.is_file():
        names = read_pickle(meta).get(key)
        if names:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return [str(i) for i in range(count)]


def load_cifar(data_dir: str | Path, split: str, *, classes: int) -> ImageDataset:
    """CIFAR-10 (``classes=10``) or CIFAR-100 (``classes=100``) ``split`` ("train" or "test") as uint8 tensors."""
    if classes not in LAYOUTS:
        raise ValueError(f"CIFAR has 10 or 100 classes, got {classes}")
    layout = LAYOUTS[classes]
    files = layout.files[split]
    folder = find_folder(data_dir, layout.folder, files)
    if folder is None:
        expected = f"{layout.folder}/{{{', '.join(files)}}}"
        raise DatasetFilesMissing(
            f"CIFAR-{classes} {split} split not found under {data_dir}: expected {expected} "
            f"(the 'CIFAR-{classes} python version' from {CIFAR_URL}, unpacked with "
            f"`tar xzf cifar-{classes}-python.tar.gz -C {data_dir}`). Nothing is downloaded at run time."
        )
    images, labels = [], []
    for name in files:
        batch = read_pickle(folder / name)
        if "data" not in batch or layout.label_key not in batch:
            raise ValueError(f"{folder / name} lacks 'data' or '{layout.label_key}': not a CIFAR-{classes} batch")
        images.append(rows_to_images(batch["data"], folder / name))
        labels.append(np.asarray(batch[layout.label_key], dtype=np.int64))
    x, y = np.concatenate(images), np.concatenate(labels)
    if len(x) != len(y):
        raise ValueError(f"CIFAR-{classes} {split}: {len(x)} images but {len(y)} labels")
    return ImageDataset(
        torch.from_numpy(x),
        torch.from_numpy(y),
        _names(folder / layout.meta, layout.meta_key, classes),
        f"cifar{classes}-{split}",
    )
