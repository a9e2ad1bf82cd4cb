"""WEAT's energy lens on a classifier (Mirza et al. 2024, Sec. 4): the energies ``E(x) = -logsumexp f(x)`` and
``E(x, y) = -f(x)[y]`` of natural inputs against those of their untargeted and targeted adversarial versions.

The paper's finding: untargeted attacks *lower* ``E(x)`` (adversarial images look more in-distribution to the model
than the data), targeted ones *raise* it. Kinds of input:

- ``natural``: the images as they are;
- ``pgd``: untargeted PGD on cross-entropy (random start, step ``eps / 4``);
- ``apgd-t``: AutoAttack's APGD-T (targeted DLR toward the top wrong classes in turn; untargeted in purpose);
- ``pgd-targeted``: PGD that *descends* cross-entropy toward a random wrong class (a plain targeted attack).

``E(x, y)`` always uses the true label ``y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from classifiers.data.dataset import ImageDataset
from classifiers.experiments.figures import pyplot, save_figure
from rlrobust.attacks import apgd_targeted, pgd
from rlrobust.energy import energy, joint_energy

KINDS = ("natural", "pgd", "apgd-t", "pgd-targeted")


@dataclass(frozen=True)
class LensSettings:
    """Budget on [0, 1] (L-inf) and attack lengths."""

    eps: float = 8 / 255
    steps: int = 20
    apgd_steps: int = 50
    target_classes: int = 3
    batch_size: int = 128

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1] on [0, 1] images (8/255 = {8 / 255:.4f}), got {self.eps}")
        if min(self.steps, self.apgd_steps, self.target_classes, self.batch_size) < 1:
            raise ValueError("steps, apgd_steps, target_classes and batch_size must be >= 1")


@dataclass
class Energies:
    """Per input of one kind: ``E(x)``, ``E(x, y)`` and whether the model classifies it correctly."""

    free: torch.Tensor
    joint: torch.Tensor
    correct: torch.Tensor


def measure_energies(
    model: nn.Module,
    data: ImageDataset,
    kinds: Sequence[str] = KINDS,
    settings: LensSettings | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Energies]:
    """The energies of every input of ``data`` for each kind of input (natural or attacked)."""
    settings = settings or LensSettings()
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kinds of input {unknown}; available: {list(KINDS)}")
    generator = torch.Generator(device=data.device).manual_seed(seed)
    parts: dict[str, list[tuple[torch.Tensor, ...]]] = {k: [] for k in kinds}
    starts = range(0, len(data), settings.batch_size)
    bar = tqdm(total=len(starts) * len(kinds), desc="energy lens", disable=not progress)
    for start in starts:
        index = torch.arange(start, min(start + settings.batch_size, len(data)), device=data.device)
        x, y = data.floats(index).contiguous(), data.labels[index]
        for kind in kinds:
            x_kind = _inputs(kind, model, x, y, settings, generator, data.num_classes)
            with torch.no_grad():
                logits = model(x_kind).float()
            parts[kind].append((energy(logits).cpu(), joint_energy(logits, y).cpu(), (logits.argmax(1) == y).cpu()))
            bar.update(1)
    bar.close()
    return {k: Energies(*(torch.cat(column) for column in zip(*v, strict=True))) for k, v in parts.items()}


def summary_rows(energies: dict[str, Energies], model_name: str) -> list[dict[str, object]]:
    """Per kind: mean and std of ``E(x)`` and ``E(x, y)``, the shift of the mean from natural inputs, the share of
    inputs whose ``E(x)`` rose, and accuracy."""
    natural = energies.get("natural")
    rows = []
    for kind, e in energies.items():
        row = {
            "model": model_name,
            "input": kind,
            "images": len(e.free),
            "accuracy": e.correct.float().mean().item(),
            "E(x) mean": e.free.mean().item(),
            "E(x) std": e.free.std().item() if len(e.free) > 1 else 0.0,
            "E(x,y) mean": e.joint.mean().item(),
        }
        if natural is not None:
            row["E(x) shift"] = row["E(x) mean"] - natural.free.mean().item()
            row["share E(x) raised"] = (e.free > natural.free).float().mean().item()
            row["E(x,y) shift"] = row["E(x,y) mean"] - natural.joint.mean().item()
        rows.append(row)
    return rows


def _inputs(
    kind: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    s: LensSettings,
    generator: torch.Generator,
    classes: int,
) -> torch.Tensor:
    if kind == "natural":
        return x
    if kind == "pgd":
        return pgd(model, x, y, eps=s.eps, step=s.eps / 4, steps=s.steps, generator=generator)
    if kind == "apgd-t":
        targets = min(s.target_classes, classes - 1)
        return apgd_targeted(model, x, y, eps=s.eps, steps=s.apgd_steps, target_classes=targets, generator=generator)
    offset = torch.randint(1, classes, y.shape, generator=generator, device=y.device)
    target = (y + offset) % classes  # a random wrong class
    return pgd(model, x, target, eps=s.eps, step=s.eps / 4, steps=s.steps, targeted=True, generator=generator)


def plot_histograms(energies: dict[str, Energies], path: str | Path, title: str = "") -> Path:
    """Histograms of ``E(x)`` and ``E(x, y)`` per kind of input, on shared bins."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, field, label in ((axes[0], "free", "E(x)"), (axes[1], "joint", "E(x, y)")):
        values = torch.cat([getattr(e, field) for e in energies.values()])
        edges = torch.linspace(values.min().item(), values.max().item() + 1e-6, 41).tolist()
        for kind, e in energies.items():
            mean = getattr(e, field).mean().item()
            ax.hist(getattr(e, field).tolist(), bins=edges, alpha=0.45, label=f"{kind} (mean {mean:.2f})")
        ax.set(xlabel=label, ylabel="images", title=f"{label}: lower = more likely under the model")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
