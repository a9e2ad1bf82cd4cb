"""Demo of the core on real Atari frames: the job ``agents.jobs.demo_core`` (= ``rlrobust demo-core``; see --help)."""

from agents.jobs.demo_core import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
