"""Evaluate a classifier's robustness over budgets: the job ``classifiers.jobs.eval_classifier``
(= ``rlrobust eval-classifier``; see --help)."""

from classifiers.jobs.eval_classifier import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
