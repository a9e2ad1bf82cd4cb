"""Each training method's loss on a case small enough to compute by hand, and the inner maximisations' contracts.

The hand case: natural logits z = (0, 0), adversarial logits z* = (ln 3, 0), label 0. Then p = (1/2, 1/2),
p* = (3/4, 1/4), CE(z) = ln 2, CE(z*) = ln(4/3), KL(p || p*) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3),
E(x) = -logsumexp(z) = -ln 2, so WEAT's weight is 1 / log(1 + exp(ln 2)) = 1 / ln 3.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from classifiers.training import kl_per_sample, mart_loss, trades_loss, weat_loss
from classifiers.training.methods import AttackSettings, make_method
from rlrobust.attacks import fgsm
from rlrobust.energy import weat_weights
from tests.test_classifiers_data import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

Z = torch.tensor([[0.0, 0.0]])
Z_ADV = torch.tensor([[math.log(3.0), 0.0]])
Y = torch.tensor([0])
KL = 0.5 * math.log(4 / 3)
W = 1 / math.log(3)


def test_kl_by_hand():
    assert kl_per_sample(Z, Z_ADV).item() == pytest.approx(KL, rel=1e-6)
    assert kl_per_sample(Z_ADV, Z_ADV).item() == pytest.approx(0.0, abs=1e-7)


def test_standard_pgd_at_and_adv_use_cross_entropy():
    for name in ("standard", "pgd_at", "adv"):
        method = make_method(name, attack=AttackSettings())
        logits = Z if name == "standard" else Z_ADV
        nat, adv = (Z, None) if name == "standard" else (None, Z_ADV)
        expected = math.log(2) if name == "standard" else math.log(4 / 3)
        assert method.loss(nat, adv, Y).item() == pytest.approx(expected, rel=1e-6), name
        assert method.uses_natural == (logits is Z)


def test_trades_by_hand():
    assert trades_loss(Z, Z_ADV, Y, beta=6.0).item() == pytest.approx(math.log(2) + 6 * KL, rel=1e-6)
    assert make_method("trades", attack=AttackSettings(), beta=6.0).loss(Z, Z_ADV, Y).item() == pytest.approx(
        math.log(2) + 6 * KL, rel=1e-6
    )


def test_weat_weights_and_losses_by_hand():
    assert weat_weights(Z).item() == pytest.approx(W, rel=1e-6)
    assert weat_loss(Z, Z_ADV, Y, 6.0, ce_on="natural").item() == pytest.approx(W * (math.log(2) + 6 * KL), rel=1e-6)
    assert weat_loss(Z, Z_ADV, Y, 6.0, ce_on="adversarial").item() == pytest.approx(
        W * (math.log(4 / 3) + 6 * KL), rel=1e-6
    )
    assert make_method("weat_adv", attack=AttackSettings()).loss(Z, Z_ADV, Y).item() == pytest.approx(
        W * (math.log(4 / 3) + 6 * KL), rel=1e-6
    )


def test_weat_nat_with_unit_weights_is_trades():
    torch.manual_seed(0)
    z, z_adv, y = torch.randn(16, 10), torch.randn(16, 10), torch.randint(0, 10, (16,))
    ones = torch.ones(16)
    assert torch.allclose(weat_loss(z, z_adv, y, 6.0, ce_on="natural", weights=ones), trades_loss(z, z_adv, y, 6.0))


def test_weat_weights_are_detached_and_not_renormalised():
    z = torch.randn(8, 10, requires_grad=True)
    z_adv, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    loss = weat_loss(z, z_adv, y, 6.0, ce_on="natural")
    w = weat_weights(z)
    assert not w.requires_grad and w.mean().item() != pytest.approx(1.0, abs=1e-3)
    # the gradient is that of the weighted sum with w held constant
    expected = (w * (F.cross_entropy(z, y, reduction="none") + 6.0 * kl_per_sample(z, z_adv))).mean()
    (g1,) = torch.autograd.grad(loss, z)
    (g2,) = torch.autograd.grad(expected, z)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_mart_by_hand():
    # boosted CE = CE(z*) - log(1 - max_{k != y} p*_k) = ln(4/3) - ln(3/4); robust = KL * (1 - p_y) = KL / 2
    expected = 2 * math.log(4 / 3) + 6 * KL * 0.5
    assert mart_loss(Z, Z_ADV, Y, beta=6.0).item() == pytest.approx(expected, rel=1e-6)


def test_losses_compute_in_float32_from_bf16_logits():
    z, z_adv = torch.randn(4, 10).bfloat16(), torch.randn(4, 10).bfloat16()
    y = torch.randint(0, 10, (4,))
    for loss in (trades_loss(z, z_adv, y, 6.0), weat_loss(z, z_adv, y, 6.0), mart_loss(z, z_adv, y, 6.0)):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 5))
        with torch.no_grad():
            self.net[1].weight.mul_(4)

    def forward(self, x):
        return self.net(x - 0.5)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.rand(20, 3, 8, 8), torch.randint(0, 5, (20,))


@pytest.mark.parametrize("name", ["pgd_at", "trades", "weat_adv", "mart"])
def test_inner_maximisations_stay_in_budget_and_raise_their_objective(name, batch):
    model, x, y = batch
    method = make_method(name, attack=AttackSettings(eps=8 / 255, step=2 / 255, steps=5))
    x_adv = method.perturb(model, x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        if name in ("trades", "weat_adv"):
            assert kl_per_sample(model(x), model(x_adv)).mean() > 1e-3  # KL grows from ~0 at the start
        else:
            assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    assert all(p.requires_grad for p in model.parameters())  # parameters handed back as they were


def test_adv_replaces_a_fifth_of_the_batch_with_fgsm_of_the_previous_epochs_model(batch):
    model, x, y = batch
    method = make_method("adv", attack=AttackSettings(), adv_fraction=0.2, fgsm_eps=2 / 255)
    method.start_epoch(model, 0)
    previous = TinyNet().eval()
    previous.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the model moves on during the epoch; the attacker stays as it was
    mixed = method.perturb(model, x, y, torch.Generator().manual_seed(0))
    changed = (mixed != x).flatten(1).any(1)
    assert changed.sum() == 4  # round(0.2 * 20)
    assert torch.equal(mixed[changed], fgsm(previous, x[changed], y[changed], eps=2 / 255))
    assert torch.equal(mixed[~changed], x[~changed])
