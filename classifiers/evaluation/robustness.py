"""Accuracy of a classifier under a list of attacks, cell by cell, with an optional transfer source.

For each attack the table gives ``accuracy`` (share of attacked images classified correctly) and
``robust_accuracy`` (correct on the clean image *and* the attacked one, the convention of RobustBench and
AutoAttack), and for each budget a ``worst case`` row: images that survive every attack run at that budget.
Stochastic models (e.g. with SAP) predict by the mean softmax of ``samples`` passes, and are attacked with EOT
gradients (``AttackSettings.eot``). With ``source`` given, the attacks are computed on ``source`` and evaluated on
``model`` (a transfer attack).

A cell is the clean pass or one attack at one budget over every image. Each starts from its own seed
(:func:`~classifiers.evaluation.cells.cell_seed`; ``generators``, e.g. SAP's, are reseeded too) and is kept in
``cells`` once finished, so an interrupted evaluation resumes with the numbers an uninterrupted one gives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from classifiers.data.dataset import ImageDataset
from classifiers.evaluation.attacks import AttackSpec
from classifiers.evaluation.cells import TensorCells, cell_seed
from rlrobust.stochastic import predict

WORST_CASE = "worst case (all attacks)"
CLEAN = "clean"


def cell_key(spec: AttackSpec) -> str:
    """The name a finished attack cell is kept under (the budget written exactly)."""
    return f"{spec.name} eps={spec.eps!r}"


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
    cells: TensorCells | None = None,
    generators: Sequence[torch.Generator] = (),
) -> list[dict[str, object]]:
    """One row per attack and budget (plus a worst-case row per budget), in the order of ``attacks``.

    Finished cells already in ``cells`` are not run again; ``generators`` (the model's own randomness) are reseeded
    at the start of each cell.
    """
    cells = cells if cells is not None else TensorCells()
    run_cells(model, data, attacks, cells, batch_size=batch_size, samples=samples, source=source, seed=seed,
              progress=progress, generators=generators)  # fmt: skip
    return table_rows(attacks, cells, len(data), transfer=source is not None)


def run_cells(
    model: nn.Module,
    data: ImageDataset,
    attacks: Sequence[AttackSpec],
    cells: TensorCells,
    *,
    batch_size: int = 256,
    samples: int = 1,
    source: nn.Module | None = None,
    seed: int = 0,
    progress: bool = True,
    generators: Sequence[torch.Generator] = (),
) -> None:
    """Run the clean cell and every attack cell not yet in ``cells``, keeping each as it finishes."""
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    todo = [s for s in attacks if s.eps != 0 and cell_key(s) not in cells]
    batches = range(0, len(data), batch_size)
    bar = tqdm(total=(len(todo) + (CLEAN not in cells)) * len(batches), desc="attacks", disable=not progress)
    if CLEAN not in cells:
        _reseed(generators, cell_seed(seed, CLEAN))
        correct = torch.cat([_predict_batch(model, data, index, samples) for index in _batches(data, batch_size, bar)])
        cells.add(CLEAN, {"correct": correct}, {"seconds": 0.0})
    attacker = source if source is not None else model
    for spec in todo:
        key = cell_key(spec)
        _reseed(generators, cell_seed(seed, key))
        generator = torch.Generator(device=data.device).manual_seed(cell_seed(seed, key + " attack"))
        parts, seconds = [], 0.0
        for index in _batches(data, batch_size, bar):
            x, y = data.floats(index).contiguous(), data.labels[index]
            began = time.perf_counter()
            x_adv = spec.run(attacker, x, y, generator)
            seconds += time.perf_counter() - began
            _check_budget(x_adv, x, spec)
            parts.append(predict(model, x_adv, samples) == y)
        cells.add(key, {"correct": torch.cat(parts)}, {"seconds": round(seconds, 3)})
    bar.close()


def table_rows(attacks: Sequence[AttackSpec], cells: TensorCells, n: int, *, transfer: bool) -> list[dict[str, object]]:
    """The table from the finished cells: an unfinished attack has no row, and a budget's worst case is given only
    once every attack at it has finished (a partial worst case would overstate robustness)."""
    if CLEAN not in cells:
        return []
    clean = cells.get(CLEAN)[0]["correct"]
    rows, worst, complete = [_row(CLEAN, 0.0, clean, clean, n, 0.0, False, "")], {}, {}
    for spec in attacks:
        if spec.eps == 0:
            adv, seconds = clean, 0.0
        elif cell_key(spec) in cells:
            tensors, facts = cells.get(cell_key(spec))
            adv, seconds = tensors["correct"], facts["seconds"]
        else:
            complete[spec.eps] = False
            continue
        complete.setdefault(spec.eps, True)
        worst[spec.eps] = worst.get(spec.eps, clean) & adv
        rows.append(_row(spec.name, spec.eps, adv, clean & adv, n, seconds, transfer, spec.settings))
    names = list(dict.fromkeys(spec.name for spec in attacks))
    if len(names) > 1:
        every = "attacks=" + ",".join(names)
        rows += [_row(WORST_CASE, eps, r, r, n, 0.0, transfer, every) for eps, r in worst.items() if complete[eps]]
    return rows


def _batches(data: ImageDataset, batch_size: int, bar: tqdm):
    for start in range(0, len(data), batch_size):
        yield torch.arange(start, min(start + batch_size, len(data)), device=data.device)
        bar.update(1)


def _predict_batch(model: nn.Module, data: ImageDataset, index: torch.Tensor, samples: int) -> torch.Tensor:
    return predict(model, data.floats(index).contiguous(), samples) == data.labels[index]


def _reseed(generators: Sequence[torch.Generator], seed: int) -> None:
    for generator in generators:
        generator.manual_seed(seed)


def _row(
    name: str, eps: float, correct: torch.Tensor, robust: torch.Tensor, n: int, seconds: float, transfer: bool, settings
) -> dict[str, object]:
    return {
        "attack": name + (" (transfer)" if transfer and name not in (CLEAN, WORST_CASE) else ""),
        "eps": eps,
        "eps_255": round(eps * 255, 4),
        "accuracy": correct.float().mean().item(),
        "robust_accuracy": robust.float().mean().item(),
        "images": n,
        "attack_seconds": round(seconds, 3),
        "settings": settings,
    }


def _check_budget(x_adv: torch.Tensor, x: torch.Tensor, spec: AttackSpec) -> None:
    """Every attack must stay in [0, 1] and within its budget: a broken attack must not pass as a strong one."""
    excess = (x_adv - x).abs().max().item() - spec.eps
    if excess > 1e-5 or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"{spec.name} at eps {spec.eps:.5f} left its budget or [0, 1] (excess {excess:.2e})")
