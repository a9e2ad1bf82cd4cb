"""Named evaluation protocols: how games are played and how budgets are read, recorded in every result.

- ``sa-dqn``: the released evaluation of SA-DQN (Zhang et al. 2020, ``chenhongge/SA_DQN``: ``test.py``,
  ``attacks.py``, ``defaults.json``), which RADIAL and CAR-DQN follow: 50 whole games (no life-loss episodes),
  greedy actions, up to 30 no-ops and FIRE at reset, at most 15,000 agent steps (60,000 frames) a game; PGD with 10
  steps of eps/10 from a uniform random start, cross-entropy against the clean greedy action; eps 1/255, 3/255
  and 5/255 on [0, 1]-scaled frames.
- ``nature``: Mnih et al. (2015): epsilon-greedy with epsilon 0.05, up to 30 no-ops, games capped at 5 minutes
  (18,000 frames), 30 games; the attacks and budgets of ``sa-dqn``.
- ``sap-paper``: Dhillon et al. (2018): budgets lambda on the 0-255 scale, FGSM and the iterative attack, a
  stochastic agent acting on the mean of 100 passes and attacked by the Monte-Carlo attacker (gradients averaged
  over 100 passes); whole games under ALE's 108,000-frame cap.

FIRE is pressed only where a game needs it to start (at reset); ``fire_after_life_loss`` brings back the forced
FIRE after every lost life, which hides the stalls an attack can cause, and is off in every protocol.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlrobust.attacks import default_pgd_step

PIXELS = 255.0  # frames are uint8 0-255; a budget on the [0, 1] scale is this many grey levels per unit


@dataclass(frozen=True)
class Protocol:
    """How to play and attack: the settings a published evaluation fixes.

    >>> PROTOCOLS["sa-dqn"].to_pixels(1 / 255)
    1.0
    """

    name: str
    budget_scale: str  # "unit": budgets on [0, 1]-scaled frames; "pixel": lambda on the 0-255 scale
    budgets: tuple[float, ...]
    attacks: tuple[str, ...]
    episodes: int
    exploration: float = 0.0  # epsilon of epsilon-greedy acting
    noop_max: int = 30
    max_frames: int = 108_000  # emulator frames per game (4 per agent step)
    fire_after_life_loss: bool = False
    pgd_steps: int = 10
    pgd_step_frac: float | None = None  # PGD step as a share of the budget (None: the core's default_pgd_step)
    passes: int = 1  # stochastic agents act on the mean scores of this many passes
    eot_samples: int = 10  # passes per gradient when attacking a stochastic agent
    timed_rate: float = 0.25  # share of steps the strategically-timed attack is calibrated to attack
    source: str = ""

    @property
    def budget_name(self) -> str:
        return "eps" if self.budget_scale == "unit" else "lambda"

    def pgd_step(self, budget: float) -> float:
        """The PGD step at ``budget``: the protocol's share of it, or the core's default for its steps.

        >>> PROTOCOLS["sa-dqn"].pgd_step(5.0), Protocol("custom", "pixel", (4.0,), ("pgd",), 1).pgd_step(4.0)
        (0.5, 1.0)
        """
        if self.pgd_step_frac is None:
            return default_pgd_step(budget, self.pgd_steps)
        return self.pgd_step_frac * budget

    def to_pixels(self, budget: float) -> float:
        """A budget in grey levels of the 0-255 frames the agents see."""
        return budget * PIXELS if self.budget_scale == "unit" else float(budget)

    def check_budgets(self, budgets: Sequence[float]) -> tuple[float, ...]:
        """Sorted distinct budgets; raises ``ValueError`` for a negative, non-finite or wrong-scale one.

        >>> [round(b * 255) for b in PROTOCOLS["sa-dqn"].check_budgets([3 / 255, 1 / 255, 3 / 255])]
        [1, 3]
        >>> PROTOCOLS["sa-dqn"].check_budgets([3])
        Traceback (most recent call last):
        ...
        ValueError: the sa-dqn protocol takes eps on [0, 1]-scaled frames; 3 looks like the 0-255 scale (write 3/255)
        """
        if not budgets:
            raise ValueError("give at least one budget")
        for budget in budgets:
            if not math.isfinite(budget) or budget <= 0:
                raise ValueError(f"budgets must be finite and > 0 (the clean play is always included), got {budget}")
            if self.budget_scale == "unit" and budget >= 1:
                raise ValueError(
                    f"the {self.name} protocol takes eps on [0, 1]-scaled frames; {budget:g} looks like the 0-255 "
                    f"scale (write {budget:g}/255)"
                )
            if self.budget_scale == "pixel" and budget < 1:
                raise ValueError(
                    f"the {self.name} protocol takes lambda in grey levels of the 0-255 scale, [1, 255]; {budget:g} "
                    f"looks like the [0, 1] scale (write {budget * PIXELS:g})"
                )
            if self.budget_scale == "pixel" and budget > PIXELS:
                raise ValueError(
                    f"the {self.name} protocol takes lambda in grey levels of the 0-255 scale, [1, 255], got {budget:g}"
                )
        return tuple(sorted({float(b) for b in budgets}))

    def with_changes(self, **changes: Any) -> Protocol:
        """A copy with some settings changed (``None`` values keep the protocol's), checked.

        >>> short = PROTOCOLS["sa-dqn"].with_changes(episodes=10, max_frames=18_000, pgd_steps=None)
        >>> short.episodes, short.max_frames, short.pgd_steps
        (10, 18000, 10)
        """
        kept = {key: value for key, value in changes.items() if value is not None}
        if "budgets" in kept:
            kept["budgets"] = self.check_budgets(kept["budgets"])
        return dataclasses.replace(self, **kept)

    def describe(self) -> dict[str, Any]:
        """Every setting, for run.json and every result file."""
        return dataclasses.asdict(self)


ATTACKS = ("noise", "fgsm", "iterative", "pgd", "pgd-margin", "pgd-targeted", "pgd-timed")
ROBUST_RL_ATTACKS = ("noise", "fgsm", "pgd", "pgd-margin", "pgd-targeted", "pgd-timed")

PROTOCOLS: dict[str, Protocol] = {
    "sa-dqn": Protocol(
        name="sa-dqn",
        budget_scale="unit",
        budgets=(1 / 255, 3 / 255, 5 / 255),
        attacks=ROBUST_RL_ATTACKS,
        episodes=50,
        max_frames=15_000 * 4,
        pgd_step_frac=0.1,  # eps / 10
        source="Zhang et al. 2020 (SA-DQN), released test.py/attacks.py/defaults.json",
    ),
    "nature": Protocol(
        name="nature",
        budget_scale="unit",
        budgets=(1 / 255, 3 / 255, 5 / 255),
        attacks=ROBUST_RL_ATTACKS,
        episodes=30,
        exploration=0.05,
        max_frames=18_000,
        pgd_step_frac=0.1,  # the attacks of sa-dqn
        source="Mnih et al. 2015 (Nature DQN), Methods: evaluation",
    ),
    "sap-paper": Protocol(
        name="sap-paper",
        budget_scale="pixel",
        budgets=(1.0, 2.0, 4.0, 8.0),
        attacks=("noise", "fgsm", "iterative"),
        episodes=10,
        pgd_step_frac=0.25,  # 2.5 * lambda / 10 (Madry et al.'s rule for its 10 steps)
        passes=100,
        eot_samples=100,
        source="Dhillon et al. 2018 (SAP), Section 4.2",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The named protocol, or ``ValueError`` listing the known ones.

    >>> protocol = get_protocol("sap-paper")
    >>> protocol.budgets, protocol.passes, protocol.eot_samples
    ((1.0, 2.0, 4.0, 8.0), 100, 100)
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def check_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    """The attacks in the order given, duplicates dropped; ``ValueError`` for an unknown one.

    >>> check_attacks(["pgd", "fgsm", "pgd"])
    ('pgd', 'fgsm')
    """
    for attack in attacks:
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    if not attacks:
        raise ValueError("give at least one attack")
    return tuple(dict.fromkeys(attacks))
