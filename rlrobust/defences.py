"""The SAP paper's other post-hoc stochastic defences (its Sec. 4.1 and Appendix B), and a registry by name.

On activations, after every ReLU (through :mod:`rlrobust.insertion`, like SAP):
  DRO  dropout with rate ``p`` (survivors scaled by 1/(1-p), so the output is unbiased);
  RNA  additive Gaussian noise ``h + N(0, s^2)``;  RSA  multiplicative noise ``h * N(1, s^2)``.
On the weights of every convolution and linear layer (through ``torch.nn.utils.parametrize``):
  RNW  ``W + N(0, s^2)``;  RSW  ``W * N(1, s^2)``;
  DWP  deterministic pruning: keep the top ``k`` fraction of each weight tensor by magnitude, zero the rest;
  SWP  stochastic pruning: SAP's sampling applied to each weight tensor (``r = round(frac * numel)`` draws
       with replacement, proportional to |W|, survivors scaled by their inverse keep probability).
Weight noise is drawn once per forward call and shared by the whole batch (``shares_draw_across_batch``),
so :mod:`rlrobust.stochastic` and the attacks' EOT run one pass per call for these.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from rlrobust._checks import check_generator, check_number, check_positive
from rlrobust.insertion import add_post_relu_transform, remove_post_relu_transforms
from rlrobust.sap import SAMPLINGS, StochasticActivationPruning, check_frac, insert_sap, sap_mask

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class ActivationDropout(nn.Module):
    """DRO: inverted dropout with rate ``p`` on an activation map, in train and eval mode alike."""

    shares_draw_across_batch = False

    def __init__(self, p: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        p = check_number(p, "dropout rate p")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate p must be in [0, 1), got {p}")
        self.p, self.generator = float(p), generator

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        check_generator(self.generator, h.device)
        keep = torch.rand(h.shape, generator=self.generator, device=h.device) >= self.p
        return h * keep.to(h.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ActivationNoise(nn.Module):
    """RNA (``h + s * N(0, 1)``) or, with ``multiplicative=True``, RSA (``h * (1 + s * N(0, 1))``)."""

    shares_draw_across_batch = False

    def __init__(self, std: float, *, multiplicative: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.std, self.multiplicative, self.generator = check_positive(std, "std"), multiplicative, generator

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return _add_noise(h, self.std, self.multiplicative, self.generator)

    def extra_repr(self) -> str:
        return f"std={self.std}, multiplicative={self.multiplicative}"


class WeightNoise(nn.Module):
    """RNW / RSW as a parametrization: a fresh noisy copy of the weight at every forward call."""

    shares_draw_across_batch = True

    def __init__(self, std: float, *, multiplicative: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.std, self.multiplicative, self.generator = check_positive(std, "std"), multiplicative, generator

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _add_noise(weight, self.std, self.multiplicative, self.generator)

    def extra_repr(self) -> str:
        return f"std={self.std}, multiplicative={self.multiplicative}"


class MagnitudePruning(nn.Module):
    """DWP as a parametrization: a fixed mask keeping the ``keep`` fraction of largest-magnitude weights."""

    def __init__(self, weight: torch.Tensor, keep: float) -> None:
        super().__init__()
        keep = check_number(keep, "keep")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
        self.keep = float(keep)
        count = max(1, round(keep * weight.numel()))
        top = weight.detach().abs().flatten().topk(count).indices
        mask = torch.zeros(weight.numel(), dtype=weight.dtype, device=weight.device)
        mask[top] = 1
        self.register_buffer("mask", mask.view_as(weight))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def extra_repr(self) -> str:
        return f"keep={self.keep}"


class StochasticWeightPruning(nn.Module):
    """SWP as a parametrization: SAP's sampling on the whole weight tensor, redrawn every forward call."""

    shares_draw_across_batch = True

    def __init__(self, frac: float, *, sampling: str = "exact", generator: torch.Generator | None = None):
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.frac, self.sampling, self.generator = check_frac(frac), sampling, generator

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mask = sap_mask(weight.reshape(1, -1), self.frac, sampling=self.sampling, generator=self.generator)
        return weight * mask.view_as(weight)

    def extra_repr(self) -> str:
        return f"frac={self.frac}, sampling={self.sampling!r}"


_ACTIVATION_DEFENCES = (StochasticActivationPruning, ActivationDropout, ActivationNoise)
_WEIGHT_DEFENCES = (WeightNoise, MagnitudePruning, StochasticWeightPruning)


def insert_dropout(model: nn.Module, p: float, *, generator: torch.Generator | None = None) -> nn.Module:
    """DRO: dropout with rate ``p`` after every ReLU; returns ``model`` (modified in place).

    >>> net = insert_dropout(nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3)).eval(), 0.1)
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(1, 4)
    >>> torch.equal(net(x), net(x))  # active in eval mode too: a test-time defence
    False
    """
    return add_post_relu_transform(model, ActivationDropout(p, generator=generator))


def insert_activation_noise(
    model: nn.Module, std: float, *, multiplicative: bool = False, generator: torch.Generator | None = None
) -> nn.Module:
    """RNA (additive) or RSA (``multiplicative=True``) Gaussian noise after every ReLU; returns ``model``.

    >>> _ = torch.manual_seed(0)
    >>> net = insert_activation_noise(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), 0.1, multiplicative=True)
    >>> x = torch.randn(1, 4)
    >>> bool(net[0](x).relu().gt(0).any())  # some units are active, so the noise shows
    True
    >>> torch.equal(net(x), net(x))
    False
    """
    return add_post_relu_transform(model, ActivationNoise(std, multiplicative=multiplicative, generator=generator))


def insert_weight_noise(
    model: nn.Module, std: float, *, multiplicative: bool = False, generator: torch.Generator | None = None
) -> nn.Module:
    """RNW (additive) or RSW (``multiplicative=True``) noise on every conv/linear weight; returns ``model``.

    >>> net = insert_weight_noise(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), 0.01)
    >>> net[0].parametrizations.weight[0]  # one noisy weight per forward call, shared by the batch
    WeightNoise(std=0.01, multiplicative=False)
    """
    return _parametrize_weights(model, lambda w: WeightNoise(std, multiplicative=multiplicative, generator=generator))


def prune_weights(model: nn.Module, keep: float) -> nn.Module:
    """DWP: keep the ``keep`` fraction of largest-magnitude entries of every conv/linear weight.

    >>> layer = nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[4.0, 1.0], [0.5, -3.0]]))
    >>> prune_weights(layer, keep=0.5).weight.tolist()
    [[4.0, 0.0], [0.0, -3.0]]
    """
    return _parametrize_weights(model, lambda w: MagnitudePruning(w, keep))


def insert_stochastic_weight_pruning(
    model: nn.Module, frac: float, *, sampling: str = "exact", generator: torch.Generator | None = None
) -> nn.Module:
    """SWP: SAP-style sampling of every conv/linear weight tensor at each forward call; returns ``model``.

    >>> net = insert_stochastic_weight_pruning(nn.Sequential(nn.Linear(4, 8)), 1.0)
    >>> _ = torch.manual_seed(0)
    >>> torch.equal(net[0].weight, net[0].weight)  # a new sample each time the weight is read
    False
    """
    return _parametrize_weights(model, lambda w: StochasticWeightPruning(frac, sampling=sampling, generator=generator))


def remove_defences(model: nn.Module) -> nn.Module:
    """Remove every defence of this module (SAP included), restoring the original model exactly.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> x = torch.randn(2, 4)
    >>> dense = net(x)
    >>> defended = apply_defence(apply_defence(net, "SAP", 1.0), "RSW", 0.1)
    >>> torch.equal(remove_defences(defended)(x), dense)
    True
    """
    remove_post_relu_transforms(model, lambda t: isinstance(t, _ACTIVATION_DEFENCES))
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight") and _ours(module):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return model


#: Each defence by the SAP paper's name, applied as ``DEFENCES[name](model, value)``; ``value`` is SAP's and
#: SWP's ``frac``, DRO's rate ``p``, the noise ``std`` of RNA/RSA/RNW/RSW, or DWP's ``keep`` fraction.
DEFENCES: dict[str, Callable[..., nn.Module]] = {
    "SAP": lambda m, v, generator=None: insert_sap(m, v, generator=generator),
    "DRO": lambda m, v, generator=None: insert_dropout(m, v, generator=generator),
    "RNA": lambda m, v, generator=None: insert_activation_noise(m, v, generator=generator),
    "RSA": lambda m, v, generator=None: insert_activation_noise(m, v, multiplicative=True, generator=generator),
    "RNW": lambda m, v, generator=None: insert_weight_noise(m, v, generator=generator),
    "RSW": lambda m, v, generator=None: insert_weight_noise(m, v, multiplicative=True, generator=generator),
    "DWP": lambda m, v, generator=None: prune_weights(m, v),
    "SWP": lambda m, v, generator=None: insert_stochastic_weight_pruning(m, v, generator=generator),
}


def apply_defence(model: nn.Module, name: str, value: float, *, generator: torch.Generator | None = None) -> nn.Module:
    """Apply the defence called ``name`` (see :data:`DEFENCES`) with strength ``value``; returns ``model``.

    >>> sorted(DEFENCES)
    ['DRO', 'DWP', 'RNA', 'RNW', 'RSA', 'RSW', 'SAP', 'SWP']
    >>> net = apply_defence(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), "rnw", 0.05)  # names in any case
    >>> apply_defence(net, "XYZ", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: unknown defence 'XYZ'; available: ['DRO', 'DWP', 'RNA', 'RNW', 'RSA', 'RSW', 'SAP', 'SWP']
    """
    if not isinstance(name, str):
        raise TypeError(f"the defence name must be a string such as 'SAP' or 'RNW', got {type(name).__name__}")
    key = name.upper()
    if key not in DEFENCES:
        raise ValueError(f"unknown defence {name!r}; available: {sorted(DEFENCES)}")
    return DEFENCES[key](model, value, generator=generator)


def _add_noise(t: torch.Tensor, std: float, multiplicative: bool, generator: torch.Generator | None):
    check_generator(generator, t.device)
    noise = torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype) * std
    return t * (1 + noise) if multiplicative else t + noise


def _parametrize_weights(model: nn.Module, make: Callable[[torch.Tensor], nn.Module]) -> nn.Module:
    layers = [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no convolution or linear layer whose weights to change")
    for layer in layers:
        if parametrize.is_parametrized(layer, "weight") and not _ours(layer):
            raise ValueError(f"{type(layer).__name__}.weight already has a parametrization of another kind")
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", make(layer.weight), unsafe=True)
    return model


def _ours(layer: nn.Module) -> bool:
    return all(isinstance(p, _WEIGHT_DEFENCES) for p in layer.parametrizations["weight"])
