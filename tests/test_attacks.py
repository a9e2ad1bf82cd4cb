"""Attacks: correctness against first principles, budgets and ranges, model state, EOT batching."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlrobust import attacks
from rlrobust.attacks import fgsm, iterative, pgd

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small batches: see conftest


class CallCounter(nn.Module):
    """Wraps a model and counts forward calls and rows seen."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls, self.rows = model, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.model(x)


def ce_per_sample(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def test_fgsm_sign_matches_finite_difference_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 4)).double()
    x = 0.25 + 0.5 * torch.rand(3, 3, 2, 2, dtype=torch.float64)  # interior: no clipping at eps = 0.01
    y = torch.tensor([0, 1, 2])
    eps, h = 0.01, 1e-6
    x_adv = fgsm(model, x, y, eps=eps)
    flat = x.flatten()
    for i in range(flat.numel()):
        bump = torch.zeros_like(flat)
        bump[i] = h
        up = ce_per_sample(model, (flat + bump).view_as(x), y).sum()
        down = ce_per_sample(model, (flat - bump).view_as(x), y).sum()
        fd = (up - down) / (2 * h)
        if abs(fd) > 1e-8:
            assert torch.sign((x_adv - x).flatten()[i]) == torch.sign(fd), f"coordinate {i}"
            assert abs((x_adv - x).flatten()[i].abs() - eps) < 1e-12


def test_fgsm_increases_the_loss(module_net, images):
    y = module_net(images).argmax(1)
    x_adv = fgsm(module_net, images, y, eps=8 / 255)
    assert ce_per_sample(module_net, x_adv, y).mean() > ce_per_sample(module_net, images, y).mean()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fgsm", "iterative", "pgd"])
@pytest.mark.parametrize("bounds,eps", [((0.0, 1.0), 8 / 255), ((0.0, 255.0), 4.0)])
def test_budget_and_range_hold(attack, norm, bounds, eps, module_net):
    torch.manual_seed(3)
    x = torch.rand(16, 3, 8, 8) * (bounds[1] - bounds[0]) + bounds[0]
    model = module_net if bounds[1] == 1.0 else nn.Sequential(_Scale(1 / 255), module_net)
    kwargs = {"step": eps / 4} if attack in ("iterative", "pgd") else {}
    if attack == "pgd":
        kwargs["restarts"] = 2
    x_adv = attacks.get_attack(attack)(model, x, eps=eps, bounds=bounds, norm=norm, **kwargs)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= bounds[0] and x_adv.max() <= bounds[1]
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all()
    assert (size > 0).any()


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def test_pgd_reaches_a_higher_loss_than_fgsm(module_net, images):
    y = module_net(images).argmax(1)
    eps = 8 / 255
    loss_fgsm = ce_per_sample(module_net, fgsm(module_net, images, y, eps=eps), y).mean()
    x_pgd = pgd(module_net, images, y, eps=eps, steps=20, step=eps / 8, generator=torch.Generator().manual_seed(0))
    assert ce_per_sample(module_net, x_pgd, y).mean() > loss_fgsm


@pytest.mark.parametrize("eps,step,expected", [(4.0, 1.0, 4), (2.5, 1.0, 3), (8 / 255, 1 / 255, 8), (1.0, 2.0, 1)])
def test_iterative_takes_ceil_eps_over_step_steps(eps, step, expected, module_net):
    bounds = (0.0, 255.0) if eps >= 1 else (0.0, 1.0)
    counted = CallCounter(nn.Sequential(_Scale(1 / bounds[1]), module_net))
    x = torch.rand(4, 3, 8, 8) * bounds[1]
    y = torch.zeros(4, dtype=torch.long)
    iterative(counted, x, y, eps=eps, step=step, bounds=bounds)
    assert counted.calls == expected
    assert math.ceil(round(eps / step, 9)) == expected


def test_iterative_equals_hand_written_bim(module_net, images):
    y = module_net(images).argmax(1)
    eps, step = 4 / 255, 1 / 255
    x_adv = images.clone()
    for _ in range(4):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(module_net(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        # the projection written as "clip the step to the eps-cube around x" rounds exactly as the attack does, so
        # no one-ulp difference of an iterate can flip the sign of a near-zero gradient entry at the next step
        x_adv = (images + (x_adv.detach() + step * grad.sign() - images).clamp(-eps, eps)).clamp(0, 1)
    assert torch.allclose(iterative(module_net, images, y, eps=eps, step=step), x_adv, atol=1e-7)


def test_targeted_attack_moves_toward_the_target(module_net, images):
    target = (module_net(images).argmax(1) + 1) % 5
    before = ce_per_sample(module_net, images, target)
    x_adv = pgd(module_net, images, target, eps=16 / 255, targeted=True, generator=torch.Generator().manual_seed(0))
    assert (ce_per_sample(module_net, x_adv, target) < before).all()
    # With a budget this untrained net can be moved by, the attack lands on the target class.
    x_big = pgd(module_net, images, target, eps=0.25, steps=40, targeted=True)
    assert (module_net(x_big).argmax(1) == target).all()


def test_y_none_attacks_the_models_own_prediction(module_net, images):
    y = module_net(images).argmax(1)
    assert torch.equal(fgsm(module_net, images, eps=4 / 255), fgsm(module_net, images, y, eps=4 / 255))


def test_margin_loss_and_custom_loss_hook(module_net, images):
    y = module_net(images).argmax(1)
    x_margin = pgd(module_net, images, y, eps=8 / 255, loss="margin", generator=torch.Generator().manual_seed(0))
    assert attacks.margin(module_net(x_margin), y).mean() > attacks.margin(module_net(images), y).mean()

    # A custom loss sees whatever y the caller passes: here the clean scores, to push every score down.
    clean = module_net(images).detach()

    def push_down(scores, reference):
        return -(scores - reference).sum(1)

    x_custom = fgsm(module_net, images, clean, eps=8 / 255, loss=push_down)
    assert (module_net(x_custom) - clean).sum(1).mean() < 0


def test_custom_loss_with_wrong_shape_is_rejected(module_net, images):
    with pytest.raises(ValueError, match="one value per input"):
        fgsm(module_net, images, eps=0.1, loss=lambda s, y: s.sum())


def test_eps_zero_returns_the_input_unchanged(module_net, images):
    counted = CallCounter(module_net)
    for attack in (fgsm, pgd):
        assert torch.equal(attack(counted, images, eps=0.0), images)
    assert counted.calls == 0


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_attacks_leave_the_model_as_found(mode, images):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    model.train(mode == "train")
    model[0].weight.requires_grad_(False)  # a frozen layer must stay frozen, the others trainable
    model[4].weight.grad = torch.full_like(model[4].weight, 7.0)
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for attack in (fgsm, pgd):
        attack(model, images, eps=0.1)
    assert model.training == (mode == "train")
    assert all(m.training == (mode == "train") for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(model[4].weight.grad, torch.full_like(model[4].weight, 7.0))
    assert model[0].bias.grad is None and model[4].bias.grad is None
    if mode == "eval":
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_attacks_accept_a_plain_callable():
    torch.manual_seed(0)
    weight = torch.randn(3, 12)
    x = torch.rand(5, 12)
    x_adv = pgd(lambda t: t @ weight.T, x, eps=0.05)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6


class InputDropoutLinear(nn.Module):
    """Linear scores of an input with inverted dropout: E[grad of score_0] is exactly weight[0]."""

    def __init__(self, weight: torch.Tensor, p: float = 0.5) -> None:
        super().__init__()
        self.weight, self.p = weight, p

    def forward(self, x):
        keep = (torch.rand_like(x) >= self.p).to(x.dtype) / (1 - self.p)
        return (x * keep).flatten(1) @ self.weight.T


def test_eot_gradient_converges_to_the_expected_gradient():
    torch.manual_seed(0)
    weight = torch.randn(3, 48)
    model = InputDropoutLinear(weight)
    x = torch.full((1, 3, 4, 4), 0.5)

    def score0(scores, _):
        return scores[:, 0]

    def direction(n):
        step = fgsm(model, x, torch.zeros(1, dtype=torch.long), eps=0.01, norm="l2", loss=score0, eot_samples=n)
        return (step - x).flatten()

    cos = [F.cosine_similarity(direction(n), weight[0], dim=0).item() for n in (1, 2000)]
    assert cos[1] > 0.99
    assert cos[0] < cos[1]


def test_eot_runs_batched_chunks_not_a_loop_of_single_passes(module_net, images):
    counted = CallCounter(module_net)
    y = torch.zeros(16, dtype=torch.long)
    fgsm(counted, images, y, eps=0.1, eot_samples=100, eot_batch_size=400)
    assert counted.rows == 100 * 16
    assert counted.calls == 4  # 25 copies of the 16-row batch per call


def test_eot_gives_the_same_gradient_as_one_pass_on_a_deterministic_model(module_net, images):
    y = module_net(images).argmax(1)
    one = fgsm(module_net, images, y, eps=4 / 255)
    many = fgsm(module_net, images, y, eps=4 / 255, eot_samples=8, eot_batch_size=48)
    # Batches of 16 and 48 rows may sum in another order: only where the gradient is clear of float32 rounding
    # must the sign step be the same; everywhere the two stay inside the budget.
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(module_net(x), y, reduction="sum"), x)
    clear = grad.abs() > 1e-4 * grad.abs().amax()
    assert clear.float().mean() > 0.9
    assert torch.equal(one[clear], many[clear])
    assert (many - images).abs().max() <= 4 / 255 + 1e-7


def test_pgd_restarts_keep_the_best_run_per_input(module_net, images):
    y = module_net(images).argmax(1)
    eps = 8 / 255
    # Single runs drawing their starts one after another from one generator replay the restarts exactly.
    stream = torch.Generator().manual_seed(0)
    runs = [pgd(module_net, images, y, eps=eps, steps=3, generator=stream) for _ in range(3)]
    best = pgd(module_net, images, y, eps=eps, steps=3, restarts=3, generator=torch.Generator().manual_seed(0))
    losses = torch.stack([ce_per_sample(module_net, r, y) for r in runs])
    assert torch.allclose(ce_per_sample(module_net, best, y), losses.amax(0), atol=1e-6)
    assert (losses.argmax(0) != 0).any()  # the later restarts won somewhere, so selection was exercised


def test_pgd_is_reproducible_under_a_seed(module_net, images):
    a = pgd(module_net, images, eps=8 / 255, generator=torch.Generator().manual_seed(5))
    b = pgd(module_net, images, eps=8 / 255, generator=torch.Generator().manual_seed(5))
    c = pgd(module_net, images, eps=8 / 255, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_get_attack_names():
    assert attacks.get_attack("pgd") is pgd
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.get_attack("deepfool")


def test_fgsm_with_y_none_labels_the_batch_from_its_own_gradient_pass(module_net, images):
    counted = CallCounter(module_net)
    x_adv = fgsm(counted, images, eps=4 / 255)
    assert counted.calls == 1
    assert torch.equal(x_adv, fgsm(module_net, images, module_net(images).argmax(1), eps=4 / 255))
    counted.calls = 0
    iterative(counted, images, eps=4 / 255, step=1 / 255)
    assert counted.calls == 4
    counted.calls = 0
    pgd(counted, images, eps=4 / 255, steps=3)  # random start: the clean batch needs its own prediction pass
    assert counted.calls == 1 + 3


def test_pgd_from_x_init_replays_its_own_random_start(module_net, images):
    """x_init is the start as given: PGD from the random point it would draw itself ends where PGD does."""
    y = module_net(images).argmax(1)
    eps = 8 / 255
    start = attacks.random_point(images, eps, "linf", (0.0, 1.0), torch.Generator().manual_seed(3))
    from_start = pgd(module_net, images, y, eps=eps, steps=4, x_init=start)
    drawn = pgd(module_net, images, y, eps=eps, steps=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(from_start, drawn)


def test_pgd_x_init_outside_the_ball_still_returns_a_point_inside_it(module_net, images):
    """A start beyond the budget (TRADES' x + 0.001 N(0, 1) at a tiny eps) is stepped from, then projected."""
    eps = 0.5 / 255
    start = (images + 0.01).clamp(0, 1)
    x_adv = pgd(module_net, images, eps=eps, steps=1, step=eps / 4, x_init=start)
    assert (x_adv - images).abs().max() <= eps + 1e-7
    assert torch.equal(pgd(module_net, images, eps=0.0, x_init=start), images)  # eps 0: x itself


def test_pgd_x_init_restarts_after_the_first_start_randomly(module_net, images):
    y = module_net(images).argmax(1)
    x_adv = pgd(module_net, images, y, eps=8 / 255, steps=2, restarts=2, x_init=images.clone())
    single = pgd(module_net, images, y, eps=8 / 255, steps=2, random_start=False)
    objective = ce_per_sample(module_net, x_adv, y)
    assert (objective >= ce_per_sample(module_net, single, y) - 1e-6).all()  # the x_init run is one candidate


@pytest.mark.parametrize(
    ("make_start", "error", "message"),
    [
        (lambda x: x[:1], ValueError, r"x_init must be a tensor of x's shape \(4, 3, 8, 8\), got \(1, 3, 8, 8\)"),
        (lambda x: x.tolist(), ValueError, "x_init must be a tensor of x's shape"),
        (lambda x: x * 255, ValueError, r"x_init has values in \[.*\], outside bounds \(0, 1\); x_init is a start"),
        (lambda x: x.masked_fill(x > 0.5, float("nan")), ValueError, "x_init contains NaN or infinite values"),
        (lambda x: (x * 255).long(), TypeError, "x_init must be a floating-point tensor"),
    ],
)
def test_pgd_refuses_a_bad_x_init_in_one_line(module_net, images, make_start, error, message):
    with pytest.raises(error, match=message):
        pgd(module_net, images[:4], eps=8 / 255, x_init=make_start(images[:4]))


def test_x_init_is_checked_in_the_calls_one_read_back_after_x(module_net, images):
    from tests.test_host_syncs import ReadBacks

    start = (images + 0.001).clamp(0, 1)
    with ReadBacks() as reads:
        pgd(module_net, images, eps=8 / 255, steps=3, x_init=start)
    assert reads.total == 1, dict(reads.calls)
    bad_x = images.clone()
    bad_x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^x contains NaN"):
        pgd(module_net, bad_x, eps=8 / 255, x_init=images * 255)


def test_attacks_inside_one_deferred_block_read_back_once(module_net, images):
    from rlrobust.checks import DeviceChecks
    from tests.test_host_syncs import ReadBacks

    y = module_net(images).argmax(1)
    with ReadBacks() as reads, DeviceChecks.deferred():
        first = pgd(module_net, images, y, eps=8 / 255, steps=1, random_start=False)
        pgd(module_net, images, y, eps=8 / 255, steps=2, x_init=first)
    assert reads.total == 1, dict(reads.calls)
    with pytest.raises(ValueError, match="outside bounds"), DeviceChecks.deferred():
        pgd(module_net, images * 2, eps=8 / 255, steps=1)  # returns: its checks wait for the outer block's end


def test_default_pgd_step_is_madrys_rule_and_pgds_default(module_net, images):
    assert attacks.default_pgd_step(8 / 255, 10) == 2.5 * (8 / 255) / 10
    seed = torch.Generator
    implicit = pgd(module_net, images, eps=8 / 255, steps=4, generator=seed().manual_seed(0))
    explicit = pgd(module_net, images, eps=8 / 255, steps=4, step=attacks.default_pgd_step(8 / 255, 4),
                   generator=seed().manual_seed(0))  # fmt: skip
    assert torch.equal(implicit, explicit)


def test_project_keeps_a_point_inside_and_pulls_one_outside_in():
    x = torch.full((2, 3), 0.5)
    inside = attacks.random_point(x, 0.1, "linf", (0.0, 1.0), torch.Generator().manual_seed(0))
    assert torch.equal(attacks.project(inside, x, 0.1, "linf", (0.0, 1.0)), inside)
    far = attacks.project(x + 5.0, x, 0.5, "l2", (0.0, 10.0))
    assert torch.allclose((far - x).norm(dim=1), torch.full((2,), 0.5))
