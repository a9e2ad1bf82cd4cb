"""Evaluate a classifier's robustness: clean accuracy and attacks over budgets.
The job is :mod:`classifiers.jobs.eval_classifier`; ``--help`` lists its flags."""

from classifiers.jobs.eval_classifier import USER_ERRORS, main, run  # noqa: F401 (for callers that load this file)

if __name__ == "__main__":
    run()
