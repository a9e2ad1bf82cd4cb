"""Generate images from a classifier read as an energy-based model: the job ``classifiers.jobs.generate``
(= ``rlrobust generate``; see --help)."""

from classifiers.jobs.generate import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
