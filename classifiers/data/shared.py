"""Real CIFAR-10 test images from the project's shared data folder, for evaluation where the full set is absent.

- ``cifar10-shared``: the first 1,017 official test images, lossless (``cifar10/cifar10_test_first1017_lossless.npz``,
  recovered from a truncated ``test_batch``). Use it for numbers comparable with papers.
- ``cifar10-shared-jpeg``: all 10,000 test images as JPEG (quality 75) in ``cifar10/cifar10_test_jpeg_q75.zip``,
  put back into the official order. Lossy: a ResNet-20 loses ~10 points of clean accuracy on them; use them for
  smoke tests and relative comparisons only.
- ``cifar10-shared-split``: a disjoint train/test split of the two, for short training demonstrations: "train" is the
  JPEG test images 1,017-9,999 (8,983, lossy), "test" the lossless first 1,017.
- ``tiny-imagenet-shared``: 2,000 Tiny-ImageNet validation images (10 a class).

The folder is ``$RLROBUST_SHARED_DATA`` or ``../shared/data`` next to the repository, unless ``--data-dir`` says
otherwise. There is no training split in any of them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from classifiers.data.dataset import DatasetFilesMissing, ImageDataset
from classifiers.data.images import decode_rgb
from classifiers.data.tiny_imagenet import load_tiny_imagenet_val_zip
from rlrobust.cli import shared_data_dir

CIFAR_LOSSLESS = "cifar10/cifar10_test_first1017_lossless.npz"
CIFAR_JPEG = "cifar10/cifar10_test_jpeg_q75.zip"
TINY_SUBSET = (
    "tiny_imagenet/tiny-imagenet-200_val_subset2000.zip",
    "tiny_imagenet/val_annotations.txt",
    "tiny_imagenet/wnids.txt",
)


def _require(data_dir: Path, relative: str, what: str) -> Path:
    path = data_dir / relative
    if not path.is_file():
        raise DatasetFilesMissing(
            f"{what} not found: expected {path} (the project's shared data folder; set RLROBUST_SHARED_DATA or "
            f"--data-dir to where it is)"
        )
    return path


def load_cifar10_shared(data_dir: str | Path | None = None) -> ImageDataset:
    """The lossless first 1,017 CIFAR-10 test images and their labels."""
    path = _require(Path(data_dir or shared_data_dir()), CIFAR_LOSSLESS, "lossless CIFAR-10 test subset")
    with np.load(path) as data:
        images, labels, classes = data["x"], data["y"], [str(c) for c in data["classes"]]
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), classes, "cifar10-shared-test")


def load_cifar10_shared_jpeg(data_dir: str | Path | None = None) -> ImageDataset:
    """All 10,000 CIFAR-10 test images decoded from the JPEG zip, in the official test order (lossy)."""
    data_dir = Path(data_dir or shared_data_dir())
    index = _require(data_dir, CIFAR_LOSSLESS, "CIFAR-10 test order (npz with jpeg_member)")
    archive_path = _require(data_dir, CIFAR_JPEG, "CIFAR-10 JPEG test set")
    with np.load(index) as data:
        members, labels, classes = data["jpeg_member"], data["y_all"], [str(c) for c in data["classes"]]
    with zipfile.ZipFile(archive_path) as archive:
        images = np.stack([decode_rgb(archive.read(str(m)), str(m)) for m in members])
    dataset = ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), classes, "cifar10-shared-jpeg-test")
    dataset.notes.append("JPEG quality 75 (lossy): not comparable with published clean accuracies")
    return dataset


def load_cifar10_shared_split(data_dir: str | Path | None, split: str) -> ImageDataset:
    """``train``: the JPEG test images after the lossless ones (1,017-9,999); ``test``: the lossless first 1,017.

    The two never share an image, so a model trained on "train" is evaluated on images it has not seen.
    """
    lossless = load_cifar10_shared(data_dir)
    if split == "test":
        return lossless
    train = load_cifar10_shared_jpeg(data_dir).subset(slice(len(lossless), None))
    train.name = "cifar10-shared-jpeg-test[1017:]"
    return train


def load_tiny_imagenet_shared(data_dir: str | Path | None = None) -> ImageDataset:
    """The 2,000-image Tiny-ImageNet validation subset (sorted-wnid class indices)."""
    data_dir = Path(data_dir or shared_data_dir())
    paths = [_require(data_dir, rel, "Tiny-ImageNet validation subset") for rel in TINY_SUBSET]
    return load_tiny_imagenet_val_zip(*paths)
