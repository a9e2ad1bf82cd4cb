"""Robustness evaluation of classifiers: clean, FGSM / iterative / PGD / APGD / FAB-T / Square / AutoAttack over
budgets, EOT and transfer."""

from classifiers.evaluation.attacks import ATTACK_NAMES, AttackSpec, EvaluationSettings, build_attacks
from classifiers.evaluation.plots import plot_accuracy_vs_budget
from classifiers.evaluation.robustness import WORST_CASE, evaluate_robustness

__all__ = [
    "ATTACK_NAMES",
    "WORST_CASE",
    "AttackSpec",
    "EvaluationSettings",
    "build_attacks",
    "evaluate_robustness",
    "plot_accuracy_vs_budget",
]
