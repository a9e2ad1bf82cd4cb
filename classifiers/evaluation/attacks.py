"""The attacks of a robustness evaluation, each bound to its budget and settings, all from the core.

Budgets are L-inf on [0, 1] images. ``fgsm`` and ``iterative`` follow the SAP paper (iterative: steps of
``iterative_step``, ``ceil(eps / step)`` of them); ``pgd`` is PGD-k with a random start, step ``pgd_step_frac *
eps`` and restarts; ``apgd-ce`` / ``apgd-dlr`` / ``apgd-t`` are AutoAttack's gradient attacks; ``fab-t`` (FAB-T)
and ``square`` (the black-box Square Attack) its other two, and ``autoattack`` the whole sequence (``version``
standard, plus or rand: :func:`rlrobust.attacks.autoattack.autoattack`). Every gradient may be an EOT mean over
``eot`` stochastic passes (for models with SAP or other randomness); Square scores the mean of ``eot`` passes per
query, and AutoAttack's ``rand`` version uses ``rand_eot`` passes (AutoAttack: 20). ``apgd-ce-torchattacks`` and
``apgd-dlr-torchattacks`` run the reference port (torchattacks 3.5.1's ``APGD``, from AutoAttack's code) on the
same images, for a side-by-side check of our APGD.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rlrobust.attacks import apgd, apgd_targeted, fgsm, iterative, pgd
from rlrobust.attacks.autoattack import VERSIONS, autoattack, autoattack_stages

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
ATTACK_NAMES = (
    "fgsm",
    "iterative",
    "pgd",
    "apgd-ce",
    "apgd-dlr",
    "apgd-t",
    "fab-t",
    "square",
    "autoattack",
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
    fab_steps: int = 100
    fab_restarts: int = 1
    square_queries: int = 5000
    square_restarts: int = 1
    version: str = "standard"
    rand_eot: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.iterative_step <= 1:  # False for NaN too
            raise ValueError(f"iterative_step must lie in (0, 1] on [0, 1] images, got {self.iterative_step}")
        if not 0 < self.pgd_step_frac <= 2:
            raise ValueError(f"pgd_step_frac must lie in (0, 2], got {self.pgd_step_frac}")
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {self.version!r}")
        counts = ("pgd_steps", "pgd_restarts", "apgd_steps", "apgd_restarts", "apgd_targets", "eot", "fab_steps",
                  "fab_restarts", "square_queries", "square_restarts", "rand_eot")  # fmt: skip
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class AttackSpec:
    """One attack at one budget: ``run(model, x, y, generator) -> x_adv``; ``settings`` names what shapes it (for
    the result rows)."""

    name: str
    eps: float
    run: AttackFn
    settings: str = ""


def build_attacks(names: Sequence[str], budgets: Sequence[float], settings: EvaluationSettings) -> list[AttackSpec]:
    """Every attack of ``names`` at every budget of ``budgets`` (eps on [0, 1])."""
    unknown = [n for n in names if n not in ATTACK_NAMES]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; available: {list(ATTACK_NAMES)}")
    for eps in budgets:
        if not 0 <= eps <= 1:
            raise ValueError(f"budget {eps} outside [0, 1]; give 0-255 budgets with --scale 255")
    return [
        AttackSpec(name, float(eps), _attack(name, float(eps), settings), attack_settings(name, settings))
        for name in names
        for eps in budgets
    ]


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
    if name in ("fab-t", "square", "autoattack"):
        return _autoattack_part(name, eps, s)
    loss = name.split("-")[1]
    return lambda m, x, y, g: _torchattacks_apgd(m, x, y, eps, loss, s)


def attack_settings(name: str, s: EvaluationSettings) -> str:
    """Every setting that shapes attack ``name``, as one short string for the result rows (``""`` for none).

    >>> attack_settings("square", EvaluationSettings())
    'queries=5000 restarts=1 p_init=0.8 samples=1'
    >>> attack_settings("autoattack", EvaluationSettings(version="rand"))
    'version=rand steps=100 eot=20 attacks=apgd-ce,apgd-dlr'
    """
    if name == "fgsm":
        return f"eot={s.eot}"
    if name == "iterative":
        return f"step={s.iterative_step:.6g} eot={s.eot}"
    if name == "pgd":
        return f"steps={s.pgd_steps} step_frac={s.pgd_step_frac:g} restarts={s.pgd_restarts} eot={s.eot}"
    if name in ("apgd-ce", "apgd-dlr", "apgd-ce-torchattacks", "apgd-dlr-torchattacks"):
        return f"steps={s.apgd_steps} restarts={s.apgd_restarts} eot={s.eot}"
    if name == "apgd-t":
        return f"steps={s.apgd_steps} restarts={s.apgd_restarts} targets={s.apgd_targets} eot={s.eot}"
    if name == "fab-t":
        return f"steps={s.fab_steps} restarts={s.fab_restarts} targets={s.apgd_targets}"
    if name == "square":
        return f"queries={s.square_queries} restarts={s.square_restarts} p_init=0.8 samples={s.eot}"
    if name == "autoattack":
        stages = ",".join(stage.name for stage in _stages(s))
        if s.version == "rand":
            return f"version=rand steps={s.apgd_steps} eot={s.rand_eot} attacks={stages}"
        return f"version={s.version} steps={s.apgd_steps} queries={s.square_queries} targets={s.apgd_targets} " \
            f"attacks={stages}"  # fmt: skip
    return ""


def _stages(s: EvaluationSettings):
    return autoattack_stages(s.version, steps=s.apgd_steps, queries=s.square_queries, target_classes=s.apgd_targets,
                             eot_samples=s.rand_eot)  # fmt: skip


def _autoattack_part(name: str, eps: float, s: EvaluationSettings) -> AttackFn:
    """FAB-T, Square or the whole AutoAttack (Square and FAB imported on first use)."""
    if name == "fab-t":
        from rlrobust.attacks.fab import fab

        return lambda m, x, y, g: fab(m, x, y, eps=eps, targeted=True, target_classes=s.apgd_targets,
                                      steps=s.fab_steps, restarts=s.fab_restarts, generator=g)  # fmt: skip
    if name == "square":
        from rlrobust.attacks.square import square

        return lambda m, x, y, g: square(m, x, y, eps=eps, queries=s.square_queries, restarts=s.square_restarts,
                                         samples=s.eot, generator=g)  # fmt: skip
    return lambda m, x, y, g: autoattack(m, x, y, eps=eps, version=s.version, steps=s.apgd_steps,
                                         queries=s.square_queries, target_classes=s.apgd_targets,
                                         eot_samples=s.rand_eot, generator=g)[0]  # fmt: skip


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
