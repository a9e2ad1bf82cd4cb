"""The geometry of a perturbation budget: steepest-ascent steps, projection onto the ``eps``-ball and the value
range, and uniform random points of the ball.

Every gradient attack is built from these, and code outside the core that perturbs inputs within a budget (random
noise baselines, per-environment random starts) uses them too, so a point it makes is one an attack would accept.
"""

from __future__ import annotations

import torch

Bounds = tuple[float, float]


def per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each row, shaped to broadcast against ``t``.

    >>> per_sample_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).flatten().tolist()
    [5.0, 1.0]
    """
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def ascend(x_adv: torch.Tensor, grad: torch.Tensor, step: float, norm: str) -> torch.Tensor:
    """One steepest-ascent step of length ``step`` in the given norm (sign for L-inf, unit gradient for L2).

    >>> ascend(torch.zeros(1, 2), torch.tensor([[2.0, -0.5]]), 0.1, "linf").tolist()
    [[0.10000000149011612, -0.10000000149011612]]
    >>> ascend(torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), 1.0, "l2").tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    if norm == "linf":
        return x_adv + step * grad.sign()
    length = per_sample_norm(grad)
    return x_adv + step * grad / torch.where(length > 0, length, torch.ones_like(length))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str, bounds: Bounds) -> torch.Tensor:
    """Project onto the ``eps``-ball around ``x`` in the given norm, then onto the value range ``bounds``.

    A point already inside both comes back unchanged.

    >>> x = torch.full((1, 2), 0.5)
    >>> project(torch.tensor([[0.9, 0.45]]), x, 0.1, "linf", (0.0, 1.0)).tolist()
    [[0.6000000238418579, 0.44999998807907104]]
    >>> project(torch.tensor([[0.5, 3.5]]), x, 1.0, "l2", (0.0, 1.0)).tolist()  # length 3 -> 1, then clipped
    [[0.5, 1.0]]
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        length = per_sample_norm(delta)
        delta = delta * torch.where(length > eps, eps / length.clamp_min(1e-12), torch.ones_like(length))
    return (x + delta).clamp(*bounds)


def random_point(
    x: torch.Tensor, eps: float, norm: str, bounds: Bounds, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniform random point of the ``eps``-ball around each row of ``x`` (L-inf cube or L2 ball), clipped to
    ``bounds``: PGD's random start, and a uniform-noise baseline of the same budget.

    >>> x = torch.full((3, 4), 0.5)
    >>> start = random_point(x, 0.1, "linf", (0.0, 1.0), torch.Generator().manual_seed(0))
    >>> bool((start - x).abs().max() <= 0.1), start.shape
    (True, torch.Size([3, 4]))
    """
    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        delta = noise * eps
    else:
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / per_sample_norm(direction).clamp_min(1e-12)
        dims = x[0].numel()
        u = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype)
        radius = eps * u.pow(1.0 / dims)
        delta = direction * radius.view(-1, *([1] * (x.ndim - 1)))
    return (x + delta).clamp(*bounds)
