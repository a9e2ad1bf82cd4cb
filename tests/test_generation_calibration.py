"""Calibration arithmetic and SGLD generation from a classifier's energy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlrobust.calibration import expected_calibration_error, reliability_bins
from rlrobust.energy import joint_energy
from rlrobust.generation import fit_class_pca, sample_class_pca, sgld_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small batches: see conftest


def test_ece_on_a_hand_made_case():
    # Two bins (0, .5] and (.5, 1]. Bin 1: confidences .8, .8, .6 with 2 of 3 right; bin 0: .4, right.
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]])
    y = torch.tensor([0, 1, 1, 2])
    bins = reliability_bins(probs, y, bins=2)
    assert bins.counts.tolist() == [1, 3]
    assert bins.accuracy.tolist() == pytest.approx([1.0, 2 / 3])
    assert bins.confidence.tolist() == pytest.approx([0.4, 2.2 / 3])
    # ECE = 1/4 * |1 - .4| + 3/4 * |2/3 - 2.2/3| = 0.15 + 0.05
    assert expected_calibration_error(probs, y, bins=2) == pytest.approx(0.2)


def test_a_calibrated_predictor_has_small_ece_and_an_overconfident_one_large():
    g = torch.Generator().manual_seed(0)
    n = 20000
    confidence = 0.5 + 0.5 * torch.rand(n, generator=g)
    probs = torch.stack([confidence, 1 - confidence], dim=1)
    right = torch.rand(n, generator=g) < confidence
    y = torch.where(right, 0, 1)
    assert expected_calibration_error(probs, y) < 0.02
    always_wrong = torch.ones(n, dtype=torch.long)
    assert expected_calibration_error(probs, always_wrong) == pytest.approx(confidence.double().mean().item(), abs=1e-6)


def test_reliability_bins_reject_logits():
    with pytest.raises(ValueError, match="apply softmax"):
        reliability_bins(torch.randn(4, 3) * 5, torch.zeros(4, dtype=torch.long))


def test_class_pca_keeps_the_variance_asked_for_and_samples_in_range():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(48, 3, generator=g))[0].T  # 3 orthonormal directions
    coeff = torch.randn(500, 3, generator=g) * torch.tensor([0.2, 0.1, 0.01])
    images = (0.5 + coeff @ basis).view(500, 3, 4, 4)
    pca = fit_class_pca(images, retained_variance=0.95)
    assert pca.components.shape == (2, 48)  # 0.2^2 + 0.1^2 hold 99.8 %, the first alone 80 %
    x0 = sample_class_pca(pca, 2000, sigma=0.005, generator=g)
    assert x0.shape == (2000, 3, 4, 4) and x0.min() >= 0 and x0.max() <= 1
    assert torch.allclose(x0.mean(0), images.mean(0), atol=0.01)


def test_sgld_lowers_the_joint_energy_on_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4)).eval()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(32, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    energies = []
    x = sgld_sample(model, x0, y, steps=30, step_size=0.05, generator=g, callback=lambda s, x, e: energies.append(e))
    assert len(energies) == 30
    with torch.no_grad():
        before, after = joint_energy(model(x0), y), joint_energy(model(x), y)
    assert after.mean() < before.mean()
    assert (after < before).float().mean() >= 0.9
    assert x.min() >= 0 and x.max() <= 1


def test_sgld_bad_arguments():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="momentum"):
        sgld_sample(model, torch.rand(2, 3), torch.zeros(2, dtype=torch.long), momentum=1.0)
    with pytest.raises(ValueError, match="step_size"):
        sgld_sample(model, torch.rand(2, 3), torch.zeros(2, dtype=torch.long), step_size=-1.0)
