"""Train a Double DQN on an Atari game with the SAP paper's recipe: every default is the paper's (see --help).

    rlrobust train-ddqn --game Bowling                                 # the full recipe: 100M agent steps
    rlrobust train-ddqn --game Bowling --total-steps 10000 --learning-starts 1000 \\
        --buffer-size 10000 --exploration-steps 5000 --eval-every 5000 --eval-episodes 1   # a few minutes on a CPU
    rlrobust train-ddqn --out runs/Bowling-ddqn-seed0-20260101-120000 --resume [--total-steps 2000000]

(``python scripts/train_ddqn.py`` is the same job.) Writes a run directory (printed at start and end; a fresh one
under ``--runs`` unless ``--out`` names one) with config.json, TensorBoard events, checkpoints/, final_model.zip
and q_network.pt (both loadable by ``agents.load_agent``). Ctrl-C or SIGTERM saves a checkpoint and exits with
status 130; a bad setting ends with one ``error:`` line and status 2 before anything is written; a loss that turns
NaN or infinite stops the run (status 1), keeping the last good checkpoint and writing no final model. The old form
``--resume RUN_DIR`` still works (= ``--out RUN_DIR --resume``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from agents.optim import OPTIMIZERS
from agents.robust_loss import SCHEDULES
from agents.training import (
    COMPILE_CHOICES,
    LIMITS,
    LOW_OPEN,
    ROBUST_CHOICES,
    TrainConfig,
    TrainingDiverged,
    create_run,
    prepare_resume,
    run,
)
from rlrobust import cli
from rlrobust.runs import DIVERGED_STATUS, INTERRUPTED_STATUS

INTERRUPTED_EXIT_CODE = INTERRUPTED_STATUS  # 130, the shell's convention for a command stopped by Ctrl-C
DIVERGED_EXIT_CODE = DIVERGED_STATUS  # 1: training stopped at a non-finite loss or weight

#: TrainConfig field -> its flag's help. Flags are ``--field-name`` but for NAMES; types and defaults come from
#: TrainConfig and :data:`agents.training.LIMITS`.
HELP = {
    "game": "Atari game: Bowling, Pong, SpaceInvaders, ... (any ROM ale-py ships)",
    "total_steps": "agent steps to train for (each = frame-skip emulator frames)",
    "learning_starts": "random-action steps that fill the replay before the first update",
    "buffer_size": "replay capacity in transitions (1M fits in ~7.3 GB)",
    "batch_size": "minibatch size",
    "gamma": "discount factor",
    "learning_rate": "RMSProp learning rate",
    "rmsprop_alpha": "RMSProp squared-gradient decay (the paper's 'momentum 0.95')",
    "rmsprop_eps": "RMSProp epsilon (torch adds it after the square root; see the README)",
    "rmsprop_centered": "centred RMSProp, as DeepMind's (subtracts the squared mean grad)",
    "target_update": "agent steps between target-network copies",
    "train_freq": "agent steps per gradient update (kept for any --num-envs)",
    "epsilon_start": "initial exploration rate",
    "epsilon_final": "final exploration rate",
    "exploration_steps": "agent steps over which epsilon anneals linearly",
    "max_grad_norm": "gradient-norm clip (0 = none, as the papers)",
    "network": "Q-network: nature (the paper's) or neurips (Mnih et al. 2013)",
    "num_envs": "games stepped at once",
    "vec_backend": "sync (one process), async (process per game) or ale (ale-py threads)",
    "noop_max": "up to this many no-op actions at the start of each game",
    "frame_skip": "emulator frames per action (max-pooled over the last two)",
    "sticky_actions": "probability of repeating the previous action (0 = off, as the paper)",
    "terminal_on_life_loss": "end the learning episode at a life loss (game goes on)",
    "clip_rewards": "learn from sign(reward) (scores are always logged unclipped)",
    "max_episode_steps": "truncate games after this many agent steps",
    "seed": "random seed",
    "device": "where to train: auto, cpu, cuda or cuda:N",
    "torch_threads": "CPU threads for torch (0 = torch's default)",
    "compile": "torch.compile the update (auto: when the run has >= 10,000 updates)",
    "replay_on_device": "keep replay frames on the training device (GPU)",
    "frame_margin": "extra replay frame slots for episode starts, as a fraction",
    "checkpoint_every": "agent steps between checkpoints (0 = only at the end)",
    "keep_checkpoints": "how many newest checkpoints to keep",
    "eval_every": "agent steps between greedy evaluations (0 = none)",
    "eval_episodes": "games per evaluation",
    "eval_epsilon": "exploration rate during evaluation (0 = greedy; Nature used 0.05)",
    "eval_max_steps": "agent steps after which an evaluation game ends (4500 = 18,000 frames)",
    "log_every": "agent steps between TensorBoard scalars",
    "optimizer": "deepmind-rmsprop (DeepMind's update) or torch-rmsprop (earlier runs'; see docs/agents.md)",
    "robust": "robust training: none (the default), sa-pgd (SA-DQN's regulariser) or pgd-at (PGD points in training)",
    "robust_kappa": "weight of the sa-pgd regulariser (SA-DQN: 0.005)",
    "robust_eps": "final L-inf budget of robust training on [0, 1]-scaled frames (1/255 = one grey level)",
    "robust_eps_start": "agent step at which the budget starts to grow from 0",
    "robust_eps_steps": "agent steps over which it grows to --robust-eps",
    "robust_schedule": "how it grows: smoothed (SA-DQN's) or linear",
    "robust_pgd_steps": "PGD steps of robust training (SA-DQN trains with 5)",
    "robust_share": "pgd-at: share of each minibatch replaced by PGD points",
    "init_from": "start both networks from this agent file (same architecture); its sha256 is recorded",
}
NAMES = {"learning_rate": "--lr", "torch_threads": "--threads"}


def build_parser() -> argparse.ArgumentParser:
    """Every TrainConfig field as a checked flag, plus where the run goes (``--runs``, ``--out``, ``--resume``,
    ``--overwrite``) and ``--quiet``."""
    parser = cli.job_parser(__doc__)
    types = {field: _flag_type(field, default) for field, default in dataclasses.asdict(TrainConfig()).items()}
    cli.add_config_flags(
        parser,
        TrainConfig,
        defaults=TrainConfig(),
        help=HELP,
        names=NAMES,
        types={field: kind for field, kind in types.items() if kind is not None},
        choices={
            "compile": COMPILE_CHOICES,
            "optimizer": OPTIMIZERS,
            "robust": ROBUST_CHOICES,
            "robust_schedule": SCHEDULES,
        },
    )
    cli.alias(parser, "--torch-threads", "--threads")
    cli.add_runs_flag(parser, "where fresh run directories are created")
    cli.add_output_flags(parser, "train_ddqn", out_help="the run directory (default: a fresh one under --runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (e.g. in logs)")
    cli.alias(parser, "--no-progress", "--quiet")
    return parser


def _flag_type(field: str, default: object):
    """The checked argparse type of a numeric setting (its range from ``agents.training.LIMITS``); None for the
    others (text, choices, flags, the device)."""
    if field not in LIMITS:
        return None
    low, high = LIMITS[field]
    if isinstance(default, int):
        return cli.count(int(low), None if high is None else int(high))
    return cli.real(low, high, low_open=field in LOW_OPEN)


def resume_folder_alias(argv: Sequence[str]) -> list[str]:
    """The old ``--resume RUN_DIR`` (or ``--resume=RUN_DIR``) as the new ``--out RUN_DIR --resume``, with a note.

    >>> resume_folder_alias(["--resume", "runs/a", "--total-steps", "9"])
    ['--out', 'runs/a', '--resume', '--total-steps', '9']
    """
    words, new = list(argv), []
    while words:
        word = words.pop(0)
        folder = None
        if word.startswith("--resume="):
            folder = word.split("=", 1)[1]
        elif word == "--resume" and words and not words[0].startswith("-"):
            folder = words.pop(0)
        if folder is None:
            new.append(word)
            continue
        print(cli.ALIAS_NOTE.format(old="--resume RUN_DIR", new="--out RUN_DIR --resume"), file=sys.stderr)
        new += ["--out", folder, "--resume"]
    return new


def main(argv: Sequence[str] | None = None) -> int:
    """Train or resume; user errors (bad settings, not a run directory, a run in use) raise ``ValueError`` and
    the like, which :func:`rlrobust.cli.run_main` turns into one ``error:`` line and status 2."""
    argv = resume_folder_alias(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, given = cli.parse_given(parser, argv)
    cli.check_output_flags(parser, args)
    if args.resume:
        if "runs" in given:
            raise ValueError("--runs does not apply with --resume: the run continues in its own directory")
        config, checkpoint = prepare_resume(args.out, cli.config_values(args, TrainConfig, only=given))
        run_dir = args.out
        print(f"Resuming {run_dir} from {checkpoint.name}")
    else:
        config, checkpoint = cli.config_from_args(args, TrainConfig), None
        if args.out is None:
            run_dir = create_run(config, args.runs)
        else:
            run_dir = create_run(config, args.runs, out=args.out, overwrite=args.overwrite)
        print(f"Run directory: {run_dir}")
    print(_settings_line(config))
    return train(config, run_dir, checkpoint, progress=not args.quiet)


def train(config: TrainConfig, run_dir: Path, checkpoint: Path | None, progress: bool) -> int:
    """Run the training and say where everything went; returns the exit status."""
    try:
        result = run(config, run_dir, checkpoint=checkpoint, progress=progress)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return DIVERGED_EXIT_CODE
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM while stopping
        print(
            f"error: aborted without saving; continue from the last checkpoint with --out {run_dir} --resume",
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT_CODE
    print(f"{'Stopped' if result.interrupted else 'Finished'} at step {result.steps:,} after {result.seconds:.0f} s.")
    print(f"Checkpoint: {result.checkpoint}")
    if result.final_model:
        print(f"Final model: {result.final_model} (agents.load_agent reads it, or {run_dir / 'q_network.pt'})")
    print(f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"Run directory: {run_dir}")
    if result.interrupted:
        print(f"Continue with: rlrobust train-ddqn --out {run_dir} --resume")
        return INTERRUPTED_EXIT_CODE
    return 0


def _settings_line(config: TrainConfig) -> str:
    shown = ("game", "total_steps", "buffer_size", "learning_starts", "num_envs", "device", "seed", "compile")
    return "Settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items() if k in shown)
