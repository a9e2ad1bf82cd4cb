"""The SAP paper's other post-hoc defences: what each does, that removal is exact, how passes batch."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rlrobust import defences, stochastic
from rlrobust.attacks import pgd
from rlrobust.sap import has_sap

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small batches: see conftest

STOCHASTIC = {"SAP": 1.0, "DRO": 0.3, "RNA": 0.1, "RSA": 0.1, "RNW": 0.05, "RSW": 0.1, "SWP": 1.0}


class Recorder(nn.Module):
    """A Linear layer whose (possibly parametrized) weight is recorded at each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(50, 4)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        w = self.linear.weight
        self.seen.append(w.detach().clone())
        return x @ w.T + self.linear.bias


@pytest.mark.parametrize("name,value", sorted(STOCHASTIC.items()))
def test_each_stochastic_defence_changes_outputs_and_removes_exactly(name, value, module_net, images):
    dense = module_net(images)
    state = copy.deepcopy(module_net.state_dict())
    defences.apply_defence(module_net, name, value)
    a, b = module_net(images), module_net(images)
    assert not torch.equal(a, b), f"{name} should be stochastic"
    defences.remove_defences(module_net)
    assert torch.equal(module_net(images), dense)
    assert module_net.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in module_net.state_dict().items())


def test_deterministic_weight_pruning_keeps_the_top_fraction(module_net, images):
    originals = [m.weight.detach().clone() for m in module_net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    defences.prune_weights(module_net, 0.25)
    assert torch.equal(module_net(images), module_net(images))
    layers = [m for m in module_net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for layer, original in zip(layers, originals, strict=True):
        w = layer.weight
        assert (w != 0).sum().item() == round(0.25 * w.numel())
        smallest_kept = original.abs()[w != 0].min()
        assert (original.abs()[w == 0] <= smallest_kept).all()
    defences.remove_defences(module_net)
    assert all(torch.equal(m.weight, o) for m, o in zip(layers, originals, strict=True))


def test_dropout_and_activation_noise_are_unbiased():
    torch.manual_seed(0)
    h = torch.rand(1, 30).repeat(50000, 1)
    for transform in (
        defences.ActivationDropout(0.4),
        defences.ActivationNoise(0.2),
        defences.ActivationNoise(0.2, multiplicative=True),
    ):
        out = transform(h)
        assert torch.allclose(out.mean(0), h[0], atol=5 * out.std(0).max().item() / 50000**0.5)


def test_weight_noise_has_the_stated_moments():
    torch.manual_seed(0)
    w = torch.randn(200, 100)
    additive = defences.WeightNoise(0.1)(w) - w
    assert additive.mean().abs() < 0.002 and additive.std().item() == pytest.approx(0.1, rel=0.02)
    ratio = defences.WeightNoise(0.1, multiplicative=True)(w) / w
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.002) and ratio.std().item() == pytest.approx(0.1, rel=0.02)


def test_stochastic_weight_pruning_is_unbiased_per_weight():
    torch.manual_seed(0)
    w = torch.randn(1, 40)
    swp = defences.StochasticWeightPruning(0.5)
    draws = torch.stack([swp(w) for _ in range(5000)])
    sd = draws.std(0)
    assert ((draws.mean(0) - w).abs() <= 5 * sd / 5000**0.5 + 1e-6).all()


def test_weight_noise_is_drawn_once_per_forward_call_so_passes_are_not_batched():
    model = Recorder()
    defences.insert_weight_noise(model, 0.1)
    assert not stochastic.rows_independent(model)
    assert stochastic.repeat_plan(10, 4, 1024, stochastic.rows_independent(model)) == [1] * 10
    stochastic.predict(model, torch.rand(4, 50), samples=10)
    assert len(model.seen) == 10 and not torch.equal(model.seen[0], model.seen[1])
    model.seen.clear()
    pgd(model, torch.rand(4, 50), eps=0.1, steps=2, eot_samples=3)
    assert len(model.seen) == 3 + 2 * 3  # label prediction, then 3 passes per step


def test_activation_defences_batch_their_passes(module_net, images):
    defences.insert_dropout(module_net, 0.2)
    assert stochastic.rows_independent(module_net)
    assert stochastic.repeat_plan(10, 16, 1024, True) == [10]


def test_defences_compose_and_sap_is_reported(module_net, images):
    defences.apply_defence(module_net, "sap", 1.0)
    defences.apply_defence(module_net, "RNW", 0.01)
    assert has_sap(module_net)
    defences.remove_defences(module_net)
    assert not has_sap(module_net)


def test_bad_defence_arguments(module_net):
    with pytest.raises(ValueError, match="unknown defence"):
        defences.apply_defence(module_net, "XYZ", 1.0)
    with pytest.raises(ValueError, match="dropout rate"):
        defences.insert_dropout(module_net, 1.0)
    with pytest.raises(ValueError, match="std"):
        defences.insert_activation_noise(module_net, -0.1)
    with pytest.raises(ValueError, match="keep must be"):
        defences.prune_weights(module_net, 0.0)
    with pytest.raises(ValueError, match="no convolution or linear layer"):
        defences.insert_weight_noise(nn.Sequential(nn.ReLU()), 0.1)
