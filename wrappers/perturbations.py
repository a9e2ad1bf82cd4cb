"""What is added to the observations: a gradient attack from the core, or matched random noise.

Both are called on a batch of the rows to perturb, with the victim (or a view of it), the labels the loss
compares against (the greedy actions, or the worst ones for a targeted attack) and one ``torch.Generator`` per
row. Drawing each row's randomness from its own generator is what makes a vector of environments and the same
environments wrapped one by one produce the same perturbations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlrobust.attacks import ATTACKS, get_attack, pgd, project, random_point
from rlrobust.attacks.losses import LossFn
from rlrobust.checks import check_eps, check_norm, check_positive

Generators = Sequence[torch.Generator]


class Perturbation:
    """Base class: ``__call__(model, x, labels, generators) -> x_adv`` inside ``bounds`` and the budget."""

    needs_victim: bool = True
    eps: float
    norm: str
    bounds: tuple[float, float]

    def __call__(
        self, model: Callable | None, x: torch.Tensor, labels: torch.Tensor | None, generators: Generators
    ) -> torch.Tensor:
        raise NotImplementedError

    def integral(self) -> bool:
        """Whether every perturbed value of an integer observation stays an integer (for ``keep_dtype``)."""
        return False


class GradientAttack(Perturbation):
    """A core attack (``fgsm``, ``iterative``, ``pgd``) or any callable with the core's signature.

    Defaults in the observation's units: ``iterative`` steps of one grey level (the SAP paper's k = 1 on
    0-255 frames; ``eps / 10`` where the range is unbounded), ``ceil(eps / step)`` of them; ``pgd`` the core's:
    a random start, 10 steps of ``rlrobust.attacks.default_pgd_step``, ``2.5 * eps / steps`` (Madry et al.; the
    wrappers' steps were ``eps / 10`` before, SA-DQN's, which the ``sa-dqn`` protocol states itself).
    ``options`` override them and reach the attack.
    """

    def __init__(
        self,
        attack: str | Callable[..., torch.Tensor],
        *,
        eps: float,
        norm: str,
        bounds: tuple[float, float],
        loss: str | LossFn,
        targeted: bool,
        eot_samples: int,
        grey_level: float | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.norm = check_norm(norm)
        self.bounds = bounds
        self.eps = check_eps(eps, bounds, self.norm)
        self.fn = get_attack(attack) if isinstance(attack, str) else attack
        if not callable(self.fn):
            raise TypeError(f"attack must be one of {sorted(ATTACKS)} or a callable, got {type(attack).__name__}")
        self.name = attack if isinstance(attack, str) else getattr(attack, "__name__", type(attack).__name__)
        self.common = {"loss": loss, "targeted": bool(targeted), "eot_samples": eot_samples}
        self.options = self._defaults(grey_level) | dict(options or {})
        if "generator" in self.options:
            raise ValueError("do not pass a generator: the wrapper seeds one per environment (use seed=...)")
        # One random start per row from its own generator; restarts > 1 fall back to the core's pgd.
        self.row_starts = (
            self.fn is ATTACKS["pgd"]
            and self.options.get("random_start", True)
            and self.options.get("restarts", 1) == 1
        )

    def _defaults(self, grey_level: float | None) -> dict[str, Any]:
        if self.fn is ATTACKS["iterative"]:
            return {"step": grey_level if grey_level is not None else self.eps / 10 or 1.0}
        return {}  # pgd: the core's defaults

    def integral(self) -> bool:
        if self.norm != "linf" or not _is_whole(self.eps):
            return False
        if self.fn is ATTACKS["fgsm"]:
            return True
        return self.fn is ATTACKS["iterative"] and _is_whole(self.options["step"])

    def __call__(self, model, x, labels, generators):
        settings = {"eps": self.eps, "bounds": self.bounds, "norm": self.norm, **self.common}
        if self.row_starts:
            return _pgd_row_starts(model, x, labels, generators, settings, self.options)
        extra = {"generator": generators[0]} if self.fn is ATTACKS["pgd"] else {}
        return self.fn(model, x, labels, **settings, **self.options, **extra)


class RandomNoise(Perturbation):
    """Random noise within the same budget, for controlled baselines.

    ``kind``: ``"sign"`` (every value moved by exactly ``eps`` up or down, FGSM's size; for L2 a random-sign
    vector of length ``eps``), ``"uniform"`` (uniform in the budget ball) or ``"gaussian"`` (N(0, sigma^2) per
    value, sigma ``eps / 2`` for L-inf and ``eps / sqrt(d)`` for L2 by default, then projected onto the ball).
    """

    needs_victim = False
    KINDS = ("sign", "uniform", "gaussian")

    def __init__(
        self, kind: str, *, eps: float, norm: str, bounds: tuple[float, float], sigma: float | None = None
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown noise kind {kind!r}; use one of {self.KINDS}")
        self.kind = kind
        self.norm = check_norm(norm)
        self.bounds = bounds
        self.eps = check_eps(eps, bounds, self.norm)
        if sigma is not None and kind != "gaussian":
            raise ValueError(f"sigma applies to gaussian noise only, not to {kind!r}")
        self.sigma = None if sigma is None else check_positive(sigma, "sigma")

    def integral(self) -> bool:
        return self.kind == "sign" and self.norm == "linf" and _is_whole(self.eps)

    def __call__(self, model, x, labels, generators):
        rows = [self._draw(x[i : i + 1], g) for i, g in enumerate(generators)]
        return torch.cat(rows) if len(rows) > 1 else rows[0]

    def _draw(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "uniform":
            return random_point(x, self.eps, self.norm, self.bounds, generator)
        if self.kind == "sign":
            signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            delta = signs * (self.eps if self.norm == "linf" else self.eps / math.sqrt(x[0].numel()))
        else:
            default = self.eps / 2 if self.norm == "linf" else self.eps / math.sqrt(x[0].numel())
            sigma = self.sigma if self.sigma is not None else default
            delta = sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return project(x + delta, x, self.eps, self.norm, self.bounds)


def _pgd_row_starts(
    model, x: torch.Tensor, labels, generators: Generators, settings: dict[str, Any], options: dict[str, Any]
) -> torch.Tensor:
    """The core's PGD (one restart) from a random start per row, each drawn from that row's generator."""
    options = {k: v for k, v in options.items() if k not in ("random_start", "restarts")}
    unknown = sorted(set(options) - {"step", "steps", "eot_batch_size"})
    if unknown:
        raise TypeError(f"pgd got unexpected options {unknown}")
    starts = None
    if settings["eps"] > 0:  # no draw at a zero budget, where PGD returns x itself
        eps, norm, bounds = settings["eps"], settings["norm"], settings["bounds"]
        rows = [random_point(x[i : i + 1].detach(), eps, norm, bounds, g) for i, g in enumerate(generators)]
        starts = torch.cat(rows)
    return pgd(model, x, labels, x_init=starts, **settings, **options)


def _is_whole(value: float) -> bool:
    return float(value).is_integer()
