"""Train a Double DQN on an Atari game: the job ``agents.jobs.train_ddqn`` (= ``rlrobust train-ddqn``; see --help)."""

from agents.jobs.train_ddqn import main
from rlrobust.cli import run_main

if __name__ == "__main__":
    run_main(main)
