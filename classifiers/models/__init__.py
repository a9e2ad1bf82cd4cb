"""Classifier architectures; each takes images in [0, 1] and normalises inside itself (or not at all).

``build_model(arch, num_classes)`` for training, ``load_classifier(path)`` for any supported model file.
"""

from classifiers.models.normalize import Normalize
from classifiers.models.registry import (
    ARCHITECTURES,
    CHECKPOINT_FORMAT,
    build_model,
    load_classifier,
    model_from_checkpoint,
    output_classes,
)
from classifiers.models.resnet import SmallImageResNet, preact_resnet18, preact_resnet20, resnet18
from classifiers.models.resnet_cifar import CifarResNet, load_akamaster_resnet, resnet20
from classifiers.models.shared_robust import SHARED_ROBUST_MODELS, load_shared_robust_model
from classifiers.models.wide_resnet import WideResNet, wrn28_10, wrn34_10

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "SHARED_ROBUST_MODELS",
    "CifarResNet",
    "Normalize",
    "SmallImageResNet",
    "WideResNet",
    "build_model",
    "load_akamaster_resnet",
    "load_classifier",
    "load_shared_robust_model",
    "model_from_checkpoint",
    "output_classes",
    "preact_resnet18",
    "preact_resnet20",
    "resnet18",
    "resnet20",
    "wrn28_10",
    "wrn34_10",
]
