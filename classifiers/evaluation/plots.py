"""The accuracy-versus-budget figure of an evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_accuracy_vs_budget(
    rows: Sequence[dict], path: str | Path, *, title: str = "", key: str = "robust_accuracy"
) -> Path:
    """One line per attack: ``key`` against the budget on the 0-255 scale; the clean accuracy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    clean = next((r[key] for r in rows if r["attack"] == "clean"), None)
    names = list(dict.fromkeys(r["attack"] for r in rows if r["attack"] != "clean"))
    for i, name in enumerate(names):
        points = sorted((r["eps_255"], r[key]) for r in rows if r["attack"] == name)
        ax.plot(*zip(*points, strict=True), marker="os^vD<>p*h"[i % 10], label=name, alpha=0.85)
    if clean is not None:
        ax.axhline(clean, color="gray", linestyle="--", linewidth=1, label="clean")
    ax.set(xlabel="budget eps (0-255 scale, L-inf)", ylabel=key.replace("_", " "), ylim=(0, 1), title=title)
    budgets = sorted({r["eps_255"] for r in rows if r["attack"] != "clean"})
    if budgets and budgets[0] > 0 and budgets[-1] / budgets[0] >= 16:
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
