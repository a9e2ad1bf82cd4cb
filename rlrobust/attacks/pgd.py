"""Projected gradient descent (Madry et al. 2018): a random start in the ``eps``-ball, ``steps`` projected
ascent steps, and optional restarts keeping, per input, the restart that reached the highest objective.

With ``eot_samples=n`` every step uses the mean gradient over ``n`` stochastic passes (EOT-PGD, Athalye et
al. 2018), the attack that breaks randomised defences such as SAP. ``x_init`` starts from a given point instead
(as AutoAttack's attacks allow): a start drawn elsewhere, such as one per environment from its own generator, or
TRADES' ``x + 0.001 N(0, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlrobust._checks import check_count, check_flag, check_generator, check_input, check_positive
from rlrobust.attacks._base import AttackProblem, Model, attack_run, run_steps
from rlrobust.attacks.budget import random_point
from rlrobust.attacks.losses import LossFn

#: Madry et al.'s rule: the steps of a PGD run together span 2.5 budgets.
PGD_RADII = 2.5


def default_pgd_step(eps: float, steps: int) -> float:
    """The PGD step when none is given, ``2.5 * eps / steps`` (Madry et al.): the one default of the core, the
    wrappers and the RL evaluation. A named protocol that fixes its own (SA-DQN: ``eps / 10``) states it.

    >>> default_pgd_step(8 / 255, 10) == 2 / 255
    True
    """
    return PGD_RADII * eps / steps


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
    x_init: torch.Tensor | None = None,
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
        step: step size; defaults to :func:`default_pgd_step`, ``2.5 * eps / steps`` (Madry et al.'s rule).
        steps: projected steps per restart.
        random_start: start each restart at a uniform point of the ball (else at ``x``).
        restarts: independent runs; each input keeps the run with the highest final objective.
        x_init: where the first run starts, instead of a random point or ``x`` (later restarts start as
            ``random_start`` says): a tensor of ``x``'s shape on its device with finite values inside ``bounds``, else
            one clear error (a start on another scale is a mistake to show, not to clip away). It is used as given
            and may lie outside the ``eps``-ball (TRADES' ``x + 0.001 N(0, 1)`` does, for budgets below 0.001
            ``|N|``): the first gradient is taken there, and every step is projected, so the result lies within
            ``eps`` of ``x`` all the same.
        generator: seeds the random starts.

    Other arguments as :func:`rlrobust.attacks.fgsm`.

    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.rand(2, 4), torch.tensor([0, 2])
    >>> x_adv = pgd(model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    >>> x_adv = pgd(model, x, y, eps=0.1, steps=3, x_init=(x + 0.001).clamp(0, 1))  # from a given start
    """
    with attack_run(model, x, y, eps, bounds, norm, loss, targeted, eot_samples, eot_batch_size) as problem:
        steps = check_count(steps, "steps")
        restarts = check_count(restarts, "restarts")
        random_start = check_flag(random_start, "random_start")
        check_generator(generator, problem.x.device)
        step = default_pgd_step(problem.eps, steps) if step is None else check_positive(step, "step")
        start = None if x_init is None else _checked_start(x_init, problem)
        if problem.eps == 0:
            return problem.x.clone()
        return _restarts(problem, start, random_start, restarts, step, steps, generator)


def _checked_start(x_init: torch.Tensor, problem: AttackProblem) -> torch.Tensor:
    """``x_init`` checked (shape, device, finite values inside the bounds; judged with the call's other values) in
    ``x``'s dtype."""
    x = problem.x
    if not isinstance(x_init, torch.Tensor) or x_init.shape != x.shape:
        shape = tuple(x_init.shape) if isinstance(x_init, torch.Tensor) else type(x_init).__name__
        raise ValueError(f"x_init must be a tensor of x's shape {tuple(x.shape)}, got {shape}")
    if x_init.device != x.device:
        raise ValueError(f"x_init is on {x_init.device} but x is on {x.device}; move it with x_init.to(x.device)")
    hint = "x_init is a start point on x's own scale, inside the same bounds"
    check_input(x_init, problem.bounds, name="x_init", hint=hint, checks=problem.checks)
    return x_init.detach().to(x.dtype)


def _restarts(
    problem: AttackProblem,
    start: torch.Tensor | None,
    random_start: bool,
    restarts: int,
    step: float,
    steps: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Runs from ``restarts`` starts (the first at ``start`` when given); per input, the end point with the highest
    objective."""
    best, best_objective = None, None
    for restart in range(restarts):
        if restart > 0 or start is None:
            start = _start(problem, random_start, generator)
        x_adv = run_steps(problem, start, step=step, steps=steps)
        if restarts == 1:
            return x_adv
        objective = problem.objective(x_adv, with_grad=False).objective
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
    return random_point(problem.x, problem.eps, problem.norm, problem.bounds, generator)
