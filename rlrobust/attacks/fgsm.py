"""FGSM (Goodfellow et al. 2015): one step of size ``eps`` along the sign of the input gradient.

With ``norm="l2"`` it is the fast gradient method: one step of L2 length ``eps`` along the gradient.
With ``eot_samples=n`` the gradient is the mean over ``n`` stochastic passes, the SAP paper's Monte-Carlo
attacker (n = 10, 100, 1000 there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlrobust.attacks._base import Model, attack_run
from rlrobust.attacks.budget import ascend
from rlrobust.attacks.losses import LossFn


def fgsm(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    bounds: Sequence[float] = (0.0, 1.0),
    norm: str = "linf",
    loss: str | LossFn = "ce",
    targeted: bool = False,
    eot_samples: int = 1,
    eot_batch_size: int | None = None,
) -> torch.Tensor:
    """Return ``clip(x + eps * sign(grad))``, the FGSM adversarial batch.

    Args:
        model: maps a float batch to scores (N, C): logits or Q-values.
        x: clean batch inside ``bounds`` (e.g. [0, 1] images or 0-255 frames as float).
        y: labels (or targets if ``targeted``); ``None`` uses the model's own prediction on ``x``.
        eps: budget in the units of ``bounds`` (the SAP paper's lambda on 0-255).
        bounds: the valid value range; the result never leaves it.
        norm: ``"linf"`` (sign step) or ``"l2"`` (normalised-gradient step).
        loss: ``"ce"``, ``"margin"`` or a callable ``(scores, y) -> (N,)``.
        targeted: descend the loss toward ``y`` instead of ascending it away from ``y``.
        eot_samples: stochastic passes averaged for the gradient (and for ``y=None`` predictions).
        eot_batch_size: most rows per forward call when passes are batched.

    The values of ``x``, ``y`` and the model's scores are checked in one read-back at the end of the call (one
    host-device synchronisation on a GPU), with the same errors as checks made one by one.

    >>> model = torch.nn.Linear(4, 3)
    >>> x = torch.full((2, 4), 0.5)
    >>> x_adv = fgsm(model, x, torch.tensor([0, 1]), eps=0.1)
    >>> torch.allclose((x_adv - x).abs(), torch.full_like(x, 0.1))  # every value moved by eps, up or down
    True
    """
    with attack_run(model, x, y, eps, bounds, norm, loss, targeted, eot_samples, eot_batch_size) as problem:
        if problem.eps == 0:
            return problem.x.clone()
        grad = problem.objective(problem.x, with_grad=True).grad
        return ascend(problem.x, grad, problem.eps, problem.norm).clamp(*problem.bounds).detach()
