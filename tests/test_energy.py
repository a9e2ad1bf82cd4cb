"""Energies of a classifier's logits (the WEAT paper's lens)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rlrobust.energy import energy, joint_energy, weat_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small batches: see conftest


def test_cross_entropy_is_joint_energy_minus_energy():
    torch.manual_seed(0)
    logits = torch.randn(64, 10, dtype=torch.float64) * 5
    y = torch.randint(0, 10, (64,))
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(ce, joint_energy(logits, y) - energy(logits), atol=1e-12)


def test_energy_definitions_and_temperature():
    logits = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 10.0]])
    assert torch.allclose(energy(logits), -torch.logsumexp(logits, 1))
    assert torch.allclose(joint_energy(logits, torch.tensor([2, 0])), torch.tensor([-3.0, 1.0]))
    assert torch.allclose(energy(logits, temperature=1e-3), -logits.amax(1), atol=1e-2)
    assert torch.allclose(energy(logits, temperature=2.0), -2 * torch.logsumexp(logits / 2, 1))


def test_weat_weights_formula_and_detached():
    logits = torch.randn(8, 10, requires_grad=True)
    w = weat_weights(logits)
    assert not w.requires_grad
    expected = 1 / torch.log(1 + torch.exp(energy(logits).abs()))
    assert torch.allclose(w, expected.detach())
    assert (w > 0).all() and (w <= 1 / torch.log(torch.tensor(2.0)) + 1e-6).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_stable(dtype):
    logits32 = torch.tensor([[300.0, 299.0, -50.0], [-200.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    logits = logits32.to(dtype)
    y = torch.tensor([0, 2, 1])
    for value, reference in (
        (energy(logits), energy(logits.float())),
        (joint_energy(logits, y), joint_energy(logits.float(), y)),
        (weat_weights(logits), weat_weights(logits.float())),
    ):
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
        assert torch.allclose(value, reference)
    # The naive formula in half precision overflows where ours does not.
    assert not torch.isfinite(-torch.log(torch.exp(logits32.half()).sum(1))).all()
