"""Energies over adversarial training, read from the ``metrics.csv`` a training run writes (WEAT, Sec. 4).

Each epoch's row holds the held-out means ``holdout.energy_nat`` (``E(x)``), ``holdout.energy_adv`` (``E(x*)`` of
the PGD images) and ``holdout.energy_gap`` (their difference). The paper describes three phases of adversarial
training; robust overfitting is the third, where natural and adversarial energies diverge, and TRADES keeps them
aligned. The paper gives no numeric rule for the phase boundaries, so :func:`phase_boundaries` marks them with ours
(documented there); read the marks as a guide, the curves are the evidence.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from classifiers.experiments.figures import pyplot, save_figure

NAT, ADV = "holdout.energy_nat", "holdout.energy_adv"


@dataclass
class RunCurves:
    """One training run's energy curves: its label (method), epochs and held-out energies per epoch."""

    label: str
    epochs: list[int]
    natural: list[float]
    adversarial: list[float]

    @property
    def gap(self) -> list[float]:
        """``E(x*) - E(x)`` per epoch."""
        return [a - n for n, a in zip(self.natural, self.adversarial, strict=True)]


def read_run(run_dir: str | Path) -> RunCurves:
    """The energy curves of the run in ``run_dir`` (its ``metrics.csv``; the method from ``config.json``)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}: give the --out of a train_classifier run")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or NAT not in rows[0] or ADV not in rows[0]:
        raise ValueError(f"{path} has no per-epoch energies (columns {NAT} and {ADV}); is it a classifier run?")
    config = run_dir / "config.json"
    label = run_dir.name
    if config.is_file():
        label = f"{json.loads(config.read_text()).get('method', '?')} ({run_dir.name})"
    try:
        epochs = [int(r["epoch"]) for r in rows]
        natural, adversarial = [float(r[NAT]) for r in rows], [float(r[ADV]) for r in rows]
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path} has an unreadable row: {err}") from None
    bad = [e for e, n, a in zip(epochs, natural, adversarial, strict=True) if not math.isfinite(n + a)]
    if bad:
        raise ValueError(f"{path} has non-finite energies at epoch(s) {bad[:5]}; the run diverged there")
    return RunCurves(label, epochs, natural, adversarial)


def phase_boundaries(curves: RunCurves, settle: float = 0.1, diverge: float = 0.5) -> tuple[int | None, int | None]:
    """Epochs where phase 2 and phase 3 begin (``None`` where a phase is not reached).

    Our rule, on the absolute gap ``|E(x*) - E(x)|`` smoothed over 3 epochs: find its peak in the first half of
    training (where the energies are furthest apart early on); phase 2 begins at the first later epoch where the gap
    has come within ``settle`` of that fall (the energies have aligned); phase 3 at the first epoch after the gap's
    lowest point where it has grown again by ``diverge`` of its later rise, provided that rise is larger than
    ``diverge`` of the early fall and than 20 % of the lowest gap (they diverge again).
    """
    gap = [abs(g) for g in curves.gap]
    if len(gap) < 3:
        return None, None
    smooth = [sum(gap[max(0, i - 1) : i + 2]) / len(gap[max(0, i - 1) : i + 2]) for i in range(len(gap))]
    half = smooth[: (len(smooth) + 1) // 2]
    peak = half.index(max(half))
    low = min(smooth[peak:])
    lowest = peak + smooth[peak:].index(low)
    fall = smooth[peak] - low
    if fall <= 0:
        return None, None
    phase2 = next(i for i in range(peak, len(smooth)) if smooth[i] <= low + settle * fall)
    rise = max(smooth[lowest:]) - low
    phase3 = None
    if rise > max(diverge * fall, 0.2 * low):
        phase3 = next(i for i in range(lowest, len(smooth)) if smooth[i] >= low + diverge * rise)
    return curves.epochs[phase2], (curves.epochs[phase3] if phase3 is not None else None)


def curve_rows(runs: Sequence[RunCurves]) -> list[dict[str, object]]:
    """Per run: epochs, phase marks, and the gap at the end, its largest size and its mean size over the last
    third of training (TRADES should keep these small)."""
    rows = []
    for run in runs:
        phase2, phase3 = phase_boundaries(run)
        gap = [abs(g) for g in run.gap]
        tail = gap[len(gap) - max(1, len(gap) // 3) :]
        rows.append(
            {
                "run": run.label,
                "epochs": len(run.epochs),
                "phase 2 from epoch": phase2 if phase2 is not None else "",
                "phase 3 from epoch": phase3 if phase3 is not None else "",
                "final E(x)": run.natural[-1],
                "final E(x*)": run.adversarial[-1],
                "final |gap|": gap[-1],
                "max |gap|": max(gap),
                "mean |gap| last third": sum(tail) / len(tail),
            }
        )
    return rows


def plot_curves(runs: Sequence[RunCurves], path: str | Path) -> Path:
    """Per run a panel of ``E(x)`` and ``E(x*)`` over epochs with the phases marked; a last panel compares the
    absolute gaps of all runs (TRADES against PGD-AT)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.6 * (len(runs) + 1), 3.8), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=False):
        ax.plot(run.epochs, run.natural, label="natural E(x)")
        ax.plot(run.epochs, run.adversarial, label="adversarial E(x*)")
        for number, epoch in enumerate(phase_boundaries(run), start=2):
            if epoch is not None:
                ax.axvline(epoch, color="gray", linestyle=":", linewidth=1)
                ax.text(epoch, ax.get_ylim()[1], f" phase {number}", fontsize=7, va="top")
        ax.set(title=run.label, xlabel="epoch", ylabel="mean held-out energy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    last = axes[0][-1]
    for run in runs:
        last.plot(run.epochs, [abs(g) for g in run.gap], label=run.label)
    last.set(title="|E(x*) - E(x)|: alignment", xlabel="epoch", ylabel="absolute energy gap")
    last.grid(alpha=0.3)
    last.legend(fontsize=7)
    return save_figure(fig, path)
