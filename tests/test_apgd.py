"""APGD (Croce & Hein 2020) and the DLR losses: hand-checked values, the paper's schedule, the step-size control,
budgets, restarts, EOT, and agreement with the reference port in torchattacks on the same model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rlrobust import attacks
from rlrobust.attacks import apgd, apgd_targeted, dlr, pgd, targeted_dlr
from rlrobust.attacks.apgd import checkpoint_iterations
from rlrobust.sap import insert_sap
from tests.test_classifiers_data import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)


def test_dlr_by_hand():
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
    y = torch.tensor([0, 1])
    # row 0: -(3 - 2) / (3 - 1) = -0.5 (correct); row 1: -(1 - 3) / (3 - 1) = 1.0 (misclassified)
    assert torch.allclose(dlr(z, y), torch.tensor([-0.5, 1.0]))
    # targeted: -(z_y - z_t) / (z1 - (z3 + z4) / 2) = -(3 - 1) / (3 - 0.5) = -0.8
    assert torch.allclose(targeted_dlr(z[:1], torch.tensor([[0, 1]])), torch.tensor([-0.8]))


def test_dlr_is_invariant_to_shift_and_scale_of_the_logits():
    z, y = torch.randn(32, 10), torch.randint(0, 10, (32,))
    assert torch.allclose(dlr(z, y), dlr(7.0 * z - 3.0, y), atol=1e-5)
    pair = torch.stack([y, (y + 1) % 10], 1)
    assert torch.allclose(targeted_dlr(z, pair), targeted_dlr(0.5 * z + 11.0, pair), atol=1e-5)


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="C >= 3"):
        dlr(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="C >= 4"):
        targeted_dlr(torch.randn(4, 3), torch.zeros(4, 2, dtype=torch.long))


def test_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): w_j = 22, 41, 57, 70, 80, 87, 93, 99
    assert checkpoint_iterations(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoint_iterations(10)[0] == 2 and all(
        b > a for a, b in zip(checkpoint_iterations(10), checkpoint_iterations(10)[1:], strict=False)
    )


def test_registered_and_exported():
    assert attacks.get_attack("apgd") is apgd
    assert "apgd_targeted" not in attacks.ATTACKS  # it needs true labels and has no loss/targeted arguments
    assert attacks.apgd_targeted is apgd_targeted
    assert attacks.LOSSES["dlr"] is dlr


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_result_stays_in_budget_and_range(module_net, images, norm, eps, loss):
    x_adv = apgd(
        module_net, images, eps=eps, norm=norm, loss=loss, steps=12, generator=torch.Generator().manual_seed(0)
    )
    assert x_adv.shape == images.shape and x_adv.dtype == images.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - images).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all()


def test_zero_budget_returns_the_input(module_net, images):
    assert torch.equal(apgd(module_net, images, eps=0.0), images)


class Bowl(nn.Module):
    """Scores whose first entry is -||x - c||^2: a concave objective with its maximum inside the ball."""

    def __init__(self, centre: torch.Tensor) -> None:
        super().__init__()
        self.centre = centre

    def forward(self, x):
        value = -((x - self.centre) ** 2).flatten(1).sum(1)
        return torch.stack([value, torch.zeros_like(value)], 1)


def test_step_size_halving_converges_where_fixed_steps_oscillate():
    """With the optimum strictly inside the ball, sign steps of a fixed size keep bouncing around it; APGD halves
    its step at checkpoints where progress stalls and lands much closer."""
    x = torch.full((4, 3, 2, 2), 0.5)
    centre = x + 0.1234
    model = Bowl(centre)
    objective = lambda scores, _: scores[:, 0]  # noqa: E731 (custom loss; labels unused)
    dummy = torch.zeros(4, 1)  # non-class labels: no misclassification tracking, best objective wins
    x_apgd = apgd(model, x, dummy, eps=0.3, steps=100, loss=objective, random_start=False)
    x_pgd = pgd(model, x, dummy, eps=0.3, steps=100, loss=objective, random_start=False)  # step 2.5 eps / steps
    apgd_error = (x_apgd - centre).abs().max().item()
    pgd_error = (x_pgd - centre).abs().max().item()
    assert apgd_error < 0.003
    assert apgd_error < pgd_error / 2


class Linear(nn.Module):
    def __init__(self, classes=10, features=3 * 8 * 8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class SensitiveMLP(nn.Module):
    """A ReLU MLP with enlarged weights, so that budgets of 1-2/255 fool a fair share of random inputs (the
    small random conv nets of conftest are nearly constant and cannot be fooled at such budgets)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(192, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
        )
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    layer.weight.mul_(3)

    def forward(self, x):
        return self.net(x - 0.5)


@pytest.fixture
def sensitive():
    model = SensitiveMLP().eval()
    x = torch.rand(128, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return model, x, model(x).argmax(1)


def fooled_share(model, x_adv, y):
    return (model(x_adv).argmax(1) != y).float().mean().item()


def test_apgd_fools_at_least_as_often_as_pgd_with_the_same_budget_of_gradients(sensitive):
    model, x, y = sensitive
    eps = 2 / 255
    fooled_pgd = fooled_share(model, pgd(model, x, y, eps=eps, steps=20, generator=torch.Generator().manual_seed(0)), y)
    for loss in ("ce", "dlr"):
        x_adv = apgd(model, x, y, eps=eps, steps=20, loss=loss, generator=torch.Generator().manual_seed(0))
        assert 0.1 < fooled_pgd <= fooled_share(model, x_adv, y)


def test_misclassified_inputs_are_returned_unchanged_and_restarts_only_help(sensitive):
    model, x, pred = sensitive
    y = pred.clone()
    y[:8] = (pred[:8] + 1) % 10  # the model already gets these wrong
    x_adv = apgd(model, x, y, eps=1 / 255, steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv[:8], x[:8])
    one = apgd(model, x, y, eps=1 / 255, steps=10, restarts=1, generator=torch.Generator().manual_seed(1))
    three = apgd(model, x, y, eps=1 / 255, steps=10, restarts=3, generator=torch.Generator().manual_seed(1))
    fooled = lambda xa: model(xa).argmax(1) != y  # noqa: E731
    assert (fooled(three) | ~fooled(one)).all()  # every input fooled with one restart stays fooled with three
    assert fooled(three).sum() >= fooled(one).sum()


def test_targeted_apgd_reaches_the_targets():
    model = Linear().eval()
    x = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    target = (model(x).argmax(1) + 3) % 10
    g = torch.Generator().manual_seed(0)
    reached_apgd = model(apgd(model, x, target, eps=64 / 255, steps=30, targeted=True, generator=g)).argmax(1) == target
    reached_pgd = model(pgd(model, x, target, eps=64 / 255, steps=30, targeted=True, generator=g)).argmax(1) == target
    assert reached_apgd.float().mean() > 0.75  # some targets lie beyond the [0, 1] box of a linear model
    assert reached_apgd.sum() >= reached_pgd.sum()


def test_apgd_t_fools_more_than_untargeted_dlr_on_a_hard_case():
    model = Linear(seed=1).eval()
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    y = model(x).argmax(1)
    eps = 1 / 255
    untargeted = apgd(model, x, y, eps=eps, steps=20, loss="dlr", generator=torch.Generator().manual_seed(0))
    targeted = apgd_targeted(
        model, x, y, eps=eps, steps=20, target_classes=3, generator=torch.Generator().manual_seed(0)
    )
    assert (targeted - x).abs().max() <= eps + 1e-6
    acc_untargeted = (model(untargeted).argmax(1) == y).float().mean()
    acc_targeted = (model(targeted).argmax(1) == y).float().mean()
    assert acc_targeted <= acc_untargeted + 1 / 64


def test_apgd_t_checks_its_inputs(module_net, images):
    y = module_net(images).argmax(1)
    with pytest.raises(ValueError, match="target_classes"):
        apgd_targeted(module_net, images, y, eps=8 / 255, target_classes=5)  # 5 classes: 4 wrong ones
    with pytest.raises(ValueError, match="at least 4 classes"):
        apgd_targeted(nn.Sequential(nn.Flatten(), nn.Linear(192, 3)), images, y % 3, eps=8 / 255, target_classes=2)


def test_eot_on_a_stochastic_model_runs_in_budget(module_net, images):
    sap_net = insert_sap(module_net, 1.0, generator=torch.Generator().manual_seed(0))
    x_adv = apgd(sap_net, images, eps=4 / 255, steps=5, eot_samples=4, generator=torch.Generator().manual_seed(0))
    assert (x_adv - images).abs().max() <= 4 / 255 + 1e-6


def test_agrees_with_torchattacks_apgd(sensitive):
    """Same model, inputs and settings: the share of inputs each fools agrees (random starts differ). Measured:
    CE 28.9 % vs 28.9 %, DLR 32.0 % vs 32.0 % of 128 inputs at 2/255."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = sensitive
    eps = 2 / 255
    for loss in ("ce", "dlr"):
        ours = apgd(model, x, y, eps=eps, steps=20, loss=loss, generator=torch.Generator().manual_seed(0))
        theirs = torchattacks.APGD(model, eps=eps, steps=20, loss=loss, seed=0)(x, y)
        assert 0.1 < fooled_share(model, theirs, y) < 0.9
        assert abs(fooled_share(model, ours, y) - fooled_share(model, theirs, y)) <= 3 / 128, loss


def test_bad_arguments_are_named(module_net, images):
    with pytest.raises(ValueError, match="rho"):
        apgd(module_net, images, eps=8 / 255, rho=1.5)
    with pytest.raises(ValueError, match="steps"):
        apgd(module_net, images, eps=8 / 255, steps=0)
    with pytest.raises(ValueError, match="eps"):
        apgd(module_net, images, eps=8.0)
    assert math.isfinite(float(dlr(torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([0]))))


@pytest.mark.parametrize(("eot_samples", "eot_batch_size"), [(1, None), (3, None), (3, 4)])
def test_the_objective_returns_the_prediction_of_its_passes(module_net, images, eot_samples, eot_batch_size):
    """APGD reads each iterate's prediction from the objective's own passes (the argmax of their mean softmax)."""
    from rlrobust.attacks._base import attack_run

    y = module_net(images).argmax(1)
    shifted = (images + 0.02).clamp(0, 1)
    with attack_run(module_net, images, y, 8 / 255, (0.0, 1.0), "linf", "ce", False, eot_samples, eot_batch_size) as p:
        evaluation = p.objective(shifted, with_grad=True, with_predictions=True)
        assert p.objective(shifted, with_grad=False).predictions is None
    assert torch.equal(evaluation.predictions, module_net(shifted).argmax(1))
    assert evaluation.grad.shape == images.shape and evaluation.objective.shape == (images.shape[0],)
