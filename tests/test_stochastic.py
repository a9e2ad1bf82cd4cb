"""Prediction of stochastic models: mean softmax over passes, batched."""

from __future__ import annotations

import pytest
import torch

from rlrobust import stochastic
from rlrobust.sap import insert_sap

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Rows(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.model(x)


def test_predict_proba_is_a_distribution_and_agrees_with_a_loop_of_passes(module_net, images):
    insert_sap(module_net, 0.3, generator=torch.Generator().manual_seed(0))
    samples = 200
    probs = stochastic.predict_proba(module_net, images, samples=samples)
    assert probs.shape == (16, 5)
    assert torch.allclose(probs.sum(1), torch.ones(16))
    with torch.no_grad():
        passes = torch.stack([module_net(images).softmax(1) for _ in range(samples)])
    # Two independent 200-pass estimates of the same mean: within 5 standard errors of their difference.
    assert ((probs - passes.mean(0)).abs() <= 5 * passes.std(0) * (2 / samples) ** 0.5 + 1e-6).all()


def test_passes_run_as_repeated_rows_in_few_calls(module_net, images):
    counted = Rows(module_net)
    stochastic.mean_scores(counted, images, samples=100, max_rows=800)
    assert counted.calls == [800, 800]


def test_repeat_plan_covers_all_samples():
    assert sum(stochastic.repeat_plan(37, 10, 64, True)) == 37
    assert stochastic.repeat_plan(37, 10, 64, True) == [6] * 6 + [1]
    assert stochastic.repeat_plan(3, 5000, 64, True) == [1, 1, 1]


def test_deterministic_model_prediction_is_its_argmax(module_net, images):
    assert torch.equal(stochastic.predict(module_net, images, samples=3), module_net(images).argmax(1))
