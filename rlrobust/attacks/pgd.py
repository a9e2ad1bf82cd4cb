"""Projected gradient descent (Madry et al. 2018): a random start in the ``eps``-ball, ``steps`` projected
ascent steps, and optional restarts keeping, per input, the restart that reached the highest objective.

With ``eot_samples=n`` every step uses the mean gradient over ``n`` stochastic passes (EOT-PGD, Athalye et
al. 2018), the attack that breaks randomised defences such as SAP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlrobust._checks import DeviceChecks, check_count, check_flag, check_generator, check_positive
from rlrobust.attacks._base import AttackProblem, Model, prepare, preserved_model, random_start, run_steps
from rlrobust.attacks.losses import LossFn


def pgd(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    step: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    restarts: int = 1,
    bounds: Sequence[float] = (0.0, 1.0),
    norm: str = "linf",
    loss: str | LossFn = "ce",
    targeted: bool = False,
    eot_samples: int = 1,
    eot_batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the PGD adversarial batch.

    Args:
        step: step size; defaults to ``2.5 * eps / steps`` (Madry et al.'s rule).
        steps: projected steps per restart.
        random_start: start each restart at a uniform point of the ball (else at ``x``).
        restarts: independent runs; each input keeps the run with the highest final objective.
        generator: seeds the random starts.

    Other arguments as :func:`rlrobust.attacks.fgsm`.
    """
    with DeviceChecks.deferred() as checks:  # the values of x, y and every pass's scores: one read-back
        problem = prepare(
            model,
            x,
            y,
            eps=eps,
            bounds=bounds,
            norm=norm,
            loss=loss,
            targeted=targeted,
            eot_samples=eot_samples,
            eot_batch_size=eot_batch_size,
            checks=checks,
        )
        steps = check_count(steps, "steps")
        restarts = check_count(restarts, "restarts")
        random_start = check_flag(random_start, "random_start")
        check_generator(generator, problem.x.device)
        step = 2.5 * problem.eps / steps if step is None else check_positive(step, "step")
        if problem.eps == 0:
            return problem.x.clone()
        with preserved_model(model):
            return _restarts(problem, random_start, restarts, step, steps, generator)


def _restarts(
    problem: AttackProblem,
    random_start: bool,
    restarts: int,
    step: float,
    steps: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Runs from ``restarts`` starts; per input, the end point with the highest objective."""
    best, best_objective = None, None
    for _ in range(restarts):
        x_adv = run_steps(problem, _start(problem, random_start, generator), step=step, steps=steps)
        if restarts == 1:
            return x_adv
        objective, _ = problem.objective(x_adv, with_grad=False)
        if best is None:
            best, best_objective = x_adv, objective
            continue
        better = objective > best_objective
        best = torch.where(better.view(-1, *([1] * (x_adv.ndim - 1))), x_adv, best)
        best_objective = torch.maximum(objective, best_objective)
    return best


def _start(problem: AttackProblem, use_random: bool, generator: torch.Generator | None) -> torch.Tensor:
    if not use_random:
        return problem.x.clone()
    return random_start(problem.x, problem.eps, problem.norm, problem.bounds, generator)
