"""stable-baselines3 callbacks of a training run: TensorBoard + progress bar, greedy evaluation, checkpoints, Ctrl-C
and SIGTERM, and a stop at the first non-finite loss or weight.

Every callback counts agent steps (``model.num_timesteps``), so with K environments an event due at step s
happens at the first vector step that reaches s. A model that went NaN is never saved nor evaluated: the
monitor checks at each log interval, the checkpoint and evaluation callbacks before they act.
"""

from __future__ import annotations

import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.checkpoints import save_checkpoint
from agents.rollout import play_episodes
from rlrobust.reporting import write_tables

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a cluster's pre-emption or ``kill``
SB3_STATS_WINDOW = 100  # games in SB3's rollout/ep_rew_mean (its stats_window_size default)


class StopRequest:
    """Set by the first Ctrl-C or SIGTERM (the run then checkpoints and stops); a second one aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None  # the name of the signal that asked, e.g. "SIGTERM"

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, frame: object = None) -> None:
        """The signal handler: note the request; from now on SIGINT or SIGTERM raise ``KeyboardInterrupt``."""
        self.requested = True
        self.signal = signal.Signals(signum).name
        for other in STOP_SIGNALS:
            signal.signal(other, _abort)
        tqdm.write(f"{self.signal}: saving a checkpoint, then stopping (Ctrl-C again aborts without saving)")

    @contextmanager
    def on_sigint(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM to this request while the block runs (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self.handle) for number in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _abort(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} while stopping")


def training_problem(model: object) -> str | None:
    """What went non-finite in ``model``'s training (see ``DoubleDQN.training_problem``); None when healthy or
    when the model cannot tell."""
    check = getattr(model, "training_problem", None)
    return check() if check is not None else None


class StopOnRequest(BaseCallback):
    """Ends ``learn`` cleanly at the next step once ``stop`` is requested."""

    def __init__(self, stop: StopRequest) -> None:
        super().__init__()
        self.stop = stop

    def _on_step(self) -> bool:
        return not self.stop.requested


class TrainingMonitor(BaseCallback):
    """TensorBoard scalars and a tqdm bar (steps, steps/s, ETA, recent mean score).

    Tags: ``episode/score`` and ``episode/length`` (raw, unclipped, per finished game), ``train/epsilon``,
    ``train/loss`` (Huber), ``train/mean_q`` (mean over minibatches of max_a Q(s, a)), ``time/steps_per_sec`` (over
    the last ``log_every`` steps). Beside them, with stable-baselines3's names and meanings so that a run's curves
    overlay SB3 and rl-zoo runs: ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean`` (mean raw score and length of
    the last :data:`SB3_STATS_WINDOW` finished games, as SB3's ``ep_info_buffer`` of ``Monitor`` episodes; absent
    until a game ends), ``rollout/exploration_rate`` (epsilon), ``time/fps`` (agent steps per second since this
    session's start, whole numbers) and ``train/n_updates`` (gradient updates so far).
    """

    def __init__(
        self,
        writer: SummaryWriter,
        total_steps: int,
        *,
        log_every: int = 1000,
        recent: int = 20,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.writer = writer
        self.total_steps = total_steps
        self.log_every = log_every
        self.scores: deque[float] = deque(maxlen=recent)
        self.games: deque[tuple[float, int]] = deque(maxlen=SB3_STATS_WINDOW)  # (score, length) for rollout/*
        self.progress = progress
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        start = self.model.num_timesteps
        self.bar = tqdm(
            total=self.total_steps,
            initial=start,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            mininterval=1.0,
            smoothing=0.05,
            disable=not self.progress,
        )
        self._next_log = (start // self.log_every + 1) * self.log_every
        self._clock = (time.perf_counter(), start)
        self._session_start = self._clock

    def _on_step(self) -> bool:
        step = self.model.num_timesteps
        finished = [info["episode"] for info in self.locals.get("infos", ()) if "episode" in info]
        for episode in finished:
            self.scores.append(episode["r"])
            self.games.append((episode["r"], episode["l"]))
            self.writer.add_scalar("episode/score", episode["r"], step)
            self.writer.add_scalar("episode/length", episode["l"], step)
        logged = step >= self._next_log
        healthy = True
        if logged:
            healthy = self._log_scalars(step)
            self._next_log = (step // self.log_every + 1) * self.log_every
        if finished or logged:
            self._refresh_postfix()
        self.bar.update(step - self.bar.n)
        return healthy  # training stops at the first NaN or inf, checked when logging

    def _log_scalars(self, step: int) -> bool:
        """Write the scalars; False (nothing written of the loss) when the losses or weights are not finite."""
        now = time.perf_counter()
        seconds, steps = now - self._clock[0], step - self._clock[1]
        self._clock = (now, step)
        if seconds > 0:
            self.writer.add_scalar("time/steps_per_sec", steps / seconds, step)
        self.writer.add_scalar("train/epsilon", self.model.exploration_rate, step)
        self._log_sb3_scalars(step, now)
        if training_problem(self.model) is not None:  # before the stats reset the device sums it reads
            return False
        stats = self.model.pop_train_stats()
        if stats is not None:
            self.writer.add_scalar("train/loss", stats["loss"], step)
            self.writer.add_scalar("train/mean_q", stats["mean_q"], step)
            for name in ("robust_reg", "robust_eps"):  # robust training only
                if name in stats:
                    self.writer.add_scalar(f"train/{name}", stats[name], step)
        return True

    def _log_sb3_scalars(self, step: int, now: float) -> None:
        """The tags stable-baselines3's off-policy algorithms write, with SB3's meanings (see the class doc)."""
        if self.games:
            self.writer.add_scalar("rollout/ep_rew_mean", statistics.fmean(r for r, _ in self.games), step)
            self.writer.add_scalar("rollout/ep_len_mean", statistics.fmean(n for _, n in self.games), step)
        self.writer.add_scalar("rollout/exploration_rate", self.model.exploration_rate, step)
        seconds, steps = now - self._session_start[0], step - self._session_start[1]
        if seconds > 0:
            self.writer.add_scalar("time/fps", int(steps / seconds), step)
        self.writer.add_scalar("train/n_updates", getattr(self.model, "_n_updates", 0), step)

    def _refresh_postfix(self) -> None:
        score = f"{statistics.fmean(self.scores):.1f}" if self.scores else "-"
        postfix = f"score(last {len(self.scores)})={score} eps={self.model.exploration_rate:.3f}"
        self.bar.set_postfix_str(postfix, refresh=False)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            self.bar.close()
        self.writer.flush()


class PeriodicEvaluation(BaseCallback):
    """Every ``every`` agent steps (and at the end), play ``episodes`` greedy games on a separate env.

    Logs ``eval/score`` (mean raw score), ``eval/score_std`` and ``eval/length`` to TensorBoard and rewrites
    ``evaluations.{csv,json,md}`` in the run directory. An evaluation cut short by Ctrl-C or SIGTERM is not
    recorded; a resumed run first plays the evaluation that was due at its checkpoint's step and is missing (run
    interrupted between the two), and forgets rows newer than its checkpoint (a resume from an older one).
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        writer: SummaryWriter,
        run_dir: Path,
        *,
        every: int,
        episodes: int,
        epsilon: float = 0.0,
        seed: int = 0,
        stop: StopRequest | None = None,
        history: list[dict] | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        self.make_env, self.writer, self.run_dir = make_env, writer, Path(run_dir)
        self.every, self.episodes, self.epsilon, self.seed = every, episodes, epsilon, seed
        self.stop = stop
        self.rows: list[dict] = list(history or [])
        self.env: gym.Env | None = None
        self.progress = progress

    @property
    def enabled(self) -> bool:
        return self.every > 0 and self.episodes > 0

    def _on_training_start(self) -> None:
        step = self.model.num_timesteps
        self.rows = [row for row in self.rows if row["step"] <= step]
        self._next = (step // self.every + 1) * self.every if self.enabled else None
        due = (step // self.every) * self.every if self.enabled else 0
        if due > 0 and not any(due <= row["step"] <= step for row in self.rows):
            tqdm.write(f"The evaluation due at step {due:,} is missing (interrupted run): playing it first.")
            self.evaluate()

    def _on_step(self) -> bool:
        if self._next is not None and self.model.num_timesteps >= self._next:
            self.evaluate()
            self._next = (self.model.num_timesteps // self.every + 1) * self.every
        return True

    def evaluate(self) -> dict | None:
        """Play the evaluation games now; returns the logged row (None if interrupted, or the model went NaN)."""
        if training_problem(self.model) is not None:
            return None
        if self.env is None:
            self.env = self.make_env()
        network = self.model.q_net.network
        self.model.policy.set_training_mode(False)
        step = self.model.num_timesteps
        results = play_episodes(
            self.env,
            network,
            self.episodes,
            epsilon=self.epsilon,
            seed=self.seed,
            should_stop=self.stop,
            progress=self.progress,
            desc=f"evaluating at step {step:,}",
        )
        if len(results) < self.episodes:  # cut short by a stop request: not an evaluation of `episodes` games
            return None
        scores = [score for score, _ in results]
        row = {
            "step": step,
            "episodes": len(results),
            "mean_score": statistics.fmean(scores),
            "std_score": statistics.pstdev(scores),
            "min_score": min(scores),
            "max_score": max(scores),
            "mean_length": statistics.fmean(length for _, length in results),
            "epsilon": self.epsilon,
        }
        self.writer.add_scalar("eval/score", row["mean_score"], step)
        self.writer.add_scalar("eval/score_std", row["std_score"], step)
        self.writer.add_scalar("eval/length", row["mean_length"], step)
        self.rows = [r for r in self.rows if r["step"] < step] + [row]
        write_tables(
            self.rows,
            self.run_dir,
            "evaluations",
            title="Greedy evaluation during training",
            notes=f"{self.episodes} games per evaluation, epsilon {self.epsilon}, raw (unclipped) game scores.",
        )
        tqdm.write(f"eval at step {step}: mean score {row['mean_score']:.1f} over {len(results)} games")
        return row

    def _on_training_end(self) -> None:
        stopped = self.stop is not None and self.stop.requested
        done_already = bool(self.rows) and self.rows[-1]["step"] == self.model.num_timesteps
        if self.enabled and not stopped and not done_already:
            self.evaluate()
        if self.env is not None:
            self.env.close()
            self.env = None


class PeriodicCheckpoint(BaseCallback):
    """Every ``every`` agent steps, an atomic checkpoint in ``run_dir/checkpoints`` (the newest ``keep`` kept), once
    the weights and losses are checked finite."""

    def __init__(self, run_dir: Path, *, every: int, keep: int = 2) -> None:
        super().__init__()
        self.run_dir, self.every, self.keep = Path(run_dir), every, keep
        self.last: Path | None = None

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.every + 1) * self.every if self.every > 0 else None

    def _on_step(self) -> bool:
        if self._next is not None and self.model.num_timesteps >= self._next:
            if training_problem(self.model) is not None:
                return False  # keep the last good checkpoint; the run stops and says why
            self.last = save_checkpoint(self.model, self.run_dir, self.keep)
            self._next = (self.model.num_timesteps // self.every + 1) * self.every
        return True
