"""Training image classifiers: standard, the SAP paper's ADV, PGD-AT, TRADES, WEAT (adv / nat) and MART.

``train(make_config("weat_adv", dataset="cifar10", data_dir="data"))`` runs the WEAT recipe; the methods are small
classes with hooks (:mod:`classifiers.training.methods`), their outer losses plain functions
(:mod:`classifiers.training.losses`), and one loop (:mod:`classifiers.training.trainer`) serves them all.
"""

from classifiers.training.config import PRESETS, TrainConfig, load_config, make_config
from classifiers.training.losses import kl_per_sample, mart_loss, trades_loss, weat_loss
from classifiers.training.methods import METHODS, AttackSettings, TrainingMethod, make_method
from classifiers.training.trainer import NonFiniteTraining, TrainingInterrupted, train

__all__ = [
    "METHODS",
    "PRESETS",
    "AttackSettings",
    "NonFiniteTraining",
    "TrainConfig",
    "TrainingInterrupted",
    "TrainingMethod",
    "kl_per_sample",
    "load_config",
    "make_config",
    "make_method",
    "mart_loss",
    "trades_loss",
    "train",
    "weat_loss",
]
