"""WEAT's energy lens: how attacks and adversarial training move a classifier's energies.
The job is :mod:`classifiers.jobs.energy_analysis`; ``--help`` lists its flags."""

from classifiers.jobs.energy_analysis import USER_ERRORS, main, run  # noqa: F401 (for callers that load this file)

if __name__ == "__main__":
    run()
