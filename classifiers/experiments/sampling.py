"""Generation from a robust classifier read as an energy-based model (WEAT, Sec. 6): per class, start from a sample
of the class-wise PCA of the training images and run SGLD with momentum down ``E(x, y)``
(:func:`rlrobust.generation.sgld_sample`); keep the samples, their energies along the way, and image grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from classifiers.data.dataset import ImageDataset
from classifiers.experiments.figures import pyplot, save_figure
from rlrobust.energy import joint_energy
from rlrobust.generation import fit_class_pca, sample_class_pca, sgld_sample


@dataclass(frozen=True)
class SamplerSettings:
    """The WEAT recipe's knobs: SGLD step size, momentum, noise std and steps; PCA variance and spread."""

    steps: int = 50
    step_size: float = 0.8
    momentum: float = 0.9
    noise_std: float = 0.001
    retained_variance: float = 0.95
    pca_sigma: float = 0.005
    per_class: int = 16
    max_fit_images: int = 5000  # images of a class the PCA is fitted on, at most


@dataclass
class ClassSamples:
    """One class's samples (N, C, H, W) in [0, 1], their starts, and the mean ``E(x, y)`` after each step."""

    label: int
    name: str
    start: torch.Tensor
    samples: torch.Tensor
    energy_trace: list[float] = field(default_factory=list)


def generate(
    model: nn.Module,
    train: ImageDataset,
    classes: Sequence[int],
    settings: SamplerSettings,
    *,
    seed: int = 0,
    progress: bool = True,
) -> list[ClassSamples]:
    """``settings.per_class`` samples of each class in ``classes``, from PCA starts of ``train``'s images."""
    bad = [c for c in classes if not 0 <= c < train.num_classes]
    if bad:
        raise ValueError(f"classes {bad} outside [0, {train.num_classes}) of {train.name}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    results = []
    for label in tqdm(classes, desc="classes", disable=not progress):
        index = (train.labels == label).nonzero().squeeze(1)[: settings.max_fit_images]
        if len(index) < 2:
            raise ValueError(f"class {label} has {len(index)} image(s) in {train.name}; the PCA start needs 2 or more")
        pca = fit_class_pca(train.floats(index).to(device), settings.retained_variance)
        start = sample_class_pca(pca, settings.per_class, sigma=settings.pca_sigma, generator=generator)
        y = torch.full((settings.per_class,), label, dtype=torch.long, device=device)
        trace: list[float] = []
        samples = sgld_sample(
            model,
            start,
            y,
            steps=settings.steps,
            step_size=settings.step_size,
            momentum=settings.momentum,
            noise_std=settings.noise_std,
            generator=generator,
            callback=lambda step, x, e, trace=trace: trace.append(e.mean().item()),
        )
        results.append(ClassSamples(label, str(train.classes[label]), start.cpu(), samples.cpu(), trace))
    return results


@torch.no_grad()
def sample_rows(model: nn.Module, results: Sequence[ClassSamples]) -> list[dict[str, object]]:
    """Per class: mean ``E(x, y)`` at the start and at the end, the share of samples the model assigns to the class,
    and its mean probability for it."""
    device = next(model.parameters()).device
    rows = []
    for r in results:
        y = torch.full((len(r.samples),), r.label, dtype=torch.long, device=device)
        before, after = model(r.start.to(device)).float(), model(r.samples.to(device)).float()
        rows.append(
            {
                "class": r.label,
                "name": r.name,
                "samples": len(r.samples),
                "E(x,y) start": joint_energy(before, y).mean().item(),
                "E(x,y) end": joint_energy(after, y).mean().item(),
                "share lowered": (joint_energy(after, y) < joint_energy(before, y)).float().mean().item(),
                "classified as class": (after.argmax(1) == y).float().mean().item(),
                "p(class) mean": after.softmax(1)[:, r.label].mean().item(),
            }
        )
    return rows


def stacked(results: Sequence[ClassSamples]) -> tuple[torch.Tensor, torch.Tensor]:
    """All classes' samples as uint8 (N, H, W, C) images and int64 labels."""
    images = torch.cat([to_uint8(r.samples) for r in results])
    labels = torch.cat([torch.full((len(r.samples),), r.label, dtype=torch.long) for r in results])
    return images, labels


def save_samples(results: Sequence[ClassSamples], path: str | Path) -> Path:
    """All samples as uint8 (N, H, W, C) with their labels, in one ``torch.save`` file (loads with weights_only)."""
    images, labels = stacked(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": images, "labels": labels, "classes": [r.name for r in results]}, path)
    return path


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float (N, C, H, W) -> uint8 (N, H, W, C)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def plot_class_grid(result: ClassSamples, path: str | Path) -> Path:
    """The class's PCA starts (top rows) above its samples (bottom rows)."""
    plt = pyplot()
    n = len(result.samples)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.2 * cols, 1.25 * 2 * rows), squeeze=False)
    for part, images in enumerate((result.start, result.samples)):
        pictures = to_uint8(images)
        for i in range(rows * cols):
            ax = axes[part * rows + i // cols][i % cols]
            ax.axis("off")
            if i < n:
                ax.imshow(pictures[i].numpy())
        axes[part * rows][0].set_title("PCA start" if part == 0 else "SGLD sample", fontsize=7, loc="left")
    fig.suptitle(f"class {result.label}: {result.name}", fontsize=9)
    return save_figure(fig, path, dpi=100)


def plot_energy_traces(results: Sequence[ClassSamples], path: str | Path) -> Path:
    """Mean ``E(x, y)`` per SGLD step, one line per class."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(range(1, len(r.energy_trace) + 1), r.energy_trace, label=r.name)
    ax.set(xlabel="SGLD step", ylabel="mean E(x, y) before the step", title="energy along sampling")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
