"""One evaluation engine for every RL result: named protocols, any agent, one episode loop, one cache, and the
robustness report (``scripts/robustness_report.py``); ``eval_rl_sap.py`` and ``attack_policy.py`` are views on it."""

from agents.evaluation.agents import Agent, distinct_agents, is_stochastic, prepare_agent, split_agent_argument
from agents.evaluation.engine import GameEvaluation, PlayResult, Task, run_plays
from agents.evaluation.outputs import write_report
from agents.evaluation.plays import Actor, Attack, Play
from agents.evaluation.protocols import ATTACKS, PROTOCOLS, Protocol, check_attacks, get_protocol
from agents.evaluation.report import ReportSpec, attack_tasks, clean_tasks, report_rows

__all__ = [
    "ATTACKS",
    "PROTOCOLS",
    "Actor",
    "Agent",
    "Attack",
    "GameEvaluation",
    "Play",
    "PlayResult",
    "Protocol",
    "ReportSpec",
    "Task",
    "attack_tasks",
    "check_attacks",
    "clean_tasks",
    "distinct_agents",
    "get_protocol",
    "is_stochastic",
    "prepare_agent",
    "report_rows",
    "run_plays",
    "split_agent_argument",
    "write_report",
]
