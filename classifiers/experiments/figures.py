"""Figure and TensorBoard plumbing shared by the experiments: a headless matplotlib, atomic PNG writes, and rows of
a result table as TensorBoard scalars."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG through a temporary file (readers never see half an image) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(partial, dpi=dpi, format="png")
    pyplot().close(fig)
    os.replace(partial, path)
    return path


def lambda_axis(ax: Any, lambdas: Sequence[float]) -> None:
    """An x axis for budgets 0, 1, 2, 4, ...: linear up to 1, logarithmic beyond, ticks at the budgets used."""
    ax.set_xscale("symlog", base=2, linthresh=1)
    ax.set_xticks(sorted(set(lambdas)))
    ax.set_xticklabels([f"{v:g}" for v in sorted(set(lambdas))])


def write_scalars(
    out_dir: str | Path,
    rows: Sequence[dict],
    tag: Callable[[dict], str],
    value: str,
    step: Callable[[dict], int],
) -> Path:
    """Each row as one TensorBoard scalar ``tag(row)`` = ``row[value]`` at ``step(row)``, under ``out_dir``."""
    folder = Path(out_dir) / "tensorboard"
    with SummaryWriter(str(folder)) as writer:
        for row in rows:
            writer.add_scalar(tag(row), float(row[value]), step(row))
    return folder
