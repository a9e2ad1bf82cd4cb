"""The robustness report: for each agent, game and budget, every attack of a protocol, and the worst case.

Columns (``attack`` in the rows): ``clean``; ``noise``, random sign noise of the budget; ``fgsm``; ``iterative``;
``pgd``, PGD on the cross-entropy against the clean greedy action (Huang et al. 2017, SA-DQN); ``pgd-margin``, PGD
on the margin of the Q-values or logits; ``pgd-targeted``, PGD toward the agent's worst action; ``pgd-timed``, PGD
only at the steps where Lin et al.'s (2017) action preference is highest, its threshold calibrated on the clean
play to the protocol's rate (the rate it reached is in ``attack_rate``); and ``worst``, the lowest mean score of
the attacks at that budget. A stochastic agent (two passes differ, or ``sap_frac`` given) is attacked with EOT:
every gradient averages ``eot_samples`` passes of the network it acts with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents.evaluation.engine import GameEvaluation, PlayResult, Task
from agents.evaluation.plays import Actor, Attack, Play
from agents.evaluation.protocols import Protocol
from agents.evaluation.stats import summary

LABELS = {
    "clean": "clean",
    "noise": "random sign noise",
    "fgsm": "FGSM",
    "iterative": "iterative (1 grey level a step)",
    "pgd": "PGD (CE)",
    "pgd-margin": "PGD (margin)",
    "pgd-targeted": "PGD targeted (worst action)",
    "pgd-timed": "PGD strategically timed",
    "worst": "worst case",
}


@dataclass(frozen=True)
class ReportSpec:
    """What a report plays: the protocol (budgets on its scale), its attacks, SAP inserted or not, and which
    frames of each stack the attacks perturb (``newest``: only the newest frame).

    >>> from agents.evaluation import get_protocol
    >>> spec = ReportSpec(get_protocol("sap-paper"), ("fgsm",), sap_frac=1.0)
    >>> spec.actor()  # SAP-100 acting on the mean of the protocol's 100 passes
    Actor(sap_frac=1.0, passes=100)
    """

    protocol: Protocol
    attacks: tuple[str, ...]
    sap_frac: float | None = None
    perturb: str = "stack"

    def actor(self) -> Actor:
        passes = self.protocol.passes if self.sap_frac is not None else 1
        return Actor(self.sap_frac, passes)

    def eot(self, evaluation: GameEvaluation) -> int:
        """Passes per gradient: the protocol's EOT count for a stochastic agent, else 1."""
        stochastic = evaluation.agent.stochastic or self.sap_frac is not None
        return self.protocol.eot_samples if stochastic else 1


def attack_for(name: str, eps: float, protocol: Protocol, eot: int, on: float | None) -> Attack:
    """The :class:`Attack` of a report column at ``eps`` grey levels."""
    if name == "noise":
        return Attack("noise", eps)
    if name in ("fgsm", "iterative"):
        return Attack(name, eps, eot_samples=eot, on_sap_frac=on)
    pgd = {"steps": protocol.pgd_steps, "step": protocol.pgd_step(eps), "eot_samples": eot, "on_sap_frac": on}
    variants = {"pgd": {}, "pgd-timed": {}, "pgd-margin": {"loss": "margin"}, "pgd-targeted": {"targeted": True}}
    if name not in variants:
        raise ValueError(f"unknown attack {name!r}")
    return Attack("pgd", eps, **variants[name], **pgd)


def clean_tasks(evaluations: Sequence[GameEvaluation], spec: ReportSpec) -> list[Task]:
    """The clean play of each evaluation (played first: the strategically-timed attack is calibrated on it).

    >>> import torch
    >>> from agents.evaluation import Agent, get_protocol
    >>> agent = Agent("random", None, torch.nn.Identity(), ["Pong"], sha256=None)
    >>> evaluation = GameEvaluation(agent, "Pong", get_protocol("sa-dqn"))  # nothing is played yet
    >>> clean_tasks([evaluation], ReportSpec(get_protocol("sa-dqn"), ("pgd",)))[0][1]
    Play(actor=Actor(sap_frac=None, passes=1), attack=None)
    """
    return [(evaluation, Play(spec.actor())) for evaluation in evaluations]


def attack_tasks(
    evaluations: Sequence[GameEvaluation], spec: ReportSpec, clean: dict[str, PlayResult]
) -> list[tuple[Task, str, float]]:
    """Every attacked play with its column and budget (on the protocol's scale); the timed attack takes its
    threshold from the clean play's results in ``clean``.

    >>> import torch
    >>> from agents.evaluation import Agent, get_protocol
    >>> protocol = get_protocol("sa-dqn").with_changes(budgets=[1 / 255, 3 / 255])
    >>> agent = Agent("random", None, torch.nn.Identity(), ["Pong"], sha256=None)
    >>> evaluation = GameEvaluation(agent, "Pong", protocol)
    >>> clean = {evaluation.cell_key(Play()): PlayResult([21.0], [900], 0, 0, timed_threshold=0.5)}
    >>> tasks = attack_tasks([evaluation], ReportSpec(protocol, ("fgsm", "pgd-timed")), clean)
    >>> [(name, round(budget * 255), play.attack.timed_threshold) for (_, play), name, budget in tasks]
    [('fgsm', 1, None), ('pgd-timed', 1, 0.5), ('fgsm', 3, None), ('pgd-timed', 3, 0.5)]
    """
    out = []
    actor = spec.actor()
    for evaluation in evaluations:
        threshold = clean[evaluation.cell_key(Play(actor))].timed_threshold
        for budget in spec.protocol.budgets:
            eps = spec.protocol.to_pixels(budget)
            for name in spec.attacks:
                attack = attack_for(name, eps, spec.protocol, spec.eot(evaluation), spec.sap_frac)
                play = Play(actor, replace(attack, perturb=spec.perturb))
                if name == "pgd-timed":
                    play = play.with_threshold(threshold)
                out.append(((evaluation, play), name, budget))
    return out


def row(evaluation: GameEvaluation, name: str, budget: float, result: PlayResult, spec: ReportSpec) -> dict[str, Any]:
    """One table row: who, where, which column and budget, and the play's figures."""
    eot = spec.eot(evaluation) if name not in ("clean", "noise") else 1
    return {
        "agent": evaluation.agent.name,
        "agent_sha256": evaluation.agent.sha256,
        "game": evaluation.game,
        "protocol": spec.protocol.name,
        "attack": name,
        "label": ("EOT " if eot > 1 else "") + LABELS[name],
        spec.protocol.budget_name: budget,
        "eps_pixels": spec.protocol.to_pixels(budget),
        "episodes": len(result.scores),
        **summary(result.scores),
        "action_change_rate": result.action_change_rate,
        "attack_rate": result.attack_rate if name != "clean" else 0.0,
        "mean_linf": result.mean_linf,
        "mean_length": sum(result.lengths) / len(result.lengths),
        "capped": result.capped,
        "eot_samples": eot,
        "seconds": result.seconds,
        "worst_of": "",
    }


def worst_rows(rows: Sequence[dict[str, Any]], budget_name: str) -> list[dict[str, Any]]:
    """Per agent, game and budget, the attacked row with the lowest mean score, relabelled ``worst`` (the
    attack that reached it in ``worst_of``)."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r["attack"] == "clean":
            continue
        key = (r["agent"], r["game"], r[budget_name])
        if key not in groups or r["mean"] < groups[key]["mean"]:
            groups[key] = r
    return [{**r, "attack": "worst", "label": LABELS["worst"], "worst_of": r["attack"]} for r in groups.values()]


def report_rows(
    evaluations: Sequence[GameEvaluation], spec: ReportSpec, results: dict[str, PlayResult]
) -> list[dict[str, Any]]:
    """Every finished row (clean, each attack and budget, the worst case where all attacks of a budget are done),
    in report order.

    >>> import torch
    >>> from agents.evaluation import Agent, get_protocol
    >>> protocol = get_protocol("sa-dqn").with_changes(budgets=[1 / 255])
    >>> spec = ReportSpec(protocol, ("noise", "pgd"))
    >>> evaluation = GameEvaluation(Agent("dqn", None, torch.nn.Identity(), ["Pong"], sha256=None), "Pong", protocol)
    >>> results = {evaluation.cell_key(Play()): PlayResult([21.0, 19.0], [900, 950], 0, 0, timed_threshold=0.5)}
    >>> for (task, _, _), scores in zip(attack_tasks([evaluation], spec, results), ([20.0, 21.0], [-21.0, -21.0])):
    ...     results[evaluation.cell_key(task[1])] = PlayResult(scores, [900, 800], 0, 800)
    >>> [(r["attack"], r["mean"], r["worst_of"]) for r in report_rows([evaluation], spec, results)]
    [('clean', 20.0, ''), ('noise', 20.5, ''), ('pgd', -21.0, ''), ('worst', -21.0, 'pgd')]
    """
    rows: list[dict[str, Any]] = []
    budget_name = spec.protocol.budget_name
    for evaluation in evaluations:
        clean_key = evaluation.cell_key(Play(spec.actor()))
        if clean_key not in results:
            continue
        mine = [row(evaluation, "clean", 0.0, results[clean_key], spec)]
        for (task_evaluation, play), name, budget in attack_tasks([evaluation], spec, results):
            key = task_evaluation.cell_key(play)
            if key in results:
                mine.append(row(evaluation, name, budget, results[key], spec))
        complete = {b for b in spec.protocol.budgets if sum(r[budget_name] == b for r in mine) == len(spec.attacks)}
        rows += mine + [w for w in worst_rows(mine, budget_name) if w[budget_name] in complete]
    return rows
