"""The SAP-on-Atari table as files: ``results.csv`` / ``results.json`` (one row per agent, game, SAP fraction and
lambda, every figure of every attacker setting), ``results.md`` (compact cells for people, then the action-change
rates on their own and a line on how to read them), ``scores.png`` (score and action-change rate against lambda per
game) and TensorBoard scalars.

The action-change rate (the share of steps on which the perturbation changed the acting agent's action) is measured
at every step, so it separates the attackers even where the scores cannot: in short games, or for an agent that has
not learnt to score (the Quickstart's 6,000-step Bowling agent scores 0 in every cell)."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from agents.sap_evaluation import Column, EvalSettings, Row, columns
from rlrobust.files import atomic_write_text
from rlrobust.reporting import markdown_table, write_tables


def column_title(column: Column, settings: EvalSettings) -> str:
    """What a column is, for people: who acts, what attacks it, on which network."""
    attack = {"fgsm": "FGSM", "iterative": "iterative (step 1)", "pgd": f"PGD-{settings.pgd_steps}"}[column.attack]
    return {
        "dense": f"dense agent, {attack} on itself",
        "sap_transfer": f"SAP agent, {attack} on the dense net (transfer)",
        "sap_mc": f"SAP agent, {attack} on the SAP net, MC gradient n={column.eot_samples} (paper)",
        "dense_pgd": f"dense agent, PGD-{settings.pgd_steps} on itself",
        "sap_eot": f"SAP agent, EOT-PGD-{settings.pgd_steps} on the SAP net, n={column.eot_samples} (adaptive)",
    }[column.key]


def _number(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _cell(row: Row, column: Column) -> str:
    key = column.key
    text = f"{_number(row[f'{key}_mean'])} ± {_number(row[f'{key}_se'])}"
    if column.baseline:
        change = row[f"{key}_rel_change_pct"]
        text += f" ({'n/a' if math.isnan(change) else f'{change:+.1f} %'})"
    return f"{text} [{row[f'{key}_action_change']:.0%}]"


def _line(row: Row) -> Row:
    return {
        "agent": row["agent"],
        "game": row["game"],
        "SAP frac": f"{row['sap_frac']:g}",
        "lambda": f"{row['lambda']:g}",
    }


def markdown_rows(rows: Sequence[Row], settings: EvalSettings) -> list[Row]:
    """One line per row, one compact cell per attacker setting: ``mean ± se (relative change) [action change]``."""
    out = []
    for row in rows:
        line = _line(row)
        for column in columns(settings):
            line[column_title(column, settings)] = _cell(row, column)
        out.append(line)
    return out


def action_change_rows(rows: Sequence[Row], settings: EvalSettings) -> list[Row]:
    """One line per row, one action-change rate (a percentage) per attacker setting.

    >>> settings = EvalSettings(lambdas=(0, 2), pgd_steps=2, eot_samples=2, mc_samples=4).validate()
    >>> row = {"agent": "a", "game": "Bowling", "sap_frac": 1.0, "lambda": 2.0}
    >>> row |= {f"{c.key}_action_change": rate for c, rate in zip(columns(settings), (1, 0.84, 0.81, 1, 0.72))}
    >>> list(action_change_rows([row], settings)[0].values())[4:]
    ['100%', '84%', '81%', '100%', '72%']
    """
    out = []
    for row in rows:
        line = _line(row)
        for column in columns(settings):
            line[column_title(column, settings)] = f"{row[f'{column.key}_action_change']:.0%}"
        out.append(line)
    return out


def reading(rows: Sequence[Row], settings: EvalSettings) -> str:
    """How to read this table, from its own figures: where every mean score is the same, the scores cannot tell
    the attackers apart and the action-change rates must; the SAP agent's rate without attack is its own noise.

    >>> settings = EvalSettings(lambdas=(0,)).validate()
    >>> row = {"sap_frac": 1.0, "lambda": 0.0}
    >>> row |= {f"{c.key}_{k}": 0.0 for c in columns(settings) for k in ("mean", "action_change")}
    >>> text = reading([row | {"sap_transfer_action_change": 0.68}], settings)
    >>> text.startswith("Every mean score is 0: these games cannot tell the attackers apart by score")
    True
    >>> text[text.index("Without attack"):]
    "Without attack (lambda = 0) the SAP agent's action still changes on 68% of steps: ..."
    """
    sentences = []
    means = {row[f"{column.key}_mean"] for row in rows for column in columns(settings)}
    if len(means) == 1:
        sentences.append(
            f"Every mean score is {next(iter(means)):g}: these games cannot tell the attackers apart by score (games "
            "too short, or an agent that has not learnt to score); the action-change rates can."
        )
    own = sorted(row["sap_transfer_action_change"] for row in rows if row["lambda"] == 0)
    if own:
        rates = f"{own[0]:.0%}" if f"{own[0]:.0%}" == f"{own[-1]:.0%}" else f"{own[0]:.0%}-{own[-1]:.0%}"
        sentences.append(
            f"Without attack (lambda = 0) the SAP agent's action still changes on {rates} of steps: that is its own "
            "randomness (two sets of stochastic passes disagree), the level to compare its attacked rates with."
        )
    return " ".join(sentences)


def notes(settings: EvalSettings, agents: Sequence[str], seconds: float, device: str) -> str:
    """The Markdown's preamble: what each cell is, how many episodes and seeds it used and how the games were
    played (the engine protocol's settings)."""
    protocol = settings.protocol()
    cap = (
        f"capped at {settings.max_episode_steps} agent steps ({protocol.max_frames:,} frames)"
        if settings.max_episode_steps
        else f"capped at ALE's {protocol.max_frames:,} frames"
    )
    fire = " and after every lost life" if protocol.fire_after_life_loss else " only"
    fracs = ", ".join(f"{f:g}" for f in settings.sap_fracs)
    return (
        f"Agents: {', '.join(agents)}. Each cell: **{settings.episodes} episodes**, the first episode of each of "
        f"{settings.episodes} environments of ale-py's vector env reset with **seed {settings.seed}** (one seed; "
        f"the same games in every cell, so columns are paired), {cap} (`*_capped` in results.csv counts capped "
        f"episodes). Engine protocol {protocol.name} with these settings: DeepMind preprocessing, up to "
        f"{protocol.noop_max} no-ops and FIRE at reset{fire}, no sticky actions, raw scores. lambda in pixel units "
        f"of 0-255 frames; the whole 4-frame stack is perturbed at every step; PGD takes {settings.pgd_steps} steps "
        f"of 2.5 * lambda / {settings.pgd_steps} from a random start. SAP fraction(s) {fracs} (1 = SAP-100) after "
        f"every ReLU; the SAP agent acts on the mean Q-values of {settings.sap_passes} stochastic passes. Cells: "
        f"mean score ± standard error (relative % change vs the dense agent under the same attack, "
        f"100 * (SAP - dense) / |dense|; n/a where the dense mean is 0) [share of steps where the perturbation "
        f"changed the acting agent's action; for the SAP agent this includes its own randomness, see lambda = 0]. "
        f"The adaptive EOT-PGD column is compared with the dense agent under PGD. At lambda = 0 nothing is "
        f"attacked. {seconds:.0f} s on {device}."
    )


def plot_scores(rows: Sequence[Row], settings: EvalSettings, path: Path) -> Path:
    """Mean score (± standard error, top) and action-change rate (bottom) against lambda, one panel column per agent
    and game, one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["agent"], r["game"]) for r in rows))
    fig, axes = plt.subplots(2, len(panels), figsize=(6 * len(panels), 8), squeeze=False, sharex="col")
    styles = {"dense": "ko-", "dense_pgd": "ks--", "sap_transfer": "D-", "sap_mc": "^-", "sap_eot": "v:"}
    for axis, changes, (agent, game) in zip(axes[0], axes[1], panels, strict=True):
        for frac in settings.sap_fracs:
            lines = [r for r in rows if (r["agent"], r["game"], r["sap_frac"]) == (agent, game, frac)]
            for column in columns(settings):
                if not column.sap and frac != settings.sap_fracs[0]:
                    continue  # the dense lines are the same for every SAP fraction
                label = column_title(column, settings)
                if column.sap and len(settings.sap_fracs) > 1:
                    label += f", frac {frac:g}"
                lambdas = [r["lambda"] for r in lines]
                axis.errorbar(
                    lambdas,
                    [r[f"{column.key}_mean"] for r in lines],
                    yerr=[0.0 if math.isnan(r[f"{column.key}_se"]) else r[f"{column.key}_se"] for r in lines],
                    fmt=styles[column.key],
                    label=label,
                    capsize=3,
                    alpha=0.85,
                )
                changes.plot(lambdas, [r[f"{column.key}_action_change"] for r in lines], styles[column.key], alpha=0.85)
        axis.set(ylabel=f"mean score ({settings.episodes} episodes)")
        axis.set_title(f"{game}: {agent}", fontsize=9)
        axis.legend(fontsize=6)
        changes.set(xlabel="lambda (0-255 scale)", ylabel="share of steps whose action changed", ylim=(-0.02, 1.02))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_scalars(rows: Sequence[Row], settings: EvalSettings, logdir: Path) -> Path:
    """Scores and action-change rates as TensorBoard scalars; the step is lambda (x1000 if one is fractional)."""
    scale = 1 if all(float(lam).is_integer() for lam in settings.lambdas) else 1000
    with SummaryWriter(logdir) as writer:
        for row in rows:
            step = round(row["lambda"] * scale)
            for column in columns(settings):
                tag = f"{row['agent']}/{row['game']}/frac{row['sap_frac']:g}/{column.key}"
                writer.add_scalar(f"{tag}/score", row[f"{column.key}_mean"], step)
                writer.add_scalar(f"{tag}/action_change", row[f"{column.key}_action_change"], step)
                if column.baseline:
                    writer.add_scalar(f"{tag}/rel_change_pct", row[f"{column.key}_rel_change_pct"], step)
    return logdir


def write_report(
    rows: Sequence[Row],
    settings: EvalSettings,
    out: Path,
    *,
    agents: Sequence[str],
    seconds: float,
    partial: str = "",
) -> dict[str, Path]:
    """Write every output under ``out``; returns their paths (csv, json, md, png, tensorboard). ``partial``, when
    given, says at the top of the Markdown why the table is incomplete (an interrupted run)."""
    out = Path(out)
    warning = f"**PARTIAL TABLE: {partial}**\n\n" if partial else ""
    paths = write_tables(
        rows,
        out,
        title="SAP on Atari agents under observation attacks",
        notes=warning + notes(settings, agents, seconds, settings.device),
        markdown_rows=markdown_rows(rows, settings),
    )
    changes = markdown_table(action_change_rows(rows, settings))
    appendix = (
        "\n## Action-change rates\n\nShare of steps on which the perturbation changed the acting agent's action:\n\n"
    )
    text = reading(rows, settings)
    appendix += changes + (f"\n{text}\n" if text else "")
    paths["md"] = atomic_write_text(paths["md"], paths["md"].read_text() + appendix)
    paths["png"] = plot_scores(rows, settings, out / "scores.png")
    shutil.rmtree(out / "tensorboard", ignore_errors=True)  # a resumed run's scalars replace the partial ones
    paths["tensorboard"] = log_scalars(rows, settings, out / "tensorboard")
    return paths
