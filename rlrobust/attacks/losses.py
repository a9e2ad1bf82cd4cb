"""Attack losses: per-sample functions of the scores that an untargeted attack increases.

A loss is any callable ``loss(scores, y) -> Tensor`` of shape (N,): ``scores`` are the model's outputs
(N, C) on the perturbed batch and ``y`` is what the caller passed as ``y`` (class indices for the
built-in losses; any tensor for a custom loss, e.g. clean Q-values for an RL attack). An untargeted attack
ascends the loss; a targeted attack descends it, so a loss should measure "how far the scores are from
``y``".

For an agent, cross-entropy against the clean greedy action is the loss of Huang et al. (2017):
``logsumexp(Q) - Q[a*]``. For a continuous-action policy, the maximal action deviation (MAD) losses of SA-PPO
(Zhang et al. 2020) compare its output on the perturbed input with its clean output ``y``:
:func:`gaussian_kl` for a diagonal Gaussian policy, :func:`squared_distance` for a deterministic one. Both are
zero, with a zero gradient, at the clean input, so an attack on them needs a random start (PGD's).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of softmax(scores) against class indices ``y`` (computed in float32).

    >>> [round(v, 4) for v in cross_entropy(torch.tensor([[0.0, 0.0], [5.0, 0.0]]), torch.tensor([0, 0])).tolist()]
    [0.6931, 0.0067]
    """
    return F.cross_entropy(scores.float(), y, reduction="none")


def margin(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (no confidence clamp); > 0 means misclassified.

    >>> margin(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([1])).tolist()
    [2.0]
    """
    z = scores.float()
    true = z.gather(1, y[:, None]).squeeze(1)
    others = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(dim=1)
    return others - true


def dlr(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference-of-logits ratio (Croce & Hein 2020): ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``.

    ``z_pi1 >= z_pi2 >= ...`` are the sorted scores. The ratio is invariant to shifting and rescaling the
    scores, so, unlike cross-entropy, it cannot be flattened by large logits (gradient masking by scale).
    > 0 means misclassified. Needs at least 3 classes.

    >>> dlr(torch.tensor([[4.0, 2.0, 0.0]]), torch.tensor([0])).tolist()  # -(4 - 2) / (4 - 0)
    [-0.5]
    """
    z = _at_least_classes(scores, 3, "dlr")
    top = z.topk(3, dim=1).values
    return margin(z, y) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr(scores: torch.Tensor, labels_and_targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR of APGD-T: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, ascended to reach class ``t``.

    ``labels_and_targets`` is (N, 2): the true class ``y`` and the target ``t`` per row. Needs 4 classes.

    >>> targeted_dlr(torch.tensor([[4.0, 2.0, 1.0, 0.0]]), torch.tensor([[0, 1]])).tolist()  # (2 - 4) / (4 - 0.5)
    [-0.5714285969734192]
    """
    z = _at_least_classes(scores, 4, "targeted_dlr")
    if labels_and_targets.ndim != 2 or labels_and_targets.shape[1] != 2:
        raise ValueError(f"targeted_dlr needs (N, 2) rows of (label, target), got {tuple(labels_and_targets.shape)}")
    pair = labels_and_targets.long()
    true = z.gather(1, pair[:, :1]).squeeze(1)
    target = z.gather(1, pair[:, 1:]).squeeze(1)
    top = z.topk(4, dim=1).values
    return (target - true) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _at_least_classes(scores: torch.Tensor, classes: int, name: str) -> torch.Tensor:
    if scores.ndim != 2 or scores.shape[1] < classes:
        raise ValueError(f"the {name} loss needs scores (N, C) with C >= {classes}, got {tuple(scores.shape)}")
    return scores.float()


def squared_distance(actions: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """MAD for a deterministic policy: ``||a(x') - a(x)||^2`` per row, ``clean`` being the clean actions (N, A).

    >>> squared_distance(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).tolist()
    [5.0]
    """
    _same_shape(actions, clean, "squared_distance")
    return (actions.float() - clean.float()).pow(2).sum(dim=1)


def gaussian_kl(perturbed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """MAD for a diagonal Gaussian policy: ``KL(N_clean || N_perturbed)`` per row, summed over action dimensions.

    Both are (N, 2A) rows ``[mean, log_std]``; the KL of two diagonal Gaussians is
    ``log(s1 / s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2`` per dimension. A policy whose ``log_std`` does not
    depend on the state (SB3's PPO) gives ``sum((m0 - m1)^2 / (2 s^2))``, a distance weighted by the noise.

    >>> clean = torch.tensor([[0.0, 0.0]])  # mean 0, std 1
    >>> gaussian_kl(torch.tensor([[1.0, 0.0]]), clean).tolist()  # means one std apart: 1/2
    [0.5]
    """
    _same_shape(perturbed, clean, "gaussian_kl")
    if perturbed.shape[1] % 2:
        raise ValueError(f"gaussian_kl needs rows [mean, log_std] of even width 2A, got {tuple(perturbed.shape)}")
    mean1, log_std1 = perturbed.float().chunk(2, dim=1)
    mean0, log_std0 = clean.float().chunk(2, dim=1)
    ratio = (2 * (log_std0 - log_std1)).exp()  # s0^2 / s1^2
    per_dim = log_std1 - log_std0 + 0.5 * (ratio + (mean0 - mean1).pow(2) / (2 * log_std1).exp()) - 0.5
    return per_dim.sum(dim=1)


def _same_shape(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{name} compares rows of the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}")


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "margin": margin, "cw": margin, "dlr": dlr}


def resolve_loss(loss: str | LossFn) -> tuple[LossFn, bool]:
    """Return ``(loss_fn, is_builtin)`` for a loss name or a custom callable.

    >>> resolve_loss("cw") == (margin, True)
    True
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or pass a callable")
        return LOSSES[loss], True
    if not callable(loss):
        raise TypeError(f"loss must be a name or a callable(scores, y) -> (N,), got {type(loss).__name__}")
    return loss, False
