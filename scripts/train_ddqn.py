"""Train a Double DQN on an Atari game with the SAP paper's recipe (every default is the paper's; see --help).

    python scripts/train_ddqn.py --game Bowling                        # the full recipe: 100M agent steps
    python scripts/train_ddqn.py --game Bowling --total-steps 10000 --learning-starts 1000 \\
        --buffer-size 10000 --exploration-steps 5000 --eval-every 5000 --eval-episodes 1   # a few minutes on a CPU
    python scripts/train_ddqn.py --resume runs/Bowling-ddqn-seed0-20260101-120000 [--total-steps 2000000]

Writes a run directory (printed at start and end) with config.json, TensorBoard events, checkpoints/,
final_model.zip and q_network.pt (both loadable by ``agents.load_agent``). Ctrl-C or SIGTERM saves a checkpoint and
exits with status 130; a bad setting ends with one ``error:`` line and status 2 before anything is written; a loss
that turns NaN or infinite stops the run (status 1), keeping the last good checkpoint and writing no final model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.training import (
    COMPILE_CHOICES,
    LIMITS,
    LOW_OPEN,
    TrainConfig,
    TrainingDiverged,
    create_run,
    prepare_resume,
    run,
)
from rlrobust.cli import auto_or_device, count, real, run_main
from rlrobust.runs import DIVERGED_STATUS, INTERRUPTED_STATUS

INTERRUPTED_EXIT_CODE = INTERRUPTED_STATUS  # 130, the shell's convention for a command stopped by Ctrl-C
DIVERGED_EXIT_CODE = DIVERGED_STATUS  # 1: training stopped at a non-finite loss or weight

# flag -> (TrainConfig field, help). Types and defaults come from TrainConfig.
FLAGS = {
    "--game": ("game", "Atari game: Bowling, Pong, SpaceInvaders, ... (any ROM ale-py ships)"),
    "--total-steps": ("total_steps", "agent steps to train for (each = frame-skip emulator frames)"),
    "--learning-starts": ("learning_starts", "random-action steps that fill the replay before the first update"),
    "--buffer-size": ("buffer_size", "replay capacity in transitions (1M fits in ~7.3 GB)"),
    "--batch-size": ("batch_size", "minibatch size"),
    "--gamma": ("gamma", "discount factor"),
    "--lr": ("learning_rate", "RMSProp learning rate"),
    "--rmsprop-alpha": ("rmsprop_alpha", "RMSProp squared-gradient decay (the paper's 'momentum 0.95')"),
    "--rmsprop-eps": ("rmsprop_eps", "RMSProp epsilon (torch adds it after the square root; see the README)"),
    "--rmsprop-centered": ("rmsprop_centered", "centred RMSProp, as DeepMind's (subtracts the squared mean grad)"),
    "--target-update": ("target_update", "agent steps between target-network copies"),
    "--train-freq": ("train_freq", "agent steps per gradient update (kept for any --num-envs)"),
    "--epsilon-start": ("epsilon_start", "initial exploration rate"),
    "--epsilon-final": ("epsilon_final", "final exploration rate"),
    "--exploration-steps": ("exploration_steps", "agent steps over which epsilon anneals linearly"),
    "--max-grad-norm": ("max_grad_norm", "gradient-norm clip (0 = none, as the papers)"),
    "--network": ("network", "Q-network: nature (the paper's) or neurips (Mnih et al. 2013)"),
    "--num-envs": ("num_envs", "games stepped at once"),
    "--vec-backend": ("vec_backend", "sync (one process), async (process per game) or ale (ale-py threads)"),
    "--noop-max": ("noop_max", "up to this many no-op actions at the start of each game"),
    "--frame-skip": ("frame_skip", "emulator frames per action (max-pooled over the last two)"),
    "--sticky-actions": ("sticky_actions", "probability of repeating the previous action (0 = off, as the paper)"),
    "--terminal-on-life-loss": ("terminal_on_life_loss", "end the learning episode at a life loss (game goes on)"),
    "--clip-rewards": ("clip_rewards", "learn from sign(reward) (scores are always logged unclipped)"),
    "--max-episode-steps": ("max_episode_steps", "truncate games after this many agent steps"),
    "--seed": ("seed", "random seed"),
    "--device": ("device", "where to train: auto, cpu, cuda or cuda:N"),
    "--torch-threads": ("torch_threads", "CPU threads for torch (0 = torch's default)"),
    "--compile": ("compile", "torch.compile the update (auto: when the run has >= 10,000 updates)"),
    "--replay-on-device": ("replay_on_device", "keep replay frames on the training device (GPU)"),
    "--frame-margin": ("frame_margin", "extra replay frame slots for episode starts, as a fraction"),
    "--checkpoint-every": ("checkpoint_every", "agent steps between checkpoints (0 = only at the end)"),
    "--keep-checkpoints": ("keep_checkpoints", "how many newest checkpoints to keep"),
    "--eval-every": ("eval_every", "agent steps between greedy evaluations (0 = none)"),
    "--eval-episodes": ("eval_episodes", "games per evaluation"),
    "--eval-epsilon": ("eval_epsilon", "exploration rate during evaluation (0 = greedy; Nature used 0.05)"),
    "--eval-max-steps": ("eval_max_steps", "agent steps after which an evaluation game ends (4500 = 18,000 frames)"),
    "--log-every": ("log_every", "agent steps between TensorBoard scalars"),
}
CHOICES = {"compile": list(COMPILE_CHOICES)}


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None,
    )
    defaults = TrainConfig()
    for flag, (field, help_text) in FLAGS.items():
        default = getattr(defaults, field)
        kwargs = {} if suppress_defaults else {"default": default}
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field, action=argparse.BooleanOptionalAction, help=help_text, **kwargs)
        elif field in CHOICES:
            parser.add_argument(flag, dest=field, choices=CHOICES[field], help=help_text, **kwargs)
        else:
            parser.add_argument(flag, dest=field, type=_flag_type(field, default), help=help_text, **kwargs)
    logdir_default = {} if suppress_defaults else {"default": Path("runs")}
    parser.add_argument("--logdir", type=Path, help="where run directories are created", **logdir_default)
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")
    return parser


def _flag_type(field: str, default: object):
    """The checked argparse type of a numeric setting (its range from ``agents.training.LIMITS``) or of the device;
    other text is kept."""
    if field == "device":
        return auto_or_device
    if field not in LIMITS:
        return str
    low, high = LIMITS[field]
    if isinstance(default, int):
        return count(int(low), None if high is None else int(high))
    return real(low, high, low_open=field in LOW_OPEN)


def main(argv: list[str] | None = None) -> int:
    """Train or resume; user errors (bad settings, not a run directory, a run in use) raise ``ValueError`` and
    the like, which :func:`rlrobust.cli.run_main` turns into one ``error:`` line and status 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))  # only the flags typed on the command line
    fields = {field for field, _ in FLAGS.values()}
    if args.resume is not None:
        if "logdir" in given:
            raise ValueError("--logdir does not apply with --resume: the run continues in its own directory")
        config, checkpoint = prepare_resume(args.resume, {k: v for k, v in given.items() if k in fields})
        run_dir = args.resume
        print(f"Resuming {run_dir} from {checkpoint.name}")
    else:
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
        run_dir, checkpoint = create_run(config, args.logdir), None
        print(f"Run directory: {run_dir}")
    print(_settings_line(config))
    try:
        result = run(config, run_dir, checkpoint=checkpoint, progress=not args.no_progress)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return DIVERGED_EXIT_CODE
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM while stopping
        print(
            f"error: aborted without saving; continue from the last checkpoint with --resume {run_dir}", file=sys.stderr
        )
        return INTERRUPTED_EXIT_CODE
    print(f"{'Stopped' if result.interrupted else 'Finished'} at step {result.steps:,} after {result.seconds:.0f} s.")
    print(f"Checkpoint: {result.checkpoint}")
    if result.final_model:
        print(f"Final model: {result.final_model} (agents.load_agent reads it, or {run_dir / 'q_network.pt'})")
    print(f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"Run directory: {run_dir}")
    if result.interrupted:
        print(f"Continue with: python scripts/train_ddqn.py --resume {run_dir}")
        return INTERRUPTED_EXIT_CODE
    return 0


def _settings_line(config: TrainConfig) -> str:
    shown = ("game", "total_steps", "buffer_size", "learning_starts", "num_envs", "device", "seed", "compile")
    return "Settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items() if k in shown)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


if __name__ == "__main__":
    warnings.formatwarning = _one_line_warning
    run_main(main)
