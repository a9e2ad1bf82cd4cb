"""Attacks with one call signature: ``attack(model, x, y=None, *, eps, bounds=(0.0, 1.0), ...)``.

``model`` maps a float batch to scores (N, C) (logits or Q-values); ``x`` lies inside ``bounds``; the result
has the same shape, dtype and device, lies inside ``bounds`` and within ``eps`` of ``x`` in the chosen norm.
``y=None`` attacks the model's own prediction (for an agent, the greedy action: Huang et al.'s attack).

The pieces they are built from are public too, for code that perturbs inputs within a budget itself:
:func:`project` and :func:`random_point` (:mod:`rlrobust.attacks.budget`), :func:`default_pgd_step`, and
:func:`scores_unwatched` for a caller that checks the model's scores in its own terms.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlrobust.attacks._base import scores_unwatched
from rlrobust.attacks.apgd import apgd, apgd_targeted
from rlrobust.attacks.autoattack import autoattack
from rlrobust.attacks.budget import project, random_point
from rlrobust.attacks.fab import fab
from rlrobust.attacks.fgsm import fgsm
from rlrobust.attacks.iterative import iterative
from rlrobust.attacks.losses import (
    LOSSES,
    LossFn,
    cross_entropy,
    dlr,
    gaussian_kl,
    margin,
    squared_distance,
    targeted_dlr,
)
from rlrobust.attacks.pgd import default_pgd_step, pgd
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
    """Return the attack function called ``name`` (``fgsm``, ``iterative``, ``pgd`` or ``apgd``).

    >>> get_attack("pgd") is pgd
    True
    """
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
    "default_pgd_step",
    "dlr",
    "fab",
    "fgsm",
    "gaussian_kl",
    "get_attack",
    "iterative",
    "margin",
    "pgd",
    "project",
    "random_point",
    "scores_unwatched",
    "square",
    "squared_distance",
    "targeted_dlr",
]
