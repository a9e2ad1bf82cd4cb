"""State-adversarial training of a Q-network: SA-DQN's regulariser (Zhang et al., NeurIPS 2020) with its PGD
solver, and PGD adversarial training, for :class:`agents.double_dqn.DoubleDQN`.

Budgets are on the [0, 1] scale of the network's input, as SA-DQN's (``eps = 1/255`` is one grey level of the
replay's uint8 frames). Per minibatch, with ``a* = argmax_a Q(s, a)`` the current network's clean greedy action:

- ``sa-pgd``: PGD (``pgd_steps`` steps, random start) finds ``s'`` in the ``eps``-ball maximising the margin
  ``m(s') = max_{a != a*} Q(s', a) - Q(s', a*)``; the loss gains ``kappa * mean(max(m(s'), -1))`` (the paper's
  hinge at ``-c``, ``c = 1``), whose gradient reaches the weights through ``Q(s', .)`` (``s'`` itself is fixed).
  It is positive exactly where the greedy action can be flipped; no term is added while ``eps`` is 0.
- ``pgd-at``: the first ``share`` of each (randomly drawn) minibatch is replaced by the same PGD points, and the
  TD loss is taken on them.

``eps`` ramps from 0 to its final value as SA-DQN's schedule does (:func:`scheduled_eps`).

>>> settings = RobustSettings("sa-pgd", eps=1 / 255, eps_start=100, eps_steps=400)
>>> [round(settings.eps_at(step) * 255, 3) for step in (100, 150, 200, 500)]
[0.0, 0.005, 0.077, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rlrobust.attacks import pgd
from rlrobust.attacks.losses import margin

METHODS = ("sa-pgd", "pgd-at")
SCHEDULES = ("smoothed", "linear")
HINGE = 1.0  # SA-DQN's hinge_c: margins below -1 add nothing more
MID_POINT, BETA = 0.25, 4.0  # the smoothed schedule's (CROWN-IBP's) shape, as SA-DQN uses it


@dataclass(frozen=True)
class RobustSettings:
    """One robust-training method and its settings (steps are agent steps)."""

    method: str
    kappa: float = 0.005
    eps: float = 1 / 255
    eps_start: int = 1_500_000
    eps_steps: int = 4_000_000
    schedule: str = "smoothed"
    pgd_steps: int = 5
    share: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown robust method {self.method!r}; choose one of {METHODS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown eps schedule {self.schedule!r}; choose one of {SCHEDULES}")

    def eps_at(self, step: int) -> float:
        """The budget at agent step ``step`` (see :func:`scheduled_eps`)."""
        return scheduled_eps(step, self.eps, self.eps_start, self.eps_steps, self.schedule)


def scheduled_eps(step: int, final: float, start: int, length: int, schedule: str = "smoothed") -> float:
    """SA-DQN's eps schedule: 0 up to step ``start``, ``final`` from ``start + length`` on; in between linear, or
    "smoothed" (CROWN-IBP's): ``alpha (step - start)^4`` up to a quarter of the way, then linear to ``final``,
    with ``alpha`` making the two pieces meet with the same slope.

    >>> scheduled_eps(50, 1.0, 0, 100, "linear"), scheduled_eps(100, 1.0, 0, 100)
    (0.5, 1.0)
    """
    end = start + length
    if step <= start or final == 0:
        return 0.0
    if step >= end:
        return final
    mid = start + int(length * MID_POINT)
    if schedule == "linear" or mid == start:
        return final * (step - start) / length
    slope_term = (mid - start) ** (BETA - 1)
    alpha = final / ((end - mid) * BETA * slope_term + (mid - start) * slope_term)
    if step < mid:
        return alpha * (step - start) ** BETA
    mid_value = alpha * (mid - start) ** BETA
    return mid_value + (final - mid_value) * (step - mid) / (end - mid)


class _UnitScaled(nn.Module):
    """A Q-network on frames scaled to [0, 1] (PGD's budget scale) instead of 0-255."""

    def __init__(self, q_net: nn.Module) -> None:
        super().__init__()
        self.q_net = q_net

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.q_net(frames * 255.0)


def greedy_actions(q_net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The clean greedy actions ``argmax_a Q(s, a)`` of a batch, (N,), without a graph."""
    with torch.no_grad():
        return q_net(obs).argmax(dim=1)


def margin_pgd(q_net: nn.Module, obs: torch.Tensor, actions: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """PGD points (float frames on the 0-255 scale) within ``eps`` (on [0, 1]) of ``obs`` that maximise the margin
    of the other actions over ``actions``; detached, so only the loss taken on them trains the network."""
    x = obs.float() / 255.0
    x_adv = pgd(_UnitScaled(q_net), x, actions, eps=eps, steps=steps, loss="margin", bounds=(0.0, 1.0))
    return (x_adv * 255.0).detach()


def hinge_regulariser(q_adv: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """SA-DQN's regulariser: the batch mean of ``max(max_{a != a*} Q(s', a) - Q(s', a*), -1)``.

    >>> hinge_regulariser(torch.tensor([[1.0, 3.0], [5.0, 0.0]]), torch.tensor([0, 0]))
    tensor(0.5000)
    """
    return margin(q_adv, actions).clamp(min=-HINGE).mean()


def adversarial_inputs(
    q_net: nn.Module, obs: torch.Tensor, settings: RobustSettings, eps: float
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """What one minibatch's loss takes at budget ``eps``: (observations for the TD loss, PGD points and the clean
    greedy actions for the regulariser, or None twice). At ``eps = 0`` the minibatch is unchanged."""
    if eps == 0:
        return obs, None, None
    if settings.method == "sa-pgd":
        actions = greedy_actions(q_net, obs)
        return obs, margin_pgd(q_net, obs, actions, eps, settings.pgd_steps), actions
    count = max(1, round(settings.share * len(obs)))
    head = obs[:count]
    attacked = margin_pgd(q_net, head, greedy_actions(q_net, head), eps, settings.pgd_steps)
    return torch.cat([attacked, obs[count:].float()]), None, None
