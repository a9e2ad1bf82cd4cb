"""Cells per hour of the RL evaluation engine against the same cells played with one single wrapper per environment,
in one run.

A cell is one play of a report: ``--episodes`` first episodes of one agent in Pong, clean or under one attack at
``--budget`` grey levels (random sign noise, FGSM, PGD with the sa-dqn protocol's 10 steps of budget/10), each game
capped at ``--max-frames`` emulator frames. Each cell is played twice, alternately, so that the machine's load
weighs on both alike:

- engine: ``GameEvaluation.run`` on a ``Play``: all games in ale-py's vector env, one batched attack per step;
- loop: what a user would write without it: ``--episodes`` single Gymnasium envs (``make_atari_env``, the same
  preprocessing), each wrapped in one ``AdversarialObservation`` / ``RandomNoiseObservation`` and played to its end
  one after another by a greedy agent.

Both make their environments once, in the first cell (clean), and reuse them. Agent steps are the steps of the
counted episodes (the engine's vector env also steps games that already ended while others run: that is work it
does, but not counted as steps). Both do some bookkeeping beyond acting: the engine's agent also scores the clean
observation (action-change rate), the single wrappers score clean and perturbed observations for their ``info``.
The mean scores need not agree: the two play different emulator streams (ale-py's vector env seeds its games its
own way, the single envs draw their own no-op starts), so only their order of magnitude is comparable.

The agent is the shared Pong PPO agent (``../shared/data``) when present, else (or with ``--random-agent``) a
randomly initialised NeurIPS Q-network: its weights do not change the cost, only the episodes' lengths.

    python benchmarks/bench_report.py --episodes 8 --max-frames 2000 --threads 1
    python benchmarks/bench_report.py --random-agent --episodes 2 --max-frames 400 --json runs/bench_report.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents import NeurIPSQNetwork, make_atari_env
from agents.env import action_meanings
from agents.evaluation import Agent, Attack, GameEvaluation, Play, get_protocol, prepare_agent
from agents.evaluation.report import attack_for
from agents.networks import FRAME_SHAPE
from rlrobust import cli
from rlrobust.reporting import markdown_table
from wrappers import AdversarialObservation, RandomNoiseObservation

GAME = "Pong"
FRAME_SKIP = 4  # emulator frames per agent step, in both setups
SHARED_ATARI = cli.shared_data_dir() / "atari/rl-policies-attacks-defenses"
SHARED_PONG = SHARED_ATARI / "pong_ppo_state_dict.pt"
CELLS = {"clean": None, "noise": "noise", "FGSM": "fgsm", "PGD-10": "pgd"}  # column -> the report's attack name


@dataclass
class Played:
    """One cell as one setup played it."""

    seconds: float
    scores: list[float]
    lengths: list[int]
    capped: int

    @property
    def steps(self) -> int:
        return sum(self.lengths)


def benchmark_agent(random_agent: bool, device: str) -> Agent:
    """The shared Pong PPO agent, or a seeded random NeurIPS Q-network when asked or when the file is absent."""
    if not random_agent and SHARED_PONG.is_file():
        return prepare_agent(SHARED_PONG, [GAME], device)
    torch.manual_seed(0)
    network = NeurIPSQNetwork(len(action_meanings(GAME))).eval().to(device)
    return Agent("random NeurIPSQNetwork", Path("random"), network, [GAME], sha256="0" * 64)


def warm_up(network: nn.Module, device: str) -> None:
    """One emulator made and one forward and gradient of the agent, untimed, so that neither setup pays the
    process's first-use costs (ROM loading, torch's kernel set-up) in its first cell."""
    make_atari_env(GAME).close()
    frames = torch.zeros((2, *FRAME_SHAPE), device=device, requires_grad=True)
    torch.autograd.grad(network(frames).sum(), frames)


def single_wrapper(env: gym.Env, attack: Attack | None, network: nn.Module, seed: int, device: str) -> gym.Env:
    """``env`` in the one single-env wrapper that plays ``attack`` as the engine's vector wrapper does."""
    if attack is None:
        return env
    keywords = attack.wrapper_keywords()
    if attack.kind == "noise":
        return RandomNoiseObservation(env, seed=seed, device=device, **keywords)
    return AdversarialObservation(env, network, seed=seed, device=device, **keywords)


def play_loop(
    envs: list[gym.Env], attack: Attack | None, network: nn.Module, seed: int, device: str, start: float
) -> Played:
    """The plain loop: each env in its own wrapper, one greedy episode after another (timed from ``start``)."""
    torch.manual_seed(seed)
    scores, lengths, capped = [], [], 0
    for i, base in enumerate(envs):
        env = single_wrapper(base, attack, network, seed + i, device)
        observation, _ = env.reset(seed=seed + i)
        score, length, done, truncated = 0.0, 0, False, False
        while not done:
            with torch.no_grad():
                frames = torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=device)[None]
                action = int(network(frames).argmax(1).item())
            observation, reward, terminated, truncated, _ = env.step(action)
            score += float(reward)
            length += 1
            done = terminated or truncated
        scores.append(score)
        lengths.append(length)
        capped += bool(truncated and not terminated)
    return Played(time.perf_counter() - start, scores, lengths, capped)


def cell_row(name: str, engine: Played, loop: Played, cells: int = 1) -> dict[str, object]:
    """Seconds, agent steps/s and cells/h of both setups, the speed-up and the mean scores side by side."""
    return {
        "cell": name,
        "engine_s": round(engine.seconds, 2),
        "loop_s": round(loop.seconds, 2),
        "engine_steps_per_s": round(engine.steps / engine.seconds, 1),
        "loop_steps_per_s": round(loop.steps / loop.seconds, 1),
        "engine_cells_per_h": round(cells * 3600 / engine.seconds, 1),
        "loop_cells_per_h": round(cells * 3600 / loop.seconds, 1),
        "speedup": round(loop.seconds / engine.seconds, 2),
        "engine_mean_score": round(float(np.mean(engine.scores)), 2),
        "loop_mean_score": round(float(np.mean(loop.scores)), 2),
        "engine_steps": engine.steps,
        "loop_steps": loop.steps,
        "engine_capped": engine.capped,
        "loop_capped": loop.capped,
    }


def total(played: Sequence[Played]) -> Played:
    """All cells of one setup together."""
    return Played(
        sum(p.seconds for p in played),
        [s for p in played for s in p.scores],
        [n for p in played for n in p.lengths],
        sum(p.capped for p in played),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--episodes", type=cli.count(), default=8, help="games per cell (the vector env's width)")
    parser.add_argument(
        "--max-frames", type=cli.count(FRAME_SKIP), default=2000, help="emulator frames per game (a multiple of 4)"
    )
    parser.add_argument("--budget", type=cli.real(0, 255, low_open=True), default=3.0, help="grey levels (0-255)")
    parser.add_argument("--seed", type=cli.count(0), default=0)
    parser.add_argument("--threads", type=cli.count(), help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--random-agent", action="store_true", help="a random NeurIPS Q-network even if PPO exists")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.max_frames % FRAME_SKIP:
        raise ValueError(f"--max-frames must be a multiple of {FRAME_SKIP} (one agent step), got {args.max_frames}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    agent = benchmark_agent(args.random_agent, args.device)
    protocol = get_protocol("sa-dqn").with_changes(episodes=args.episodes, max_frames=args.max_frames)
    warm_up(agent.network, args.device)
    evaluation = GameEvaluation(agent, GAME, protocol, seed=args.seed, device=args.device, progress=False)
    envs: list[gym.Env] = []
    rows, engine_all, loop_all = [], [], []
    try:
        for name, attack_name in CELLS.items():
            attack = None if attack_name is None else attack_for(attack_name, args.budget, protocol, 1, None)
            result = evaluation.run(Play(attack=attack))
            engine = Played(result.seconds, result.scores, result.lengths, result.capped)
            start = time.perf_counter()
            if not envs:  # made once, in the first cell, as the engine makes its vector env
                settings = {"noop_max": protocol.noop_max, "max_episode_steps": args.max_frames // FRAME_SKIP}
                envs = [make_atari_env(GAME, **settings) for _ in range(args.episodes)]
            loop = play_loop(envs, attack, agent.network, args.seed, args.device, start)
            engine_all.append(engine)
            loop_all.append(loop)
            rows.append(cell_row(name, engine, loop))
            print(f"{name:>7} | engine {engine.seconds:7.1f} s | loop {loop.seconds:7.1f} s", flush=True)
    finally:
        evaluation.close()
        for env in envs:
            env.close()
    rows.append(cell_row("total", total(engine_all), total(loop_all), cells=len(CELLS)))
    note = (
        f"agent {agent.name}, {GAME}, {args.episodes} episodes per cell, games capped at {args.max_frames} frames, "
        f"budget {args.budget:g} grey levels, seed {args.seed}; device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"\n{note}\n")
    print(markdown_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"note": note, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    cli.run_main(main)  # a bad flag or file: one error line, status 2
