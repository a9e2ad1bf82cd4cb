"""The per-epoch check on held-out images: clean and PGD accuracy, and the energies WEAT reads AT through.

Energies (Mirza et al. 2024): ``E(x) = -logsumexp f(x)`` of natural images, ``E(x*)`` of their PGD versions, the
gap ``E(x*) - E(x)`` (negative when the attack makes inputs look *more* in-distribution, as untargeted attacks do;
its sudden growth marks robust overfitting) and ``E(x, y) = -f(x)[y]``. Under ``torchrun`` each process takes a
share of the images and the sums are reduced over processes.
"""

from __future__ import annotations

import torch
from torch import nn

from classifiers.data.dataset import ImageDataset
from rlrobust.attacks import pgd
from rlrobust.distributed import Runtime, all_reduce_sum
from rlrobust.energy import energy, joint_energy

METRICS = ("clean_acc", "pgd_acc", "energy_nat", "energy_adv", "energy_gap", "energy_joint")


def evaluate_holdout(
    model: nn.Module,
    data: ImageDataset,
    runtime: Runtime,
    *,
    eps: float,
    step: float,
    steps: int,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Clean and PGD-``steps`` accuracy and mean energies on ``data`` (model in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=data.device).manual_seed(seed)
    sums = torch.zeros(6, dtype=torch.float64, device=data.device)  # count, correct, robust, E(x), E(x*), E(x,y)
    mine = torch.arange(runtime.rank, len(data), runtime.world_size, device=data.device)
    for start in range(0, len(mine), batch_size):
        index = mine[start : start + batch_size]
        x, y = data.floats(index), data.labels[index]
        with runtime.autocast():
            x_adv = pgd(model, x, y, eps=eps, step=step, steps=steps, generator=generator) if eps > 0 else x
            with torch.no_grad():
                natural, adversarial = model(x).float(), model(x_adv).float()
        sums += torch.stack(
            [
                torch.tensor(float(len(index)), device=data.device, dtype=torch.float64),
                (natural.argmax(1) == y).sum().double(),
                ((adversarial.argmax(1) == y) & (natural.argmax(1) == y)).sum().double(),
                energy(natural).sum().double(),
                energy(adversarial).sum().double(),
                joint_energy(natural, y).sum().double(),
            ]
        )
    sums = all_reduce_sum(sums, runtime)
    model.train(was_training)
    count = max(sums[0].item(), 1.0)
    e_nat, e_adv = sums[3].item() / count, sums[4].item() / count
    return {
        "clean_acc": sums[1].item() / count,
        "pgd_acc": sums[2].item() / count,
        "energy_nat": e_nat,
        "energy_adv": e_adv,
        "energy_gap": e_adv - e_nat,
        "energy_joint": sums[5].item() / count,
    }
