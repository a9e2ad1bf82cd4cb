"""The attacks of a robustness evaluation, each bound to its budget and settings, all from the core.

Budgets are L-inf on [0, 1] images. ``fgsm`` and ``iterative`` follow the SAP paper (iterative: steps of
``iterative_step``, ``ceil(eps / step)`` of them); ``pgd`` is PGD-k with a random start, step ``pgd_step_frac *
eps`` and restarts; ``apgd-ce`` / ``apgd-dlr`` / ``apgd-t`` are AutoAttack's gradient attacks. Every gradient may be
an EOT mean over ``eot`` stochastic passes (for models with SAP or other randomness). ``apgd-ce-torchattacks`` and
``apgd-dlr-torchattacks`` run the reference port (torchattacks 3.5.1's ``APGD``, from AutoAttack's code) on the
same images, for a side-by-side check of our APGD.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rlrobust.attacks import apgd, apgd_targeted, fgsm, iterative, pgd

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
ATTACK_NAMES = (
    "fgsm",
    "iterative",
    "pgd",
    "apgd-ce",
    "apgd-dlr",
    "apgd-t",
    "apgd-ce-torchattacks",
    "apgd-dlr-torchattacks",
)


@dataclass(frozen=True)
class EvaluationSettings:
    """Settings shared by the attacks of one evaluation."""

    iterative_step: float = 1 / 255
    pgd_steps: int = 20
    pgd_step_frac: float = 0.25
    pgd_restarts: int = 1
    apgd_steps: int = 100
    apgd_restarts: int = 1
    apgd_targets: int = 9
    eot: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.iterative_step <= 1:  # False for NaN too
            raise ValueError(f"iterative_step must lie in (0, 1] on [0, 1] images, got {self.iterative_step}")
        if not 0 < self.pgd_step_frac <= 2:
            raise ValueError(f"pgd_step_frac must lie in (0, 2], got {self.pgd_step_frac}")
        counts = ("pgd_steps", "pgd_restarts", "apgd_steps", "apgd_restarts", "apgd_targets", "eot")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class AttackSpec:
    """One attack at one budget: ``run(model, x, y, generator) -> x_adv``."""

    name: str
    eps: float
    run: AttackFn


def build_attacks(names: Sequence[str], budgets: Sequence[float], settings: EvaluationSettings) -> list[AttackSpec]:
    """Every attack of ``names`` at every budget of ``budgets`` (eps on [0, 1])."""
    unknown = [n for n in names if n not in ATTACK_NAMES]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; available: {list(ATTACK_NAMES)}")
    for eps in budgets:
        if not 0 <= eps <= 1:
            raise ValueError(f"budget {eps} outside [0, 1]; give 0-255 budgets with --scale 255")
    return [AttackSpec(name, float(eps), _attack(name, float(eps), settings)) for name in names for eps in budgets]


def _attack(name: str, eps: float, s: EvaluationSettings) -> AttackFn:
    eot = {"eot_samples": s.eot}
    if name == "fgsm":
        return lambda m, x, y, g: fgsm(m, x, y, eps=eps, **eot)
    if name == "iterative":
        return lambda m, x, y, g: iterative(m, x, y, eps=eps, step=s.iterative_step, **eot)
    if name == "pgd":
        step = max(s.pgd_step_frac * eps, 1e-12)
        return lambda m, x, y, g: pgd(
            m, x, y, eps=eps, step=step, steps=s.pgd_steps, restarts=s.pgd_restarts, generator=g, **eot
        )
    if name in ("apgd-ce", "apgd-dlr"):
        loss = name.split("-")[1]
        return lambda m, x, y, g: apgd(
            m, x, y, eps=eps, steps=s.apgd_steps, restarts=s.apgd_restarts, loss=loss, generator=g, **eot
        )
    if name == "apgd-t":
        return lambda m, x, y, g: apgd_targeted(
            m,
            x,
            y,
            eps=eps,
            steps=s.apgd_steps,
            restarts=s.apgd_restarts,
            target_classes=s.apgd_targets,
            generator=g,
            **eot,
        )
    loss = name.split("-")[1]
    return lambda m, x, y, g: _torchattacks_apgd(m, x, y, eps, loss, s)


def _torchattacks_apgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, loss: str, s: EvaluationSettings
):
    try:
        import torchattacks
    except ImportError:
        raise ValueError(
            "the *-torchattacks reference attacks need `pip install --no-deps torchattacks==3.5.1`"
        ) from None
    if eps == 0:
        return x.clone()
    attack = torchattacks.APGD(
        model, norm="Linf", eps=eps, steps=s.apgd_steps, n_restarts=s.apgd_restarts, loss=loss, eot_iter=s.eot
    )
    return attack(x, y)
