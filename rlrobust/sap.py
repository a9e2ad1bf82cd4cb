"""Stochastic Activation Pruning (Dhillon et al., ICLR 2018).

Per sample, over a whole activation map ``h`` of ``n`` values: ``p_j = |h_j| / sum_k |h_k|``; draw
``r = round(frac * n)`` indices with replacement from ``p``; keep each drawn activation scaled by
``1 / (1 - (1 - p_j)^r)``, its inverse probability of being drawn at least once, and zero the rest. The
result is an unbiased estimate of ``h``. The mask is a constant for autograd: the backward pass is
``grad_h = grad_out * mask`` (the realised mask), as in the paper's code. SAP-100 is ``frac = 1.0``.

``sampling="exact"`` draws the ``r`` indices with replacement, in float64 so tiny activations keep their true
probability. On the CPU, Poissonised counts are completed by inverse-CDF draws (:func:`_drawn_at_least_once`);
their number varies per row and is read back to size the draws, which costs nothing there. On a GPU such a
read-back would stall the device at every SAP layer of every forward, so the draws there are ``r`` sorted uniform
points per row made from exponential spacings, of fixed size (:func:`_drawn_by_spacings`): the same law, without
a read-back, from a different random stream (a seed gives other masks than on the CPU, as any GPU draw does).
``sampling="independent"`` is a faster approximation: each activation is kept independently with the same
marginal probability ``1 - (1 - p_j)^r``; the number of survivors then varies more than under exact sampling.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rlrobust._checks import check_generator, check_positive
from rlrobust.insertion import add_post_relu_transform, post_relu_transforms, remove_post_relu_transforms

SAMPLINGS = ("exact", "independent")
# Uniform draws handled per chunk of rows; bounds the memory of the exact sampler (~16M draws at a time).
_MAX_DRAWS_PER_CHUNK = 1 << 24
# How many standard deviations below r the Poissonised exact sampler aims its total (P(T > r) ~ 3e-7).
_POISSON_MARGIN_SD = 5.0
# The largest SAP fraction accepted. ``frac`` is the number of draws per activation: at frac = F a value holding a
# 1/n share of the map is kept with probability ~ 1 - e^-F (F = 100: 1 - 4e-44), so beyond this SAP keeps
# practically every activation and only costs time and memory (the draws grow with frac: 1e9 never finishes).
MAX_FRAC = 100.0


@torch.no_grad()
def sap_mask(
    h: torch.Tensor, frac: float = 1.0, *, sampling: str = "exact", generator: torch.Generator | None = None
) -> torch.Tensor:
    """The SAP mask for a batch of activation maps ``h`` (N, ...): ``1/q_j`` where kept, 0 elsewhere.

    The mask is float32 (float64 for float64 ``h``): in half precision ``1/q_j`` of a rarely kept
    activation can overflow even though ``h_j / q_j`` is moderate.

    >>> h = torch.tensor([[3.0, 1.0, 0.0, 0.0]])  # one map of 4 activations: r = 4 draws at frac 1.0
    >>> mask = sap_mask(h, 1.0, generator=torch.Generator().manual_seed(0))
    >>> mask[0, 2:].tolist()  # zero activations are never drawn
    [0.0, 0.0]
    >>> keep = 1 - (1 - torch.tensor([0.75, 0.25])) ** 4  # P(drawn at least once) of the other two
    >>> all(float(m) in (0.0, float(1 / q)) for m, q in zip(mask[0, :2], keep))  # kept ones scaled by 1/q
    True
    """
    frac = check_frac(frac)
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if h.ndim < 2:
        raise ValueError(f"SAP needs a batch of activation maps (N, ...), got shape {tuple(h.shape)}")
    check_generator(generator, h.device)
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
    rows, n = h.shape[0], h[0].numel()
    if rows == 0 or n == 0:
        return torch.ones(h.shape, dtype=dtype, device=h.device)
    draws = max(1, round(frac * n))
    magnitude = h.detach().reshape(rows, n).abs().to(dtype)
    total = magnitude.sum(dim=1, keepdim=True, dtype=torch.float64).to(dtype)
    tiny = torch.finfo(dtype).tiny
    p = magnitude / total.clamp_min(tiny)  # all-zero rows give p = 0, not NaN
    keep_prob = -torch.expm1(draws * torch.log1p(-p))  # 1 - (1 - p)^r, accurate for tiny p
    if sampling == "exact":
        kept = _drawn_at_least_once(magnitude, p, draws, generator)
    else:
        kept = torch.rand(p.shape, generator=generator, device=h.device, dtype=dtype) < keep_prob
    kept &= keep_prob > 0
    return (kept.to(dtype) / keep_prob.clamp_min(tiny)).view(h.shape)


def check_frac(frac: float, name: str = "frac") -> float:
    """Return ``frac`` as a float if it is a finite number in (0, :data:`MAX_FRAC`]; else one clear ``ValueError``.

    >>> check_frac(1)
    1.0
    >>> check_frac(0)
    Traceback (most recent call last):
    ...
    ValueError: frac must be a finite number > 0, got 0.0
    """
    frac = check_positive(frac, name)
    if frac > MAX_FRAC:
        raise ValueError(
            f"{name} must be at most {MAX_FRAC:g} (draws per activation; 1.0 is SAP-100), got {frac:g}: beyond "
            f"{MAX_FRAC:g} SAP keeps practically every activation and the draws only cost time and memory"
        )
    return frac


def _reads_back_freely(device: torch.device) -> bool:
    """Whether reading a value back to the host is free on ``device`` (the CPU), so a sampler may size its work
    by the data; elsewhere it would be a host-device synchronisation."""
    return device.type == "cpu"


def _drawn_at_least_once(
    magnitude: torch.Tensor, p: torch.Tensor, draws: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Which entries of each row ``draws`` categorical draws with replacement (probabilities ``p``) hit.

    Off the CPU: :func:`_drawn_by_spacings`. On the CPU, exact, and cheaper than ``draws`` inverse-CDF look-ups:
    per-entry counts ~ Poisson(lam * p_j) are, given their total T, Multinomial(T, p). With lam a few standard
    deviations below ``draws``, T <= draws in all but ~1e-7 of rows, and the missing ``draws - T`` are drawn by
    inverse CDF, which completes an exact Multinomial(draws, p). Rows where T > draws are redrawn entirely by
    inverse CDF.
    """
    if not _reads_back_freely(p.device):
        return _drawn_by_spacings(magnitude, draws, generator)
    rows, n = p.shape
    hit = torch.zeros((rows, n + 1), dtype=torch.bool, device=p.device)  # column n absorbs padding draws
    remaining = torch.full((rows,), draws, dtype=torch.int64, device=p.device)
    lam = draws - _POISSON_MARGIN_SD * math.sqrt(draws) - 1.0
    if lam > 0:
        counts = torch.poisson(p * lam, generator=generator)
        remaining = draws - counts.sum(dim=1, dtype=torch.float64).long()
        hit[:, :n] = counts > 0
        overflow = remaining < 0
        hit[overflow] = False
        remaining[overflow] = draws
    _inverse_cdf_draws(hit, magnitude.cumsum(dim=1, dtype=torch.float64), remaining, generator)
    return hit[:, :n]


def _inverse_cdf_draws(
    hit: torch.Tensor, cdf: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None
) -> None:
    """Mark in ``hit`` the entries found by ``counts[i]`` inverse-CDF draws for each row ``i``."""
    rows, n = cdf.shape
    most = int(counts.max())
    if most == 0:
        return
    rows_per_chunk = max(1, _MAX_DRAWS_PER_CHUNK // most)
    for start in range(0, rows, rows_per_chunk):
        chunk = cdf[start : start + rows_per_chunk]
        wanted = counts[start : start + rows_per_chunk, None]
        width = int(wanted.max())
        u = torch.rand((chunk.shape[0], width), generator=generator, device=cdf.device, dtype=cdf.dtype)
        # Entry j owns [cdf_{j-1}, cdf_j); zero-width (zero-activation) entries are never found.
        index = torch.searchsorted(chunk, u * chunk[:, -1:], right=True).clamp_max_(n - 1)
        index = torch.where(torch.arange(width, device=cdf.device) < wanted, index, n)
        hit[start : start + chunk.shape[0]].scatter_(1, index, True)


def _drawn_by_spacings(magnitude: torch.Tensor, draws: int, generator: torch.Generator | None) -> torch.Tensor:
    """Which entries of each row ``draws`` categorical draws with replacement (probabilities proportional to
    ``magnitude``) hit, with shapes fixed by ``draws`` alone: no value is read back.

    Exact: with ``E_1 .. E_{r+1}`` iid Exp(1) and ``S_k`` their partial sums, ``S_1 / S_{r+1} .. S_r / S_{r+1}``
    are the order statistics of ``r`` iid uniforms on [0, 1); scaled to the row's total they are ``r`` sorted
    draws, and entry ``j`` owning ``[cdf_{j-1}, cdf_j)`` is hit when a draw falls below ``cdf_j`` but not below
    ``cdf_{j-1}``. Costs ``r + 1`` exponentials and a search per entry, for chunks of rows.
    """
    rows, n = magnitude.shape
    cdf = magnitude.cumsum(dim=1, dtype=torch.float64)
    upper = cdf.clone()
    upper[:, -1] = math.inf  # a draw rounded up to the total still lands in the row
    hit = torch.empty((rows, n), dtype=torch.bool, device=magnitude.device)
    rows_per_chunk = max(1, _MAX_DRAWS_PER_CHUNK // (draws + 1))
    for start in range(0, rows, rows_per_chunk):
        part = slice(start, start + rows_per_chunk)
        spacings = torch.empty((cdf[part].shape[0], draws + 1), dtype=torch.float64, device=cdf.device)
        arrivals = spacings.exponential_(generator=generator).cumsum_(dim=1)
        points = arrivals[:, :-1] * (cdf[part, -1:] / arrivals[:, -1:])
        below = torch.searchsorted(points, upper[part])  # draws below each entry's upper end
        hit[part] = torch.diff(below, dim=1, prepend=torch.zeros_like(below[:, :1])) > 0
    return hit


def stochastic_activation_pruning(
    h: torch.Tensor, frac: float = 1.0, *, sampling: str = "exact", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply SAP to ``h``; gradients flow through the realised mask. The result has ``h``'s dtype.

    The result is an unbiased estimate of ``h``: averaged over many draws it comes back to ``h``.

    >>> h = torch.tensor([[3.0, 1.0, 0.5, 0.0]]).repeat(20_000, 1)
    >>> pruned = stochastic_activation_pruning(h, 1.0, generator=torch.Generator().manual_seed(0))
    >>> bool((pruned == 0).any()), pruned.mean(0).round(decimals=1).tolist()
    (True, [3.0, 1.0, 0.5, 0.0])
    """
    return (h * sap_mask(h, frac, sampling=sampling, generator=generator)).to(h.dtype)


class StochasticActivationPruning(nn.Module):
    """SAP as a module: apply it after a ReLU. Active in train and eval mode alike (it is a test-time defence).

    Randomness is drawn independently per row of the batch, so many stochastic passes can run as one batch.

    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), StochasticActivationPruning(1.0), nn.Linear(64, 3))
    >>> x = torch.randn(2, 4)
    >>> net.eval()[2], torch.equal(net(x), net(x))  # still stochastic in eval mode
    (StochasticActivationPruning(frac=1.0, sampling='exact'), False)
    """

    shares_draw_across_batch = False

    def __init__(self, frac: float = 1.0, *, sampling: str = "exact", generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.frac = check_frac(frac)
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.sampling = sampling
        self.generator = generator

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return stochastic_activation_pruning(h, self.frac, sampling=self.sampling, generator=self.generator)

    def extra_repr(self) -> str:
        return f"frac={self.frac}, sampling={self.sampling!r}"


def insert_sap(
    model: nn.Module, frac: float = 1.0, *, sampling: str = "exact", generator: torch.Generator | None = None
) -> nn.Module:
    """Apply SAP after every ReLU of ``model`` (module or functional calls), post hoc; returns ``model``.

    The model is modified in place (its weights are untouched); use ``copy.deepcopy`` first to keep a dense
    copy alongside. Undo with :func:`remove_sap`.

    >>> import copy
    >>> import torch.nn.functional as F
    >>> class Functional(nn.Module):  # F.relu calls are found as well as nn.ReLU modules
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(4, 64), nn.Linear(64, 3)
    ...     def forward(self, x):
    ...         return self.b(F.relu(self.a(x)))
    >>> _ = torch.manual_seed(0)
    >>> dense = Functional()
    >>> sap = insert_sap(copy.deepcopy(dense), frac=1.0)  # SAP-100 after every ReLU
    >>> x = torch.randn(2, 4)
    >>> torch.equal(sap(x), sap(x)), sap.state_dict().keys() == dense.state_dict().keys()
    (False, True)
    """
    if has_sap(model):
        raise ValueError("the model already has SAP inserted; call remove_sap(model) first")
    return add_post_relu_transform(model, StochasticActivationPruning(frac, sampling=sampling, generator=generator))


def remove_sap(model: nn.Module) -> nn.Module:
    """Remove SAP from ``model``, restoring its original behaviour exactly; returns ``model``.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> x = torch.randn(2, 4)
    >>> dense = net(x)
    >>> torch.equal(remove_sap(insert_sap(net))(x), dense)
    True
    """
    remove_post_relu_transforms(model, lambda t: isinstance(t, StochasticActivationPruning))
    return model


def has_sap(model: nn.Module) -> bool:
    """Whether SAP is currently inserted in ``model``.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    >>> has_sap(net), has_sap(insert_sap(net))
    (False, True)
    """
    return any(isinstance(t, StochasticActivationPruning) for t in post_relu_transforms(model))
