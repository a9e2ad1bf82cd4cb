"""Attacks with one call signature: ``attack(model, x, y=None, *, eps, bounds=(0.0, 1.0), ...)``.

``model`` maps a float batch to scores (N, C) (logits or Q-values); ``x`` lies inside ``bounds``; the result
has the same shape, dtype and device, lies inside ``bounds`` and within ``eps`` of ``x`` in the chosen norm.
``y=None`` attacks the model's own prediction (for an agent, the greedy action: Huang et al.'s attack).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlrobust.attacks.apgd import apgd, apgd_targeted
from rlrobust.attacks.autoattack import autoattack
from rlrobust.attacks.fab import fab
from rlrobust.attacks.fgsm import fgsm
from rlrobust.attacks.iterative import iterative
from rlrobust.attacks.losses import LOSSES, LossFn, cross_entropy, dlr, margin, targeted_dlr
from rlrobust.attacks.pgd import pgd
from rlrobust.attacks.square import square

Attack = Callable[..., torch.Tensor]

#: The attacks by name, for command lines and wrappers that pick one from a string; all take the wrappers'
#: ``loss``, ``targeted`` and ``eot_samples`` arguments (``apgd_targeted``, ``fab`` and ``square`` do not).
ATTACKS: dict[str, Attack] = {
    "fgsm": fgsm,
    "iterative": iterative,
    "pgd": pgd,
    "apgd": apgd,
}


def get_attack(name: str) -> Attack:
    """Return the attack function called ``name`` (``fgsm``, ``iterative``, ``pgd`` or ``apgd``)."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; available: {sorted(ATTACKS)}") from None


__all__ = [
    "ATTACKS",
    "LOSSES",
    "Attack",
    "LossFn",
    "apgd",
    "apgd_targeted",
    "autoattack",
    "cross_entropy",
    "dlr",
    "fab",
    "fgsm",
    "get_attack",
    "iterative",
    "margin",
    "pgd",
    "square",
    "targeted_dlr",
]
