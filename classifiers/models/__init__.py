"""Classifier architectures; each takes images in [0, 1] and normalises inside itself."""

from classifiers.models.normalize import Normalize
from classifiers.models.resnet_cifar import CifarResNet, load_akamaster_resnet, resnet20

__all__ = ["CifarResNet", "Normalize", "load_akamaster_resnet", "resnet20"]
