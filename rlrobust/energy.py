"""A classifier's logits read as an energy-based model (Grathwohl et al. 2020; Mirza et al. 2024, "WEAT").

``E(x) = -T * logsumexp(f(x) / T)`` is the free energy of the input, ``E(x, y) = -f(x)[y]`` the joint
energy of input and label; cross-entropy is their difference, ``CE = E(x, y) - E(x)``. WEAT weighs each
sample's TRADES loss by ``1 / log(1 + exp(|E(x)|))`` of the natural input, detached.

All three compute in float32 (float64 stays float64), so float16 and bfloat16 logits neither overflow nor
lose the few significant digits an energy of size ~10-100 needs; the result is float32 for such inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlrobust._checks import check_labels, check_positive


def _logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point tensor of shape (N, C)")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    return logits if logits.dtype == torch.float64 else logits.float()


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``E(x) = -T logsumexp(f(x) / T)`` per sample, shape (N,).

    >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
    >>> energy(logits)
    tensor([-2.1698])
    >>> y = torch.tensor([0])
    >>> torch.allclose(joint_energy(logits, y) - energy(logits), F.cross_entropy(logits, y, reduction="none"))
    True
    """
    t = check_positive(temperature, "temperature")
    return -t * torch.logsumexp(_logits(logits) / t, dim=1)


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Joint energy ``E(x, y) = -f(x)[y]`` per sample, shape (N,).

    >>> joint_energy(torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]), torch.tensor([0, 1]))
    tensor([-2.0000, -1.5000])
    """
    z = _logits(logits)
    y = check_labels(y, z.shape[0], z.shape[1])
    return -z.gather(1, y[:, None]).squeeze(1)


def weat_weights(logits: torch.Tensor) -> torch.Tensor:
    """WEAT's per-sample weight ``1 / log(1 + exp(|E(x)|))``, detached and not renormalised.

    Inputs of large |E(x)| weigh less:

    >>> weat_weights(torch.tensor([[2.0, 0.0, -1.0], [8.0, 0.0, -1.0]]))
    tensor([0.4390, 0.1250])
    """
    return F.softplus(energy(logits.detach()).abs()).reciprocal()
