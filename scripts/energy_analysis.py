"""WEAT's energy lens on a classifier or an agent: the job ``classifiers.jobs.energy_analysis``
(= ``rlrobust energy-analysis``; see --help)."""

from classifiers.jobs.energy_analysis import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
