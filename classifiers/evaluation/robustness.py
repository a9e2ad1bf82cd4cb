"""Accuracy of a classifier under a list of attacks, batch by batch, with an optional transfer source.

For each attack the table gives ``accuracy`` (share of attacked images classified correctly) and
``robust_accuracy`` (correct on the clean image *and* the attacked one, the convention of RobustBench and
AutoAttack), and for each budget a ``worst case`` row: images that survive every attack run at that budget.
Stochastic models (e.g. with SAP) predict by the mean softmax of ``samples`` passes, and are attacked with EOT
gradients (``AttackSettings.eot``). With ``source`` given, the attacks are computed on ``source`` and evaluated on
``model`` (a transfer attack).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from classifiers.data.dataset import ImageDataset
from classifiers.evaluation.attacks import AttackSpec
from rlrobust.stochastic import predict

WORST_CASE = "worst case (all attacks)"


def evaluate_robustness(
    model: nn.Module,
    data: ImageDataset,
    attacks: Sequence[AttackSpec],
    *,
    batch_size: int = 256,
    samples: int = 1,
    source: nn.Module | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, object]]:
    """One row per attack and budget (plus a worst-case row per budget), in the order of ``attacks``."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    attacker = source if source is not None else model
    n = len(data)
    clean_correct = torch.zeros(n, dtype=torch.bool, device=data.device)
    adv_correct = {i: torch.zeros(n, dtype=torch.bool, device=data.device) for i in range(len(attacks))}
    seconds = [0.0] * len(attacks)
    generator = torch.Generator(device=data.device).manual_seed(seed)
    bar = tqdm(total=len(attacks) * ((n + batch_size - 1) // batch_size), desc="attacks", disable=not progress)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n), device=data.device)
        x, y = data.floats(index).contiguous(), data.labels[index]
        clean_correct[index] = predict(model, x, samples) == y
        for i, spec in enumerate(attacks):
            if spec.eps == 0:  # no attack: the clean prediction (a stochastic model is not re-drawn)
                adv_correct[i][index] = clean_correct[index]
                bar.update(1)
                continue
            began = time.perf_counter()
            x_adv = spec.run(attacker, x, y, generator)
            seconds[i] += time.perf_counter() - began
            _check_budget(x_adv, x, spec)
            adv_correct[i][index] = predict(model, x_adv, samples) == y
            bar.update(1)
    bar.close()

    rows, worst = [], {}
    for i, spec in enumerate(attacks):
        robust = clean_correct & adv_correct[i]
        worst[spec.eps] = worst.get(spec.eps, clean_correct) & adv_correct[i]
        rows.append(_row(spec.name, spec.eps, adv_correct[i], robust, n, seconds[i], source is not None))
    names = {spec.name for spec in attacks}
    if len(names) > 1:
        for eps, robust in worst.items():
            rows.append(_row(WORST_CASE, eps, robust, robust, n, 0.0, source is not None))
    rows.insert(0, _row("clean", 0.0, clean_correct, clean_correct, n, 0.0, False))
    return rows


def _row(name: str, eps: float, correct: torch.Tensor, robust: torch.Tensor, n: int, seconds: float, transfer: bool):
    return {
        "attack": name + (" (transfer)" if transfer and name not in ("clean", WORST_CASE) else ""),
        "eps": eps,
        "eps_255": round(eps * 255, 4),
        "accuracy": correct.float().mean().item(),
        "robust_accuracy": robust.float().mean().item(),
        "images": n,
        "attack_seconds": round(seconds, 3),
    }


def _check_budget(x_adv: torch.Tensor, x: torch.Tensor, spec: AttackSpec) -> None:
    """Every attack must stay in [0, 1] and within its budget: a broken attack must not pass as a strong one."""
    excess = (x_adv - x).abs().max().item() - spec.eps
    if excess > 1e-5 or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"{spec.name} at eps {spec.eps:.5f} left its budget or [0, 1] (excess {excess:.2e})")
