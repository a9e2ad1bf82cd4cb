"""What every attack shares: argument checks, the (expected) objective and its input gradient, steps and
projections onto the budget and the value range.

The gradient is an expectation-over-transformation (EOT) estimate when ``eot_samples > 1``: the mean of the
input gradient over that many stochastic passes (the SAP paper's Monte-Carlo attacker). The passes run as
repeated rows in as few forward calls as :func:`rlrobust.stochastic.repeat_plan` allows.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from rlrobust._checks import (
    Bounds,
    DeviceChecks,
    check_attack,
    check_count,
    check_flag,
    check_labels,
    check_scores,
    judge_values,
)
from rlrobust.attacks.budget import ascend, project
from rlrobust.attacks.losses import LossFn, resolve_loss
from rlrobust.stochastic import mean_output, predict, repeat_plan, rows_independent

Model = Callable[[torch.Tensor], torch.Tensor]

NONFINITE_SCORES = (
    "the model returned NaN or infinite scores{where}; an attack on them would report a meaningless result "
    "(check the model's weights and that the input is on the scale it expects)"
)


_WATCHING: contextvars.ContextVar[bool] = contextvars.ContextVar("rlrobust_watch_scores", default=True)


@contextlib.contextmanager
def scores_unwatched() -> Iterator[None]:
    """Attacks run inside skip their NaN / infinity check of the model's scores.

    For a caller that checks them itself and must answer in its own terms: the training loop, whose inner
    maximisations would otherwise turn a diverged model into an attack error instead of its own report of what was
    kept (and add a host sync per batch).

    >>> with scores_unwatched():
    ...     ScoreWatch().see(torch.full((1, 2), float("nan")))  # not checked
    """
    token = _WATCHING.set(False)
    try:
        yield
    finally:
        _WATCHING.reset(token)


class ScoreWatch:
    """Watches every pass of an attack for NaN or infinite scores without a host sync per step.

    Without ``checks``, the first pass (the clean or start point) is checked at once, so a broken model fails
    before any work; later passes only fold their flag into one device tensor that :meth:`check` reads once, at the
    end of the call. With ``checks`` (:class:`~rlrobust.checks.DeviceChecks`), both verdicts are added to them and
    read back with the call's other checks, in one read: the first pass's error still comes first.

    >>> watch = ScoreWatch()
    >>> watch.see(torch.zeros(2, 3))  # the first pass: checked now
    >>> watch.see(torch.full((2, 3), float("nan")))  # later passes: noted on the device
    >>> watch.check()
    Traceback (most recent call last):
    ValueError: the model returned NaN or infinite scores during the attack; ...
    """

    def __init__(self, checks: DeviceChecks | None = None) -> None:
        self.checks = checks
        self.first_checked = False
        self.bad: torch.Tensor | None = None

    def see(self, scores: torch.Tensor) -> None:
        """Note whether ``scores`` hold a non-finite value (judging them now if they are the call's first and the
        watch has no ``checks`` to defer to)."""
        if not _WATCHING.get():
            return
        bad = ~torch.isfinite(scores.detach()).all()
        if not self.first_checked:
            self.first_checked = True
            judge_values(bad, _first_pass_problem, self.checks)
            return
        if self.bad is None and self.checks is not None:
            self.checks.add(lambda: self.bad, _later_pass_problem)
        self.bad = bad if self.bad is None else self.bad | bad

    def check(self) -> None:
        """Raise if any pass since the first returned a non-finite score (one host sync; none with ``checks``,
        which judge it when they settle)."""
        if self.checks is None and self.bad is not None and bool(self.bad):
            raise ValueError(_later_pass_problem([1.0]))


def _first_pass_problem(bad: list[float]) -> str | None:
    return NONFINITE_SCORES.format(where="") if bad[0] else None


def _later_pass_problem(bad: list[float]) -> str | None:
    return NONFINITE_SCORES.format(where=" during the attack") if bad[0] else None


@dataclass
class AttackProblem:
    """A validated attack: the model, the clean batch, labels, loss and how to estimate gradients."""

    model: Model
    x: torch.Tensor
    given_y: torch.Tensor | None
    loss_fn: LossFn
    builtin_loss: bool
    direction: float  # +1: increase the loss (untargeted); -1: decrease it (targeted)
    bounds: Bounds
    eps: float
    norm: str
    eot_samples: int
    eot_batch_size: int | None
    independent_rows: bool
    checks: DeviceChecks | None = field(default=None, repr=False)  # deferred value checks (None: judged at once)
    watch: ScoreWatch = field(default_factory=ScoreWatch, repr=False)  # shared by copies made with replace()
    _y: torch.Tensor | None = field(default=None, init=False, repr=False)
    _labels_unchecked: bool = field(default=True, init=False, repr=False)
    _loss_y: torch.Tensor | None = field(default=None, init=False, repr=False)

    @property
    def y(self) -> torch.Tensor:
        """The labels the loss sees: as given, or the model's own prediction on the clean batch."""
        if self._y is None:
            if self.given_y is None:
                self._y = predict(self.model, self.x, self.eot_samples, max_rows=self.eot_batch_size)
            else:
                self._y = self.given_y.to(self.x.device)
        return self._y

    def clean_proba(self) -> torch.Tensor:
        """Mean softmax of the clean batch over the EOT passes, its scores checked for NaN and infinity."""
        return checked_proba(self.model, self.x, self.eot_samples, self.eot_batch_size, self.watch)

    def objective(self, x_adv: torch.Tensor, *, with_grad: bool, with_predictions: bool = False) -> Evaluation:
        """Mean objective per sample over ``eot_samples`` passes, its mean input gradient (``with_grad``) and the
        class each row's passes predict together, the argmax of their mean softmax (``with_predictions``)."""
        rows = x_adv.shape[0]
        # A single pass at the clean batch (FGSM, the iterative attack) labels it too: no separate prediction pass.
        labels_from_this_pass = self._y is None and self.given_y is None and self.eot_samples == 1 and x_adv is self.x
        y = None if labels_from_this_pass else self.y
        total, grad, proba = None, None, None
        for copies in repeat_plan(self.eot_samples, rows, self.eot_batch_size, self.independent_rows):
            leaf = x_adv.detach().requires_grad_(with_grad)
            with torch.set_grad_enabled(with_grad):
                batch = leaf.repeat(copies, *([1] * (leaf.ndim - 1))) if copies > 1 else leaf
                scores = check_scores(self.model(batch), copies * rows)
                self.watch.see(scores)
                if labels_from_this_pass:
                    self._y = y = scores.detach().argmax(dim=1)
                if with_predictions:  # summed here, divided never: the argmax of a sum is that of the mean
                    summed = scores.detach().float().softmax(dim=1).view(copies, rows, scores.shape[1]).sum(0)
                    proba = summed if proba is None else proba + summed
                values = self.direction * self._loss(scores, y, copies, rows)
            if with_grad:
                (step_grad,) = torch.autograd.grad(values.sum(), leaf)
                grad = step_grad if grad is None else grad + step_grad
            summed = values.detach().view(copies, rows).sum(0)
            total = summed if total is None else total + summed
        if self.eot_samples > 1:
            total = total / self.eot_samples
            grad = grad / self.eot_samples if grad is not None else None
        return Evaluation(total, grad, proba.argmax(dim=1) if proba is not None else None)

    def _loss(self, scores: torch.Tensor, y: torch.Tensor, copies: int, rows: int) -> torch.Tensor:
        """The loss of one forward call's ``copies * rows`` scores, in float32, its labels checked on first use."""
        if self.builtin_loss and self.given_y is not None and self._labels_unchecked:
            check_labels(y, rows, scores.shape[1], checks=self.checks)
            self._labels_unchecked = False
            if self.checks is not None:  # judged when the checks settle; till then the loss indexes safely
                self._loss_y = y.clamp(0, scores.shape[1] - 1)
        loss_y = self._loss_y if self._loss_y is not None else y
        targets = loss_y.repeat(copies, *([1] * (loss_y.ndim - 1))) if copies > 1 else loss_y
        values = self.loss_fn(scores, targets)
        if not isinstance(values, torch.Tensor) or values.shape != (copies * rows,):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"the attack loss must return one value per input, shape ({copies * rows},), got {shape}")
        return values.float()


class Evaluation(NamedTuple):
    """What :meth:`AttackProblem.objective` returns for a batch: per row, the objective and, when asked for, its
    input gradient and the predicted class."""

    objective: torch.Tensor
    grad: torch.Tensor | None
    predictions: torch.Tensor | None


def checked_proba(model: Model, x: torch.Tensor, samples: int, max_rows: int | None, watch: ScoreWatch) -> torch.Tensor:
    """Mean softmax over ``samples`` passes, each pass's raw scores shown to ``watch`` (a softmax would hide a
    -inf score, and turn NaN into a prediction of class 0).

    >>> model = torch.nn.Linear(3, 4)
    >>> checked_proba(model, torch.rand(2, 3), 1, None, ScoreWatch()).shape
    torch.Size([2, 4])
    """

    def softmax(scores: torch.Tensor) -> torch.Tensor:
        watch.see(scores)
        return scores.softmax(dim=1)

    return mean_output(model, x, samples, transform=softmax, max_rows=max_rows)


@contextlib.contextmanager
def attack_run(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor | None,
    eps: float,
    bounds: Sequence[float],
    norm: str,
    loss: str | LossFn,
    targeted: bool,
    eot_samples: int,
    eot_batch_size: int | None,
) -> Iterator[AttackProblem]:
    """What every gradient attack starts with, written once: its shared arguments (in the order of the attacks'
    signatures) checked into an :class:`AttackProblem`, and the model's parameters frozen for the block. Labels
    are settled on first use (``y=None``: the model's prediction on ``x``).

    The values of ``x``, ``y`` and every pass's scores are judged in one read-back when the block ends (inside an
    enclosing ``DeviceChecks.deferred()`` block: when that one ends), with the errors of checks made one by one.

    >>> with attack_run(torch.nn.Linear(3, 2), torch.rand(4, 3), None, 0.1, (0, 1), "linf", "ce", False, 1, None) as p:
    ...     p.objective(p.x, with_grad=True).grad.shape
    torch.Size([4, 3])
    """
    with DeviceChecks.deferred() as checks:
        bounds, norm, eps = check_attack(model, x, eps, bounds, norm, checks=checks)
        check_count(eot_samples, "eot_samples")
        if eot_batch_size is not None:
            check_count(eot_batch_size, "eot_batch_size")
        loss_fn, builtin = resolve_loss(loss)
        targeted = check_flag(targeted, "targeted")
        if y is None and targeted:
            raise ValueError("a targeted attack needs the target labels y")
        if y is not None:
            if not isinstance(y, torch.Tensor):
                raise TypeError(f"y must be a tensor with one entry per input, got {type(y).__name__}")
            if y.shape[:1] != x.shape[:1]:
                raise ValueError(f"y must have one entry per input ({x.shape[0]}), got shape {tuple(y.shape)}")
            if builtin:
                y = check_labels(y, x.shape[0], num_classes=None, checks=checks)  # the upper end once scores are seen
        problem = AttackProblem(
            model=model,
            x=x.detach(),
            given_y=y,
            loss_fn=loss_fn,
            builtin_loss=builtin,
            direction=-1.0 if targeted else 1.0,
            bounds=bounds,
            eps=eps,
            norm=norm,
            eot_samples=eot_samples,
            eot_batch_size=eot_batch_size,
            independent_rows=rows_independent(model),
            checks=checks,
            watch=ScoreWatch(checks),
        )
        with preserved_model(model):
            yield problem


@contextlib.contextmanager
def preserved_model(model: Model) -> Iterator[None]:
    """Run with the model's parameters frozen, then restore each ``requires_grad`` flag as it was.

    Freezing keeps autograd from saving what parameter gradients would need; the attack asks only for the
    input gradient, so ``.grad`` of the parameters is never written. Train/eval mode is not changed: the
    attack differentiates the model as the caller configured it.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def run_steps(problem: AttackProblem, x_adv: torch.Tensor, *, step: float, steps: int) -> torch.Tensor:
    """``steps`` rounds of: gradient of the objective, ascent step, projection (the BIM / PGD loop)."""
    for _ in range(steps):
        grad = problem.objective(x_adv, with_grad=True).grad
        x_adv = project(ascend(x_adv, grad, step, problem.norm), problem.x, problem.eps, problem.norm, problem.bounds)
    return x_adv.detach()


def steps_for(eps: float, step: float) -> int:
    """The SAP paper's ceil(lambda / k) iteration count, robust to float noise (8/255 over 1/255 is 8)."""
    return max(1, math.ceil(round(eps / step, 9)))
