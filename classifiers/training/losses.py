"""The outer losses of the training methods, as plain functions of logits (so each can be checked by hand).

Notation: ``z`` natural logits, ``z*`` adversarial logits, ``p = softmax(z)``, ``p* = softmax(z*)``.

- standard / PGD-AT (Madry et al. 2018): ``mean CE``.
- TRADES (Zhang et al. 2019): ``mean_i CE(z_i, y_i) + beta * mean_i KL(p_i || p*_i)``.
- WEAT (Mirza et al. 2024): ``mean_i w_i [CE_i + beta * KL(p_i || p*_i)]`` with ``w_i = 1 / log(1 + exp(|E(x_i)|))``
  of the natural logits, detached and not renormalised; ``CE_i`` on ``z*`` (WEAT_adv) or on ``z`` (WEAT_nat).
  With all ``w_i = 1``, WEAT_nat is TRADES.
- MART (Wang et al. 2020): ``mean_i BCE(p*_i, y_i) + beta * mean_i KL(p_i || p*_i) (1 - p_i[y_i])`` with the
  boosted CE ``BCE = CE(z*, y) - log(1 - max_{k != y} p*_k)``.

All compute in float32, whatever the autocast dtype of the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlrobust.energy import weat_weights


def kl_per_sample(natural_logits: torch.Tensor, adversarial_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(z) || softmax(z*))`` per sample, shape (N,)."""
    log_p = F.log_softmax(natural_logits.float(), dim=1)
    log_q = F.log_softmax(adversarial_logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def cross_entropy_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (standard training, PGD-AT, the SAP paper's ADV)."""
    return F.cross_entropy(logits.float(), y)


def trades_loss(
    natural_logits: torch.Tensor, adversarial_logits: torch.Tensor, y: torch.Tensor, beta: float
) -> torch.Tensor:
    """TRADES: natural CE plus ``beta`` times the mean KL between natural and adversarial predictions."""
    ce = F.cross_entropy(natural_logits.float(), y)
    return ce + beta * kl_per_sample(natural_logits, adversarial_logits).mean()


def weat_loss(
    natural_logits: torch.Tensor,
    adversarial_logits: torch.Tensor,
    y: torch.Tensor,
    beta: float,
    *,
    ce_on: str = "adversarial",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """WEAT: the per-sample TRADES terms weighted by ``weights`` (default: WEAT's energy weights of ``z``).

    ``ce_on="adversarial"`` is WEAT_adv, ``"natural"`` WEAT_nat.
    """
    if ce_on not in ("adversarial", "natural"):
        raise ValueError(f"ce_on must be 'adversarial' or 'natural', got {ce_on!r}")
    ce_logits = adversarial_logits if ce_on == "adversarial" else natural_logits
    per_sample = F.cross_entropy(ce_logits.float(), y, reduction="none")
    per_sample = per_sample + beta * kl_per_sample(natural_logits, adversarial_logits)
    w = weat_weights(natural_logits) if weights is None else weights.detach()
    return (w * per_sample).mean()


def mart_loss(
    natural_logits: torch.Tensor, adversarial_logits: torch.Tensor, y: torch.Tensor, beta: float
) -> torch.Tensor:
    """MART: boosted CE on adversarial inputs plus KL weighted by how unsure the natural prediction is."""
    p_adv = F.softmax(adversarial_logits.float(), dim=1)
    runner_up = p_adv.masked_fill(F.one_hot(y, p_adv.shape[1]).bool(), 0.0).amax(dim=1)
    boosted_ce = F.cross_entropy(adversarial_logits.float(), y, reduction="none") - torch.log1p(
        -runner_up.clamp(max=1 - 1e-6)
    )
    p_nat_true = F.softmax(natural_logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    robust = kl_per_sample(natural_logits, adversarial_logits) * (1 - p_nat_true)
    return boosted_ce.mean() + beta * robust.mean()
