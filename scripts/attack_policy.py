"""Attack a trained Atari policy: the job ``agents.jobs.attack_policy`` (= ``rlrobust attack-policy``; see --help)."""

from agents.jobs.attack_policy import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
