"""Train an image classifier with one of the papers' methods: the job ``classifiers.jobs.train_classifier``
(= ``rlrobust train-classifier``; see --help)."""

from classifiers.jobs.train_classifier import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
