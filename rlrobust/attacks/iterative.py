"""The SAP paper's iterative attack (Kurakin et al. 2017, "BIM"): steps of size ``step`` along the sign of
the gradient, ``ceil(eps / step)`` of them, each followed by projection onto the ``eps``-ball around ``x``
and onto the value range. The paper uses step k = 1 on the 0-255 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlrobust._checks import DeviceChecks, check_count, check_positive
from rlrobust.attacks._base import Model, prepare, preserved_model, run_steps, steps_for
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
        step = check_positive(step, "step")
        steps = steps_for(problem.eps, step) if steps is None else check_count(steps, "steps")
        if problem.eps == 0:
            return problem.x.clone()
        with preserved_model(model):
            return run_steps(problem, problem.x, step=step, steps=steps)
