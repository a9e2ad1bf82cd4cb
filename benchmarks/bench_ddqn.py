"""Benchmark of our Double-DQN trainer against stable-baselines3's DQN, and of the replay memories, in one run.

Training speed: agent steps per second of our trainer (DoubleDQN, frame replay, ``agents.vec_env``) and of SB3's DQN
(``CnnPolicy``, its ``ReplayBuffer``, its Atari wrappers + ``VecFrameStack``) on the same game, machine and
settings: one update of batch 32 per 4 agent steps, the same RMSProp, epsilon schedule and torch threads. The runs
alternate (ours, SB3, ours, SB3, ...) and each is timed separately before and after ``learning_starts``.
A Double-DQN update does one more forward pass (the online network on s') than SB3's vanilla DQN update. Our
trainer runs twice, with its update compiled (``--compile on``, what ``auto`` picks for runs of 10,000 updates and
more) and eagerly; a third, eager, with SB3's max-target swapped in (timing only) compares the two pipelines at
equal work. The learning rate of steps counts from the end of the first update, whose time (the compile, where
there is one) is its own column.

Replay memory: allocated bytes per transition of our ``FrameReplayBuffer`` and of SB3's ``ReplayBuffer`` (with and
without ``optimize_memory_usage``), the resident memory each really uses after holding the same stream of real-size
frame stacks, and the time to sample a minibatch.

    python benchmarks/bench_ddqn.py                                  # CPU: Pong, 1 env each, 1 torch thread
    python benchmarks/bench_ddqn.py --device cuda --ours-envs 16 --ours-backend ale --steps 40000
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env as sb3_make_atari_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecFrameStack

from agents.double_dqn import DoubleDQN
from agents.replay import FrameReplayBuffer
from agents.training import TrainConfig, build_model, dqn_settings, make_training_env
from rlrobust import cli
from rlrobust.reporting import markdown_table, write_tables

ATARI_OBS = spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)


class PhaseTimer(BaseCallback):
    """Wall time of the steps before ``learning_starts`` and of those after the first update (which may compile)."""

    def __init__(self, learning_starts: int) -> None:
        super().__init__()
        self.learning_starts = learning_starts

    def _on_training_start(self) -> None:
        self.start = time.perf_counter()
        self.learn_at: tuple[float, int] | None = None
        self.first_update_at: tuple[float, int] | None = None

    def _on_step(self) -> bool:
        now, steps = time.perf_counter(), self.model.num_timesteps
        if self.learn_at is None and steps >= self.learning_starts:
            self.learn_at = (now, steps)
        if self.first_update_at is None and self.model._n_updates > 0:
            self.first_update_at = (now, steps)
        return True

    def _on_training_end(self) -> None:
        self.end = (time.perf_counter(), self.model.num_timesteps)

    def rates(self) -> tuple[float, float, float]:
        """(steps/s while only collecting, steps/s while also learning, seconds from ``learning_starts`` to the
        end of the first update: compile time, where the update is compiled)."""
        (t_learn, s_learn), (t_first, s_first), (t_end, s_end) = self.learn_at, self.first_update_at, self.end
        return s_learn / (t_learn - self.start), (s_end - s_first) / (t_end - t_first), t_first - t_learn


class MaxTargetForTiming(DoubleDQN):
    """Our trainer with SB3's vanilla target ``r + gamma * max_a Q_target(s', a)``: the same work per update as
    SB3's DQN, to time the two pipelines against each other. Not for training."""

    def td_target(self, next_obs, rewards, dones, discounts):
        with torch.no_grad():
            return rewards + (1 - dones) * discounts * self.q_net_target(next_obs).max(dim=1, keepdim=True).values


def bench_config(args: argparse.Namespace, num_envs: int, compile_setting: str = "off") -> TrainConfig:
    """The settings every trainer of the benchmark runs with (the paper's, with the benchmark's short run)."""
    return TrainConfig(
        game=args.game,
        total_steps=args.steps,
        learning_starts=args.learning_starts,
        buffer_size=args.buffer_size,
        exploration_steps=args.exploration_steps,
        num_envs=num_envs,
        vec_backend=args.ours_backend,
        device=args.device,
        seed=args.seed,
        compile=compile_setting,
    ).validate()


def our_model(args: argparse.Namespace, model_class: type[DoubleDQN] = DoubleDQN, compile_setting: str = "off") -> DQN:
    config = bench_config(args, args.ours_envs, compile_setting)
    return build_model(config, make_training_env(config), model_class=model_class)


def sb3_model(args: argparse.Namespace) -> DQN:
    """SB3's DQN with its CnnPolicy, replay and Atari wrappers, given our trainer's settings (``dqn_settings``)."""
    config = bench_config(args, args.sb3_envs)
    env = VecFrameStack(sb3_make_atari_env(f"{args.game}NoFrameskip-v4", n_envs=args.sb3_envs, seed=args.seed), 4)
    return DQN("CnnPolicy", env, exploration_fraction=args.exploration_steps / args.steps, **dqn_settings(config))


def time_training(build, args: argparse.Namespace) -> tuple[float, float, float]:
    model = build(args)
    model.set_logger(Logger(folder=None, output_formats=[]))  # no /tmp/SB3-<time> directory per run
    timer = PhaseTimer(args.learning_starts)
    try:
        model.learn(args.steps, callback=timer)
    finally:
        model.env.close()
    del model
    gc.collect()
    return timer.rates()


TRAINERS = {
    "ours: Double DQN, compiled update": lambda args: our_model(args, compile_setting="on"),
    "ours: Double DQN, eager": our_model,
    "ours, eager, SB3's max-target (timing only)": lambda args: our_model(args, MaxTargetForTiming),
    "SB3 DQN": sb3_model,
}


def training_rows(args: argparse.Namespace) -> list[dict]:
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in TRAINERS}
    for repeat in range(args.repeats):
        for name, build in TRAINERS.items():
            runs[name].append(time_training(build, args))
            collect, learn, first = runs[name][-1]
            print(f"  run {repeat + 1} {name}: {collect:.0f} steps/s collecting, {learn:.1f} steps/s learning")
    sb3 = [statistics.median(r[i] for r in runs["SB3 DQN"]) for i in (0, 1)]
    rows = []
    for name, rates in runs.items():
        collect, learn, first = (statistics.median(r[i] for r in rates) for i in (0, 1, 2))
        rows.append(
            {
                "trainer": name,
                "steps/s collecting": round(collect, 1),
                "steps/s learning": round(learn, 1),
                "learning vs SB3": round(learn / sb3[1], 2),
                "collecting vs SB3": round(collect / sb3[0], 2),
                "first update s (compile)": round(first, 1),
                "runs": len(rates),
            }
        )
    return rows


def update_rows(args: argparse.Namespace) -> list[dict]:
    """Milliseconds per gradient update (sample + target + loss + step) on a filled replay, trainers alternating."""
    models = {name: build(args) for name, build in TRAINERS.items()}
    for model in models.values():
        model.set_logger(Logger(folder=None, output_formats=[]))
        n = model.n_envs  # the same stream in every env's slot (--ours-envs N stores N transitions per add)
        for obs, nxt, done in frame_stream(args.learning_starts, 500, args.seed):
            actions, rewards = np.ones(n, dtype=np.int64), np.ones(n, dtype=np.float32)
            model.replay_buffer.add(
                np.repeat(obs, n, 0), np.repeat(nxt, n, 0), actions, rewards, np.repeat(done, n), [{}] * n
            )
        model.train(gradient_steps=1, batch_size=32)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.update_repeats):
        for name, model in models.items():
            started = time.perf_counter()
            model.train(gradient_steps=1, batch_size=32)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize(args.device)
            times[name].append((time.perf_counter() - started) * 1000)
    for model in models.values():
        model.env.close()
    sb3 = statistics.median(times["SB3 DQN"])
    return [
        {
            "trainer": name,
            "ms per update (median)": round(statistics.median(t), 2),
            "vs SB3": round(statistics.median(t) / sb3, 2),
            "updates": len(t),
        }
        for name, t in times.items()
    ]


def resident_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def frame_stream(steps: int, episode: int, seed: int):
    """Real-size frame stacks of a played game: random frames, a new episode every ``episode`` steps."""
    rng = np.random.default_rng(seed)
    stack = np.repeat(rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8), 4, axis=1)
    for step in range(steps):
        nxt = np.concatenate([stack[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8)], axis=1)
        done = (step + 1) % episode == 0
        yield stack, nxt, np.array([done], dtype=np.float32)
        stack = np.repeat(rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8), 4, axis=1) if done else nxt


def replay_rows(args: argparse.Namespace) -> list[dict]:
    n = args.replay_fill
    kinds = {
        "ours (FrameReplayBuffer)": lambda: FrameReplayBuffer(n, ATARI_OBS, spaces.Discrete(6), args.device),
        "SB3 ReplayBuffer": lambda: ReplayBuffer(n, ATARI_OBS, spaces.Discrete(6), args.device),
        "SB3 ReplayBuffer, optimize_memory_usage": lambda: ReplayBuffer(
            n, ATARI_OBS, spaces.Discrete(6), args.device, optimize_memory_usage=True, handle_timeout_termination=False
        ),
    }
    rows = []
    for name, make in kinds.items():
        gc.collect()
        before = resident_bytes()
        buffer = make()
        for obs, nxt, done in frame_stream(n, 1000, args.seed):
            buffer.add(obs, nxt, np.array([1]), np.array([1.0], dtype=np.float32), done, [{}])
        after = resident_bytes()
        allocated = _allocated_bytes(buffer)
        buffer.sample(32)
        started = time.perf_counter()
        for _ in range(200):
            buffer.sample(32)
        sample_ms = (time.perf_counter() - started) / 200 * 1000
        rows.append(
            {
                "replay": name,
                "allocated_bytes_per_transition": round(allocated / n, 1),
                "resident_bytes_per_transition": round((after - before) / n, 1) if before and after else None,
                "projected_GB_for_1M": round(allocated / n * 1e6 / 1e9, 2),
                "sample_32_ms": round(sample_ms, 3),
            }
        )
        del buffer
        gc.collect()
    return rows


def _allocated_bytes(buffer) -> int:
    if isinstance(buffer, FrameReplayBuffer):
        return buffer.nbytes
    arrays = (buffer.observations, buffer.actions, buffer.rewards, buffer.dones, buffer.timeouts)
    extra = 0 if buffer.optimize_memory_usage else buffer.next_observations.nbytes
    return sum(a.nbytes for a in arrays) + extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--steps", type=cli.count(), default=3000, help="agent steps per timed run")
    parser.add_argument("--learning-starts", type=cli.count(), default=1000)
    parser.add_argument("--buffer-size", type=cli.count(), default=10_000)
    parser.add_argument("--exploration-steps", type=cli.count(), default=2000)
    parser.add_argument("--repeats", type=cli.count(0), default=2, help="alternating runs of each trainer (0: none)")
    parser.add_argument("--ours-envs", type=cli.count(), default=1)
    parser.add_argument("--ours-backend", default="sync", choices=["sync", "async", "ale"])
    parser.add_argument("--sb3-envs", type=cli.count(), default=1)
    parser.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=cli.count(0), default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--update-repeats", type=cli.count(), default=40, help="timed updates of each trainer")
    parser.add_argument("--replay-fill", type=cli.count(), default=20_000, help="transitions held in each replay")
    parser.add_argument("--skip-training", action="store_true", help="only the replay measurements")
    parser.add_argument("--seed", type=cli.count(0), default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_ddqn"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}"
        + (f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else "")
    )
    print(f"Replay memories, {args.replay_fill} transitions each ...")
    memory = replay_rows(args)
    write_tables(memory, args.out, "replay", title="Replay memory per transition", notes=machine)
    rows, updates = [], []
    if not args.skip_training:
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "skip_training")}
        notes = f"{machine}; settings {settings}"
        print(f"Update cost, {args.update_repeats} updates each ...")
        updates = update_rows(args)
        write_tables(updates, args.out, "updates", title="Milliseconds per gradient update", notes=notes)
        if args.repeats > 0:
            print(f"Training speed on {args.game}, {args.steps} steps per run, {args.repeats} runs each ...")
            rows = training_rows(args)
            write_tables(rows, args.out, "training", title="Agent steps per second, ours vs SB3 DQN", notes=notes)
    for table in (memory, updates, rows):
        if table:
            print(markdown_table(table))
    timed = "" if args.skip_training else ", updates.*, training.*"
    print(f"Results: {args.out}/replay.{{csv,json,md}}{timed}")


if __name__ == "__main__":
    cli.run_main(main)  # a bad flag or file: one error line, status 2
