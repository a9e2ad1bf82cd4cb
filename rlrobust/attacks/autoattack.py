"""AutoAttack (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): a fixed sequence of attacks, each run only on the inputs still robust after the ones
before it, so that the reported robust accuracy is that of the worst case over the whole ensemble.

The versions follow the released AutoAttack's ``set_version`` (L-inf and L2 alike):

- ``standard``: APGD-CE (1 run, 100 steps), APGD-T (9 target classes, 100 steps each), FAB-T (9 target classes,
  100 steps), Square (5,000 queries, ``p_init = 0.8``, 1 run);
- ``plus``: APGD-CE and APGD-DLR with 5 restarts, untargeted FAB with 5 restarts, Square with 5 restarts, then
  APGD-T and FAB-T as in ``standard``;
- ``rand`` (randomised defences): APGD-CE and APGD-DLR, 100 steps, every gradient and prediction the mean of
  ``eot_samples`` (20) stochastic passes (EOT).

AutoAttack's checks run first (``checks=True``) and after Square, each as one ``warnings.warn`` line that names the
problem and the remedy: a randomised model under a deterministic version, scores that are already probabilities,
zero input gradients (gradient masking), and Square fooling inputs the white-box attacks did not.
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from rlrobust._checks import (
    check_attack,
    check_count,
    check_flag,
    check_generator,
    check_labels,
    check_scores,
)
from rlrobust.attacks._base import Model, preserved_model
from rlrobust.stochastic import predict

VERSIONS = ("standard", "plus", "rand")

#: AutoAttack's ``check_randomized``: rows normalised to unit L2 norm that differ by more than this between two
#: passes on the same input mark a randomised model.
RANDOMISED_TOLERANCE = 1e-4
#: AutoAttack's ``check_range_output``: scores within this of [0, 1] whose rows sum to 1 within it are probabilities.
PROBABILITY_TOLERANCE = 1e-5
#: AutoAttack's ``check_square_sr``: Square lowering the robust accuracy by more than this share of the inputs,
#: after the white-box attacks, points to gradient masking.
SQUARE_GAIN_TOLERANCE = 0.002


@dataclass(frozen=True)
class Stage:
    """One attack of the sequence: its name in the log, the core attack function's name and its settings."""

    name: str
    attack: str
    settings: dict[str, Any] = field(default_factory=dict)


def autoattack_stages(
    version: str = "standard",
    *,
    steps: int = 100,
    queries: int = 5000,
    target_classes: int = 9,
    eot_samples: int = 20,
) -> list[Stage]:
    """The attacks of an AutoAttack ``version``, in order, with the released code's settings.

    >>> [s.name for s in autoattack_stages("standard")]
    ['apgd-ce', 'apgd-t', 'fab-t', 'square']
    >>> [s.name for s in autoattack_stages("rand")], autoattack_stages("rand")[0].settings["eot_samples"]
    (['apgd-ce', 'apgd-dlr'], 20)
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    steps = check_count(steps, "steps")
    queries = check_count(queries, "queries")
    targets = check_count(target_classes, "target_classes")
    eot_samples = check_count(eot_samples, "eot_samples")

    def apgd_stage(loss: str, restarts: int, eot: int = 1) -> Stage:
        return Stage(f"apgd-{loss}", "apgd", {"loss": loss, "steps": steps, "restarts": restarts, "eot_samples": eot})

    apgd_t = Stage("apgd-t", "apgd_targeted", {"target_classes": targets, "steps": steps, "restarts": 1})
    fab_t = Stage("fab-t", "fab", {"targeted": True, "target_classes": targets, "steps": steps, "restarts": 1})
    if version == "standard":
        square = Stage("square", "square", {"queries": queries, "p_init": 0.8, "restarts": 1})
        return [apgd_stage("ce", 1), apgd_t, fab_t, square]
    if version == "plus":
        fab = Stage("fab", "fab", {"targeted": False, "steps": steps, "restarts": 5})
        square = Stage("square", "square", {"queries": queries, "p_init": 0.8, "restarts": 5})
        return [apgd_stage("ce", 5), apgd_stage("dlr", 5), fab, square, apgd_t, fab_t]
    return [apgd_stage("ce", 1, eot_samples), apgd_stage("dlr", 1, eot_samples)]


def autoattack(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    bounds: Sequence[float] = (0.0, 1.0),
    steps: int = 100,
    queries: int = 5000,
    target_classes: int = 9,
    eot_samples: int = 20,
    samples: int | None = None,
    checks: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Return the AutoAttack adversarial batch (the clean input where no attack worked) and its per-attack log.

    Args:
        version: ``"standard"``, ``"plus"`` or ``"rand"`` (see the module docstring).
        steps: iterations of APGD, APGD-T and FAB (AutoAttack: 100).
        queries: Square's query budget (AutoAttack: 5,000).
        target_classes: target classes of APGD-T and FAB-T (AutoAttack: 9, every wrong class of CIFAR-10).
        eot_samples: stochastic passes per gradient in the ``rand`` version (AutoAttack: 20).
        samples: passes (mean softmax) per prediction that decides which inputs are still robust; default 1, and
            ``eot_samples`` for ``rand``.
        checks: run AutoAttack's checks and warn about what makes the evaluation unreliable.

    The log has one entry for the clean inputs and one per attack: ``attack``, ``robust_accuracy`` (share of all
    inputs still classified correctly after it), ``attacked`` (inputs it received), ``fooled``, ``seconds`` and
    ``settings``. ``y=None`` attacks the model's own predictions (clean accuracy 1).

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    >>> x, y = torch.rand(3, 4), torch.tensor([0, 1, 2])
    >>> x_adv, log = autoattack(model, x, y, eps=0.1, version="rand", steps=2, eot_samples=1, checks=False)
    >>> [e["attack"] for e in log], bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    (['clean', 'apgd-ce', 'apgd-dlr'], True)
    """
    bounds, norm, eps = check_attack(model, x, eps, bounds, norm)
    check_generator(generator, x.device)
    checks = check_flag(checks, "checks")
    stages = autoattack_stages(
        version, steps=steps, queries=queries, target_classes=target_classes, eot_samples=eot_samples
    )
    samples = check_count(samples, "samples") if samples is not None else (eot_samples if version == "rand" else 1)
    x = x.detach()
    return run_stages(model, x, y, stages, eps=eps, norm=norm, bounds=bounds, samples=samples, checks=checks,
                      randomised_ok=version == "rand", generator=generator)  # fmt: skip


def run_stages(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None,
    stages: Sequence[Stage],
    *,
    eps: float,
    norm: str,
    bounds: tuple[float, float],
    samples: int = 1,
    checks: bool = True,
    randomised_ok: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Run ``stages`` in order, each on the inputs still classified correctly; see :func:`autoattack`.

    >>> model = torch.nn.Linear(4, 3)
    >>> stages = [Stage("pgd-ce", "pgd", {"steps": 3}), Stage("apgd-dlr", "apgd", {"loss": "dlr", "steps": 3})]
    >>> x_adv, log = run_stages(model, torch.rand(2, 4), None, stages, eps=0.1, norm="linf", bounds=(0.0, 1.0))
    >>> [entry["attack"] for entry in log]
    ['clean', 'pgd-ce', 'apgd-dlr']
    """
    began = time.perf_counter()
    clean_scores = check_scores(_no_grad(model, x), x.shape[0])
    classes = clean_scores.shape[1]
    y = clean_scores.argmax(dim=1) if y is None else check_labels(y, x.shape[0], classes).to(x.device)
    _check_target_classes(stages, classes)
    if checks:
        _check_model(model, x, y, clean_scores, randomised_ok)
    robust = predict(model, x, samples) == y
    result = x.clone()
    n = x.shape[0]
    log = [_entry("clean", robust, 0, 0, began, {"samples": samples})]
    for stage in stages:
        began = time.perf_counter()
        rows = robust.nonzero().squeeze(1)
        if rows.numel() == 0:  # one host sync per stage, not per step
            log.append(_entry(stage.name, robust, 0, 0, began, stage.settings))
            continue
        attack = _core_attack(stage.attack)
        x_adv = attack(model, x[rows], y[rows], eps=eps, norm=norm, bounds=bounds, generator=generator,
                       **stage.settings)  # fmt: skip
        fooled = predict(model, x_adv, samples) != y[rows]
        result[rows[fooled]] = x_adv[fooled].to(result.dtype)
        robust[rows[fooled]] = False
        log.append(_entry(stage.name, robust, rows.numel(), int(fooled.sum()), began, stage.settings))
    if checks:
        _check_square(log, n)
    return result, log


def _core_attack(name: str) -> Callable[..., torch.Tensor]:
    """The core attack function ``name``, imported on first use (Square and FAB load only when a version runs them)."""
    module = {"apgd": "apgd", "apgd_targeted": "apgd"}.get(name, name)
    return getattr(importlib.import_module(f"rlrobust.attacks.{module}"), name)


def _no_grad(model: Model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _entry(name: str, robust: torch.Tensor, attacked: int, fooled: int, began: float, settings: dict) -> dict:
    return {
        "attack": name,
        "robust_accuracy": robust.float().mean().item(),
        "attacked": attacked,
        "fooled": fooled,
        "seconds": round(time.perf_counter() - began, 3),
        "settings": dict(settings),
    }


def _check_target_classes(stages: Sequence[Stage], classes: int) -> None:
    """Refuse up front (not after the first attacks ran) more target classes than the model has wrong classes."""
    for stage in stages:
        targets = stage.settings.get("target_classes")
        if stage.settings.get("targeted", True) and targets is not None and targets > classes - 1:
            raise ValueError(
                f"target_classes={targets} exceeds the {classes - 1} wrong classes of this model; pass "
                f"target_classes={classes - 1}"
            )


def _check_model(model: Model, x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor, randomised_ok: bool) -> None:
    """AutoAttack's checks before the attacks: randomness, probability outputs and zero input gradients."""
    again = _no_grad(model, x)
    if not randomised_ok and _differs(scores, again):
        warnings.warn(
            "autoattack: two passes of the model on the same input gave different scores: it looks randomised, and "
            "the deterministic attacks overstate its robustness; use version='rand' (EOT) for randomised defences",
            stacklevel=3,
        )
    if _are_probabilities(scores):
        warnings.warn(
            "autoattack: the model's scores lie in [0, 1] and each row sums to 1: they look like probabilities, on "
            "which the CE and DLR losses give vanishing gradients; pass a model that returns logits",
            stacklevel=3,
        )
    flat = _zero_gradient_inputs(model, x, y)
    if flat:
        warnings.warn(
            f"autoattack: the loss has a zero input gradient on {flat} of {x.shape[0]} inputs: a sign of gradient "
            "masking, which makes gradient attacks unreliable; check the robust accuracy with an adaptive attack "
            "(e.g. BPDA or EOT) and trust the black-box Square's result",
            stacklevel=3,
        )


def _differs(first: torch.Tensor, second: torch.Tensor) -> bool:
    a, b = (s.detach().float() for s in (first, second))
    a, b = (s / (s.norm(dim=1, keepdim=True) + 1e-10) for s in (a, b))
    return bool((a - b).abs().max() > RANDOMISED_TOLERANCE) or bool((a.argmax(1) != b.argmax(1)).any())


def _are_probabilities(scores: torch.Tensor) -> bool:
    s = scores.detach().float()
    tol = PROBABILITY_TOLERANCE
    return bool((s.min() > -tol) & (s.max() < 1 + tol) & ((s.sum(dim=1) - 1).abs() < tol).all())


def _zero_gradient_inputs(model: Model, x: torch.Tensor, y: torch.Tensor) -> int:
    """How many inputs have an all-zero input gradient of the cross-entropy loss (AutoAttack's
    ``check_zero_gradients``)."""
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad(), preserved_model(model):
        loss = F.cross_entropy(model(leaf).float(), y, reduction="sum")
        if not loss.requires_grad:  # the model cut the graph: every gradient is zero
            return x.shape[0]
        (grad,) = torch.autograd.grad(loss, leaf)
    return int((grad.flatten(1).abs().amax(dim=1) == 0).sum())


def _check_square(log: Sequence[dict], n: int) -> None:
    """AutoAttack's ``check_square_sr``: Square, the black-box attack, fooling inputs the gradient attacks before it
    could not is the signature of gradient masking."""
    for entry in log:
        if entry["attack"] == "square" and entry["fooled"] > SQUARE_GAIN_TOLERANCE * n:
            warnings.warn(
                f"autoattack: Square (black-box) fooled {entry['fooled']} of {n} inputs that the white-box attacks "
                "before it did not: a sign of gradient masking, so gradient attacks alone overstate robustness; run "
                "Square with more queries and restarts or an adaptive attack (e.g. BPDA or EOT)",
                stacklevel=3,
            )
