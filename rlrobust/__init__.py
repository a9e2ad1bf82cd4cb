"""rlrobust core: attacks, Stochastic Activation Pruning and other stochastic defences, energies.

Pure torch: no Gym, no datasets, so the RL half (``agents``, ``wrappers``) and the classifier half
(``classifiers``) share it unchanged. A model is any callable mapping a float batch to scores (N, C).
"""

from rlrobust import attacks, checks, defences, energy, insertion, sap, stochastic
from rlrobust.attacks import fgsm, iterative, pgd
from rlrobust.sap import insert_sap, remove_sap
from rlrobust.stochastic import predict, predict_proba

__version__ = "0.1.0"

__all__ = [
    "attacks",
    "checks",
    "defences",
    "energy",
    "fgsm",
    "insert_sap",
    "insertion",
    "iterative",
    "pgd",
    "predict",
    "predict_proba",
    "remove_sap",
    "sap",
    "stochastic",
]
