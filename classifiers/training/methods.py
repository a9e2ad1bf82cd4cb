"""Training methods as small classes with hooks (in the spirit of stable-baselines3's policies): each says which
logits its loss needs, how it makes its adversarial batch (the inner maximisation, with the model in eval mode),
and its outer loss (:mod:`classifiers.training.losses`). The training loop calls them and nothing else differs.

Inner maximisations use the core's attack machinery (``rlrobust.attacks``):

- PGD-AT: PGD with a uniform random start and cross-entropy (Madry et al. 2018).
- TRADES / WEAT: KL-PGD from ``x + 0.001 * N(0, 1)``, ascending ``KL(p(x) || p(x'))`` (Zhang et al. 2019).
- MART: CE-PGD from ``x + 0.001 * N(0, 1)`` (Wang et al. 2020).
- ADV (the SAP paper): FGSM with lambda = 2 (2/255) on a frozen copy of the previous epoch's model, replacing a
  random 20 % of each batch.

Under mixed precision the 0.001 start is finer than bfloat16 resolves (8 significant bits: a step of about 0.002
near 0.5), so a bf16 forward sees ``x' == x`` and the first step ascends noise: measured under CPU bf16 autocast on
the pretrained ResNet-20 (64 test images), its sign agreed with float32 on 69 % of pixels and the final KL was 14 %
off (55 % and 7 % on the small net of the test). These starts therefore take their first step, and TRADES its
natural logits, in float32 (autocast off); from then on ``x'`` is 2/255 or more from ``x`` and the remaining steps
run in the ambient precision (agreement 100 %, KL within 1 %).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

from classifiers.training import losses
from rlrobust.attacks import fgsm, pgd
from rlrobust.attacks.losses import LossFn, cross_entropy
from rlrobust.checks import DeviceChecks


@dataclass(frozen=True)
class AttackSettings:
    """The inner maximisation's budget: L-inf ``eps``, sign ``step`` size and number of ``steps`` on [0, 1]."""

    eps: float = 8 / 255
    step: float = 2 / 255
    steps: int = 10


class TrainingMethod:
    """One way to train: an optional adversarial batch and a loss of the natural and/or adversarial logits."""

    name = "base"
    uses_natural = True  # the loss needs logits of the natural batch
    uses_adversarial = False  # the loss needs logits of a batch returned by ``perturb``

    def __init__(self, attack: AttackSettings = AttackSettings(), beta: float = 6.0) -> None:
        self.attack = attack
        self.beta = beta

    def start_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called before each epoch with the bare model (not wrapped for DDP or compiled)."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch the adversarial logits are computed on; ``model`` is in eval mode."""
        raise NotImplementedError

    def loss(self, natural: torch.Tensor | None, adversarial: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class Standard(TrainingMethod):
    """Cross-entropy on natural images."""

    name = "standard"

    def loss(self, natural, adversarial, y):
        return losses.cross_entropy_loss(natural, y)


class SapAdv(TrainingMethod):
    """The SAP paper's ADV: CE on batches whose random ``fraction`` is FGSM(``fgsm_eps``) of the previous epoch's
    model (the rest clean). The first epoch's attacker is the initial model."""

    name = "adv"
    uses_natural = False
    uses_adversarial = True

    def __init__(self, fraction: float = 0.2, fgsm_eps: float = 2 / 255, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < fraction <= 1:
            raise ValueError(f"the adversarial fraction must lie in (0, 1], got {fraction}")
        self.fraction, self.fgsm_eps = fraction, fgsm_eps
        self.previous: nn.Module | None = None

    def start_epoch(self, model, epoch):
        self.previous = copy.deepcopy(model).eval()  # the model as it was at the end of the previous epoch

    def perturb(self, model, x, y, generator):
        if self.previous is None:
            raise RuntimeError("SapAdv.start_epoch must run before perturb")
        rows = torch.randperm(x.shape[0], generator=generator, device=generator.device)[
            : round(self.fraction * x.shape[0])
        ]
        rows = rows.to(x.device)
        mixed = x.clone()
        mixed[rows] = fgsm(self.previous, x[rows], y[rows], eps=self.fgsm_eps)
        return mixed

    def loss(self, natural, adversarial, y):
        return losses.cross_entropy_loss(adversarial, y)

    def describe(self) -> str:
        return f"adv ({self.fraction:.0%} FGSM eps={self.fgsm_eps * 255:g}/255 of the previous epoch's model)"


class PgdAt(TrainingMethod):
    """Madry et al.: CE on PGD examples (uniform random start)."""

    name = "pgd_at"
    uses_natural = False
    uses_adversarial = True

    def perturb(self, model, x, y, generator):
        a = self.attack
        return pgd(model, x, y, eps=a.eps, step=a.step, steps=a.steps, generator=generator)

    def loss(self, natural, adversarial, y):
        return losses.cross_entropy_loss(adversarial, y)


def _pgd_from_gaussian_start(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss: LossFn, attack: AttackSettings, generator
) -> torch.Tensor:
    """The core's PGD on ``loss`` from ``x + 0.001 N(0, 1)`` (sign steps, projected on the eps-ball and [0, 1])."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
    start = (x.detach() + 0.001 * noise).clamp(0.0, 1.0)
    settings = {"eps": attack.eps, "step": attack.step, "loss": loss}
    with DeviceChecks.deferred():  # the value checks of both calls: one read-back
        with full_precision(x):  # the start is below bf16's resolution: see the module's docstring
            x_adv = pgd(model, x, target, steps=1, x_init=start, **settings)
        if attack.steps > 1:
            x_adv = pgd(model, x, target, steps=attack.steps - 1, x_init=x_adv, **settings)
    return x_adv


def full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``x``'s device: the model runs in its own (float32) precision inside.

    >>> x = torch.rand(2, 4)
    >>> with torch.autocast("cpu", dtype=torch.bfloat16), full_precision(x):
    ...     (x @ x.T).dtype
    torch.float32
    """
    return torch.autocast(device_type=x.device.type, enabled=False)


def _kl_to_natural(scores: torch.Tensor, natural_logits: torch.Tensor) -> torch.Tensor:
    """TRADES' attack objective: KL(p(x) || p(x')) per sample; ``natural_logits`` rides along as the labels."""
    return losses.kl_per_sample(natural_logits, scores)


class Trades(TrainingMethod):
    """TRADES: natural CE + beta * KL(natural || adversarial), adversary = KL-PGD."""

    name = "trades"
    uses_natural = True
    uses_adversarial = True

    def perturb(self, model, x, y, generator):
        with torch.no_grad(), full_precision(x):  # the KL target of the float32 first step
            natural_logits = model(x).float()
        return _pgd_from_gaussian_start(model, x, natural_logits, _kl_to_natural, self.attack, generator)

    def loss(self, natural, adversarial, y):
        return losses.trades_loss(natural, adversarial, y, self.beta)

    def describe(self) -> str:
        return f"{self.name} (beta={self.beta:g})"


class Weat(Trades):
    """WEAT: TRADES terms weighted per sample by 1 / log(1 + exp(|E(x)|)) of the natural logits (detached)."""

    def __init__(self, ce_on: str = "adversarial", **kwargs) -> None:
        super().__init__(**kwargs)
        self.ce_on = ce_on
        self.name = "weat_adv" if ce_on == "adversarial" else "weat_nat"

    def loss(self, natural, adversarial, y):
        return losses.weat_loss(natural, adversarial, y, self.beta, ce_on=self.ce_on)


class Mart(TrainingMethod):
    """MART: boosted CE on adversarial examples + beta * KL weighted by (1 - p_y(x)); adversary = CE-PGD."""

    name = "mart"
    uses_natural = True
    uses_adversarial = True

    def perturb(self, model, x, y, generator):
        return _pgd_from_gaussian_start(model, x, y, cross_entropy, self.attack, generator)

    def loss(self, natural, adversarial, y):
        return losses.mart_loss(natural, adversarial, y, self.beta)

    def describe(self) -> str:
        return f"{self.name} (beta={self.beta:g})"


METHODS = ("standard", "adv", "pgd_at", "trades", "weat_adv", "weat_nat", "mart")


def make_method(
    name: str, *, attack: AttackSettings, beta: float = 6.0, adv_fraction: float = 0.2, fgsm_eps: float = 2 / 255
) -> TrainingMethod:
    """The method called ``name`` (one of :data:`METHODS`) with its settings."""
    common = {"attack": attack, "beta": beta}
    builders = {
        "standard": lambda: Standard(**common),
        "adv": lambda: SapAdv(fraction=adv_fraction, fgsm_eps=fgsm_eps, **common),
        "pgd_at": lambda: PgdAt(**common),
        "trades": lambda: Trades(**common),
        "weat_adv": lambda: Weat(ce_on="adversarial", **common),
        "weat_nat": lambda: Weat(ce_on="natural", **common),
        "mart": lambda: Mart(**common),
    }
    if name not in builders:
        raise ValueError(f"unknown method {name!r}; available: {list(METHODS)}")
    return builders[name]()
