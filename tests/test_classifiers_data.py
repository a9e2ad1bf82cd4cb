"""Data: each on-disk format written small in its real layout and read back; the shared real images; clear errors
for missing files; batched augmentation and device batches."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from classifiers.data import DatasetFilesMissing, DeviceBatches, ImageDataset, load_dataset, random_crop_flip
from classifiers.data.images import decode_rgb, encode_jpeg
from classifiers.data.registry import DATASETS, dataset_files
from classifiers.data.tiny_imagenet import load_tiny_imagenet_val_zip
from tests.conftest import shared_file


@pytest.fixture
def one_torch_thread():
    """The classifier tests use small models and batches, which run fastest on one thread; on a shared, busy CPU
    two threads mostly wait for each other (measured: 211 s for these files with 2 threads, 40 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

#: Environment for the command-line tests' subprocesses, with the same one-thread setting.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# --- writers of the real formats (also used by the training and evaluation tests) -----------------------------------


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def write_cifar(root: Path, *, classes: int = 10, train: int = 50, test: int = 20, seed: int = 0) -> dict:
    """CIFAR-10 (5 train batches) or CIFAR-100 python pickles, Python-2 style (bytes keys), under ``root``."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", train), ("test", test)):
        images = random_images(n, seed=seed + len(split))
        labels = rng.integers(0, classes, n)
        labels[:classes] = np.arange(classes)[:n]  # every class present where possible
        data[split] = (images, labels)
    rows = {s: images.transpose(0, 3, 1, 2).reshape(len(images), 3072) for s, (images, _) in data.items()}
    if classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        parts = np.array_split(np.arange(train), 5)
        for i, part in enumerate(parts, start=1):
            batch = {b"data": rows["train"][part], b"labels": data["train"][1][part].tolist(), b"batch_label": b"x"}
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
        test_batch = {b"data": rows["test"], b"labels": data["test"][1].tolist()}
        (folder / "test_batch").write_bytes(pickle.dumps(test_batch, protocol=2))
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for split in ("train", "test"):
            batch = {
                b"data": rows[split],
                b"fine_labels": data[split][1].tolist(),
                b"coarse_labels": [0] * len(rows[split]),
            }
            (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    return data


def write_svhn(root: Path, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``svhn/train_32x32.mat``: X (32, 32, 3, N) uint8 and y (N, 1) with 10 for the digit 0."""
    from scipy.io import savemat

    images = random_images(n, seed=seed)
    digits = np.arange(n) % 10
    (root / "svhn").mkdir(parents=True)
    savemat(
        root / "svhn" / "train_32x32.mat",
        {"X": images.transpose(1, 2, 3, 0), "y": np.where(digits == 0, 10, digits).reshape(-1, 1).astype(np.uint8)},
    )
    return images, digits


def write_tiny_imagenet(root: Path, per_class: int = 2, val: int = 6, seed: int = 0) -> list[str]:
    """A Tiny-ImageNet folder with 200 classes (``per_class`` train JPEGs each) and ``val`` validation JPEGs."""
    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{rng.integers(10**7, 10**8)}" for _ in range(200)]
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        (folder / "train" / w / "images").mkdir(parents=True)
        for k in range(per_class):
            image = np.full((64, 64, 3), rng.integers(0, 256, 3), dtype=np.uint8)
            (folder / "train" / w / "images" / f"{w}_{k}.JPEG").write_bytes(encode_jpeg(image))
    (folder / "val" / "images").mkdir(parents=True)
    lines = []
    for k in range(val):
        gray = np.full((64, 64), 40 * k, dtype=np.uint8)  # grayscale files exist in the real set
        (folder / "val" / "images" / f"val_{k}.JPEG").write_bytes(cv2.imencode(".jpg", gray)[1].tobytes())
        lines.append(f"val_{k}.JPEG\t{wnids[k]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\r\n".join(lines) + "\r\n")
    return wnids


# --- the formats, read back -------------------------------------------------------------------------------------------


def test_cifar10_pickles_round_trip(tmp_path):
    data = write_cifar(tmp_path, classes=10)
    for split in ("train", "test"):
        loaded = load_dataset("cifar10", split, tmp_path)
        assert torch.equal(loaded.images, torch.from_numpy(data[split][0]))
        assert torch.equal(loaded.labels, torch.from_numpy(data[split][1]))
    assert loaded.classes[0] == "airplane" and loaded.num_classes == 10
    # the folder itself works as --data-dir too
    assert len(load_dataset("cifar10", "test", tmp_path / "cifar-10-batches-py")) == 20


def test_cifar100_uses_the_fine_labels(tmp_path):
    data = write_cifar(tmp_path, classes=100, train=120, test=10)
    loaded = load_dataset("cifar100", "train", tmp_path)
    assert loaded.num_classes == 100 and torch.equal(loaded.labels, torch.from_numpy(data["train"][1]))
    assert torch.equal(loaded.images, torch.from_numpy(data["train"][0]))


def test_svhn_mat_round_trip_maps_label_10_to_digit_0(tmp_path):
    pytest.importorskip("scipy")
    images, digits = write_svhn(tmp_path)
    loaded = load_dataset("svhn", "train", tmp_path)
    assert torch.equal(loaded.images, torch.from_numpy(images))
    assert torch.equal(loaded.labels, torch.from_numpy(digits))
    assert loaded.labels.min() == 0 and loaded.labels.max() == 9


def test_tiny_imagenet_folders_round_trip(tmp_path):
    wnids = write_tiny_imagenet(tmp_path)
    train = load_dataset("tiny-imagenet", "train", tmp_path)
    assert train.images.shape == (400, 64, 64, 3) and train.num_classes == 200
    assert list(train.classes) == sorted(wnids)  # ImageFolder order
    assert torch.equal(torch.bincount(train.labels, minlength=200), torch.full((200,), 2))
    val = load_dataset("tiny-imagenet", "val", tmp_path)
    assert [val.classes[i] for i in val.labels] == wnids[:6]
    assert (val.images[..., 0] == val.images[..., 2]).all()  # grayscale -> three equal channels
    assert abs(int(val.images[3].float().mean()) - 120) <= 2


def test_missing_files_say_what_is_expected_and_where_to_get_it(tmp_path):
    with pytest.raises(DatasetFilesMissing, match=r"data_batch_1.*cs.toronto.edu"):
        load_dataset("cifar10", "train", tmp_path)
    with pytest.raises(DatasetFilesMissing, match=r"cifar-100-python/\{test\}"):
        load_dataset("cifar100", "test", tmp_path)
    with pytest.raises(DatasetFilesMissing, match=r"train_32x32.mat.*ufldl"):
        load_dataset("svhn", "train", tmp_path)
    with pytest.raises(DatasetFilesMissing, match=r"val_annotations.txt.*tiny-imagenet-200.zip"):
        load_dataset("tiny-imagenet", "val", tmp_path)
    with pytest.raises(DatasetFilesMissing, match=r"cifar10_test_first1017_lossless\.npz"):
        load_dataset("cifar10-shared", "test", tmp_path)


def test_bad_names_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", "train", tmp_path)
    with pytest.raises(ValueError, match="no 'train' split"):
        load_dataset("cifar10-shared", "train")
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02}q\x00(U\x04data")  # truncated
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_dataset("cifar10", "test", tmp_path)


def test_dataset_files_name_what_a_run_reads_for_its_record(tmp_path):
    """The files whose sha256 a training run records: exactly those its loader reads, wherever they sit."""
    write_cifar(tmp_path / "a")
    cifar = dataset_files("cifar10", tmp_path / "a")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    assert sorted(cifar) == sorted(names)
    assert all(path.parent == tmp_path / "a" / "cifar-10-batches-py" for path in cifar.values())
    write_svhn(tmp_path / "b")  # only the train file: the missing test file is not listed
    assert dataset_files("svhn", tmp_path / "b") == {"train_32x32.mat": tmp_path / "b" / "svhn" / "train_32x32.mat"}
    (tmp_path / "c" / "tiny-imagenet-200").mkdir(parents=True)
    (tmp_path / "c" / "tiny-imagenet-200" / "wnids.txt").write_text("n0\n")
    assert dataset_files("tiny-imagenet", tmp_path / "c") == {"tiny-imagenet-200": tmp_path / "c" / "tiny-imagenet-200"}
    assert dataset_files("cifar10", tmp_path / "nothing") == {} and dataset_files("synthetic") == {}
    assert [name for name, spec in DATASETS.items() if spec.needs_dir] == [
        "cifar10",
        "cifar100",
        "svhn",
        "tiny-imagenet",
    ]


# --- the shared real images -------------------------------------------------------------------------------------------


def test_shared_lossless_cifar10_test_images():
    shared_file("cifar10/cifar10_test_first1017_lossless.npz")
    data = load_dataset("cifar10-shared", "test")
    assert data.images.shape == (1017, 32, 32, 3) and data.images.dtype == torch.uint8
    assert data.classes[0] == "airplane" and data.labels[:4].tolist() == [3, 8, 8, 0]  # cat, ship, ship, airplane


def test_shared_jpeg_cifar10_is_in_official_order():
    shared_file("cifar10/cifar10_test_jpeg_q75.zip")
    shared_file("cifar10/cifar10_test_first1017_lossless.npz")
    lossless = load_dataset("cifar10-shared", "test")
    jpeg = load_dataset("cifar10-shared-jpeg", "test")
    assert len(jpeg) == 10_000 and torch.equal(torch.bincount(jpeg.labels), torch.full((10,), 1000))
    assert torch.equal(jpeg.labels[:1017], lossless.labels)
    per_image = (jpeg.images[:1017].float() - lossless.images.float()).abs().flatten(1).mean(1)
    assert per_image.max() < 12.5 and 4 < per_image.mean() < 8  # the README: mean |diff| 5.8/255, each <= 11.8
    assert jpeg.notes  # flagged as lossy


def test_shared_tiny_imagenet_val_subset():
    paths = [
        shared_file("tiny_imagenet/tiny-imagenet-200_val_subset2000.zip"),
        shared_file("tiny_imagenet/val_annotations.txt"),
        shared_file("tiny_imagenet/wnids.txt"),
    ]
    data = load_dataset("tiny-imagenet-shared", "val")
    assert data.images.shape == (2000, 64, 64, 3) and data.num_classes == 200
    assert torch.equal(torch.bincount(data.labels, minlength=200), torch.full((200,), 10))
    with zipfile.ZipFile(paths[0]) as archive:
        member = sorted(m for m in archive.namelist() if m.endswith(".JPEG"))[0]
        assert torch.equal(data.images[0], torch.from_numpy(decode_rgb(archive.read(member))))
    by_file = load_tiny_imagenet_val_zip(*paths, class_order="file")
    assert sorted(by_file.classes) == list(data.classes)


# --- augmentation and batches -----------------------------------------------------------------------------------------


def test_crop_and_flip_match_a_per_image_reference():
    images = torch.from_numpy(random_images(16, size=8))
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, padding=2, generator=g)
    # replay the same draws and apply them one image at a time
    g = torch.Generator().manual_seed(0)
    top, left = torch.randint(0, 5, (16, 1), generator=g), torch.randint(0, 5, (16, 1), generator=g)
    flips = torch.rand((16, 1), generator=g) < 0.5
    padded = torch.nn.functional.pad(images, (0, 0, 2, 2, 2, 2))
    for i in range(16):
        crop = padded[i, top[i, 0] : top[i, 0] + 8, left[i, 0] : left[i, 0] + 8]
        assert torch.equal(out[i], crop.flip(1) if flips[i, 0] else crop)
    assert (out == 0).any()  # zero padding shows up in some crops
    assert torch.equal(random_crop_flip(images, padding=0, flip=False), images)


def test_device_batches_cover_the_data_and_shard_for_ranks():
    data = ImageDataset(torch.from_numpy(random_images(10, size=4)), torch.arange(10) % 3, ["a", "b", "c"])
    batches = DeviceBatches(data, 4, shuffle=True, seed=1)
    seen = torch.cat([y for _, y in batches])
    assert len(batches) == 3 and sorted(seen.tolist()) == sorted(data.labels.tolist())
    x, _ = next(iter(batches))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 4, 4) and x.min() >= 0 and x.max() <= 1
    assert x.is_contiguous(memory_format=torch.channels_last)
    shards = [DeviceBatches(data, 2, seed=1, rank=r, world_size=3).indices() for r in range(3)]
    assert sum(len(s) for s in shards) == 12 and set(torch.cat(shards).tolist()) == set(range(10))
    first = DeviceBatches(data, 4, seed=1).indices()
    batches.set_epoch(1)
    assert not torch.equal(first, batches.indices())  # a new order each epoch
