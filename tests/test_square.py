"""Square Attack: budget and range, monotone search, query budget, stochastic models, argument checks, and a
side-by-side with torchattacks' Square on a shared robust CIFAR-10 model (slow)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from rlrobust import attacks
from rlrobust.attacks.square import margin, p_schedule, pseudo_gaussian_square, square
from tests.conftest import shared_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cnn(classes: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, classes)).eval()


def linear_model(classes: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes)).eval().to(dtype)


class Recorder:
    """Wraps a model: counts calls and rows, and keeps every batch it was asked about."""

    def __init__(self, model) -> None:
        self.model, self.calls, self.rows, self.batches = model, 0, 0, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        self.batches.append(x.detach().clone())
        return self.model(x)


def images(n: int = 16, seed: int = 0, size: int = 8) -> torch.Tensor:
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x[: n // 4] = x[: n // 4].round()  # some inputs on the edges of the range, where clipping matters
    return x


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("norm", "eps", "bounds"), [("linf", 8 / 255, (0, 1)), ("l2", 0.5, (0, 1)), ("linf", 8, (0, 255))]
)
def test_never_leaves_budget_or_range(norm, eps, bounds):
    model = tiny_cnn()
    scale = bounds[1]
    x = images() * scale
    x_adv = square(lambda t: model(t / scale), x, eps=eps, norm=norm, queries=150, bounds=bounds, generator=seeded())
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= bounds[0] and x_adv.max() <= bounds[1]
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-6)).all()
    assert (x_adv != x).any()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_returned_margin_is_the_best_of_every_query(norm):
    """The search never loses ground: each input's result scores at or below every point it queried."""
    model, x = tiny_cnn(), images(12)
    eps = 8 / 255 if norm == "linf" else 0.5
    with torch.no_grad():
        y = model(x).argmax(1)
    recorder = Recorder(model)
    x_adv = square(recorder, x, y, eps=eps, norm=norm, queries=120, generator=seeded(1))
    queried = torch.cat(recorder.batches[1:])  # the first call is the clean pass
    owner = (queried[:, None] - x[None]).flatten(2).abs().amax(2).argmin(1)  # inputs lie > 2 eps apart
    with torch.no_grad():
        queried_margin = margin(model(queried), y[owner], targeted=False)
        final_margin = margin(model(x_adv), y, targeted=False)
        clean_margin = margin(model(x), y, targeted=False)
    for i in range(x.shape[0]):
        assert final_margin[i] <= queried_margin[owner == i].min() + 1e-5
    assert (final_margin <= clean_margin + 1e-5).all()
    assert (final_margin < clean_margin).float().mean() > 0.5  # and it does make progress


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.5)])
def test_fools_an_undefended_model_on_most_inputs(norm, eps):
    model, x = linear_model(), images(32, seed=2)
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv = square(model, x, y, eps=eps, norm=norm, queries=300, generator=seeded())
    with torch.no_grad():
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    assert robust <= 0.15


def test_cnn_fooled_and_targeted_attack_reaches_its_target():
    model, x = tiny_cnn(), images(32, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
    untargeted = square(model, x, y, eps=0.15, queries=300, generator=seeded())
    target = (y + 1) % 5
    targeted = square(model, x, target, eps=0.25, queries=300, targeted=True, generator=seeded())
    with torch.no_grad():
        assert (model(untargeted).argmax(1) == y).float().mean() <= 0.1
        assert (model(targeted).argmax(1) == target).float().mean() >= 0.85


def test_model_own_prediction_when_y_is_none():
    model, x = linear_model(), images(16, seed=4)
    with torch.no_grad():
        y = model(x).argmax(1)
    assert torch.equal(
        square(model, x, eps=0.05, queries=60, generator=seeded()),
        square(model, x, y, eps=0.05, queries=60, generator=seeded()),
    )


def test_misclassified_inputs_are_returned_unchanged_and_not_queried():
    model, x = linear_model(), images(16, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)
    wrong = torch.arange(16) < 6
    y = torch.where(wrong, (y + 1) % 4, y)
    recorder = Recorder(model)
    x_adv = square(recorder, x, y, eps=0.05, queries=40, generator=seeded())
    assert torch.equal(x_adv[wrong], x[wrong])
    assert recorder.batches[0].shape[0] == 16  # the clean pass sees every input
    for batch in recorder.batches[1:]:
        assert batch.shape[0] <= 10
        distance = (batch[:, None] - x[None, :6]).flatten(2).abs().amax(2)
        assert (distance > 0.05 + 1e-6).all()  # no later query is near a misclassified input


@pytest.mark.parametrize("restarts", [1, 3])
def test_query_budget_is_respected(restarts):
    """A model it cannot fool: exactly one clean pass plus ``queries`` per restart, every input each time."""

    def unfoolable(t: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0, -1.0]]).repeat(t.shape[0], 1) + 0 * t.flatten(1).sum(1, keepdim=True)

    recorder = Recorder(unfoolable)
    x = images(5)
    x_adv = square(recorder, x, torch.zeros(5, dtype=torch.long), eps=0.1, queries=25, restarts=restarts)
    assert recorder.calls == 1 + 25 * restarts
    assert recorder.rows == 5 * (1 + 25 * restarts)
    assert torch.equal(x_adv, x)  # nothing beat the clean margin: the clean input stands


def test_fooled_inputs_stop_being_queried():
    model, x = linear_model(), images(16, seed=6)
    recorder = Recorder(model)
    square(recorder, x, eps=0.2, queries=400, generator=seeded())
    assert recorder.calls < 400  # every input fooled long before the budget: the search stops
    sizes = [b.shape[0] for b in recorder.batches[1:]]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 16


def test_samples_average_the_passes():
    """A model whose single passes put +-D on class 0 by half batch: the mean of 2 passes is the clean model,
    so square with samples=2 makes exactly the same search as on the clean model."""
    base = linear_model(dtype=torch.float64)
    big = 1000.0

    def noisy(t: torch.Tensor) -> torch.Tensor:
        scores = base(t)
        half = t.shape[0] // 2
        offset = torch.full((t.shape[0],), -big, dtype=t.dtype)
        offset[:half] = big
        return scores + torch.nn.functional.pad(offset[:, None], (0, 3))

    x = images(8, seed=7).double()
    recorder = Recorder(noisy)
    averaged = square(recorder, x, eps=0.05, queries=50, samples=2, generator=seeded())
    assert torch.equal(averaged, square(base, x, eps=0.05, queries=50, generator=seeded()))
    assert recorder.batches[0].shape[0] == 16  # both passes of a query in one call, as repeated rows
    assert not torch.equal(square(noisy, x, eps=0.05, queries=50, generator=seeded()), averaged)


def test_reproducible_with_a_generator():
    model, x = tiny_cnn(), images(8)
    for norm, eps in [("linf", 8 / 255), ("l2", 0.5)]:
        first = square(model, x, eps=eps, norm=norm, queries=40, generator=seeded(3))
        assert torch.equal(first, square(model, x, eps=eps, norm=norm, queries=40, generator=seeded(3)))
        assert not torch.equal(first, square(model, x, eps=eps, norm=norm, queries=40, generator=seeded(4)))


def test_zero_budget_returns_the_input_and_x_is_untouched():
    model, x = tiny_cnn(), images(4)
    copy = x.clone()
    assert torch.equal(square(model, x, eps=0.0, queries=10), x)
    square(model, x, eps=0.1, queries=10, generator=seeded())
    assert torch.equal(x, copy)


def test_never_calls_backward():
    model, x = tiny_cnn(), images(4)

    def no_grad_model(t: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled()
        return model(t)

    square(no_grad_model, x.requires_grad_(), eps=0.1, queries=10, generator=seeded())
    assert all(p.grad is None for p in model.parameters())


def test_schedule_and_square_shape():
    assert p_schedule(0, 10000, 0.8) == 0.8 and p_schedule(10, 10000, 0.8) == 0.8
    assert p_schedule(11, 10000, 0.8) == 0.4 and p_schedule(8001, 10000, 0.8) == pytest.approx(0.8 / 512)
    assert p_schedule(1, 1000, 0.8) == 0.8 and p_schedule(2, 1000, 0.8) == 0.4  # rescaled to 10,000 iterations
    shape = pseudo_gaussian_square(5, torch.device("cpu"), torch.float64)
    assert shape.norm().item() == pytest.approx(1.0)
    assert (shape[:2] > 0).all() and (shape[2:] < 0).all()  # two halves of opposite sign
    assert shape[0, 2] == shape[0].max()  # peaked at the centre of each half


def test_exported():
    assert attacks.square is square
    assert "square" not in attacks.ATTACKS  # like fab: no loss / eot_samples arguments for the wrappers


def _nan_model(t: torch.Tensor) -> torch.Tensor:
    return torch.full((t.shape[0], 3), float("nan"))


BAD = [
    ({"eps": -0.1}, "eps must be >= 0"),
    ({"eps": float("nan")}, "eps must be a number"),
    ({"eps": 8.0}, "larger than the value range"),
    ({"queries": 0}, "queries must be an integer >= 1"),
    ({"queries": 2.5}, "queries must be an integer >= 1"),
    ({"restarts": 0}, "restarts must be an integer >= 1"),
    ({"samples": 0}, "samples must be an integer >= 1"),
    ({"p_init": 0.0}, "p_init must be a finite number > 0"),
    ({"p_init": 1.5}, r"p_init must lie in \(0, 1\]"),
    ({"p_init": float("inf")}, "p_init must be a finite number > 0"),
    ({"norm": "l1"}, "norm must be one of"),
    ({"bounds": (1, 0)}, "low < high"),
    ({"bounds": (0, 0.5)}, "outside bounds"),
    ({"y": torch.tensor([0, 1, 2, 7])}, r"outside \[0, 3\)"),
    ({"y": torch.tensor([0, -1, 2, 0])}, r"outside \[0, 3\)"),
    ({"y": torch.tensor([0, 1])}, "one label per input"),
    ({"targeted": True}, "targeted attack needs the target labels"),
    ({"targeted": "yes"}, "targeted must be True or False"),
    ({"generator": 3}, "generator must be a torch.Generator"),
    ({"x": torch.rand(4, 192)}, r"needs a batch of images \(N, C, H, W\)"),
    ({"x": torch.full((4, 3, 8, 8), float("nan"))}, "NaN or infinite"),
    ({"model": _nan_model}, "NaN or infinite scores"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_arguments_give_one_clear_error(change, message):
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 3))
    kwargs = {"model": model, "x": torch.rand(4, 3, 8, 8), "y": None, "eps": 0.1, "queries": 5} | change
    with pytest.raises((ValueError, TypeError), match=message) as error:
        square(kwargs.pop("model"), kwargs.pop("x"), kwargs.pop("y"), **kwargs)
    assert "\n" not in str(error.value)


def test_non_finite_scores_during_the_search_are_refused():
    """A model that breaks only away from the clean inputs: the search stops with one clear line."""
    model, x = linear_model(), images(6)

    def breaks_when_moved(t: torch.Tensor) -> torch.Tensor:
        scores = model(t)
        moved = (t[:, None] - x[None]).flatten(2).abs().amax(2).amin(1) > 0
        return torch.where(moved[:, None], float("nan"), scores)

    recorder = Recorder(breaks_when_moved)
    with pytest.raises(ValueError, match="NaN or infinite scores"):
        square(recorder, x, eps=0.01, queries=100, generator=seeded())
    assert recorder.calls == 2  # the clean pass, the start, then it stops


CIFAR_MODEL = "cifar10_robust_models/alpha-beta-CROWN/resnet2b.pth"


@pytest.mark.slow
def test_side_by_side_with_torchattacks_square():
    """Ours and torchattacks 3.5.1's Square at equal queries on a shared robust model (L-inf 8/255): robust
    accuracy within sampling noise of each other."""
    torchattacks = pytest.importorskip("torchattacks")
    from classifiers.models import load_classifier

    model = load_classifier(shared_file(CIFAR_MODEL), num_classes=10).eval()
    data = np.load(shared_file("cifar10/cifar10_test_first1017_lossless.npz"))
    n, queries, eps = 200, 1000, 8 / 255
    x = torch.tensor(data["x"][:n]).permute(0, 3, 1, 2).float().contiguous() / 255
    y = torch.tensor(data["y"][:n]).long()
    start = time.perf_counter()
    ours = square(model, x, y, eps=eps, queries=queries, generator=seeded())
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = torchattacks.Square(model, eps=eps, n_queries=queries, seed=0)(x, y)
    theirs_s = time.perf_counter() - start
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        ours_acc = (model(ours).argmax(1) == y).float().mean().item()
        theirs_acc = (model(theirs).argmax(1) == y).float().mean().item()
    print(
        f"\nsquare resnet2b n={n} q={queries} eps=8/255: clean {clean:.3f}, ours {ours_acc:.3f} ({ours_s:.1f} s), "
        f"torchattacks {theirs_acc:.3f} ({theirs_s:.1f} s)"
    )
    assert (ours - x).abs().max() <= eps + 1e-6
    noise = 2.5 * math.sqrt(2 * clean * (1 - clean) / n) + 1 / n  # two binomial proportions, ~2.5 sigma
    assert ours_acc <= theirs_acc + noise
    assert abs(ours_acc - theirs_acc) <= noise
