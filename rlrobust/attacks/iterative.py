"""The SAP paper's iterative attack (Kurakin et al. 2017, "BIM"): steps of size ``step`` along the sign of
the gradient, ``ceil(eps / step)`` of them, each followed by projection onto the ``eps``-ball around ``x``
and onto the value range. The paper uses step k = 1 on the 0-255 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlrobust._checks import check_count, check_positive
from rlrobust.attacks._base import Model, attack_run, run_steps, steps_for
from rlrobust.attacks.losses import LossFn


def iterative(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    step: float,
    steps: int | None = None,
    bounds: Sequence[float] = (0.0, 1.0),
    norm: str = "linf",
    loss: str | LossFn = "ce",
    targeted: bool = False,
    eot_samples: int = 1,
    eot_batch_size: int | None = None,
) -> torch.Tensor:
    """Return the iterative (BIM) adversarial batch, starting from ``x`` itself.

    ``steps`` defaults to the paper's ``ceil(eps / step)``. Other arguments as :func:`rlrobust.attacks.fgsm`;
    with ``eot_samples=n`` every step uses the mean gradient of ``n`` stochastic passes.

    >>> model = torch.nn.Linear(4, 3)
    >>> x = torch.full((2, 4), 120.0)  # 0-255 frames: lambda = 4, steps of k = 1
    >>> x_adv = iterative(model, x, eps=4, step=1, bounds=(0, 255))
    >>> bool((x_adv - x).abs().max() <= 4)
    True
    """
    with attack_run(model, x, y, eps, bounds, norm, loss, targeted, eot_samples, eot_batch_size) as problem:
        step = check_positive(step, "step")
        steps = steps_for(problem.eps, step) if steps is None else check_count(steps, "steps")
        if problem.eps == 0:
            return problem.x.clone()
        return run_steps(problem, problem.x, step=step, steps=steps)
