"""The SAP paper's figures from the grid's tables: accuracy against lambda (one panel per attack, one line per
model, as its Figs. 1-3 and 6) and reliability diagrams (one panel per lambda, as its Fig. 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from classifiers.experiments.figures import lambda_axis, pyplot, save_figure

MARKERS = "os^vD<>p*hXP"


def panel(attack: str) -> str:
    """The panel an attack is drawn in: white-box FGSM and its Monte-Carlo form together (the paper's Fig. 1(a)),
    the iterative attack and its Monte-Carlo form together, PGD and EOT-PGD together; transfers apart."""
    if "transfer" in attack:
        return attack
    if attack.startswith("FGSM"):
        return "FGSM (Monte-Carlo gradient on stochastic models)"
    if attack.startswith("iterative"):
        return "iterative (Monte-Carlo gradient on SAP)"
    return "adaptive: PGD, EOT-PGD on stochastic models"


def plot_accuracy(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy against lambda: a panel per attack (see :func:`panel`), a line per model and attack."""
    plt = pyplot()
    panels = list(dict.fromkeys(panel(r["attack"]) for r in rows))
    lines = list(dict.fromkeys((r["model"], r["attack"]) for r in rows))
    cols = min(3, len(panels))
    grid_rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(5.2 * cols, 3.8 * grid_rows), squeeze=False)
    for ax, name in zip(axes.flat, panels, strict=False):
        lambdas = []
        for i, (model, attack) in enumerate(lines):
            if panel(attack) != name:
                continue
            points = sorted((r["lambda"], r["accuracy"]) for r in rows if (r["model"], r["attack"]) == (model, attack))
            lambdas += [p[0] for p in points]
            label = model if "transfer" in attack else f"{model}: {attack}"
            ax.plot(*zip(*points, strict=True), marker=MARKERS[i % len(MARKERS)], label=label, alpha=0.85)
        lambda_axis(ax, lambdas)
        ax.set(title=name, xlabel="lambda (0-255)", ylabel="accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_reliability(bin_rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Reliability diagrams: per lambda, each model's accuracy against mean confidence per bin; the diagonal is
    perfect calibration."""
    plt = pyplot()
    lambdas = sorted({r["lambda"] for r in bin_rows})
    models = list(dict.fromkeys(r["model"] for r in bin_rows))
    cols = min(4, max(1, len(lambdas)))
    grid_rows = max(1, math.ceil(len(lambdas) / cols))
    fig, axes = plt.subplots(grid_rows, cols, figsize=(3.6 * cols, 3.4 * grid_rows), squeeze=False)
    for ax, lam in zip(axes.flat, lambdas, strict=False):
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        for i, model in enumerate(models):
            points = sorted(
                (r["confidence"], r["accuracy"]) for r in bin_rows if r["lambda"] == lam and r["model"] == model
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker=MARKERS[i % len(MARKERS)], label=model, alpha=0.8)
        ax.set(title=f"lambda = {lam:g}", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(lambdas) :]:
        ax.axis("off")
    if lambdas:
        axes.flat[0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
