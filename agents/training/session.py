"""A training session of a Double DQN run: from a fresh model or a checkpoint to ``total_steps``, Ctrl-C or SIGTERM.

Reliability: a job holds a lock on its run directory; Ctrl-C and SIGTERM checkpoint and stop; the first NaN or
infinite loss or weight stops the run (:class:`TrainingDiverged`) without saving it; every session ends by writing
``summary.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from torch.utils.tensorboard import SummaryWriter

from agents.callbacks import PeriodicCheckpoint, PeriodicEvaluation, StopOnRequest, StopRequest, TrainingMonitor
from agents.checkpoints import (
    FINAL_MODEL,
    Q_NETWORK_FILE,
    latest_checkpoint,
    save_checkpoint,
    save_model,
    save_q_network,
)
from agents.double_dqn import DoubleDQN
from agents.training.build import build_model, load_initial_weights, make_eval_env, make_training_env
from agents.training.config import TrainConfig
from agents.training.records import RunResult, create_run, read_evaluations, write_summary
from agents.training.resume import prepare_resume, resumed_model
from rlrobust.runs import RunLock


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the run stopped without writing a final model."""


def start_run(config: TrainConfig, logdir: str | Path = "runs", *, progress: bool = True) -> RunResult:
    """Create a run directory for ``config`` and train from scratch."""
    return run(config, create_run(config, logdir), progress=progress)


def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, progress: bool = True) -> RunResult:
    """Continue a run from its newest checkpoint: step count, epsilon schedule, optimizer, TensorBoard curves."""
    config, checkpoint = prepare_resume(run_dir, overrides)
    return run(config, Path(run_dir), checkpoint=checkpoint, progress=progress)


def run(config: TrainConfig, run_dir: Path, *, checkpoint: Path | None = None, progress: bool = True) -> RunResult:
    """Train in ``run_dir`` until ``config.total_steps``, Ctrl-C or SIGTERM; always leaves a checkpoint, and a
    final model only when training ended. Holds a lock on ``run_dir`` (a second job there is refused); raises
    :class:`TrainingDiverged` at the first non-finite loss or weight, keeping the last good checkpoint."""
    run_dir = Path(run_dir)
    threads = torch.get_num_threads()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    try:
        with RunLock(run_dir):
            return _train(config, run_dir, checkpoint, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, run_dir: Path, checkpoint: Path | None, progress: bool) -> RunResult:
    """One session: build or restore the model, learn, save; then ``summary.json``, and the divergence if any."""
    started = time.perf_counter()
    stop = StopRequest()
    env = make_training_env(config)
    try:
        with stop.on_sigint():  # SIGINT and SIGTERM from here on: checkpoint, then stop
            model = build_model(config, env) if checkpoint is None else resumed_model(config, run_dir, checkpoint, env)
            if checkpoint is None and config.init_from:
                load_initial_weights(model, config.init_from)
            start_step = model.num_timesteps
            monitor, evaluation = _learn(
                model, config, run_dir, stop, resumed=checkpoint is not None, progress=progress
            )
            problem, saved, final = _save(model, config, run_dir, stop)
    finally:
        env.close()
    last_good = saved or latest_checkpoint(run_dir)
    result = RunResult(run_dir, model.num_timesteps, stop.requested, last_good, final, time.perf_counter() - started)
    write_summary(result, start_step, evaluation.rows, monitor.scores, problem)
    if problem is not None:
        raise TrainingDiverged(
            f"training diverged: {problem}. Nothing after it was saved and no final model was written; the last "
            f"good checkpoint is {last_good} (try a lower --lr or --max-grad-norm 10)"
        )
    return result


def _learn(
    model: DoubleDQN, config: TrainConfig, run_dir: Path, stop: StopRequest, *, resumed: bool, progress: bool
) -> tuple[TrainingMonitor, PeriodicEvaluation]:
    """``model.learn`` up to ``total_steps`` with our callbacks, logging to ``run_dir/tensorboard`` (a resumed run
    drops the events past its checkpoint, so that no curve doubles back)."""
    # Our logs go to TensorBoard; SB3's default logger would leave an empty /tmp/SB3-<time> directory per run.
    model.set_logger(Logger(folder=None, output_formats=[]))
    start_step = model.num_timesteps
    _announce(model, config, resumed, progress)
    writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if resumed else None)
    try:
        monitor, evaluation, checkpointing = _callbacks(config, run_dir, writer, stop, progress)
        if config.total_steps > start_step:
            callbacks = CallbackList([monitor, evaluation, checkpointing, StopOnRequest(stop)])
            model.learn(
                config.total_steps - start_step, callback=callbacks, reset_num_timesteps=not resumed, log_interval=None
            )
    finally:
        writer.close()
    return monitor, evaluation


def _save(
    model: DoubleDQN, config: TrainConfig, run_dir: Path, stop: StopRequest
) -> tuple[str | None, Path | None, Path | None]:
    """(what went non-finite or None, the checkpoint saved, the final model saved): a model with NaN or infinite
    weights is never saved; a stopped session leaves a checkpoint but no final model."""
    problem = model.training_problem()
    if problem is not None:
        return problem, None, None
    saved = save_checkpoint(model, run_dir, config.keep_checkpoints)
    if stop.requested:
        return None, saved, None
    final = save_model(model, run_dir / FINAL_MODEL)
    save_q_network(model, run_dir / Q_NETWORK_FILE)
    return None, saved, final


def _announce(model: DoubleDQN, config: TrainConfig, resumed: bool, progress: bool) -> None:
    """One line each for what makes a session look stuck: the first, compiling update and a replay refill."""
    if model.compile_update and progress:
        print("The update runs through torch.compile: the first one takes 5-30 s longer (--compile off: eager).")
    if resumed and config.learning_starts > 0 and model.num_timesteps < config.total_steps:
        print(
            f"The replay memory is not saved in checkpoints: refilling it with {config.learning_starts:,} agent "
            f"steps (epsilon {model.exploration_rate:.3f}) before learning resumes."
        )


def _callbacks(
    config: TrainConfig, run_dir: Path, writer: SummaryWriter, stop: StopRequest, progress: bool
) -> tuple[TrainingMonitor, PeriodicEvaluation, PeriodicCheckpoint]:
    """TensorBoard and progress bar, periodic greedy evaluation (continuing the run's earlier rows), checkpoints."""
    monitor = TrainingMonitor(writer, config.total_steps, log_every=config.log_every, progress=progress)
    evaluation = PeriodicEvaluation(
        lambda: make_eval_env(config),
        writer,
        run_dir,
        every=config.eval_every,
        episodes=config.eval_episodes,
        epsilon=config.eval_epsilon,
        seed=config.seed + 10_000,
        stop=stop,
        history=read_evaluations(run_dir),
        progress=progress,
    )
    checkpointing = PeriodicCheckpoint(run_dir, every=config.checkpoint_every, keep=config.keep_checkpoints)
    return monitor, evaluation, checkpointing
