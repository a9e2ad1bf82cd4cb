"""SAP on trained Atari agents under attack: the job ``agents.jobs.eval_rl_sap`` (= ``rlrobust eval-sap``; --help)."""

from agents.jobs.eval_rl_sap import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
