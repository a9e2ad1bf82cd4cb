"""Attack a trained Atari policy (PPO/A2C actor-critic, DQN, or a Stable-Baselines3 model) through the wrappers.

Plays ``--episodes`` episodes at once in ale-py's vector env (one per environment, the first episode of each),
clean and under every attack and budget, and reports the mean score, how often the attack changed the
policy's greedy action, and the perturbation size. Budgets are lambda on the 0-255 scale of the frames. The
attacks run in the wrappers (``wrappers.VectorAdversarialObservation``); the random-sign baseline moves every
pixel by the same lambda (``wrappers.VectorRandomNoiseObservation``).

    python scripts/attack_policy.py                        # the shared PPO Pong agent from ../shared/data
    python scripts/attack_policy.py --game Breakout        # the shared PPO Breakout agent
    python scripts/attack_policy.py --agent pong_a2c_state_dict.pt --attacks fgsm noise --lambdas 1 2
    python scripts/attack_policy.py --sb3 ppo_pong.zip --sb3-algo ppo   # any SB3 PPO/A2C/DQN Atari model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import load_agent, resolve_game
from agents.actor_critic import ActorCritic, load_actor_critic
from agents.env import action_meanings, fire_action, make_atari_eval_vec_env
from rlrobust.cli import run_main
from rlrobust.reporting import atomic_write_text, write_tables
from wrappers import VectorAdversarialObservation, VectorRandomNoiseObservation
from wrappers.evaluation import first_episodes, greedy_policy, summarise

SHARED_ATARI = Path(__file__).resolve().parents[2] / "shared/data/atari/rl-policies-attacks-defenses"
SHARED_AGENTS = {
    "Pong": SHARED_ATARI / "pong_ppo_state_dict.pt",
    "Breakout": SHARED_ATARI / "breakout_ppo_state_dict.pt",
}
ATTACK_CHOICES = ("noise", "fgsm", "iterative", "pgd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Pong")
    victim = parser.add_mutually_exclusive_group()
    victim.add_argument("--agent", type=Path, help="actor-critic or Q-network state dict (default: shared PPO agent)")
    victim.add_argument("--sb3", type=Path, help="a Stable-Baselines3 model .zip (see --sb3-algo)")
    victim.add_argument("--random-agent", action="store_true", help="a randomly initialised actor-critic (smoke runs)")
    parser.add_argument("--sb3-algo", choices=("ppo", "a2c", "dqn"), default="ppo")
    parser.add_argument("--attacks", nargs="+", choices=ATTACK_CHOICES, default=list(ATTACK_CHOICES))
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1, 2, 4], help="budgets, 0-255 scale")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per setting, played in parallel")
    parser.add_argument("--max-steps", type=int, default=3000, help="cap on an episode's agent steps")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--perturb", choices=("stack", "newest"), default="stack")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/attack_policy"))
    parser.add_argument("--fresh", action="store_true", help="ignore finished settings saved in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.max_steps < 1 or args.pgd_steps < 1:
        parser.error("--episodes, --max-steps and --pgd-steps must be >= 1")
    if any(lam <= 0 or lam > 255 for lam in args.lambdas):
        parser.error("--lambdas must lie in (0, 255] (pixel units; the clean run is always included)")
    args.game = resolve_game(args.game)
    return args


def load_victim(args: argparse.Namespace) -> tuple[object, str]:
    """The victim (a torch module, or an SB3 model) and a name for the report."""
    if args.sb3 is not None:
        import stable_baselines3

        algo = getattr(stable_baselines3, args.sb3_algo.upper())
        return algo.load(args.sb3, device=args.device), f"SB3 {args.sb3_algo.upper()} {args.sb3}"
    if args.random_agent:
        print("Attacking a RANDOMLY INITIALISED actor-critic (--random-agent): a smoke run, not a measurement.")
        n_actions = len(action_meanings(args.game))
        torch.manual_seed(args.seed)
        return ActorCritic(n_actions).eval().to(args.device), "random actor-critic"
    path = args.agent or SHARED_AGENTS.get(args.game)
    if path is None or not path.is_file():
        where = f" (looked for {path})" if path is not None else ""
        raise SystemExit(
            f"error: no trained agent for {args.game}{where}. Pass --agent STATE_DICT (an actor-critic or a "
            f"Q-network), --sb3 MODEL.zip, or --random-agent for a smoke run; the shared PPO agents for Pong and "
            f"Breakout live in {SHARED_ATARI}"
        )
    try:
        return load_actor_critic(path).to(args.device), f"actor-critic {path.name}"
    except ValueError:
        return load_agent(path).to(args.device), f"Q-network {path.name}"


def make_policy(victim: object, args: argparse.Namespace):
    """The agent acting greedily on what it sees (the perturbed frames), pressing FIRE after a lost life."""

    def act(observations: np.ndarray, infos: dict) -> np.ndarray:
        if hasattr(victim, "predict"):
            return np.asarray(victim.predict(observations, deterministic=True)[0])
        with torch.no_grad():
            frames = torch.as_tensor(observations, device=args.device, dtype=torch.float32)
            return victim(frames).argmax(1).cpu().numpy()

    return greedy_policy(act, fire_action(args.game))


def settings_grid(args: argparse.Namespace) -> list[tuple[str, float]]:
    return [("none", 0.0)] + [(attack, lam) for attack in args.attacks for lam in args.lambdas]


def wrapped_env(attack: str, lam: float, victim: object, args: argparse.Namespace) -> gym.vector.VectorEnv:
    env = make_atari_eval_vec_env(args.game, args.episodes)
    common = {"perturb": args.perturb, "seed": args.seed, "device": args.device}
    if attack == "none":
        return env
    if attack == "noise":
        return VectorRandomNoiseObservation(env, eps=lam, kind="sign", victim=victim, **common)
    options = {"steps": args.pgd_steps} if attack == "pgd" else None
    return VectorAdversarialObservation(env, victim, eps=lam, attack=attack, attack_options=options, **common)


def label(attack: str, args: argparse.Namespace) -> str:
    return {
        "none": "clean",
        "noise": "random sign noise",
        "fgsm": "FGSM",
        "iterative": "iterative (step 1)",
        "pgd": f"PGD-{args.pgd_steps}",
    }[attack]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    victim, victim_name = load_victim(args)
    policy = make_policy(victim, args)
    progress_file = args.out / "progress.json"
    settings = {k: str(v) for k, v in sorted(vars(args).items()) if k not in ("out", "fresh", "no_progress")}
    rows = _resume(progress_file, settings) if not args.fresh else []
    done = {(r["attack"], r["lambda"]) for r in rows}
    started = time.perf_counter()
    for attack, lam in settings_grid(args):
        if (label(attack, args), lam) in done:
            continue
        tic = time.perf_counter()
        env = wrapped_env(attack, lam, victim, args)
        records = first_episodes(
            env,
            policy,
            seed=args.seed,
            max_steps=args.max_steps,
            progress=not args.no_progress,
            description=f"{label(attack, args)} lambda={lam:g}",
        )
        env.close()
        rows.append(
            {"attack": label(attack, args), "lambda": lam, **summarise(records), "seconds": time.perf_counter() - tic}
        )
        atomic_write_text(progress_file, json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
        print(f"{rows[-1]['attack']:>20} lambda={lam:<4g} mean score {rows[-1]['mean_score']:.1f}")
    write_outputs(args, rows, victim_name, time.perf_counter() - started)


def _resume(progress_file: Path, settings: dict[str, str]) -> list[dict]:
    if not progress_file.is_file():
        return []
    saved = json.loads(progress_file.read_text())
    if saved.get("settings") != settings:
        print(f"{progress_file} holds results of other settings: starting over (they will be replaced)")
        return []
    print(f"resuming: {len(saved['rows'])} settings already done in {progress_file}")
    return saved["rows"]


def score_table(rows: list[dict], lambdas: list[float]) -> list[dict[str, str]]:
    """One line per attack, one column per budget; the clean score (no budget) fills every column of its line."""
    table: dict[str, dict[str, str]] = {}
    for r in rows:
        cell = f"{r['mean_score']:.2f} ({r['action_change_rate']:.0%})"
        line = table.setdefault(r["attack"], {"attack": r["attack"]})
        for lam in lambdas if r["attack"] == "clean" else [r["lambda"]]:
            line[f"lambda={lam:g}"] = cell
    return list(table.values())


def write_outputs(args: argparse.Namespace, rows: list[dict], victim_name: str, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = (
        f"Victim: {victim_name}; game {args.game} (ale-py vector env, DeepMind preprocessing, no sticky actions, "
        f"unclipped rewards); {args.episodes} episodes per setting (the first episode of each environment, seed "
        f"{args.seed}, capped at {args.max_steps} steps; `capped` counts episodes stopped by the cap); perturb "
        f"{args.perturb}; lambda on the 0-255 scale. action_change_rate: share of observations whose greedy action "
        f"the perturbation changed. {seconds:.0f} s on {args.device} (this run)."
    )
    paths = write_tables(
        rows,
        args.out,
        title=f"Attacking {victim_name} in {args.game}",
        notes=notes + " Cells: mean score (greedy-action change rate).",
        markdown_rows=score_table(rows, args.lambdas),
    )
    clean = next(r["mean_score"] for r in rows if r["attack"] == "clean")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    attacks = dict.fromkeys(r["attack"] for r in rows if r["attack"] != "clean")
    for i, attack in enumerate(attacks):
        points = sorted(
            (r["lambda"], r["mean_score"], r.get("action_change_rate", np.nan)) for r in rows if r["attack"] == attack
        )
        lams, scores, changes = zip(*points, strict=True)
        style = {"marker": "osD^v"[i % 5], "linestyle": ("-", "--", ":", "-.")[i % 4], "label": attack, "alpha": 0.8}
        axes[0].plot(lams, scores, **style)  # distinct markers and dashes keep overlapping lines visible
        axes[1].plot(lams, changes, **style)
    axes[0].axhline(clean, color="black", linestyle="--", label="clean")
    axes[0].set(xlabel="lambda (0-255 scale)", ylabel=f"mean score ({args.episodes} episodes)", title=args.game)
    axes[1].set(xlabel="lambda (0-255 scale)", ylabel="greedy-action change rate", ylim=(0, 1))
    for axis in axes:
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "scores.png", dpi=120)
    plt.close(fig)
    with SummaryWriter(args.out / "tensorboard") as writer:
        for r in rows:
            writer.add_scalar(f"score/{r['attack']}", r["mean_score"], r["lambda"])
            if "action_change_rate" in r:
                writer.add_scalar(f"action_change/{r['attack']}", r["action_change_rate"], r["lambda"])
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(f"Plot: {args.out / 'scores.png'}; TensorBoard: {args.out / 'tensorboard'}")


if __name__ == "__main__":
    run_main(main)
