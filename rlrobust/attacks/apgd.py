"""Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): the gradient attack at the core of AutoAttack.

PGD with momentum and a step size that adapts itself, so that no step size has to be tuned:

- the step starts at ``2 * eps`` and each input has its own;
- ``x_{k+1} = P(x_k + a (z_{k+1} - x_k) + (1 - a)(x_k - x_{k-1}))`` with ``z_{k+1} = P(x_k + eta * dir(grad))``
  and momentum ``a = 0.75`` (``a = 1`` on the first step);
- at checkpoints ``w_j`` (after 22 % of the budget, then at intervals that shrink by 3 % of it down to 6 %),
  an input's step is halved and its iterate reset to its best point so far when either (1) at most
  ``rho = 75 %`` of the steps since the last checkpoint raised its objective, or (2) its step was not halved at
  the last checkpoint (taken as halved before the first one) and its best objective has not improved since.

These rules follow AutoAttack's code (``check_oscillation``'s ``<=``, ``reduced_last_check`` starting true). One
deliberate difference: AutoAttack's first interval compares its first iterate's loss with 0 (an unset buffer
entry), where we compare it with the loss at the start point, as the paper defines the count.

Each input returns, in this order of preference, a point the model misclassifies (reaches the target when
``targeted``) with the highest objective found, else the point of highest objective. With class labels, restarts
attack only the inputs no earlier run has fooled. ``loss="dlr"`` gives APGD-DLR; :func:`apgd_targeted` is
APGD-T (targeted DLR over the top classes), as in AutoAttack. With ``eot_samples=n`` every gradient is the mean
of ``n`` stochastic passes (AutoAttack's "rand" version uses EOT with 20 passes) and predictions are the mean
softmax of the same passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from rlrobust._checks import (
    check_bounds,
    check_count,
    check_flag,
    check_generator,
    check_input,
    check_labels,
    check_positive,
)
from rlrobust.attacks._base import AttackProblem, Model, ScoreWatch, attack_run, checked_proba
from rlrobust.attacks.budget import ascend, project, random_point
from rlrobust.attacks.losses import LossFn, targeted_dlr

SuccessFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (predictions, labels) -> fooled? (N,) bool


def apgd(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    steps: int = 100,
    restarts: int = 1,
    bounds: Sequence[float] = (0.0, 1.0),
    norm: str = "linf",
    loss: str | LossFn = "ce",
    targeted: bool = False,
    rho: float = 0.75,
    momentum: float = 0.75,
    random_start: bool = True,
    eot_samples: int = 1,
    eot_batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the APGD adversarial batch.

    Args:
        steps: iterations per restart (AutoAttack: 100); each costs one gradient, plus one for the start.
        restarts: independent runs from new random starts; later runs attack only inputs not yet fooled.
        loss: ``"ce"`` (APGD-CE), ``"dlr"`` (APGD-DLR), ``"margin"`` or a callable ``(scores, y) -> (N,)``.
        rho: share of objective-raising steps below which a checkpoint halves the step (paper: 0.75).
        momentum: weight ``a`` of the new step against the previous one (paper: 0.75).
        random_start: start at a uniform point of the ``eps``-ball (else at ``x`` itself).
        generator: seeds the random starts.

    Other arguments as :func:`rlrobust.attacks.pgd`. Misclassification is tracked when ``y`` (or the model's
    prediction for ``y=None``) holds one class index per input; with other labels (custom losses) each input
    returns the point of highest objective.

    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.rand(2, 4), torch.tensor([0, 2])
    >>> x_adv = apgd(model, x, y, eps=0.1, steps=5, generator=torch.Generator().manual_seed(0))
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """
    with attack_run(model, x, y, eps, bounds, norm, loss, targeted, eot_samples, eot_batch_size) as problem:
        settings = _Settings.checked(steps, restarts, rho, momentum, random_start, generator)
        check_generator(generator, problem.x.device)
        if problem.eps == 0:
            return problem.x.clone()
        return _run_restarts(problem, settings, _success_rule(problem, targeted))[0]


def apgd_targeted(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    target_classes: int = 9,
    steps: int = 100,
    restarts: int = 1,
    bounds: Sequence[float] = (0.0, 1.0),
    norm: str = "linf",
    rho: float = 0.75,
    momentum: float = 0.75,
    eot_samples: int = 1,
    eot_batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """APGD-T: for each of the ``target_classes`` highest-scoring wrong classes of the clean input in turn, APGD on
    the targeted DLR loss toward that class, on the inputs still classified correctly.

    ``y`` holds the true labels (this is an untargeted attack that uses targets as a tool). AutoAttack's
    standard version uses 9 target classes, 100 steps and 1 restart each.

    >>> model = torch.nn.Linear(4, 5)
    >>> x, y = torch.rand(2, 4), torch.tensor([0, 3])
    >>> x_adv = apgd_targeted(model, x, y, eps=0.1, target_classes=2, steps=5)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """
    target_classes = check_count(target_classes, "target_classes")
    settings = _Settings.checked(steps, restarts, rho, momentum, True, generator)
    check_input(x, check_bounds(bounds))
    check_generator(generator, x.device)
    clean_probs = checked_proba(model, x.detach(), eot_samples, eot_batch_size, ScoreWatch())
    classes = clean_probs.shape[1]
    y = check_labels(y, x.shape[0], classes).to(x.device)
    if classes < 4:
        raise ValueError(f"apgd_targeted needs a model with at least 4 classes, got {classes}")
    if target_classes > classes - 1:
        raise ValueError(f"target_classes={target_classes} exceeds the {classes - 1} wrong classes of this model")
    ranked_targets = clean_probs.scatter(1, y[:, None], -1.0).argsort(dim=1, descending=True)[:, :target_classes]
    result = x.detach().clone()
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for t in range(target_classes):
        rows = (~fooled).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        pairs = torch.stack([y[rows], ranked_targets[rows, t]], dim=1)
        with attack_run(
            model, x[rows], pairs, eps, bounds, norm, targeted_dlr, False, eot_samples, eot_batch_size
        ) as problem:
            if problem.eps == 0:
                return result
            x_adv, fooled_now = _run_restarts(problem, settings, lambda pred, pair: pred != pair[:, 0])
        keep = fooled_now | (t == 0)  # the first target's best point stands until a later target fools the model
        result[rows] = torch.where(_rows(keep, x_adv), x_adv, result[rows])
        fooled[rows] |= fooled_now
    return result


def checkpoint_iterations(steps: int) -> list[int]:
    """The iterations after which APGD checks its progress: the paper's ``w_j = ceil(p_j * steps)`` with
    ``p_1 = 0.22`` and intervals shrinking by 0.03 down to 0.06, in whole iterations.

    >>> checkpoint_iterations(100)
    [22, 41, 57, 70, 80, 87, 93, 99]
    """
    first = max(int(0.22 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    shortest = max(int(0.06 * steps), 1)
    checks, interval, at = [], first, first
    while at <= steps:
        checks.append(at)
        interval = max(interval - shrink, shortest)
        at += interval
    return checks


@dataclasses.dataclass(frozen=True)
class _Settings:
    steps: int
    restarts: int
    rho: float
    momentum: float
    random_start: bool
    generator: torch.Generator | None

    @classmethod
    def checked(cls, steps, restarts, rho, momentum, random_start, generator) -> _Settings:
        return cls(
            steps=check_count(steps, "steps"),
            restarts=check_count(restarts, "restarts"),
            rho=_check_fraction(rho, "rho"),
            momentum=_check_fraction(momentum, "momentum"),
            random_start=check_flag(random_start, "random_start"),
            generator=generator,
        )


def _success_rule(problem: AttackProblem, targeted: bool) -> SuccessFn | None:
    """How to tell a fooled input, when the labels are class indices; None otherwise."""
    y = problem.y
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        return None
    if targeted:
        return lambda pred, labels: pred == labels
    return lambda pred, labels: pred != labels


def _run_restarts(
    problem: AttackProblem, settings: _Settings, success: SuccessFn | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best points over the restarts and whether each input was fooled.

    With a success rule, inputs the model already gets wrong are returned unchanged and each restart attacks
    only the inputs no earlier run has fooled (as AutoAttack does).
    """
    x = problem.x
    best = x.clone()
    best_objective = torch.full((x.shape[0],), float("-inf"), device=x.device)
    if success is None:
        best_fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        probs = problem.clean_proba()
        if problem.y.ndim == 1:  # a label outside the classes would count as fooled from the start
            check_labels(problem.y, x.shape[0], probs.shape[1])
        best_fooled = success(probs.argmax(dim=1), problem.y)
    for restart in range(settings.restarts):
        rows = (~best_fooled).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        sub = dataclasses.replace(problem, x=x[rows], given_y=problem.y[rows])
        x_adv, objective, fooled = _single_run(sub, settings, success, first=restart == 0)
        better = _better(fooled, objective, best_fooled[rows], best_objective[rows])
        best[rows] = torch.where(_rows(better, x_adv), x_adv, best[rows])
        best_objective[rows] = torch.where(better, objective, best_objective[rows])
        best_fooled[rows] |= fooled
    return best, best_fooled


def _single_run(
    problem: AttackProblem, settings: _Settings, success: SuccessFn | None, *, first: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run from a (random) start; returns the chosen points, their objectives and fooled flags."""
    x = problem.x
    n = x.shape[0]
    shape = (n, *([1] * (x.ndim - 1)))

    def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        objective, grad, predictions = problem.objective(point, with_grad=True, with_predictions=success is not None)
        if success is None:
            return objective, grad, torch.zeros(n, dtype=torch.bool, device=x.device)
        return objective, grad, success(predictions, problem.y)

    if settings.random_start or not first:
        current = random_point(x, problem.eps, problem.norm, problem.bounds, settings.generator)
    else:
        current = x.clone()
    objective, grad, fooled = evaluate(current)
    # The best point by objective drives the checkpoint resets; the returned point prefers fooled inputs.
    top, top_objective, top_grad = current.clone(), objective.clone(), grad.clone()
    out, out_objective, out_fooled = current.clone(), objective.clone(), fooled.clone()

    step = torch.full(shape, 2.0 * problem.eps, dtype=x.dtype, device=x.device)
    previous, last_objective = current, objective
    checks = checkpoint_iterations(settings.steps)
    interval_start, rises = 0, torch.zeros(n, device=x.device)
    # As in AutoAttack's code, condition (2) cannot fire at the first checkpoint ("halved last time" starts true).
    halved_last = torch.ones(n, dtype=torch.bool, device=x.device)
    top_at_last_check = top_objective.clone()
    for k in range(1, settings.steps + 1):
        a = 1.0 if k == 1 else settings.momentum
        z = project(ascend(current, grad, step, problem.norm), x, problem.eps, problem.norm, problem.bounds)
        moved = current + a * (z - current) + (1 - a) * (current - previous)
        previous, current = current, project(moved, x, problem.eps, problem.norm, problem.bounds)
        objective, grad, fooled = evaluate(current)

        improved = objective > top_objective
        top = torch.where(_rows(improved, current), current, top)
        top_grad = torch.where(_rows(improved, grad), grad, top_grad)
        top_objective = torch.where(improved, objective, top_objective)
        better = _better(fooled, objective, out_fooled, out_objective)
        out = torch.where(_rows(better, current), current, out)
        out_objective = torch.where(better, objective, out_objective)
        out_fooled |= fooled
        rises += (objective > last_objective).float()
        last_objective = objective

        if checks and k == checks[0]:
            interval = k - interval_start
            too_few_rises = rises <= settings.rho * interval  # AutoAttack: "t <= k * k3"
            stalled = ~halved_last & (top_objective <= top_at_last_check)
            halve = too_few_rises | stalled
            step = torch.where(_rows(halve, step), step / 2, step)
            current = torch.where(_rows(halve, current), top, current)
            grad = torch.where(_rows(halve, grad), top_grad, grad)
            halved_last, top_at_last_check = halve, top_objective.clone()
            interval_start, rises = k, torch.zeros_like(rises)
            checks.pop(0)
    return out.detach(), out_objective, out_fooled


def _better(
    fooled: torch.Tensor, objective: torch.Tensor, old_fooled: torch.Tensor, old_objective: torch.Tensor
) -> torch.Tensor:
    """Whether (fooled, objective) beats (old_fooled, old_objective): fooled first, then higher objective."""
    return (fooled & ~old_fooled) | ((fooled == old_fooled) & (objective > old_objective))


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.ndim - 1)))


def _check_fraction(value: float, name: str) -> float:
    value = check_positive(value, name)
    if value > 1:
        raise ValueError(f"{name} must lie in (0, 1], got {value}")
    return value
