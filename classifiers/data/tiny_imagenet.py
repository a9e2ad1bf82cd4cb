"""Tiny-ImageNet-200 (Stanford CS231n) from its unpacked folder, JPEGs decoded with OpenCV.

Layout: ``tiny-imagenet-200/wnids.txt`` (200 class ids), ``train/<wnid>/images/*.JPEG`` (500 a class) and
``val/images/val_<k>.JPEG`` labelled by ``val/val_annotations.txt`` (tab-separated ``file wnid x0 y0 x1 y1``;
10,000 images). Images are 64x64; a few are grayscale and become three equal channels. Class indices follow
the sorted wnids, as ImageFolder-based training code (WEAT's included) numbers them; ``class_order="file"``
follows the order of ``wnids.txt`` instead.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from classifiers.data.dataset import DatasetFilesMissing, ImageDataset
from classifiers.data.files import find_folder
from classifiers.data.images import decode_rgb

TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_CLASSES = 200
TINY_VAL_IMAGES = 10_000
TINY_SIZE = 64


def read_wnids(path: Path, class_order: str = "sorted") -> list[str]:
    """The 200 class ids: the first 200 distinct lines of ``wnids.txt``, sorted unless ``class_order="file"``."""
    if class_order not in ("sorted", "file"):
        raise ValueError(f"class_order must be 'sorted' or 'file', got {class_order!r}")
    wnids = list(dict.fromkeys(line.strip() for line in path.read_text().splitlines() if line.strip()))
    if len(wnids) < TINY_CLASSES:
        raise ValueError(f"{path} lists {len(wnids)} classes; Tiny-ImageNet has {TINY_CLASSES}")
    wnids = wnids[:TINY_CLASSES]  # some copies append extra ids after the official 200
    return sorted(wnids) if class_order == "sorted" else wnids


def read_val_annotations(path: Path) -> list[tuple[str, str]]:
    """``(file name, wnid)`` of the official 10,000 validation images (later lines, if any, are not official)."""
    pairs = []
    for line in path.read_text().splitlines()[:TINY_VAL_IMAGES]:
        fields = line.strip().split("\t")
        if len(fields) < 2:
            raise ValueError(f"{path}: malformed line {line!r} (expected 'file<TAB>wnid<TAB>box')")
        pairs.append((fields[0], fields[1]))
    return pairs


def decode_all(read: Callable[[str], bytes], names: Sequence[str], workers: int = 8) -> np.ndarray:
    """Decode the named images (OpenCV releases the GIL, so threads help) into uint8 (N, 64, 64, 3)."""

    def one(name: str) -> np.ndarray:
        image = decode_rgb(read(name), name)
        if image.shape != (TINY_SIZE, TINY_SIZE, 3):
            raise ValueError(f"{name}: expected a 64x64 image, got {image.shape[:2]}")
        return image

    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(one, names))
    return np.stack(images) if images else np.zeros((0, TINY_SIZE, TINY_SIZE, 3), np.uint8)


def load_tiny_imagenet(data_dir: str | Path, split: str, *, class_order: str = "sorted") -> ImageDataset:
    """Tiny-ImageNet ``split`` ("train": 100,000 images, "val": 10,000) as uint8 tensors."""
    required = ["wnids.txt", "val/val_annotations.txt"] if split == "val" else ["wnids.txt", "train"]
    folder = find_folder(data_dir, "tiny-imagenet-200", required)
    if folder is None:
        raise DatasetFilesMissing(
            f"Tiny-ImageNet {split} split not found under {data_dir}: expected tiny-imagenet-200/ with wnids.txt, "
            f"train/<wnid>/images/*.JPEG and val/images/*.JPEG + val/val_annotations.txt (unzip {TINY_URL} into "
            f"{data_dir}). Nothing is downloaded at run time."
        )
    wnids = read_wnids(folder / "wnids.txt", class_order)
    index = {w: i for i, w in enumerate(wnids)}
    if split == "val":
        pairs = read_val_annotations(folder / "val" / "val_annotations.txt")
        paths = [folder / "val" / "images" / name for name, _ in pairs]
        labels = [_label(index, wnid, name) for name, wnid in pairs]
    else:
        paths, labels = [], []
        for wnid in wnids:
            files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
            if not files:
                raise DatasetFilesMissing(
                    f"no images in {folder / 'train' / wnid / 'images'} (incomplete Tiny-ImageNet?)"
                )
            paths += files
            labels += [index[wnid]] * len(files)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetFilesMissing(f"{len(missing)} Tiny-ImageNet {split} images are missing, e.g. {missing[0]}")
    images = decode_all(lambda p: Path(p).read_bytes(), [str(p) for p in paths])
    return ImageDataset(torch.from_numpy(images), torch.tensor(labels), wnids, f"tiny-imagenet-{split}")


def load_tiny_imagenet_val_zip(
    zip_path: str | Path, annotations: str | Path, wnids: str | Path, *, class_order: str = "sorted"
) -> ImageDataset:
    """The validation images inside a zip (members ``.../val/images/val_<k>.JPEG``), labelled by the official
    annotations: e.g. the 2,000-image subset in the shared data folder."""
    classes = read_wnids(Path(wnids), class_order)
    index = {w: i for i, w in enumerate(classes)}
    label_of = dict(read_val_annotations(Path(annotations)))
    with zipfile.ZipFile(zip_path) as archive:
        members = sorted(m for m in archive.namelist() if m.endswith(".JPEG") and Path(m).name in label_of)
        contents = {m: archive.read(m) for m in members}
    images = decode_all(contents.__getitem__, members)
    labels = [_label(index, label_of[Path(m).name], m) for m in members]
    return ImageDataset(torch.from_numpy(images), torch.tensor(labels), classes, "tiny-imagenet-val-subset")


def _label(index: dict[str, int], wnid: str, name: str) -> int:
    if wnid not in index:
        raise ValueError(f"{name} is labelled {wnid}, which is not one of the 200 classes in wnids.txt")
    return index[wnid]
