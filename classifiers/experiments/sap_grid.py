"""The SAP paper's image grid: accuracy against the FGSM budget lambda for every model variant, with the attacks
the paper used and the adaptive one it did not.

Budgets are lambda on the 0-255 scale (eps = lambda / 255 on [0, 1] images). Per variant:

- ``FGSM``: white-box on deterministic models; on stochastic ones ``FGSM MC n=N``, the paper's Monte-Carlo
  attacker (input gradient averaged over ``n`` passes), one row per ``n`` asked for;
- ``FGSM transfer``: FGSM computed on the dense model (every variant but dense);
- ``iterative`` (step ``k``, ``ceil(lambda/k)`` steps, ``iterative_mc`` passes per gradient) for dense and the SAP
  variants, and ``iterative transfer`` from dense for the SAP variants (the paper's Fig. 1(c));
- ``EOT-PGD`` (adaptive): PGD with a random start whose every gradient averages ``adaptive_eot`` passes, against each
  stochastic variant; plain PGD for the deterministic ones;
- against the SAP variants also ``Square`` (adaptive, black-box: Andriushchenko et al. 2020; each query's scores the
  mean of ``adaptive_eot`` passes, so gradient masking cannot hide robustness it lacks) and ``AutoAttack-rand``
  (Croce & Hein 2020's version for randomised defences: APGD-CE and APGD-DLR with EOT over ``rand_eot`` passes),
  as ``adaptive_attacks`` asks.

Stochastic variants predict by the mean softmax of ``samples`` passes. Each (variant, attack, lambda) keeps the
predicted probabilities, so accuracy and calibration come from the same predictions. Each is a cell, kept as soon as it
finishes (:class:`~classifiers.evaluation.cells.TensorCells`), so an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from classifiers.data.dataset import ImageDataset
from classifiers.evaluation.cells import TensorCells, cell_seed
from classifiers.experiments.variants import Variant, build_variant
from rlrobust.attacks import autoattack, fgsm, iterative, pgd, square
from rlrobust.stochastic import predict_proba

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]
PAPER_LAMBDAS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
CLEAN = "clean"
ADAPTIVE_ATTACKS = ("eot-pgd", "square", "autoattack-rand")  # the last two against the SAP variants


@dataclass(frozen=True)
class GridSettings:
    """What to run; lambdas on the 0-255 scale."""

    lambdas: tuple[float, ...] = PAPER_LAMBDAS
    samples: int = 100  # passes per prediction of a stochastic model (the paper: 100)
    mc_samples: tuple[int, ...] = (100,)  # n of the Monte-Carlo FGSM (the paper: 100; 1, 10, 1000 in Fig. 6)
    iterative_lambdas: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    iterative_step: float = 1.0
    iterative_mc: int = 10  # passes per gradient of the iterative attack on a stochastic model (the paper: 10)
    adaptive_lambdas: tuple[float, ...] = (2.0, 8.0)
    adaptive_steps: int = 10
    adaptive_eot: int = 10
    adaptive_step_frac: float = 0.25
    adaptive_attacks: tuple[str, ...] = ADAPTIVE_ATTACKS
    square_queries: int = 5000  # AutoAttack's Square budget
    rand_steps: int = 100  # AutoAttack-rand: APGD iterations
    rand_eot: int = 20  # AutoAttack-rand: passes per gradient
    batch_size: int = 100
    sap_sampling: str = "exact"

    def __post_init__(self) -> None:
        for name in ("lambdas", "iterative_lambdas", "adaptive_lambdas"):
            if any(not 0 <= lam <= 255 for lam in getattr(self, name)):
                raise ValueError(f"{name} must lie in [0, 255] (pixel units), got {getattr(self, name)}")
        counts = (self.samples, self.iterative_mc, self.adaptive_steps, self.adaptive_eot, self.batch_size)
        counts += (self.square_queries, self.rand_steps, self.rand_eot)
        if min(counts) < 1 or not self.mc_samples or min(self.mc_samples) < 1:
            raise ValueError(
                "samples, mc_samples, iterative_mc, adaptive_steps/eot, square_queries, rand_steps/eot and batch_size "
                "must be >= 1"
            )
        unknown = sorted(set(self.adaptive_attacks) - set(ADAPTIVE_ATTACKS))
        if unknown or not self.adaptive_attacks:
            raise ValueError(f"adaptive_attacks must be some of {ADAPTIVE_ATTACKS}, got {self.adaptive_attacks}")
        if not 0 < self.iterative_step <= 255 or not 0 < self.adaptive_step_frac <= 1:  # False for NaN too
            raise ValueError("iterative_step must lie in (0, 255] and adaptive_step_frac in (0, 1]")


@dataclass(frozen=True)
class Case:
    """One attack on one variant over some budgets; ``source`` is the model the attack is computed on."""

    variant: str
    attack: str
    lambdas: tuple[float, ...]
    run: AttackFn
    source: str  # "self" or "dense"
    paper_attack: bool = False  # the attack of the paper's calibration figure for this variant


@dataclass
class GridResult:
    """Predicted probabilities per (variant, attack, lambda), the labels and the seconds spent attacking."""

    labels: torch.Tensor
    probs: dict[tuple[str, str, float], torch.Tensor] = field(default_factory=dict)
    seconds: dict[tuple[str, str, float], float] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)


def attack_cases(variant: Variant, settings: GridSettings) -> list[Case]:
    """The attacks the grid runs on ``variant`` (see the module docstring)."""
    name, s = variant.name, settings
    cases: list[Case] = []
    if variant.stochastic:
        for n in s.mc_samples:
            cases.append(Case(name, f"FGSM MC n={n}", s.lambdas, _fgsm(n), "self", n == s.mc_samples[0]))
    else:
        cases.append(Case(name, "FGSM", s.lambdas, _fgsm(1), "self", True))
    if variant.base != "dense" or variant.defence is not None:
        cases.append(Case(name, "FGSM transfer from dense", s.lambdas, _fgsm(1), "dense"))
    if (variant.defence is None and variant.base == "dense") or variant.is_sap:
        n_iter = s.iterative_mc if variant.stochastic else 1
        label = f"iterative MC n={n_iter}" if variant.stochastic else "iterative"
        cases.append(Case(name, label, s.iterative_lambdas, _iterative(s.iterative_step, n_iter), "self"))
        if variant.is_sap and variant.base == "dense":
            transfer = _iterative(s.iterative_step, 1)
            cases.append(Case(name, "iterative transfer from dense", s.iterative_lambdas, transfer, "dense"))
    eot = s.adaptive_eot if variant.stochastic else 1
    if "eot-pgd" in s.adaptive_attacks:
        label = f"EOT-PGD-{s.adaptive_steps} n={eot} (adaptive)" if variant.stochastic else f"PGD-{s.adaptive_steps}"
        cases.append(Case(name, label, s.adaptive_lambdas, _pgd(s.adaptive_steps, s.adaptive_step_frac, eot), "self"))
    if variant.is_sap and "square" in s.adaptive_attacks:
        label = f"Square-{s.square_queries} n={eot} (adaptive)"
        cases.append(Case(name, label, s.adaptive_lambdas, _square(s.square_queries, eot), "self"))
    if variant.is_sap and "autoattack-rand" in s.adaptive_attacks:
        label = f"AutoAttack-rand n={s.rand_eot} (adaptive)"
        cases.append(Case(name, label, s.adaptive_lambdas, _autoattack_rand(s.rand_steps, s.rand_eot), "self"))
    return cases


def run_grid(
    bases: dict[str, nn.Module],
    variants: Sequence[Variant],
    data: ImageDataset,
    settings: GridSettings,
    *,
    seed: int = 0,
    progress: bool = True,
    cells: TensorCells | None = None,
) -> GridResult:
    """Attack every variant as :func:`attack_cases` says, one cell (variant, attack, lambda) at a time; returns the
    predictions. Cells already in ``cells`` are not run again; each cell starts from its own seed (the variant's
    randomness included), so a resumed grid gives the numbers of an uninterrupted one."""
    if "dense" not in bases:
        raise ValueError("the grid needs the dense model (transfer attacks are computed on it)")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"model variants repeat: {names}")
    cells = cells if cells is not None else TensorCells()
    device = data.device
    generators = {v.name: torch.Generator(device=device) for v in variants}
    models = {v.name: build_variant(v, bases, generators[v.name], sap_sampling=settings.sap_sampling) for v in variants}
    cases = [c for v in variants for c in attack_cases(v, settings)]
    passes = {v.name: settings.samples if v.stochastic else 1 for v in variants}
    todo = [(v.name, None, 0.0) for v in variants] + [(c.variant, c, lam) for c in cases for lam in c.lambdas if lam]
    todo = [t for t in todo if cell_name(t[0], t[1].attack if t[1] else CLEAN, t[2]) not in cells]
    batches = range(0, len(data), settings.batch_size)
    bar = tqdm(total=len(todo) * len(batches), desc="SAP grid", disable=not progress)
    for variant, case, lam in todo:
        key = cell_name(variant, case.attack if case else CLEAN, lam)
        generators[variant].manual_seed(cell_seed(seed, key))
        generator = torch.Generator(device=device).manual_seed(cell_seed(seed, key + " attack"))
        parts, began = [], time.perf_counter()
        for start in batches:
            index = torch.arange(start, min(start + settings.batch_size, len(data)), device=device)
            x, y = data.floats(index).contiguous(), data.labels[index]
            if case is not None:
                attacker = bases["dense"] if case.source == "dense" else models[variant]
                x_adv = case.run(attacker, x, y, lam / 255, generator)
                _check_budget(x_adv, x, lam, (variant, case.attack, lam))
                x = x_adv
            parts.append(predict_proba(models[variant], x, passes[variant]).cpu())
            bar.update(1)
        cells.add(key, {"probs": torch.cat(parts)}, {"seconds": round(time.perf_counter() - began, 3)})
    bar.close()
    return grid_result(cases, data.labels.cpu(), cells)


def cell_name(variant: str, attack: str, lam: float) -> str:
    """The name a finished cell is kept under (lambda written exactly)."""
    return f"{variant} | {attack} | lambda={lam!r}"


def grid_result(cases: list[Case], labels: torch.Tensor, cells: TensorCells) -> GridResult:
    """The predictions of the finished cells (lambda 0: the variant's clean cell); unfinished cells are absent."""
    result = GridResult(labels=labels, cases=cases)
    for case in cases:
        for lam in case.lambdas:
            key = cell_name(case.variant, CLEAN, 0.0) if lam == 0 else cell_name(case.variant, case.attack, lam)
            if key in cells:
                tensors, facts = cells.get(key)
                result.probs[(case.variant, case.attack, lam)] = tensors["probs"]
                result.seconds[(case.variant, case.attack, lam)] = 0.0 if lam == 0 else facts["seconds"]
    return result


def _fgsm(n: int) -> AttackFn:
    return lambda m, x, y, eps, g: fgsm(m, x, y, eps=eps, eot_samples=n)


def _iterative(step: float, n: int) -> AttackFn:
    return lambda m, x, y, eps, g: iterative(m, x, y, eps=eps, step=step / 255, eot_samples=n)


def _pgd(steps: int, frac: float, n: int) -> AttackFn:
    return lambda m, x, y, eps, g: pgd(m, x, y, eps=eps, step=frac * eps, steps=steps, eot_samples=n, generator=g)


def _square(queries: int, n: int) -> AttackFn:
    return lambda m, x, y, eps, g: square(m, x, y, eps=eps, queries=queries, samples=n, generator=g)


def _autoattack_rand(steps: int, n: int) -> AttackFn:
    def attack(m: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, g: torch.Generator) -> torch.Tensor:
        return autoattack(m, x, y, eps=eps, version="rand", steps=steps, eot_samples=n, checks=False, generator=g)[0]

    return attack


def _check_budget(x_adv: torch.Tensor, x: torch.Tensor, lam: float, key: tuple) -> None:
    """An attack that leaves its budget or [0, 1] must not pass for a strong one."""
    excess = (x_adv - x).abs().max().item() * 255 - lam
    if excess > 1e-3 or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"{key}: the attack left its budget or [0, 1] (excess {excess:.2e} in 0-255 units)")
