"""Stochastic Activation Pruning: the sampling law, unbiasedness, gradients, insertion and removal."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

from agents import NatureQNetwork
from classifiers.models import resnet20
from rlrobust import sap
from rlrobust.insertion import count_relu_calls, post_relu_transforms, relu_calls_last_forward
from rlrobust.sap import insert_sap, remove_sap, sap_mask, stochastic_activation_pruning

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small batches: see conftest

# One activation map with large, small, tiny and zero entries.
H = torch.tensor([[3.0, 1.0, 0.5, 0.0, 2.0, 0.1, 0.01, 4.0] + [0.3] * 24 + [0.0] * 8])


def keep_probability(h: torch.Tensor, draws: int) -> torch.Tensor:
    p = h.abs() / h.abs().sum()
    return 1 - (1 - p) ** draws


@pytest.mark.parametrize("sampling", ["exact", "independent"])
@pytest.mark.parametrize("frac", [1.0, 0.1, 3.0])
def test_keep_frequency_matches_one_minus_one_minus_p_to_the_r(sampling, frac):
    trials = 40000
    g = torch.Generator().manual_seed(0)
    kept = sap_mask(H.repeat(trials, 1), frac, sampling=sampling, generator=g) > 0
    draws = round(frac * H.shape[1])
    q = keep_probability(H[0].double(), draws)
    observed = kept.double().mean(0)
    se = (q * (1 - q) / trials).sqrt()
    assert ((observed - q).abs() <= 5 * se + 1e-12).all()
    assert not kept[:, H[0] == 0].any()  # zero activations are never kept


def test_exact_sampling_has_the_joint_law_of_draws_with_replacement():
    """The variance of the number of survivors separates exact draws from independent keeps."""
    g = torch.Generator().manual_seed(1)
    h = torch.rand(1, 200, generator=g, dtype=torch.float64) ** 2
    p = h[0] / h[0].sum()
    trials = 20000
    for frac in (1.0, 0.25):  # both use the Poissonised path (lam > 0)
        r = round(frac * 200)
        q = 1 - (1 - p) ** r
        both = 1 - (1 - p[:, None]) ** r - (1 - p[None, :]) ** r + (1 - p[:, None] - p[None, :]).clamp_min(0) ** r
        cov = both - q[:, None] * q[None, :]
        cov.fill_diagonal_(0)
        var_exact = float((q * (1 - q)).sum() + cov.sum())
        var_independent = float((q * (1 - q)).sum())
        survivors = (sap_mask(h.float().repeat(trials, 1), frac, generator=g) > 0).sum(1).double()
        assert survivors.mean().item() == pytest.approx(float(q.sum()), abs=0.1)
        assert survivors.var().item() == pytest.approx(var_exact, rel=0.06)
        assert abs(survivors.var().item() - var_independent) > 0.3 * var_independent
        indep = (sap_mask(h.float().repeat(trials, 1), frac, sampling="independent", generator=g) > 0).sum(1)
        assert indep.double().var().item() == pytest.approx(var_independent, rel=0.06)


@pytest.mark.parametrize("frac", [1.0, 0.25, 3.0])
def test_the_device_sampler_has_the_same_law_when_forced_on_the_cpu(monkeypatch, frac):
    """Off the CPU, exact sampling uses sorted uniforms from exponential spacings (no read-back); run it here on the
    CPU and check its keep frequencies and the variance of the survivors against the law of draws with replacement."""
    monkeypatch.setattr(sap, "_reads_back_freely", lambda device: False)
    g = torch.Generator().manual_seed(4)
    h = torch.cat([H[0], torch.rand(60, generator=g) ** 2]).unsqueeze(0)
    trials, r = 20000, round(frac * h.shape[1])
    kept = sap_mask(h.repeat(trials, 1), frac, generator=g) > 0
    p = h[0].double() / h[0].double().sum()
    q = 1 - (1 - p) ** r
    se = (q * (1 - q) / trials).sqrt()
    assert ((kept.double().mean(0) - q).abs() <= 5 * se + 1e-12).all()
    assert not kept[:, h[0] == 0].any()
    assert kept.sum(1).max() <= r
    both = 1 - (1 - p[:, None]) ** r - (1 - p[None, :]) ** r + (1 - p[:, None] - p[None, :]).clamp_min(0) ** r
    cov = (both - q[:, None] * q[None, :]).fill_diagonal_(0)
    var_exact = float((q * (1 - q)).sum() + cov.sum())
    assert kept.sum(1).double().var().item() == pytest.approx(var_exact, rel=0.06)


def test_exact_sampling_never_keeps_more_than_r_entries():
    kept = sap_mask(torch.rand(5000, 50) + 0.1, 0.1, generator=torch.Generator().manual_seed(2)) > 0
    assert kept.sum(1).max() <= 5


def test_poisson_overflow_fallback_is_still_exact(monkeypatch):
    # Aim the Poisson total above r so nearly every row takes the inverse-CDF fallback.
    monkeypatch.setattr(sap, "_POISSON_MARGIN_SD", -5.0)
    trials = 30000
    kept = sap_mask(H.repeat(trials, 1), 1.0, generator=torch.Generator().manual_seed(3)) > 0
    q = keep_probability(H[0].double(), H.shape[1])
    se = (q * (1 - q) / trials).sqrt()
    assert ((kept.double().mean(0) - q).abs() <= 5 * se + 1e-12).all()


@pytest.mark.parametrize("sampling", ["exact", "independent"])
def test_sap_output_is_an_unbiased_estimate_of_the_activation(sampling):
    trials = 40000
    out = stochastic_activation_pruning(H.repeat(trials, 1), 1.0, sampling=sampling)
    h = H[0].double()
    sd = h * (1 / keep_probability(h, H.shape[1]).clamp_min(1e-300) - 1).sqrt()  # sd of h * mask
    assert ((out.double().mean(0) - h).abs() <= 5 * sd / trials**0.5 + 1e-6).all()


def test_all_zero_maps_give_zeros_not_nan():
    zeros = torch.zeros(4, 3, 5, 5)
    for sampling in ("exact", "independent"):
        out = stochastic_activation_pruning(zeros, sampling=sampling)
        assert torch.equal(out, zeros)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every hidden unit dead
    insert_sap(model)
    assert torch.isfinite(model(torch.rand(3, 4))).all()


def test_backward_goes_through_the_realised_mask():
    h = torch.rand(6, 3, 4, 4, requires_grad=True)
    weight = torch.randn(6, 3, 4, 4)
    out = stochastic_activation_pruning(h, 1.0, generator=torch.Generator().manual_seed(7))
    (grad,) = torch.autograd.grad((out * weight).sum(), h)
    mask = sap_mask(h, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, h * mask)
    assert torch.allclose(grad, weight * mask)


def test_seeding_through_a_generator():
    h = torch.rand(8, 100)
    a = sap_mask(h, generator=torch.Generator().manual_seed(11))
    b = sap_mask(h, generator=torch.Generator().manual_seed(11))
    c = sap_mask(h, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    net = NatureQNetwork(4)
    frames = torch.rand(2, 4, 84, 84) * 255
    outs = []
    for _ in range(2):
        insert_sap(net, generator=torch.Generator().manual_seed(5))
        outs.append(net(frames))
        remove_sap(net)
    assert torch.equal(outs[0], outs[1])


def test_half_precision_activations():
    h = torch.rand(4, 64).to(torch.bfloat16)
    out = stochastic_activation_pruning(h)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_single_layer_model_mean_output_matches_dense_within_a_statistical_bound():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    x = torch.rand(1, 10)
    expected = dense(x).detach()
    stochastic = insert_sap(copy.deepcopy(dense))
    with torch.no_grad():
        samples = stochastic(x.repeat(20000, 1))
    mean, sd = samples.mean(0), samples.std(0)
    assert ((mean - expected[0]).abs() <= 5 * sd / 20000**0.5).all()


@pytest.mark.parametrize(
    "make,x,relus",
    [
        (lambda: NatureQNetwork(6), torch.rand(2, 4, 84, 84) * 255, 4),
        (resnet20, torch.rand(2, 3, 32, 32), 19),
    ],
)
def test_insertion_finds_every_relu_in_module_and_functional_networks(make, x, relus):
    torch.manual_seed(0)
    model = make().eval()
    assert count_relu_calls(model, x) == relus
    insert_sap(model)
    model(x)
    assert relu_calls_last_forward(model) == relus


def test_insertion_covers_every_calling_style(functional_net, module_net, images):
    assert count_relu_calls(functional_net, images) == 6
    assert count_relu_calls(module_net, images) == 3
    # An in-place ReLU whose result the model ignores is pruned too: the mutation carries SAP.
    dense = functional_net(images)
    insert_sap(functional_net, 0.05)
    assert not torch.allclose(functional_net(images), dense)


def test_sap_is_stochastic_in_eval_and_train_mode(module_net, images):
    insert_sap(module_net)
    for mode in (False, True):
        module_net.train(mode)
        assert not torch.equal(module_net(images), module_net(images))


def test_removal_restores_the_original_exactly(functional_net, images):
    before = functional_net(images)
    state = copy.deepcopy(functional_net.state_dict())
    insert_sap(functional_net)
    assert sap.has_sap(functional_net)
    assert not torch.equal(functional_net(images), before)
    remove_sap(functional_net)
    assert not sap.has_sap(functional_net)
    assert torch.equal(functional_net(images), before)
    assert functional_net.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in functional_net.state_dict().items())
    assert not functional_net._forward_hooks and not functional_net._forward_pre_hooks


def test_insert_twice_is_refused(module_net):
    insert_sap(module_net)
    with pytest.raises(ValueError, match="already has SAP"):
        insert_sap(module_net)


def test_copies_are_independent_and_picklable(module_net, images):
    dense = module_net(images)
    insert_sap(module_net)
    twin = copy.deepcopy(module_net)
    remove_sap(twin)
    assert torch.equal(twin(images), dense)
    assert sap.has_sap(module_net) and not torch.equal(module_net(images), dense)
    restored = pickle.loads(pickle.dumps(module_net))
    assert sap.has_sap(restored) and post_relu_transforms(restored)


def test_a_model_without_relu_warns_once():
    model = insert_sap(nn.Sequential(nn.Linear(3, 2), nn.Tanh()))
    with pytest.warns(UserWarning, match="called no ReLU"):
        model(torch.rand(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(torch.rand(2, 3))


def test_a_failing_forward_leaves_no_interception_behind(module_net):
    insert_sap(module_net)
    with pytest.raises(RuntimeError):
        module_net(torch.rand(2, 5, 8, 8))  # wrong channel count
    relu = torch.relu(torch.ones(3, 3))
    assert torch.equal(relu, torch.ones(3, 3))  # no mode left active outside the model
