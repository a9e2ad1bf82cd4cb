"""Attack losses: per-sample functions of the scores that an untargeted attack increases.

A loss is any callable ``loss(scores, y) -> Tensor`` of shape (N,): ``scores`` are the model's outputs
(N, C) on the perturbed batch and ``y`` is what the caller passed as ``y`` (class indices for the
built-in losses; any tensor for a custom loss, e.g. clean Q-values for an RL attack). An untargeted attack
ascends the loss; a targeted attack descends it, so a loss should measure "how far the scores are from
``y``".

For an agent, cross-entropy against the clean greedy action is the loss of Huang et al. (2017):
``logsumexp(Q) - Q[a*]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of softmax(scores) against class indices ``y`` (computed in float32)."""
    return F.cross_entropy(scores.float(), y, reduction="none")


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (no confidence clamp); > 0 means misclassified."""
    z = scores.float()
    true = z.gather(1, y[:, None]).squeeze(1)
    others = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(dim=1)
    return others - true


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "cw": margin}


def resolve_loss(loss: str | LossFn) -> tuple[LossFn, bool]:
    """Return ``(loss_fn, is_builtin)`` for a loss name or a custom callable."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or pass a callable")
        return LOSSES[loss], True
    if not callable(loss):
        raise TypeError(f"loss must be a name or a callable(scores, y) -> (N,), got {type(loss).__name__}")
    return loss, False
