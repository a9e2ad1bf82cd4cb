"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"): the score-based attack of AutoAttack.

A random search on the margin loss that never asks for a gradient, so gradient masking (stochastic activations,
shattered gradients) does not stop it. Each input holds a current point; every iteration proposes a change inside
a random square window and keeps it only if the margin (score of the true class minus the best other; for a
targeted attack the best other minus the target's score) goes down. The window covers a share ``p`` of the
image, halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 iterations (the paper's
schedule, rescaled to the query budget as AutoAttack does).

- L-inf: start at vertical stripes of ``+-eps`` (one sign per column and channel); a proposal sets the window of
  each channel to ``x +- eps`` (paper, Alg. 2).
- L2: start at a 5x5 grid of "pseudo-Gaussian" squares; a proposal moves mass from a second window into the
  first so that the perturbation keeps norm ``eps`` (paper, Alg. 3).

Unlike AutoAttack's code, which draws one window and one sign for the whole batch, every input draws its own
(as in the paper's own code), so the inputs of a batch are independent searches. An input stops being queried
as soon as it is fooled. With ``samples=n`` every query's scores are the mean of ``n`` passes, for stochastic
models (the expectation idea of AutoAttack's ``rand`` version applied to scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rlrobust._checks import (
    check_bounds,
    check_count,
    check_eps,
    check_flag,
    check_generator,
    check_input,
    check_labels,
    check_norm,
    check_positive,
)
from rlrobust.attacks._base import Model
from rlrobust.attacks.budget import per_sample_norm, project
from rlrobust.stochastic import mean_output

#: Iterations (of 10,000) after which the window share ``p`` halves (Andriushchenko et al. 2020, Sec. 4 / App. C).
SCHEDULE_POINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: Redraws of the signs of a L-inf proposal that would leave the point unchanged (the paper's code loops).
_SIGN_REDRAWS = 3


def square(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float,
    norm: str = "linf",
    queries: int = 5000,
    p_init: float = 0.8,
    restarts: int = 1,
    bounds: Sequence[float] = (0.0, 1.0),
    samples: int = 1,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the Square Attack batch: per input, the point of lowest margin found (the first fooling one).

    Args:
        x: images (N, C, H, W) inside ``bounds``.
        y: true labels (``targeted``: the targets); ``None`` attacks the model's own prediction.
        queries: score queries per input and restart, the start point included (paper and AutoAttack: 5,000).
            One more pass at ``x`` finds the inputs already misclassified, which are returned unchanged.
        p_init: share of the image the first windows cover (paper: 0.8 for L-inf and L2 on CIFAR-10).
        restarts: runs from new random starts, each on the inputs no earlier run has fooled.
        samples: passes whose mean scores answer one query (for stochastic models).
        generator: seeds starts, windows and signs.

    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> x_adv = square(net, x, eps=8 / 255, queries=50)
    >>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
    True
    """
    bounds = check_bounds(bounds)
    norm = check_norm(norm)
    eps = check_eps(eps, bounds, norm)
    if not callable(model):
        raise TypeError(f"model must be a callable mapping inputs to scores, got {type(model).__name__}")
    check_input(x, bounds)
    if x.ndim != 4:
        raise ValueError(f"square needs a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    queries = check_count(queries, "queries")
    restarts = check_count(restarts, "restarts")
    samples = check_count(samples, "samples")
    p_init = check_positive(p_init, "p_init")
    if p_init > 1:
        raise ValueError(f"p_init must lie in (0, 1], got {p_init}")
    targeted = check_flag(targeted, "targeted")
    check_generator(generator, x.device)
    if y is None and targeted:
        raise ValueError("a targeted attack needs the target labels y")
    x = x.detach()
    with torch.no_grad():
        return _Search(model, x, y, eps, norm, bounds, samples, targeted, generator).run(queries, p_init, restarts)


def p_schedule(iteration: int, queries: int, p_init: float) -> float:
    """The window share at ``iteration`` (0-based) of ``queries``: ``p_init`` halved at each schedule point passed.

    >>> p_schedule(0, 5000, 0.8), p_schedule(30, 5000, 0.8), p_schedule(4999, 5000, 0.8)
    (0.8, 0.2, 0.0015625)
    """
    rescaled = int(iteration / queries * 10000)
    return p_init / 2 ** sum(rescaled > point for point in SCHEDULE_POINTS)


def margin(scores: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """The loss the search lowers, negative exactly when the input is fooled: the true class's score minus the
    best other (targeted: the best other class minus the target's score).

    >>> margin(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([0]), targeted=False).tolist()
    [1.0]
    """
    chosen = scores.gather(1, y[:, None]).squeeze(1)
    other = scores.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return other - chosen if targeted else chosen - other


def pseudo_gaussian_square(s: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The paper's L2 update shape: two ``s/2 x s`` halves of nested rectangles weighted ``1/(k+1)^2``, opposite
    signs, unit norm (Andriushchenko et al. 2020, Sec. 3.2).

    >>> shape = pseudo_gaussian_square(4, torch.device("cpu"), torch.float32)
    >>> shape.shape, round(shape.norm().item(), 6), bool(shape[:2].min() > 0 > shape[2:].max())
    (torch.Size([4, 4]), 1.0, True)
    """
    top = _nested_rectangles(s // 2, s, device, dtype)
    bottom = _nested_rectangles(s - s // 2, s, device, dtype)
    square_ = torch.cat([top, -bottom], dim=0)
    return square_ / square_.norm().clamp_min(1e-12)


def _nested_rectangles(rows: int, cols: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sum of centred rectangles growing by one pixel a side, rectangle ``k`` weighted ``1/(k+1)^2``; unit norm."""
    out = torch.zeros(rows, cols, device=device, dtype=dtype)
    if rows == 0 or cols == 0:
        return out
    r0, c0 = rows // 2, cols // 2
    for k in range(max(r0, c0) + 1):
        out[max(r0 - k, 0) : min(r0 + k + 1, rows), max(c0 - k, 0) : min(c0 + k + 1, cols)] += 1.0 / (k + 1) ** 2
    return out / out.norm().clamp_min(1e-12)


class _Search:
    """The state shared by the restarts: model, clean batch, labels and the best point of each input."""

    def __init__(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor | None,
        eps: float,
        norm: str,
        bounds: tuple[float, float],
        samples: int,
        targeted: bool,
        generator: torch.Generator | None,
    ) -> None:
        self.model, self.x, self.eps, self.norm, self.bounds = model, x, eps, norm, bounds
        self.samples, self.targeted, self.generator = samples, targeted, generator
        clean_scores = self.scores(x)
        if not bool(torch.isfinite(clean_scores).all()):
            raise ValueError(_NON_FINITE)
        classes = clean_scores.shape[1]
        if classes < 2:
            raise ValueError(f"square needs scores for at least 2 classes, the model returned {classes}")
        self.y = clean_scores.argmax(dim=1) if y is None else check_labels(y, x.shape[0], classes).to(x.device)
        self.best = x.clone()
        self.best_margin = margin(clean_scores, self.y, targeted)
        self._squares: dict[int, torch.Tensor] = {}

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return mean_output(self.model, x, self.samples)

    def run(self, queries: int, p_init: float, restarts: int) -> torch.Tensor:
        if self.eps == 0:
            return self.x.clone()
        for _ in range(restarts):
            rows = (self.best_margin >= 0).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            point, point_margin = self.single_run(rows, queries, p_init)
            better = point_margin < self.best_margin[rows]
            self.best[rows] = torch.where(better.view(-1, 1, 1, 1), point, self.best[rows])
            self.best_margin[rows] = torch.where(better, point_margin, self.best_margin[rows])
        return self.best

    def single_run(self, rows: torch.Tensor, queries: int, p_init: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One search over the inputs ``rows`` from a fresh start; returns each one's point and margin."""
        x, y = self.x[rows], self.y[rows]
        current = self.start(x)
        current_margin, non_finite = self.evaluate(current, y)
        for iteration in range(queries - 1):
            # One host sync a step: the inputs still to fool (none once a score came back non-finite).
            active = ((current_margin >= 0) & ~non_finite).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            p = p_schedule(iteration, queries, p_init)
            propose = self.propose_linf if self.norm == "linf" else self.propose_l2
            if active.numel() == current.shape[0]:  # every input still searching: no gathering and scattering
                proposal = propose(x, current, p)
                proposal_margin, bad = self.evaluate(proposal, y)
                improved = proposal_margin < current_margin
                current = torch.where(improved.view(-1, 1, 1, 1), proposal, current)
                current_margin = torch.where(improved, proposal_margin, current_margin)
            else:
                x_act, cur_act = x[active], current[active]
                proposal = propose(x_act, cur_act, p)
                proposal_margin, bad = self.evaluate(proposal, y[active])
                improved = proposal_margin < current_margin[active]
                current[active] = torch.where(improved.view(-1, 1, 1, 1), proposal, cur_act)
                current_margin[active] = torch.where(improved, proposal_margin, current_margin[active])
            non_finite |= bad
        if bool(non_finite):
            raise ValueError(_NON_FINITE)
        return current, current_margin

    def evaluate(self, points: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margins of ``points`` and whether any score was non-finite (as a tensor: no host sync here)."""
        scores = self.scores(points)
        return margin(scores, y, self.targeted), ~torch.isfinite(scores).all()

    def start(self, x: torch.Tensor) -> torch.Tensor:
        """L-inf: vertical stripes of +-eps; L2: a 5x5 grid of pseudo-Gaussian squares of random signs, norm eps."""
        n, c, h, w = x.shape
        if self.norm == "linf":
            return (x + self.eps * self.signs((n, c, 1, w), x)).clamp(*self.bounds)
        delta = torch.zeros_like(x)
        size_h, size_w = max(h // 5, 1), max(w // 5, 1)
        top, left = max((h - 5 * size_h) // 2, 0), max((w - 5 * size_w) // 2, 0)
        size = min(size_h, size_w)
        # As the paper's code: h // size tiles a side from a centring offset, cut at the image's edge.
        for r in range(top, min(top + (h // size) * size, h), size):
            for col in range(left, min(left + (w // size) * size, w), size):
                tile = self.square_shape(size, 1, x)[0, 0, : h - r, : w - col]
                signs = self.signs((n, c, 1, 1), x)
                delta[:, :, r : r + size, col : col + size] += tile * signs
        delta = delta / per_sample_norm(delta).clamp_min(1e-12) * self.eps
        return project(x + delta, x, self.eps, "l2", self.bounds)

    def propose_linf(self, x: torch.Tensor, current: torch.Tensor, p: float) -> torch.Tensor:
        """Each input's window (one random square per input) set to ``x +- eps``, one sign per channel; sign
        patterns that would change nothing are redrawn (a few times, batched), as the paper's code does."""
        n, c, h, w = x.shape
        size = self.window_size(p, h, w)
        rows, cols = self.corners(n, size, h, w, x.device)
        index = _window_index(x, rows, cols, size)  # built once: gathering and scattering share it
        x_window, now = x[index], current[index]
        up, down = (x_window + self.eps).clamp(*self.bounds), (x_window - self.eps).clamp(*self.bounds)
        moves_up, moves_down = (up != now).flatten(2).any(2), (down != now).flatten(2).any(2)  # (n, C)
        draws = self.signs((_SIGN_REDRAWS + 1, n, c), x) > 0  # the first pattern and its redraws, in one call
        positive = draws[0]
        for redraw in draws[1:]:
            moves = torch.where(positive, moves_up, moves_down).any(dim=1, keepdim=True)
            positive = torch.where(moves, positive, redraw)
        proposal = current.clone()
        proposal[index] = torch.where(positive[:, :, None, None], up, down)
        return proposal

    def propose_l2(self, x: torch.Tensor, current: torch.Tensor, p: float) -> torch.Tensor:
        """The paper's L2 step: a new pseudo-Gaussian square in window 1 (plus its old content), the mass of
        window 2 moved into it, then the whole perturbation rescaled to norm ``eps``."""
        n, c, h, w = x.shape
        size = max(self.window_size(p, h, w), min(3, h, w))
        if size % 2 == 0 and size < min(h, w):
            size += 1
        first_r, first_c = self.corners(n, size, h, w, x.device)
        second_r, second_c = self.corners(n, size, h, w, x.device)
        first = _mask(first_r, first_c, size, h, w).to(x.dtype)
        both = torch.maximum(first, _mask(second_r, second_c, size, h, w).to(x.dtype))
        delta = current - x
        norm_image = per_sample_norm(delta)
        norm_windows = (delta * both).square().sum(dim=(2, 3), keepdim=True).sqrt()
        old = _gather_window(delta, first_r, first_c, size)
        old = old / (old.square().sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10)
        new = self.square_shape(size, n, x) * self.signs((n, c, 1, 1), x) + old
        room = (self.eps**2 - norm_image.square()).clamp_min(0) / c + norm_windows.square()
        new = new / new.square().sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12) * room.sqrt()
        delta = delta * (1 - _mask(second_r, second_c, size, h, w).to(x.dtype))
        delta = _scatter_window(delta, new, first_r, first_c)
        delta = delta / per_sample_norm(delta).clamp_min(1e-12) * self.eps
        return project(x + delta, x, self.eps, "l2", self.bounds)

    def square_shape(self, size: int, n: int, like: torch.Tensor) -> torch.Tensor:
        """``n`` pseudo-Gaussian squares (n, 1, size, size), each transposed with probability 1/2."""
        if size not in self._squares:
            self._squares[size] = pseudo_gaussian_square(size, like.device, like.dtype)
        shape = self._squares[size]
        flip = torch.rand((n, 1, 1, 1), generator=self.generator, device=like.device) < 0.5
        return torch.where(flip, shape.T, shape)

    def window_size(self, p: float, h: int, w: int) -> int:
        """Side of a square covering a share ``p`` of the image, at least 1 pixel and at most the image."""
        return min(max(round(math.sqrt(p * h * w)), 1), h, w)

    def corners(self, n: int, size: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-left corners of ``n`` random windows that fit in the image."""
        rows = torch.randint(0, h - size + 1, (n,), generator=self.generator, device=device)
        cols = torch.randint(0, w - size + 1, (n,), generator=self.generator, device=device)
        return rows, cols

    def signs(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        bits = torch.randint(0, 2, shape, generator=self.generator, device=like.device)
        return bits.to(like.dtype) * 2 - 1


_NON_FINITE = "the model returned NaN or infinite scores; square needs finite scores to compare points"


def _mask(rows: torch.Tensor, cols: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Boolean (n, 1, h, w): each input's ``size`` x ``size`` window with top-left corner (rows, cols)."""
    r = torch.arange(h, device=rows.device)
    c = torch.arange(w, device=cols.device)
    in_rows = (r >= rows[:, None]) & (r < rows[:, None] + size)
    in_cols = (c >= cols[:, None]) & (c < cols[:, None] + size)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _window_index(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Advanced-indexing tensors that pick each input's ``size`` x ``size`` window, every channel."""
    n, c = t.shape[:2]
    offsets = torch.arange(size, device=t.device)
    return (
        torch.arange(n, device=t.device).view(n, 1, 1, 1),
        torch.arange(c, device=t.device).view(1, c, 1, 1),
        (rows[:, None] + offsets).view(n, 1, size, 1),
        (cols[:, None] + offsets).view(n, 1, 1, size),
    )


def _gather_window(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int) -> torch.Tensor:
    """Each input's window (n, C, size, size) at its own corner."""
    return t[_window_index(t, rows, cols, size)]


def _scatter_window(t: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` with each input's window at its own corner replaced by ``values``."""
    out = t.clone()
    out[_window_index(t, rows, cols, values.shape[-1])] = values
    return out
