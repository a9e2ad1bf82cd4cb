"""Steps per second of the observation wrappers on Pong, in one run: the bare env, FGSM, the iterative attack and
PGD-10, each as 8 single-env wrappers stepped in turn and as one vector wrapper over 8 environments.

Two vector envs are measured: Gymnasium's ``SyncVectorEnv`` over the same 8 preprocessed single envs (so the
ratio isolates batching the attack), and ale-py's ``AtariVectorEnv`` (C++ threads, its own preprocessing).
Actions are random (seeded), so every configuration does the same work whatever the victim does; the victim is
a Nature-DQN-sized network (its weights do not change the cost). Budget lambda = 2 on the 0-255 scale: FGSM is
one gradient, the iterative attack ceil(2 / 1) = 2, PGD-10 ten; each wrapper also runs one forward on the clean
and one on the perturbed frames for its ``info``. Medians of ``--repeats`` runs.

    python benchmarks/bench_wrappers.py                    # CPU or GPU, whichever torch finds
    python benchmarks/bench_wrappers.py --threads 1 --json runs/bench_wrappers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents import NatureQNetwork, make_atari_env
from rlrobust import cli
from rlrobust.reporting import markdown_table
from wrappers import AdversarialObservation, VectorAdversarialObservation

ENVS = 8
ATTACKS = {
    "bare env": None,
    "FGSM": {"attack": "fgsm"},
    "iterative (step 1)": {"attack": "iterative"},
    "PGD-10": {"attack": "pgd", "attack_options": {"steps": 10}},
}


def single_envs(victim, settings, device) -> Callable[[np.ndarray], None]:
    """8 single-env wrappers stepped one after another; returns a function taking one action per env."""
    envs = [make_atari_env("Pong") for _ in range(ENVS)]
    if settings is not None:
        envs = [
            AdversarialObservation(env, victim, eps=2, device=device, seed=i, **settings) for i, env in enumerate(envs)
        ]
    for i, env in enumerate(envs):
        env.reset(seed=i)

    def step(actions: np.ndarray) -> None:
        for env, action in zip(envs, actions, strict=True):
            _, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                env.reset()

    return step


def vector_env(kind: str, victim, settings, device) -> Callable[[np.ndarray], None]:
    if kind == "sync":
        env = gym.vector.SyncVectorEnv([lambda: make_atari_env("Pong") for _ in range(ENVS)])
    else:
        env = gym.make_vec(
            "ALE/Pong-v5", num_envs=ENVS, vectorization_mode="vector_entry_point", repeat_action_probability=0.0
        )
    if settings is not None:
        env = VectorAdversarialObservation(env, victim, eps=2, device=device, **settings)
    env.reset(seed=0)
    return lambda actions: env.step(actions)


def steps_per_second(step: Callable[[np.ndarray], None], steps: int, device: str, rng: np.random.Generator) -> float:
    """Environment steps (summed over the 8 envs) per second over ``steps`` rounds, after 3 warm-up rounds."""
    actions = rng.integers(0, 6, size=(steps + 3, ENVS))
    for a in actions[:3]:
        step(a)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for a in actions[3:]:
        step(a)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return steps * ENVS / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=cli.count(), default=48, help="timed rounds (each steps all 8 envs once)")
    parser.add_argument("--repeats", type=cli.count(), default=3, help="runs per configuration; the median is reported")
    parser.add_argument("--threads", type=cli.count(), help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        raise SystemExit("error: --steps and --repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    victim = NatureQNetwork(6).eval().to(args.device)
    rng = np.random.default_rng(0)
    setups = {
        f"{ENVS} single wrappers": lambda s: single_envs(victim, s, args.device),
        f"vector, SyncVectorEnv x{ENVS}": lambda s: vector_env("sync", victim, s, args.device),
        f"vector, ale-py AtariVectorEnv x{ENVS}": lambda s: vector_env("ale", victim, s, args.device),
    }
    rows = []
    for attack, settings in ATTACKS.items():
        speeds = {}
        for setup, build in setups.items():
            step = build(settings)
            runs = [steps_per_second(step, args.steps, args.device, rng) for _ in range(args.repeats)]
            speeds[setup] = statistics.median(runs)
            print(f"{attack:>20} | {setup:<36} {speeds[setup]:8.1f} steps/s", flush=True)
        base = speeds[f"{ENVS} single wrappers"]
        for setup, speed in speeds.items():
            rows.append(
                {"work": attack, "setup": setup, "steps_per_s": round(speed, 1), "x_singles": round(speed / base, 2)}
            )
    note = (
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{args.steps} rounds x {ENVS} envs, median of {args.repeats}"
    )
    print(f"\n{note}\n")
    print(markdown_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"note": note, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    cli.run_main(main)  # a bad flag or file: one error line, status 2
