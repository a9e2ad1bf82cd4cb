"""Figure and TensorBoard plumbing shared by the experiments: a headless matplotlib, atomic PNG writes, and rows of
a result table as TensorBoard scalars."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from rlrobust.files import atomic_write


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG atomically (:func:`rlrobust.files.atomic_write`: readers never see half an image, and
    two jobs never share a temporary file) and close it.

    >>> import tempfile, pathlib
    >>> fig, ax = pyplot().subplots()
    >>> save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "plot.png").read_bytes()[:4]
    b'\\x89PNG'
    """
    fig.tight_layout()
    try:
        return atomic_write(path, lambda handle: fig.savefig(handle, dpi=dpi, format="png"))
    finally:
        pyplot().close(fig)


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
