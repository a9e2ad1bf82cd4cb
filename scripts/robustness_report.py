"""A robustness report of any agent: the job ``agents.jobs.robustness_report`` (= ``rlrobust robustness-report``)."""

from agents.jobs.robustness_report import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
