"""What one play of an evaluation is: who acts, and which attack (if any) perturbs what it sees.

A :class:`Play` is a frozen value: equal plays are played once, and its :meth:`Play.key` (every field) is what a
finished play is stored under, together with the agent's sha256 and the game.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from gymnasium.vector import VectorEnv
from torch import nn

from wrappers import StrategicallyTimed, VectorAdversarialObservation, VectorRandomNoiseObservation

GRADIENT_ATTACKS = ("fgsm", "iterative", "pgd")


@dataclass(frozen=True)
class Actor:
    """The acting network: the agent as loaded (``sap_frac`` None) or with SAP inserted, acting greedily on the
    mean scores of ``passes`` passes.

    >>> Actor().describe(), Actor(1.0, 100).describe()
    ('agent', 'SAP-100 (100 passes)')
    """

    sap_frac: float | None = None
    passes: int = 1

    def describe(self) -> str:
        return "agent" if self.sap_frac is None else f"SAP-{self.sap_frac * 100:g} ({self.passes} passes)"


@dataclass(frozen=True)
class Attack:
    """One observation attack at one budget (``eps`` in grey levels of the 0-255 frames).

    ``kind``: ``noise`` (random sign noise of the budget), or a core attack (``fgsm``, ``iterative``, ``pgd``)
    whose loss compares the attacked network's scores with its clean greedy action (``targeted``: pushes toward
    its worst action instead); ``on_sap_frac`` says which network the gradients come from (None: the agent as
    loaded), averaged over ``eot_samples`` passes; ``timed_threshold`` attacks only where Lin et al.'s action
    preference reaches it (strategically timed).

    >>> pgd = Attack("pgd", 3.0, steps=10, step=0.3)  # SA-DQN's PGD-10 at 3/255
    >>> keywords = pgd.wrapper_keywords()
    >>> keywords["attack"], keywords["eps"], keywords["attack_options"]
    ('pgd', 3.0, {'steps': 10, 'step': 0.3})
    >>> Attack("noise", 3.0).wrapper_keywords()
    {'eps': 3.0, 'kind': 'sign', 'perturb': 'stack'}
    """

    kind: str
    eps: float
    loss: str = "ce"
    targeted: bool = False
    eot_samples: int = 1
    on_sap_frac: float | None = None
    steps: int | None = None
    step: float | None = None
    timed_threshold: float | None = None
    perturb: str = "stack"  # "newest": only the newest frame of each stack (the wrappers' ``perturb``)

    def wrapper_keywords(self) -> dict[str, Any]:
        """The keywords of the wrappers that play this attack (``wrappers.AdversarialObservation`` and its vector
        twin; for ``noise``, ``RandomNoiseObservation``'s), apart from the env, victim, seed and device."""
        if self.kind == "noise":
            return {"eps": self.eps, "kind": "sign", "perturb": self.perturb}
        if self.kind not in GRADIENT_ATTACKS:
            raise ValueError(f"unknown attack kind {self.kind!r}; choose noise or one of {GRADIENT_ATTACKS}")
        schedule = None if self.timed_threshold is None else StrategicallyTimed(self.timed_threshold)
        return {
            "eps": self.eps,
            "attack": self.kind,
            "loss": self.loss,
            "targeted": self.targeted,
            "eot_samples": self.eot_samples,
            "attack_options": self.options(),
            "schedule": schedule,
            "perturb": self.perturb,
        }

    def options(self) -> dict[str, Any] | None:
        """The core attack's step settings (None keeps the wrapper's defaults: for PGD, the core's 10 steps of
        ``rlrobust.attacks.default_pgd_step``)."""
        chosen = {k: v for k, v in (("steps", self.steps), ("step", self.step)) if v is not None}
        return chosen or None


@dataclass(frozen=True)
class Play:
    """One play: ``actor`` acting on observations perturbed by ``attack`` (None: clean).

    Plays are values: equal plays are played once and stored under one key.

    >>> Play() == Play(Actor(None, 1)), Play().key()
    (True, 'Play(actor=Actor(sap_frac=None, passes=1), attack=None)')
    >>> Play(attack=Attack("pgd", 1.0)).with_threshold(0.4).attack.timed_threshold
    0.4
    """

    actor: Actor = Actor()
    attack: Attack | None = None

    def key(self) -> str:
        """Every field, stable across runs (the cell store's key)."""
        return repr(self)

    def with_threshold(self, threshold: float) -> Play:
        assert self.attack is not None
        return replace(self, attack=replace(self.attack, timed_threshold=threshold))


def attacked_env(
    env: VectorEnv, attack: Attack, network: nn.Module, *, seed: int, device: str | torch.device
) -> VectorEnv:
    """``env`` whose observations ``attack`` perturbs against ``network`` (the attacker's view of the agent).

    >>> import gymnasium as gym
    >>> envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    >>> env = attacked_env(envs, Attack("fgsm", 0.1), nn.Linear(4, 2), seed=0, device="cpu")
    >>> type(env).__name__, env.reset(seed=0)[1]["attack"]["attacked"].tolist()
    ('VectorAdversarialObservation', [True, True])
    """
    keywords = attack.wrapper_keywords()
    if attack.kind == "noise":
        return VectorRandomNoiseObservation(env, seed=seed, device=device, **keywords)
    return VectorAdversarialObservation(env, network, seed=seed, device=device, **keywords)
