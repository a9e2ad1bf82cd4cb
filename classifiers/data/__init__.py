"""Image datasets as uint8 tensors on the training device, and batches augmented on that device.

``load_dataset(name, split, data_dir)`` reads CIFAR-10/100 pickles, SVHN ``.mat`` files, Tiny-ImageNet folders, the
shared real CIFAR-10 / Tiny-ImageNet test images, or a generated set; nothing is downloaded. ``DeviceBatches``
iterates shuffled, augmented float batches without per-image Python work.
"""

from classifiers.data.augment import random_crop_flip
from classifiers.data.dataset import DatasetFilesMissing, ImageDataset, to_float
from classifiers.data.loader import DeviceBatches
from classifiers.data.registry import DATASETS, DatasetSpec, dataset_spec, load_dataset
from classifiers.data.synthetic import make_synthetic

__all__ = [
    "DATASETS",
    "DatasetFilesMissing",
    "DatasetSpec",
    "DeviceBatches",
    "ImageDataset",
    "dataset_spec",
    "load_dataset",
    "make_synthetic",
    "random_crop_flip",
    "to_float",
]
