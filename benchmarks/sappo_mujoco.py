"""SA-PPO's state attacks on an SB3 PPO MuJoCo victim: clean, random, critic and MAD at SA-PPO's budget.

The protocol of SA-PPO (Zhang et al. 2020; its code, huanzhang12/SA_PPO, ``src/policy_gradients/agent.py``): the
agent sees observations normalised by the running statistics of its training, frozen at test time, and clipped
to +-10; the attacker perturbs the *normalised* observation within an L-inf ball of ``eps`` (Hopper 0.075,
Walker2d 0.05, HalfCheetah and Ant 0.15, the ``robust_ppo_eps`` of its configs). Its attacks, as run here:

- ``random``: uniform noise in the ball (theirs too).
- ``critic``: minimise the victim's own value network V(s') (PPO has no Q-function; SA-PPO's critic attack on PPO
  does exactly this): PGD, 10 sign steps of ``eps / 10``, from a uniform start in the ball (theirs starts within
  one step of the state).
- ``mad``: maximise KL(pi(.|s) || pi(.|s')) (for SB3's state-independent std, SA-PPO's objective up to a
  constant factor, so the sign steps are the same): PGD, 10 sign steps of ``eps / 10`` from a uniform start
  (theirs adds SGLD noise to each step).

The victim acts deterministically (the mean action, clipped to the action space, SB3's ``evaluate_policy``
default). Episode ``i`` of every attack starts from ``reset(seed=seed + i)``. Writes ``results.json`` (every
episode, settings, the sha256 of the model and its statistics, provenance) and ``results.md`` into ``--out``;
each finished attack is saved at once, and the same command resumes after Ctrl-C or SIGTERM.

    python benchmarks/train_mujoco_ppo.py --preset sb3 --steps 400000 --out runs/mujoco/hopper-ppo --keep-checkpoints
    python benchmarks/sappo_mujoco.py --preset sb3 --model runs/mujoco/hopper-ppo --out runs/mujoco/sappo-hopper
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_mujoco_ppo import PRESETS, build

from agents.evaluation.stats import summary
from agents.sb3_zip import read_sb3_zip
from rlrobust.files import atomic_write_json, atomic_write_text, sha256_of
from rlrobust.reporting import markdown_table
from rlrobust.runs import provenance, sigterm_as_interrupt
from wrappers import AdversarialObservation, RandomNoiseObservation

#: SA-PPO's budgets on normalised states (``robust_ppo_eps`` in its ``config_<env>_*.json``).
SAPPO_EPS = {"Hopper": 0.075, "Walker2d": 0.05, "HalfCheetah": 0.15, "Ant": 0.15, "Humanoid": 0.075}
ATTACKS = ("none", "random", "critic", "mad")


def normalised_env(env_id: str, stats: dict[str, Any], max_steps: int | None) -> gym.Env:
    """``env_id`` seen through the victim's frozen normalisation, ``clip((obs - mean) / sqrt(var + eps))``."""
    env = gym.make(env_id, max_episode_steps=max_steps)
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.sqrt(np.asarray(stats["var"], dtype=np.float64) + float(stats["epsilon"]))
    clip = float(stats["clip_obs"])
    if mean.shape != env.observation_space.shape or not (np.isfinite(std).all() and (std > 0).all()):
        raise SystemExit(f"error: the normalisation statistics do not fit {env_id} (shape {mean.shape}, or bad var)")
    space = gym.spaces.Box(-clip, clip, env.observation_space.shape, dtype=np.float32)

    def normalise(obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - mean) / std, -clip, clip).astype(np.float32)

    return gym.wrappers.TransformObservation(env, normalise, space)


def load_victim(folder: Path, env_id: str, preset: str = "zoo"):
    """The PPO model rebuilt as ``train_mujoco_ppo`` builds it, its weights read without unpickling."""
    model, _ = build(env_id, seed=0, preset=preset)
    model.policy.load_state_dict(read_sb3_zip(folder / "ppo.zip").policy)
    model.policy.set_training_mode(False)
    return model


def attacked_env(attack: str, env: gym.Env, model, eps: float, steps: int, seed: int) -> gym.Env:
    if attack == "none":
        return env
    if attack == "random":
        return RandomNoiseObservation(env, eps=eps, kind="uniform", victim=model, seed=seed)
    options = {"steps": steps, "step": eps / steps}
    return AdversarialObservation(env, model, eps=eps, attack="pgd", loss=attack, attack_options=options, seed=seed)


def play(env: gym.Env, model, episodes: int, seed: int, label: str) -> list[dict[str, float]]:
    """``episodes`` deterministic games; per game its return, length and mean action distance."""
    games = []
    for i in tqdm(range(episodes), desc=label, unit="game", leave=False):
        obs, _ = env.reset(seed=seed + i)
        total, length, done, summary = 0.0, 0, False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            summary = info.get("attack_episode", summary)
        games.append({"return": total, "length": length, "mean_action_distance": summary.get("mean_action_distance")})
    return games


def summarise(games: list[dict[str, float]]) -> dict[str, float]:
    """The RL evaluation's summary of the returns (mean, standard error, 95 % interval), with their spread."""
    returns = np.array([g["return"] for g in games])
    distances = [g["mean_action_distance"] for g in games if g["mean_action_distance"] is not None]
    return {
        **summary(returns),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "mean_length": float(np.mean([g["length"] for g in games])),
        "mean_action_distance": float(np.mean(distances)) if distances else None,
    }


def write_markdown(out: Path, record: dict[str, Any]) -> None:
    rows = []
    for attack in ATTACKS:
        cell = record["cells"].get(attack)
        if cell is None:
            continue
        s = cell["summary"]
        distance = "" if s["mean_action_distance"] is None else f"{s['mean_action_distance']:.3f}"
        rows.append(
            {
                "attack": attack,
                "return (mean ± std)": f"{s['mean']:.0f} ± {s['std']:.0f}",
                "worst game": f"{s['min']:.0f}",
                "mean length": f"{s['mean_length']:.0f}",
                "action distance": distance,
                "games": len(cell["games"]),
                "seconds": f"{cell['seconds']:.0f}",
            }
        )
    settings = record["settings"]
    text = (
        f"# SA-PPO attacks on {settings['env']} (eps {settings['eps']} on normalised observations)\n\n"
        f"Model {settings['model']} (sha256 {record['inputs']['ppo.zip'][:12]}), "
        f"{settings['steps']}-step PGD for critic and MAD.\n\n" + markdown_table(rows) + "\n"
    )
    atomic_write_text(out / "results.md", text)


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder, out = Path(args.model), Path(args.out)
    stats_path = folder / "obs_normalization.json"
    if not (folder / "ppo.zip").is_file() or not stats_path.is_file():
        raise SystemExit(f"error: {folder} must hold ppo.zip and obs_normalization.json (train_mujoco_ppo's output)")
    family = args.env.split("-")[0]
    eps = args.eps if args.eps is not None else SAPPO_EPS.get(family)
    if eps is None or not (math.isfinite(eps) and eps > 0):
        raise SystemExit(f"error: give a finite --eps > 0 (SA-PPO states budgets for {sorted(SAPPO_EPS)} only)")
    inputs = {"ppo.zip": sha256_of(folder / "ppo.zip"), "obs_normalization.json": sha256_of(stats_path)}
    settings = {
        "env": args.env,
        "model": str(folder),
        "eps": eps,
        "steps": args.steps,
        "episodes": args.episodes,
        "seed": args.seed,
        "max_steps": args.max_steps,
        "deterministic": True,
        "preset": args.preset,
    }
    record = _resume_or_start(out, settings, inputs)
    torch.set_num_threads(args.threads)
    model = load_victim(folder, args.env, args.preset)
    stats = json.loads(stats_path.read_text())
    with sigterm_as_interrupt():
        for attack in args.attacks:
            if attack in record["cells"]:
                continue
            env = attacked_env(
                attack, normalised_env(args.env, stats, args.max_steps), model, eps, args.steps, args.seed
            )
            started = time.time()
            games = play(env, model, args.episodes, args.seed, attack)
            record["cells"][attack] = {"games": games, "summary": summarise(games), "seconds": time.time() - started}
            atomic_write_json(out / "results.json", record)
            write_markdown(out, record)
            s = record["cells"][attack]["summary"]
            print(f"{attack:>7}: return {s['mean']:.0f} ± {s['std']:.0f} over {len(games)} games", flush=True)
    return record


def _resume_or_start(out: Path, settings: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    """The record in ``out`` if it was made with the same settings and files; a new one where there is none."""
    path = out / "results.json"
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("settings") != settings or record.get("inputs") != inputs:
            raise SystemExit(f"error: {path} holds results of other settings or another model; choose another --out")
        return record
    out.mkdir(parents=True, exist_ok=True)
    return {"job": "sappo_mujoco", "settings": settings, "inputs": inputs, "cells": {}, **provenance()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/mujoco/hopper-ppo", help="train_mujoco_ppo's output folder")
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--preset", choices=PRESETS, default="zoo", help="the --preset the model was trained with")
    parser.add_argument("--eps", type=float, default=None, help="default: SA-PPO's budget for the task")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps of the critic and MAD attacks")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on a game's length (default: the env's)")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/mujoco/sappo-hopper")
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.episodes <= 0 or (args.max_steps is not None and args.max_steps <= 0):
        parser.error("--steps, --episodes and --max-steps must be positive")
    try:
        run(args)
    except KeyboardInterrupt:
        print(f"interrupted: finished attacks are kept in {args.out}; the same command resumes")


if __name__ == "__main__":
    main()
