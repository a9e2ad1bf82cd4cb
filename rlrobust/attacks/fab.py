"""FAB, the fast adaptive boundary attack (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with
a fast adaptive boundary attack"), in the targeted form AutoAttack runs (FAB-T).

FAB looks for the adversarial point closest to the input. Each step linearises the decision boundary between the
true class ``y`` and a class ``t`` at the current iterate ``x_k``, and projects both ``x_k`` and the clean input
``x_0`` onto that hyperplane inside the value range (the paper's closed-form projections for L-inf and L2 with box
constraints). The step mixes the two projections, biased toward ``x_0`` so that the result stays
close to it (the paper's update):

    x_{k+1} = clip((1 - a)(x_k + eta d_k) + a (x_0 + eta d_0)),   a = min(|d_k| / (|d_k| + |d_0|), alpha_max)

with overshoot ``eta`` (1.05) and ``alpha_max`` 0.1. When ``x_{k+1}`` is misclassified it is kept if it is the
closest adversarial point so far, and the iterate moves back toward ``x_0``: ``x_0 + beta (x_{k+1} - x_0)`` with
``beta`` 0.9. The constants are the paper's and AutoAttack's.

FAB-T (``targeted=True``) runs FAB toward each of the ``target_classes`` highest-scoring wrong classes of the clean
input in turn, on the inputs not yet broken; the untargeted FAB (``targeted=False``) linearises the boundary to
every other class and takes the closest hyperplane, which costs one backward pass per class. Restarts: the first
run starts at ``x_0``, later ones at a random point at distance ``eps / 2`` (as AutoAttack does).

As in AutoAttack, an input counts as broken when an adversarial point within ``eps`` is found: the result holds
the closest such point of the run that broke it; every other input is returned unchanged. Inputs the model
already misclassifies are returned unchanged (they need no perturbation). Like AutoAttack's code there is no
final line search, so on a linear model the point found lies about 0.5 % beyond the boundary (the fixed point of
the eta overshoot and the beta backward step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from rlrobust._checks import (
    Bounds,
    check_attack,
    check_count,
    check_flag,
    check_generator,
    check_labels,
    check_number,
    check_scores,
)
from rlrobust.attacks._base import Model, ScoreWatch, preserved_model

#: The size floor of a projection in the step's mixing weight (AutoAttack's 1e-8): keeps 0 / 0 out of alpha.
_TINY = 1e-8


def fab(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    norm: str = "linf",
    targeted: bool = True,
    target_classes: int = 9,
    steps: int = 100,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    bounds: Sequence[float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the FAB adversarial batch: per input, the closest adversarial point found if it lies within
    ``eps``, else the input itself.

    Args:
        model: maps a float batch to scores (N, C); it should be deterministic (FAB follows its boundary).
        x: clean batch inside ``bounds``.
        y: true labels; ``None`` uses the model's own prediction on ``x``.
        eps: budget in the units of ``bounds``; the result never lies farther from ``x`` in ``norm``.
        norm: ``"linf"`` or ``"l2"``: the distance FAB minimises.
        targeted: FAB-T (AutoAttack's version); ``False``: untargeted FAB, toward the closest linearised boundary.
        target_classes: FAB-T's number of target classes, the highest-scoring wrong ones (AutoAttack: 9).
        steps: iterations per run (AutoAttack: 100); each costs a forward and a backward pass plus a forward.
        restarts: runs per target; the first from ``x``, later ones from random points at distance ``eps / 2``.
        alpha_max: the largest weight of the step toward the clean input's projection (paper: 0.1).
        eta: overshoot of each projection, >= 1 (paper: 1.05).
        beta: backward step toward ``x`` after an adversarial iterate, in (0, 1) (paper: 0.9).
        bounds: the valid value range; the result never leaves it.
        generator: seeds the random starts of the restarts.

    >>> net = torch.nn.Linear(4, 3)
    >>> x = torch.rand(5, 4)
    >>> x_adv = fab(net, x, eps=0.1, target_classes=2, steps=10)
    >>> bool(((x_adv - x).abs().amax(1) <= 0.1).all()) and x_adv.shape == x.shape
    True
    """
    bounds, norm, eps = check_attack(model, x, eps, bounds, norm)
    check_generator(generator, x.device)
    settings = _Settings.checked(norm, eps, bounds, steps, restarts, alpha_max, eta, beta, generator)
    targeted = check_flag(targeted, "targeted")
    target_classes = check_count(target_classes, "target_classes")
    x = x.detach()
    watch = ScoreWatch()
    with preserved_model(model), torch.no_grad():
        scores = check_scores(model(x), x.shape[0])
        watch.see(scores)  # the clean pass: a model with NaN scores fails here, before any work
        classes = scores.shape[1]
        if classes < 2:
            raise ValueError(f"fab needs scores with at least 2 classes, got {classes}")
        y = scores.argmax(1) if y is None else check_labels(y, x.shape[0], classes).to(x.device)
        if targeted and target_classes > classes - 1:
            raise ValueError(f"target_classes={target_classes} exceeds the {classes - 1} wrong classes of this model")
        if eps == 0:
            return x.clone()
        ranked = scores.float().scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        runs = [ranked[:, t] for t in range(target_classes)] if targeted else [None]
        return _attack(model, x, y, scores.argmax(1) != y, runs, settings, watch)


@dataclasses.dataclass(frozen=True)
class _Settings:
    norm: str
    eps: float
    bounds: Bounds
    steps: int
    restarts: int
    alpha_max: float
    eta: float
    beta: float
    generator: torch.Generator | None

    @classmethod
    def checked(cls, norm, eps, bounds, steps, restarts, alpha_max, eta, beta, generator) -> _Settings:
        alpha_max = check_number(alpha_max, "alpha_max")
        if not 0 <= alpha_max <= 1:
            raise ValueError(f"alpha_max must lie in [0, 1], got {alpha_max}")
        eta = check_number(eta, "eta")
        if eta < 1:
            raise ValueError(f"eta (the overshoot) must be >= 1, got {eta}")
        beta = check_number(beta, "beta")
        if not 0 < beta < 1:
            raise ValueError(f"beta (the backward step) must lie in (0, 1), got {beta}")
        return cls(
            norm=norm,
            eps=eps,
            bounds=bounds,
            steps=check_count(steps, "steps"),
            restarts=check_count(restarts, "restarts"),
            alpha_max=alpha_max,
            eta=eta,
            beta=beta,
            generator=generator,
        )


def _attack(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    broken: torch.Tensor,
    targets: list[torch.Tensor | None],
    settings: _Settings,
    watch: ScoreWatch,
) -> torch.Tensor:
    """Run FAB for each target (``None``: untargeted) and restart on the inputs not yet broken."""
    result = x.clone()
    for target in targets:
        for restart in range(settings.restarts):
            rows = (~broken).nonzero().squeeze(1)
            if rows.numel() == 0:
                return result
            chosen = None if target is None else target[rows]
            adv, size = _single_run(model, x[rows], y[rows], chosen, settings, watch, random=restart > 0)
            fooled = size <= settings.eps
            result[rows] = torch.where(_rows(fooled, adv), adv, result[rows])
            broken[rows] |= fooled
    return result


def _single_run(
    model: Model,
    x0: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    settings: _Settings,
    watch: ScoreWatch,
    *,
    random: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run: the closest adversarial point found per input and its distance (inf where none)."""
    n = x0.shape[0]
    start = _random_start(x0, settings) if random else x0
    flat0, current = x0.flatten(1), start.flatten(1).clone()
    best, best_size = x0.flatten(1).clone(), torch.full((n,), float("inf"), device=x0.device)
    for _ in range(settings.steps):
        value, grad = _linearised_boundary(model, current, x0.shape, y, target, settings.norm, watch)
        # The hyperplane value + <grad, z - current> = 0, projected on from the iterate and from the clean input.
        needed_from_clean = -value - (grad * (flat0 - current)).sum(1)
        both = project_on_hyperplane(  # one call for both: one sort of 2N rows
            torch.cat([current, flat0]),
            grad.repeat(2, 1),
            torch.cat([-value, needed_from_clean]),
            settings.norm,
            settings.bounds,
        )
        from_current, from_clean = both[:n], both[n:]
        alpha = _mixing_weight(from_current, from_clean, settings)
        moved = (current + settings.eta * from_current) * (1 - alpha) + (flat0 + settings.eta * from_clean) * alpha
        current = moved.clamp(*settings.bounds)
        scores = check_scores(model(current.view(x0.shape)), n)
        watch.see(scores)
        adversarial = scores.argmax(1) != y
        size = _size(current - flat0, settings.norm)
        closer = adversarial & (size < best_size)
        best = torch.where(closer[:, None], current, best)
        best_size = torch.where(closer, size, best_size)
        current = torch.where(adversarial[:, None], flat0 + settings.beta * (current - flat0), current)
    watch.check()  # one host sync per run
    return best.view(x0.shape), best_size


def _linearised_boundary(
    model: Model,
    point: torch.Tensor,
    shape: torch.Size,
    y: torch.Tensor,
    target: torch.Tensor | None,
    norm: str,
    watch: ScoreWatch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and input gradient of ``score_t - score_y`` at ``point`` (flat rows), for the given target or, when
    ``target`` is None, for the class whose linearised boundary is closest (untargeted FAB)."""
    leaf = point.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = check_scores(model(leaf.view(shape)), point.shape[0])
        rows = torch.arange(point.shape[0], device=point.device)
        watch.see(scores)
        if target is not None:
            difference = scores[rows, target] - scores[rows, y]
            (grad,) = torch.autograd.grad(difference.sum(), leaf)
            return difference.detach().to(point.dtype), grad
        values, grads = [], []
        for k in range(scores.shape[1]):
            difference = scores[:, k] - scores[rows, y]
            (grad,) = torch.autograd.grad(difference.sum(), leaf, retain_graph=k < scores.shape[1] - 1)
            values.append(difference.detach().to(point.dtype))
            grads.append(grad)
    values, grads = torch.stack(values, 1), torch.stack(grads, 1)
    dual = grads.abs().sum(2) if norm == "linf" else grads.norm(dim=2)
    distance = values.abs() / (dual + 1e-12)
    distance[rows, y] = float("inf")
    closest = distance.argmin(1)
    return values[rows, closest], grads[rows, closest]


def project_on_hyperplane(
    t: torch.Tensor, w: torch.Tensor, c: torch.Tensor, norm: str, bounds: Sequence[float]
) -> torch.Tensor:
    """The smallest step ``d`` (L-inf or L2) per row with ``<w, d> = c`` and ``t + d`` inside ``bounds``.

    The box-constrained projection of FAB (Croce & Hein 2020), in closed form: with ``w`` signed so
    that ``c >= 0``, the optimum is ``d_i = sign(w_i) min(s, m_i)`` for L-inf and ``d_i = w_i min(s, m_i / |w_i|)``
    for L2, where ``m_i`` is the room to the bound that ``w_i`` points to and ``s >= 0`` the one value that meets
    the constraint; where no ``s`` does (the box is too small), the corner that gets closest. ``t``, ``w``: (N, D);
    ``c``: (N,).

    >>> d = project_on_hyperplane(torch.full((1, 2), 0.5), torch.tensor([[1.0, 1.0]]), torch.tensor([0.2]), "l2",
    ...                           (0.0, 1.0))
    >>> d
    tensor([[0.1000, 0.1000]])
    """
    low, high = bounds
    sign = torch.where(c >= 0, 1.0, -1.0).to(w.dtype)[:, None]
    w, c = w * sign, c.abs()
    room = torch.where(w > 0, high - t, t - low).clamp_min(0) * (w != 0)
    if norm == "linf":
        weight, cap, direction = w.abs(), room, w.sign()
    else:
        magnitude = w.abs()
        weight, direction = w * w, w
        cap = torch.where(magnitude > 0, room / magnitude.clamp_min(torch.finfo(w.dtype).tiny), 0.0).clamp_max(1e30)
    level = _water_level(weight, cap, c)
    step = direction * torch.minimum(level[:, None], cap)
    return torch.minimum(torch.maximum(step, low - t), high - t)  # w_i * (room_i / |w_i|) may round past the room


def _water_level(weight: torch.Tensor, cap: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per row, the ``s >= 0`` with ``sum_i weight_i min(s, cap_i) = c`` (inf where even ``s = inf`` falls short).

    The sum is piecewise linear and non-decreasing in ``s`` with kinks at the caps: sort them, evaluate the sum
    at every kink with cumulative sums, find the segment that holds ``c`` and solve on it.
    """
    caps, order = cap.sort(dim=1)
    weights = weight.gather(1, order)
    below = torch.cumsum(weights * caps, 1) - weights * caps  # sum over the caps left of each kink
    above = weights.flip(1).cumsum(1).flip(1)  # weight of the caps at or right of each kink
    at_kinks = below + caps * above
    segment = (at_kinks < c[:, None]).sum(1)
    feasible = segment < caps.shape[1]
    index = segment.clamp_max(caps.shape[1] - 1)[:, None]
    slope = above.gather(1, index).squeeze(1)
    level = (c - below.gather(1, index).squeeze(1)) / slope.clamp_min(torch.finfo(slope.dtype).tiny)
    level = torch.where(slope > 0, level, torch.zeros_like(level))
    return torch.where(feasible, level.clamp_min(0), torch.full_like(level, float("inf")))


def _mixing_weight(from_current: torch.Tensor, from_clean: torch.Tensor, settings: _Settings) -> torch.Tensor:
    """The paper's alpha: the share of the step toward the clean input's projection, at most ``alpha_max``."""
    to_current = _size(from_current, settings.norm).clamp_min(_TINY)
    to_clean = _size(from_clean, settings.norm).clamp_min(_TINY)
    return (to_current / (to_current + to_clean)).clamp(0, settings.alpha_max)[:, None]


def _random_start(x0: torch.Tensor, settings: _Settings) -> torch.Tensor:
    """A random point at distance ``eps / 2`` from ``x0`` in the attack's norm, clipped to the range
    (AutoAttack's restart points)."""
    if settings.norm == "linf":
        noise = torch.rand(x0.shape, generator=settings.generator, device=x0.device, dtype=x0.dtype) * 2 - 1
    else:
        noise = torch.randn(x0.shape, generator=settings.generator, device=x0.device, dtype=x0.dtype)
    length = _size(noise.flatten(1), settings.norm).clamp_min(1e-12)
    return (x0 + 0.5 * settings.eps * noise / _rows(length, noise)).clamp(*settings.bounds)


def _size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-row L-inf or L2 norm of flat rows."""
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.ndim - 1)))
