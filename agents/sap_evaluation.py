"""SAP on trained Atari agents under observation attacks: the SAP paper's RL table, with an adaptive attacker, as a
view on the evaluation engine (:mod:`agents.evaluation`).

For every agent, game, SAP fraction and budget lambda (0-255 pixel units), the same seeded games are played by
the dense agent and by the agent with SAP inserted after every ReLU, which acts greedily on its mean Q-values
over ``sap_passes`` stochastic passes (the paper's prediction rule). Five columns, each an engine
:class:`~agents.evaluation.Play` of those games (the dense agent is ``Actor(None, 1)``, the SAP agent
``Actor(frac, sap_passes)``):

- ``dense``: the dense agent under ``attack`` computed on itself (the paper's baseline);
- ``sap_transfer``: the SAP agent under ``attack`` computed on the dense network (transfer);
- ``sap_mc``: the SAP agent under ``attack`` computed on the SAP network, every gradient the mean over
  ``mc_samples`` stochastic passes (the paper's Monte-Carlo attacker);
- ``dense_pgd``: the dense agent under PGD on itself, the baseline of the adaptive column;
- ``sap_eot``: the SAP agent under EOT-PGD, PGD whose every gradient averages ``eot_samples`` passes
  (Athalye et al. 2018, the attack that breaks randomised defences).

At lambda = 0 nothing is attacked: the SAP columns share one clean play of the SAP agent, the dense columns one
of the dense agent. The games are those of the engine's ``sap-paper`` protocol with this evaluation's knobs
(:meth:`EvalSettings.protocol`): the first episode of each of ``episodes`` seeded environments of ale-py's vector
env, up to 30 no-ops, whole games capped at ``4 * max_episode_steps`` frames (else ALE's 108,000).

FIRE is pressed only at reset, where a game needs it to start (the engine's default). Until the engine (issue 14)
this evaluation also pressed FIRE after every lost life, which hides the stalls an attack can cause in games that
wait for FIRE after a lost life (Breakout); ``fire_after_life_loss`` (``--fire-after-life-loss``) brings that back.
Games without lives (Pong) play exactly as before.

Every finished play can be kept in a :class:`rlrobust.runs.CellStore` by :func:`agents.evaluation.run_plays`
(keyed by the agent's sha256, the game and every field of the play), so an interrupted evaluation resumes where it
stopped and gives the same table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.env import max_episode_frames
from agents.evaluation import Actor, Agent, GameEvaluation, Play, PlayResult, Protocol, Task, get_protocol, run_plays
from agents.evaluation.report import attack_for
from agents.evaluation.stats import standard_error
from rlrobust.runs import CellStore
from rlrobust.sap import check_frac

ATTACK_CHOICES = ("fgsm", "iterative", "pgd")
ROW_KEYS = ("agent", "agent_sha256", "game", "sap_frac", "lambda", "episodes")
MAX_LAMBDA = 255.0
PGD_RADII = 2.5  # PGD's steps together cover 2.5 budgets (Madry et al.): each is 2.5 * lambda / steps
FRAME_SKIP = 4  # emulator frames per agent step in ale-py's v5 games

Row = dict[str, Any]


@dataclass
class EvalSettings:
    """What to play and how to attack; the defaults are the SAP paper's (100 passes, 100 MC samples, FGSM)."""

    lambdas: Sequence[float] = (0, 1, 2, 4, 8)
    episodes: int = 5
    sap_fracs: Sequence[float] = (1.0,)
    sap_passes: int = 100  # stochastic passes whose mean Q-values the SAP agent acts on
    mc_samples: int = 100  # passes per gradient of the paper's Monte-Carlo attacker
    attack: str = "fgsm"  # the attack of the dense, transfer and Monte-Carlo columns
    eot_samples: int = 10  # passes per gradient of the adaptive EOT-PGD attacker
    pgd_steps: int = 10  # steps of PGD (dense_pgd and sap_eot), each 2.5 * lambda / steps (Madry et al.)
    max_episode_steps: int | None = None  # cap on an episode's agent steps (None: ALE's 108,000-frame cap)
    fire_after_life_loss: bool = False  # press FIRE after every lost life too (this evaluation's old behaviour)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> EvalSettings:
        """Raise ``ValueError`` naming the first bad setting; returns self with sorted, de-duplicated budgets."""
        if not self.lambdas:
            raise ValueError("give at least one lambda")
        for lam in self.lambdas:
            if not 0 <= lam <= MAX_LAMBDA or math.isnan(lam):
                raise ValueError(f"lambda must lie in [0, {MAX_LAMBDA:g}] (pixel units of 0-255 frames), got {lam:g}")
        if not self.sap_fracs or any(not frac > 0 for frac in self.sap_fracs):
            raise ValueError(f"SAP fractions must be > 0 (1.0 is SAP-100), got {list(self.sap_fracs)}")
        for frac in self.sap_fracs:
            check_frac(frac, "SAP fraction")
        for name in ("episodes", "sap_passes", "mc_samples", "eot_samples", "pgd_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max-episode-steps must be >= 1, got {self.max_episode_steps}")
        if self.attack not in ATTACK_CHOICES:
            raise ValueError(f"unknown attack {self.attack!r}; choose one of {ATTACK_CHOICES}")
        self.lambdas = sorted({float(lam) for lam in self.lambdas})
        self.sap_fracs = sorted({float(frac) for frac in self.sap_fracs})
        return self

    def protocol(self) -> Protocol:
        """The engine's ``sap-paper`` protocol with these knobs: how every game is played and PGD steps.

        >>> EvalSettings(max_episode_steps=100, pgd_steps=5).protocol().max_frames
        400
        """
        return dataclasses.replace(
            get_protocol("sap-paper"),
            budgets=tuple(float(lam) for lam in self.lambdas if lam > 0),
            attacks=tuple(dict.fromkeys((self.attack, "pgd"))),
            episodes=self.episodes,
            max_frames=max_episode_frames(self.max_episode_steps, FRAME_SKIP),
            fire_after_life_loss=self.fire_after_life_loss,
            pgd_steps=self.pgd_steps,
            pgd_step_frac=PGD_RADII / self.pgd_steps,
            passes=self.sap_passes,
            eot_samples=self.eot_samples,
        )


@dataclass(frozen=True)
class Column:
    """One attacker setting: who acts, which attack, on whose network and with how many passes per gradient."""

    key: str
    sap: bool  # the SAP agent acts (else the dense one)
    attack: str
    eot_samples: int
    on_sap: bool  # the attack differentiates the SAP network (else the dense one)
    baseline: str | None  # the dense column a SAP column is compared with

    def play(self, frac: float, lam: float, protocol: Protocol) -> Play:
        """The engine play of this column at one SAP fraction and budget (clean at lambda = 0)."""
        actor = Actor(frac, protocol.passes) if self.sap else Actor()
        if lam == 0:
            return Play(actor)
        on = frac if self.on_sap else None
        return Play(actor, attack_for(self.attack, float(lam), protocol, self.eot_samples, on))


def columns(settings: EvalSettings) -> list[Column]:
    """The five columns of the table, in order (see the module docstring)."""
    return [
        Column("dense", False, settings.attack, 1, False, None),
        Column("sap_transfer", True, settings.attack, 1, False, "dense"),
        Column("sap_mc", True, settings.attack, settings.mc_samples, True, "dense"),
        Column("dense_pgd", False, "pgd", 1, False, None),
        Column("sap_eot", True, "pgd", settings.eot_samples, True, "dense_pgd"),
    ]


def table_columns(settings: EvalSettings) -> list[str]:
    """The columns of ``results.csv``: the row keys, then mean, standard error, relative change (SAP columns),
    action-change rate and capped episodes of each attacker setting."""
    names = list(ROW_KEYS)
    for column in columns(settings):
        names += [f"{column.key}_mean", f"{column.key}_se"]
        names += [f"{column.key}_rel_change_pct"] if column.baseline else []
        names += [f"{column.key}_action_change", f"{column.key}_capped"]
    return names


def relative_change(sap: float, dense: float) -> float:
    """The paper's relative % change of reward, ``100 * (sap - dense) / |dense|``; NaN where ``dense`` is 0
    (no finite percentage exists; the report shows "n/a")."""
    return 100.0 * (sap - dense) / abs(dense) if dense != 0 else float("nan")


def row_plays(settings: EvalSettings, frac: float, lam: float) -> list[Play]:
    """The plays of one row, one per column (equal plays repeat: each is played once)."""
    protocol = settings.protocol()
    return [column.play(frac, lam, protocol) for column in columns(settings)]


def table_plays(settings: EvalSettings) -> list[Play]:
    """Every distinct play of one agent and game, in table order."""
    rows = [row_plays(settings, frac, lam) for frac in settings.sap_fracs for lam in settings.lambdas]
    return list(dict.fromkeys(play for plays in rows for play in plays))


def game_evaluations(agents: Sequence[Agent], settings: EvalSettings) -> list[GameEvaluation]:
    """One engine :class:`GameEvaluation` per agent and game, nothing played yet."""
    protocol = settings.protocol()
    return [
        GameEvaluation(agent, game, protocol, seed=settings.seed, device=settings.device, progress=settings.progress)
        for agent in agents
        for game in agent.games
    ]


def table_tasks(evaluations: Sequence[GameEvaluation], settings: EvalSettings) -> list[Task]:
    """Every play of every evaluation, for :func:`agents.evaluation.run_plays`."""
    plays = table_plays(settings)
    return [(evaluation, play) for evaluation in evaluations for play in plays]


def describe_play(evaluation: GameEvaluation, play: Play) -> str:
    """A play's name on its progress bar."""
    who = "dense" if play.actor.sap_frac is None else play.actor.describe()
    attack = play.attack
    if attack is None:
        return f"{evaluation.game} {who} clean"
    on = "dense" if attack.on_sap_frac is None else f"SAP-{attack.on_sap_frac * 100:g}"
    return f"{evaluation.game} {who} vs {attack.kind}(on {on}, n={attack.eot_samples}) lambda={attack.eps:g}"


def table_rows(
    evaluations: Sequence[GameEvaluation], settings: EvalSettings, results: dict[str, PlayResult]
) -> list[Row]:
    """The rows (columns of :func:`table_columns`) of every evaluation, SAP fraction and budget whose plays are all
    in ``results`` (cell key -> result), in table order: an interrupted run gives only its complete rows."""
    out = []
    for evaluation in evaluations:
        for frac in settings.sap_fracs:
            for lam in settings.lambdas:
                keys = [evaluation.cell_key(play) for play in row_plays(settings, frac, lam)]
                if all(key in results for key in keys):
                    out.append(_row(evaluation, settings, frac, lam, [results[key] for key in keys]))
    return out


def _row(evaluation: GameEvaluation, settings: EvalSettings, frac: float, lam: float, played: list[PlayResult]) -> Row:
    agent = evaluation.agent
    row: Row = {"agent": agent.name, "agent_sha256": agent.sha256, "game": evaluation.game, "sap_frac": frac}
    row |= {"lambda": lam, "episodes": settings.episodes}
    for column, result in zip(columns(settings), played, strict=True):
        row |= _cells(column, result, row)
    return row


def _cells(column: Column, result: PlayResult, row: Row) -> Row:
    """A column's figures; a SAP column's relative change is taken against its baseline, already in ``row``."""
    cells: Row = {f"{column.key}_mean": result.mean, f"{column.key}_se": standard_error(result.scores)}
    if column.baseline:
        cells[f"{column.key}_rel_change_pct"] = relative_change(result.mean, row[f"{column.baseline}_mean"])
    cells[f"{column.key}_action_change"] = result.action_change_rate
    cells[f"{column.key}_capped"] = result.capped
    return cells


def stored_results(tasks: Sequence[Task], store: CellStore) -> dict[str, PlayResult]:
    """The results ``store`` holds of ``tasks`` (what an interrupted run has finished)."""
    keys = {evaluation.cell_key(play) for evaluation, play in tasks}
    return {key: PlayResult(**store.get(key)) for key in keys if key in store}


def close_all(evaluations: Sequence[GameEvaluation]) -> None:
    """Close every evaluation's environments."""
    for evaluation in evaluations:
        evaluation.close()


def evaluate(agents: Sequence[Agent], settings: EvalSettings, store: CellStore | None = None) -> list[Row]:
    """The table rows of every agent and game (see :func:`table_columns`); finished plays kept in ``store``."""
    evaluations = game_evaluations(agents, settings)
    try:
        results = run_plays(
            table_tasks(evaluations, settings), store, progress=settings.progress, describe=describe_play
        )
    finally:
        close_all(evaluations)
    return table_rows(evaluations, settings, results)


def run_settings(agents: Sequence[Agent], settings: EvalSettings, **extra: Any) -> dict[str, Any]:
    """Every setting that shapes the results, the agents' files' sha256 and the engine protocol included: what
    run.json records, what ``--resume`` must match and what the cell store is keyed by (``extra``: e.g. torch
    threads)."""
    chosen = {k: v for k, v in dataclasses.asdict(settings).items() if k != "progress"}
    agents_info = [{**agent.describe(), "games": list(agent.games)} for agent in agents]
    return {"agents": agents_info, **chosen, "protocol": settings.protocol().describe(), **extra}
