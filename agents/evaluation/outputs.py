"""The robustness report's files: CSV and JSON (one row per cell), a Markdown table, a PNG and TensorBoard."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from agents.evaluation.protocols import Protocol
from rlrobust.reporting import write_tables


def budget_text(budget: float, protocol: Protocol) -> str:
    """``3/255`` for a [0, 1]-scale budget, ``4`` for a lambda; ``clean`` for 0.

    >>> from agents.evaluation.protocols import PROTOCOLS
    >>> budget_text(3 / 255, PROTOCOLS["sa-dqn"])
    '3/255'
    """
    if budget == 0:
        return "clean"
    return f"{budget * 255:.4g}/255" if protocol.budget_scale == "unit" else f"{budget:g}"


def cell_text(row: dict[str, Any]) -> str:
    """``mean ± half-interval (action-change %)``, then the share of steps attacked where the attack picked its
    steps (strategically timed), and for the worst case the attack that reached it.

    >>> cell_text({"mean": -21.0, "ci95_high": -21.0, "action_change_rate": 0.83, "attack": "pgd-timed",
    ...            "attack_rate": 0.83})
    '-21.0 ± 0.0 (83%; 83% of steps attacked)'
    """
    half = row["ci95_high"] - row["mean"]
    spread = f" ± {half:.1f}" if math.isfinite(half) else ""
    timed = f"; {row['attack_rate']:.0%} of steps attacked" if row["attack"] == "pgd-timed" else ""
    worst = f" [{row['worst_of']}]" if row.get("worst_of") else ""
    return f"{row['mean']:.1f}{spread} ({row['action_change_rate']:.0%}{timed}){worst}"


def markdown_rows(rows: Sequence[dict[str, Any]], protocol: Protocol) -> list[dict[str, str]]:
    """One line per agent, game and column; one column per budget (the clean score fills its line; a worst-case
    cell names its attack, which may differ between budgets)."""
    table: dict[tuple, dict[str, str]] = {}
    for r in rows:
        line = table.setdefault((r["agent"], r["game"], r["label"]), {"agent": r["agent"], "game": r["game"]})
        line["attack"] = r["label"]
        budgets = protocol.budgets if r["attack"] == "clean" else [r[protocol.budget_name]]
        for budget in budgets:
            line[f"{protocol.budget_name}={budget_text(budget, protocol)}"] = cell_text(r)
    return list(table.values())


def write_report(
    rows: Sequence[dict[str, Any]], out: Path, protocol: Protocol, notes: str, title: str = ""
) -> dict[str, Path]:
    """results.csv/.json/.md, scores.png and tensorboard/ under ``out``; returns the table paths.

    >>> import tempfile
    >>> from agents.evaluation import PROTOCOLS
    >>> row = {"agent": "dqn", "game": "Pong", "attack": "clean", "label": "clean", "eps": 0.0, "mean": 21.0}
    >>> row |= {"ci95_high": 21.0, "action_change_rate": 0.0, "attack_rate": 0.0}
    >>> pgd = row | {"attack": "pgd", "label": "PGD (CE)", "eps": 1 / 255, "mean": -21.0, "ci95_high": -21.0}
    >>> pgd["action_change_rate"] = 1.0
    >>> protocol = PROTOCOLS["sa-dqn"].with_changes(budgets=[1 / 255])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths = write_report([row, pgd], Path(folder), protocol, notes="Two cells.")
    ...     lines = paths["md"].read_text().splitlines()
    >>> for line in lines[-4:]:
    ...     print(line)
    | agent | game | attack | eps=1/255 |
    |---|---|---|---|
    | dqn | Pong | clean | 21.0 ± 0.0 (0%) |
    | dqn | Pong | PGD (CE) | -21.0 ± 0.0 (100%) |
    """
    paths = write_tables(
        rows,
        out,
        title=title or f"Robustness report, protocol {protocol.name}",
        notes=notes + " Cells: mean score ± half of the 95 % t-interval (greedy-action change rate).",
        markdown_rows=markdown_rows(rows, protocol),
    )
    plot(rows, out / "scores.png", protocol)
    tensorboard(rows, out / "tensorboard", protocol)
    return paths


def plot(rows: Sequence[dict[str, Any]], path: Path, protocol: Protocol) -> None:
    """Scores (top) and action-change rates (bottom) against the budget, one panel column per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = list(dict.fromkeys(r["game"] for r in rows))
    fig, axes = plt.subplots(2, len(games), figsize=(5 * len(games), 7), squeeze=False)
    for g, game in enumerate(games):
        lines: dict[tuple, list] = {}
        for r in rows:
            if r["game"] == game and r["attack"] not in ("clean", "worst"):
                lines.setdefault((r["agent"], r["label"]), []).append(r)
        for i, ((agent, label), points) in enumerate(lines.items()):
            clean = next(r for r in rows if r["game"] == game and r["agent"] == agent and r["attack"] == "clean")
            points = [clean, *sorted(points, key=lambda r: r[protocol.budget_name])]
            xs = [protocol.to_pixels(r[protocol.budget_name]) for r in points]
            style = {"marker": "osD^v<>"[i % 7], "linestyle": ("-", "--", ":", "-.")[i % 4], "alpha": 0.8}
            axes[0][g].plot(xs, [r["mean"] for r in points], label=f"{agent}: {label}", **style)
            axes[1][g].plot(xs, [r["action_change_rate"] for r in points], **style)
        axes[0][g].set(title=game, ylabel="mean score")
        axes[1][g].set(xlabel="budget (grey levels of 0-255 frames)", ylabel="action-change rate", ylim=(0, 1))
        if lines:  # a partial table may hold the clean row alone
            axes[0][g].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def tensorboard(rows: Sequence[dict[str, Any]], folder: Path, protocol: Protocol) -> None:
    """Scalars ``score/<agent>/<game>/<attack>`` and ``action_change/...`` against the budget's index (0: clean,
    1: the smallest budget, ...; a fractional lambda has no whole step of its own), and the index-to-budget map as
    text."""
    shutil.rmtree(folder, ignore_errors=True)  # a resumed run's scalars replace the partial ones
    budgets = (0.0, *protocol.budgets)
    with SummaryWriter(folder) as writer:
        mapping = ", ".join(f"{i}: {budget_text(b, protocol)}" for i, b in enumerate(budgets))
        writer.add_text("budget_index", f"{protocol.budget_name} by step: {mapping}")
        for r in rows:
            step = budgets.index(r[protocol.budget_name])
            tag = f"{r['agent']}/{r['game']}/{r['attack']}"
            writer.add_scalar(f"score/{tag}", r["mean"], step)
            writer.add_scalar(f"action_change/{tag}", r["action_change_rate"], step)
