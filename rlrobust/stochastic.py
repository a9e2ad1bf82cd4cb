"""Many passes through a stochastic model, batched.

A stochastic defence (SAP, dropout, activation noise) draws its randomness independently for every row of a
batch, so ``n`` passes over a batch of ``N`` inputs can run as one forward over ``n * N`` rows: the input is
repeated, not looped. Weight-level defences (RNW, RSW, SWP) draw one weight sample per forward call that the
whole batch shares; for those, the passes run one call at a time. Both the prediction helpers here and the
attacks' expectation-over-transformation gradient use :func:`repeat_plan` to decide.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rlrobust._checks import check_count, check_scores

#: Rows per forward call when inputs are repeated for several stochastic passes (override per call).
DEFAULT_MAX_ROWS = 1024

Model = Callable[[torch.Tensor], torch.Tensor]


def rows_independent(model: Model) -> bool:
    """Whether one forward call draws independent randomness for each row of the batch.

    False when the model holds a module marked ``shares_draw_across_batch = True`` (the weight-noise
    defences of :mod:`rlrobust.defences`); then repeated rows in one call would share a draw.

    >>> from rlrobust.defences import apply_defence
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> rows_independent(apply_defence(net, "SAP", 1.0)), rows_independent(apply_defence(net, "RNW", 0.01))
    (True, False)
    """
    if not isinstance(model, nn.Module):
        return True
    return not any(getattr(m, "shares_draw_across_batch", False) for m in model.modules())


def repeat_plan(samples: int, rows: int, max_rows: int | None, independent: bool) -> list[int]:
    """Split ``samples`` passes over ``rows`` inputs into forward calls of at most ``max_rows`` rows.

    Returns the number of copies of the batch that each call carries; their sum is ``samples``.

    >>> repeat_plan(10, 300, 1024, independent=True)  # 3 copies of 300 rows fit in 1024
    [3, 3, 3, 1]
    >>> repeat_plan(3, 300, 1024, independent=False)  # one pass per call
    [1, 1, 1]
    """
    if not independent:
        return [1] * samples
    per_call = max(1, (max_rows or DEFAULT_MAX_ROWS) // rows)
    plan = [per_call] * (samples // per_call)
    if samples % per_call:
        plan.append(samples % per_call)
    return plan


@torch.no_grad()
def mean_output(
    model: Model,
    x: torch.Tensor,
    samples: int,
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_rows: int | None = None,
) -> torch.Tensor:
    """Average ``transform(model(x))`` over ``samples`` stochastic passes (identity transform by default).

    >>> dropout = nn.Sequential(nn.Dropout(0.5)).train()
    >>> _ = torch.manual_seed(0)
    >>> mean_output(dropout, torch.ones(1, 4), 4000).round(decimals=1)  # inverted dropout: unbiased
    tensor([[1., 1., 1., 1.]])
    """
    check_count(samples, "samples")
    if max_rows is not None:
        check_count(max_rows, "max_rows")
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise TypeError(f"x must be a batch tensor (N, ...), got {type(x).__name__}")
    rows = x.shape[0]
    total = None
    for copies in repeat_plan(samples, rows, max_rows, rows_independent(model)):
        batch = x.repeat(copies, *([1] * (x.ndim - 1))) if copies > 1 else x
        scores = check_scores(model(batch), copies * rows).float()
        out = transform(scores) if transform is not None else scores
        summed = out.view(copies, rows, *out.shape[1:]).sum(0)
        total = summed if total is None else total + summed
    return total / samples


def predict_proba(model: Model, x: torch.Tensor, samples: int = 100, *, max_rows: int | None = None) -> torch.Tensor:
    """Mean softmax over ``samples`` passes: the SAP paper's prediction rule for stochastic models (m = 100).

    >>> from rlrobust.sap import insert_sap
    >>> _ = torch.manual_seed(0)
    >>> sap = insert_sap(nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3)))
    >>> probs = predict_proba(sap, torch.randn(5, 4), samples=100)  # 500 rows in one forward call
    >>> probs.shape, torch.allclose(probs.sum(1), torch.ones(5))
    (torch.Size([5, 3]), True)
    """
    return mean_output(model, x, samples, transform=lambda s: s.softmax(dim=1), max_rows=max_rows)


def predict(model: Model, x: torch.Tensor, samples: int = 100, *, max_rows: int | None = None) -> torch.Tensor:
    """Class (or greedy action) with the highest mean softmax over ``samples`` passes.

    >>> net = nn.Linear(2, 2)  # deterministic: one pass would do
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.eye(2)), net.bias.zero_()
    >>> predict(net, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), samples=3).tolist()
    [0, 1]
    """
    return predict_proba(model, x, samples, max_rows=max_rows).argmax(dim=1)


def mean_scores(model: Model, x: torch.Tensor, samples: int = 100, *, max_rows: int | None = None) -> torch.Tensor:
    """Mean raw scores over ``samples`` passes, e.g. the mean Q-values a SAP agent acts on.

    >>> net = nn.Linear(4, 6)  # a Q-network scoring 6 actions
    >>> mean_scores(net, torch.randn(2, 4), samples=10).shape
    torch.Size([2, 6])
    """
    return mean_output(model, x, samples, max_rows=max_rows)
