"""SVHN cropped digits (Netzer et al. 2011) from the official ``train_32x32.mat`` / ``test_32x32.mat``.

Each file holds ``X`` uint8 (32, 32, 3, N) and ``y`` (N, 1) with labels 1-10, where 10 stands for the digit 0;
the loader maps it to 0, so the class index is the digit. Read with ``scipy.io.loadmat`` (MATLAB v5 files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from classifiers.data.dataset import DatasetFilesMissing, ImageDataset
from classifiers.data.files import find_folder

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}


def load_svhn(data_dir: str | Path, split: str) -> ImageDataset:
    """SVHN ``split`` ("train", "test" or "extra") as uint8 tensors; digit 0 is class 0."""
    from scipy.io import loadmat  # scipy is needed only for this format

    name = SVHN_FILES[split]
    folder = find_folder(data_dir, "svhn", [name])
    if folder is None:
        raise DatasetFilesMissing(
            f"SVHN {split} split not found under {data_dir}: expected svhn/{name} or {name} (the 'Format 2: "
            f"cropped digits' .mat files from {SVHN_URL}). Nothing is downloaded at run time."
        )
    try:
        mat = loadmat(folder / name)
    except Exception as err:  # scipy raises several types for truncated or foreign files
        raise ValueError(f"{folder / name} is not a readable SVHN .mat file: {err}") from None
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{folder / name} lacks the arrays 'X' and 'y' of the SVHN format")
    x = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    if x.shape[1:] != (32, 32, 3) or len(x) != len(y):
        raise ValueError(
            f"{folder / name}: expected X (32, 32, 3, N) and y (N, 1), got {mat['X'].shape} and {mat['y'].shape}"
        )
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{folder / name}: SVHN labels must be 1-10, found {y.min()}-{y.max()}")
    y[y == 10] = 0
    return ImageDataset(torch.from_numpy(x), torch.from_numpy(y), [str(d) for d in range(10)], f"svhn-{split}")
