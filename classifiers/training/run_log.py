"""Per-epoch records to a CSV file (rewritten atomically, so resuming never duplicates a row), TensorBoard, and a
PNG of the curves (loss; held-out clean and PGD accuracy; the energies E(x), E(x*), E(x, y)) in which WEAT's three
phases of adversarial training and robust overfitting show."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from rlrobust.files import atomic_write, atomic_write_text


class EpochLog:
    """Rows of metrics by epoch: ``metrics.csv`` and TensorBoard scalars under ``out_dir``."""

    def __init__(self, out_dir: str | Path, *, resume_rows: list[dict] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.rows: list[dict] = list(resume_rows or [])
        # a resumed run drops TensorBoard events past its checkpoint (an interrupted epoch's), so none is doubled
        purge = len(self.rows) + 1 if self.rows else None
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge)

    def add(self, row: dict[str, float | int | str]) -> None:
        """Record one epoch: a TensorBoard scalar per number, the whole CSV rewritten, the curves redrawn."""
        self.rows.append(dict(row))
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(key.replace(".", "/", 1), value, epoch)
        self.writer.flush()
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.out_dir / "metrics.csv", buffer.getvalue())
        self.plot()

    def plot(self) -> Path:
        """``curves.png``: loss, accuracies and energies against the epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [int(r["epoch"]) for r in self.rows]
        panels = (
            ("loss", ("train.loss",)),
            ("held-out accuracy", ("holdout.clean_acc", "holdout.pgd_acc")),
            ("held-out energy", ("holdout.energy_nat", "holdout.energy_adv", "holdout.energy_joint")),
        )
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for axis, (title, keys) in zip(axes, panels, strict=True):
            for key in keys:
                values = [float(r[key]) if key in r else float("nan") for r in self.rows]
                axis.plot(epochs, values, marker="o" if len(epochs) < 30 else None, label=key.split(".", 1)[1])
            axis.set(title=title, xlabel="epoch")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        fig.tight_layout()
        try:
            return atomic_write(self.out_dir / "curves.png", lambda handle: fig.savefig(handle, dpi=100, format="png"))
        finally:
            plt.close(fig)

    def close(self) -> None:
        self.writer.close()
