"""The SAP paper's model variants by name: the dense model, SAP-k and the other post-hoc defences on it, the
adversarially trained model (ADV) and ADV with SAP.

A variant is written ``BASE`` or ``[BASE+]DEFENCE:VALUE``: ``dense``, ``SAP:1.0`` (SAP-100), ``DRO:0.1``,
``RNW:0.01``, ``DWP:0.5``, ``adv``, ``adv+SAP:1.0``. ``VALUE`` is the defence's strength as
:data:`rlrobust.defences.DEFENCES` reads it (SAP's fraction, DRO's rate, a noise std, DWP's kept fraction).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from rlrobust.defences import DEFENCES, apply_defence
from rlrobust.sap import insert_sap

BASES = ("dense", "adv")
#: Defences whose forward pass is deterministic: attacked and evaluated with one pass.
DETERMINISTIC_DEFENCES = ("DWP",)
#: Largest sane strength of each defence (and whether it is allowed): a rate or kept fraction is at most 1, SAP and
#: SWP draw at most 10x the entries (SAP-1000); noise levels at most 100 (the default for the others).
MAX_STRENGTH = {"DRO": (1.0, False), "DWP": (1.0, True), "SWP": (10.0, True), "SAP": (10.0, True)}


@dataclass(frozen=True)
class Variant:
    """One model of the grid: a base model with at most one defence applied post hoc."""

    base: str
    defence: str | None = None
    value: float | None = None

    @property
    def name(self) -> str:
        """The paper's label: ``dense``, ``SAP-100``, ``DRO-0.1``, ``ADV``, ``ADV+SAP-100``."""
        base = "dense" if self.base == "dense" else "ADV"
        if self.defence is None:
            return base
        strength = f"{self.value * 100:g}" if self.defence in ("SAP", "SWP") else f"{self.value:g}"
        label = f"{self.defence}-{strength}"
        return label if self.base == "dense" else f"{base}+{label}"

    @property
    def stochastic(self) -> bool:
        """Whether two passes can disagree (so predictions average passes and attacks take EOT gradients)."""
        return self.defence is not None and self.defence not in DETERMINISTIC_DEFENCES

    @property
    def is_sap(self) -> bool:
        return self.defence == "SAP"


def parse_variant(text: str) -> Variant:
    """Read ``dense``, ``adv``, ``SAP:1.0`` or ``adv+SAP:1.0`` (case-insensitive names)."""
    base, _, rest = text.partition("+") if "+" in text else ("dense", "", text)
    base = base.strip().lower()
    if base not in BASES:
        raise ValueError(f"unknown base model {base!r} in {text!r}; use one of {BASES}")
    rest = rest.strip()
    if rest.lower() in BASES and "+" not in text:
        return Variant(rest.lower())
    name, sep, value = rest.partition(":")
    name = name.strip().upper()
    if not sep or name not in DEFENCES:
        raise ValueError(
            f"cannot read model variant {text!r}: write dense, adv, DEFENCE:VALUE or adv+DEFENCE:VALUE with "
            f"DEFENCE one of {sorted(DEFENCES)} (e.g. SAP:1.0 for SAP-100)"
        )
    try:
        strength = float(value)
    except ValueError:
        raise ValueError(f"the strength of {text!r} is not a number: {value!r}") from None
    if not math.isfinite(strength):
        raise ValueError(f"the strength of {text!r} must be a finite number")
    if not strength > 0:
        raise ValueError(f"the strength of {text!r} must be > 0")
    high, closed = MAX_STRENGTH.get(name, (100.0, True))
    if strength > high or (strength == high and not closed):
        raise ValueError(f"the strength of {text!r} must lie in (0, {high:g}{']' if closed else ')'} for {name}")
    return Variant(base, name, strength)


def build_variant(
    variant: Variant, bases: dict[str, nn.Module], generator: torch.Generator | None, *, sap_sampling: str = "exact"
) -> nn.Module:
    """A copy of the variant's base model with its defence applied (the base itself is left untouched).

    ``sap_sampling`` picks SAP's sampler: ``exact`` draws with replacement as the paper, ``independent`` is the
    faster approximation with the same keep probabilities (see :mod:`rlrobust.sap`).
    """
    if variant.base not in bases:
        raise ValueError(f"{variant.name} needs the {variant.base!r} model (for adv: --adv-model)")
    model = bases[variant.base]
    if variant.defence is None:
        return model
    model = copy.deepcopy(model)
    if variant.is_sap:
        return insert_sap(model, variant.value, sampling=sap_sampling, generator=generator).eval()
    return apply_defence(model, variant.defence, variant.value, generator=generator).eval()
