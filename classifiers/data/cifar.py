"""CIFAR-10 and CIFAR-100 from the official "python version" archives (Krizhevsky 2009).

CIFAR-10: ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (pickles with ``data``,
N x 3072 uint8 as R, G and B planes of 32x32, and ``labels``), class names in ``batches.meta``. CIFAR-100:
``cifar-100-python/train`` and ``test`` with ``fine_labels``, names in ``meta``. The pickles were written by
Python 2, so they are read with ``encoding="bytes"``.

A pickle can name any importable function and have it called while loading, so a crafted data folder would run
code. The batches are therefore read with :class:`CifarUnpickler`, which resolves only what CIFAR files hold
(numpy arrays, their dtypes and scalars, and Python 3's spelling of bytes at protocol 2); any other name is refused
with a ``ValueError`` before anything is called.
"""

from __future__ import annotations

import codecs
import importlib
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


def _numpy_core(module: str, name: str) -> object:
    """``numpy._core.<module>.<name>`` (numpy 2), or ``numpy.core.<module>.<name>`` on numpy 1."""
    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


def _allowed_globals() -> dict[tuple[str, str], object]:
    """Every global a CIFAR pickle may name (either numpy's spelling), mapped to the object it stands for."""
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # Python 3 writes bytes this way at protocols 0-2
    }
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        target = _numpy_core(module, name)
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{module}", name)] = target
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a function or class that CIFAR batches never hold (it was not called)."""


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals CIFAR batches hold; anything else raises ``UnpicklingError``."""

    ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"refused to load {module}.{name}: a CIFAR batch holds only numpy arrays, lists and dicts"
            ) from None


def read_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys (whether it was written by Python 2 or 3), read without running code."""
    try:
        with open(path, "rb") as handle:
            raw = CifarUnpickler(handle, encoding="bytes").load()
    except RefusedGlobal as err:
        raise ValueError(f"{path} is not a CIFAR pickle: {err}") from None
    except Exception as err:  # truncated or garbled files fail in many ways inside pickle and numpy; none runs code
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a readable CIFAR pickle (truncated or corrupt?): {reason}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def rows_to_images(data: np.ndarray, path: Path) -> np.ndarray:
    """CIFAR rows (N, 3072: R, G, B planes) -> uint8 (N, 32, 32, 3); values outside 0-255 are refused, not wrapped."""
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected data of shape (N, 3072), got {data.shape}")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise ValueError(f"{path}: expected pixel values as integers in 0-255, got {data.dtype} data")
        data = data.astype(np.uint8)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(values: object, count: int, path: Path) -> np.ndarray:
    """A batch's ``count`` labels as int64; non-integer labels or a count unlike the images' are refused."""
    labels = np.asarray(values)
    if labels.shape != (count,) or (count and labels.dtype.kind not in "iu"):
        raise ValueError(f"{path}: expected {count} integer labels, got {labels.dtype} labels of shape {labels.shape}")
    return labels.astype(np.int64)


def _names(meta: Path, key: str, count: int) -> list[str]:
    if meta.is_file():
        names = read_pickle(meta).get(key)
        if names is not None and (not isinstance(names, list) or len(names) != count):
            raise ValueError(f"{meta}: '{key}' should list {count} class names, got {type(names).__name__}")
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
        labels.append(_labels(batch[layout.label_key], len(images[-1]), folder / name))
    x, y = np.concatenate(images), np.concatenate(labels)
    if len(x) != len(y):
        raise ValueError(f"CIFAR-{classes} {split}: {len(x)} images but {len(y)} labels")
    return ImageDataset(
        torch.from_numpy(x),
        torch.from_numpy(y),
        _names(folder / layout.meta, layout.meta_key, classes),
        f"cifar{classes}-{split}",
    )
