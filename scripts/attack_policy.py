"""Attack a trained Atari policy (PPO/A2C actor-critic, DQN, or a Stable-Baselines3 model) through the wrappers.

Plays ``--episodes`` episodes at once in ale-py's vector env (one per environment, the first episode of each),
clean and under every attack and budget, and reports the mean score, how often the attack changed the
policy's greedy action, and the perturbation size. Budgets are lambda on the 0-255 scale of the frames. The
attacks run in the wrappers (``wrappers.VectorAdversarialObservation``); the random-sign baseline moves every
pixel by the same lambda (``wrappers.VectorRandomNoiseObservation``).

    python scripts/attack_policy.py                        # the shared PPO Pong agent from ../shared/data
    python scripts/attack_policy.py --game Breakout        # the shared PPO Breakout agent
    python scripts/attack_policy.py --agent pong_a2c_state_dict.pt --attacks fgsm noise --lambdas 1 2
    python scripts/attack_policy.py --sb3 ppo_pong.zip --sb3-algo ppo   # an SB3 PPO/A2C/DQN CnnPolicy zip

Every run writes a fresh folder, runs/attack_policy/<agent>-<game>-<YYYYmmdd-HHMMSS>/ unless --out names one, with
run.json (every setting, the agent file's sha256) and cells.json (each finished setting, keyed by that sha256 and
the settings). A folder holding another run is refused unless --resume (same agent file and settings: finished
settings are reused) or --overwrite. Ctrl-C or SIGTERM keeps the finished settings, writes their table, prints the
command that continues and exits with status 130.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import load_agent, resolve_game
from agents.actor_critic import ActorCritic
from agents.env import action_meanings, fire_action, make_atari_eval_vec_env
from agents.networks import FRAME_SHAPE
from agents.sb3_policies import load_sb3_policy
from rlrobust.cli import count, device, real, run_main
from rlrobust.files import sha256_of
from rlrobust.reporting import write_tables
from rlrobust.runs import (
    CELLS_FILE,
    INTERRUPTED_STATUS,
    RUN_FILE,
    CellStore,
    RunLock,
    claim_output_dir,
    fresh_run_dir,
    read_run_record,
    remove_outputs,
    resume_command,
    sigterm_as_interrupt,
    write_run_record,
)
from wrappers import VectorAdversarialObservation, VectorRandomNoiseObservation
from wrappers.evaluation import first_episodes, greedy_policy, summarise

SHARED_ATARI = Path(__file__).resolve().parents[2] / "shared/data/atari/rl-policies-attacks-defenses"
SHARED_AGENTS = {
    "Pong": SHARED_ATARI / "pong_ppo_state_dict.pt",
    "Breakout": SHARED_ATARI / "breakout_ppo_state_dict.pt",
}
ATTACK_CHOICES = ("noise", "fgsm", "iterative", "pgd")
RUNS_ROOT = Path("runs/attack_policy")  # where each run's fresh folder goes when --out is not given
MAX_EPISODES = 1024  # episodes run in parallel, one ALE emulator each: more only exhausts memory
OUTPUTS = ("results.csv", "results.json", "results.md", "scores.png", "tensorboard", CELLS_FILE, RUN_FILE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Pong")
    victim = parser.add_mutually_exclusive_group()
    victim.add_argument("--agent", type=Path, help="actor-critic or Q-network state dict (default: shared PPO agent)")
    victim.add_argument("--sb3", type=Path, help="a Stable-Baselines3 model .zip (see --sb3-algo)")
    victim.add_argument("--random-agent", action="store_true", help="a randomly initialised actor-critic (smoke runs)")
    parser.add_argument("--sb3-algo", choices=("ppo", "a2c", "dqn"), default="ppo")
    parser.add_argument("--attacks", nargs="+", choices=ATTACK_CHOICES, default=list(ATTACK_CHOICES))
    parser.add_argument(
        "--lambdas",
        type=real(0, 255, low_open=True),
        nargs="+",
        default=[1, 2, 4],
        help="budgets in (0, 255], pixel units (the clean run is always included)",
    )
    parser.add_argument(
        "--episodes", type=count(1, MAX_EPISODES), default=4, help="episodes per setting, played in parallel"
    )
    parser.add_argument("--max-steps", type=count(), default=3000, help="cap on an episode's agent steps")
    parser.add_argument("--pgd-steps", type=count(), default=10)
    parser.add_argument("--perturb", choices=("stack", "newest"), default="stack")
    parser.add_argument("--seed", type=count(0, 2**32 - 1), default=0)
    parser.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help=f"output folder (default: a fresh one under {RUNS_ROOT}/)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --out (same agent and settings)")
    again.add_argument("--overwrite", action="store_true", help="replace the results of the run in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out: the folder of the run to continue")
    args.game = resolve_game(args.game)
    return args


def victim_file(args: argparse.Namespace) -> Path | None:
    """The file the victim is read from (None for --random-agent), checked before anything loads or is written:
    a missing file, a folder or a game without a shared agent is one clear line."""
    if args.random_agent:
        return None
    path = args.sb3 if args.sb3 is not None else args.agent or SHARED_AGENTS.get(args.game)
    if path is None:
        raise ValueError(
            f"no trained agent for {args.game}: pass --agent STATE_DICT (an actor-critic or a Q-network), --sb3 "
            f"MODEL.zip, or --random-agent for a smoke run (shared PPO agents exist for {', '.join(SHARED_AGENTS)})"
        )
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an agent file (a state dict or an SB3 .zip)")
    if not path.is_file():
        shared = (
            " (the shared PPO agent; pass --agent, --sb3 or --random-agent)"
            if path == SHARED_AGENTS.get(args.game)
            else ""
        )
        raise FileNotFoundError(f"agent file not found: {path}{shared}")
    return path


def check_actions(victim: object, game: str, device: str) -> None:
    """Refuse a victim whose number of actions is not the game's: its argmax would pick the wrong buttons."""
    if isinstance(victim, torch.nn.Module):
        with torch.no_grad():
            scored = victim(torch.zeros((1, *FRAME_SHAPE), device=device)).shape[1]
    else:
        scored = getattr(getattr(victim, "action_space", None), "n", None)
    n_actions = len(action_meanings(game))
    if scored is not None and int(scored) != n_actions:
        raise ValueError(f"the agent scores {scored} actions but {game} has {n_actions}: it is not an agent for {game}")


def load_victim(args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    """The victim (a torch module scoring actions on (N, 4, 84, 84) frames) and a name for the report.

    Files are read weights-only: SB3 zips are rebuilt from their tensors and readable JSON
    (:func:`agents.sb3_policies.load_sb3_policy`), never with SB3's ``load``, which unpickles, so a crafted file
    runs nothing and is refused in one line."""
    if args.sb3 is not None:
        network = load_sb3_policy(args.sb3, args.sb3_algo)
        return network.to(args.device), f"SB3 {args.sb3_algo.upper()} CnnPolicy {args.sb3.name}"
    if args.random_agent:
        print("Attacking a RANDOMLY INITIALISED actor-critic (--random-agent): a smoke run, not a measurement.")
        n_actions = len(action_meanings(args.game))
        torch.manual_seed(args.seed)
        return ActorCritic(n_actions).eval().to(args.device), "random actor-critic"
    path = args.agent or SHARED_AGENTS.get(args.game)
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"no trained agent for {args.game} (looked for {path}): pass --agent STATE_DICT (an actor-critic or a "
            "Q-network), --sb3 MODEL.zip, or --random-agent for a smoke run"
        )
    network = load_agent(path)
    kind = "actor-critic" if isinstance(network, ActorCritic) else "Q-network"
    return network.to(args.device), f"{kind} {path.name}"


def make_policy(victim: torch.nn.Module, args: argparse.Namespace):
    """The agent acting greedily on what it sees (the perturbed frames), pressing FIRE after a lost life."""

    def act(observations: np.ndarray, infos: dict) -> np.ndarray:
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


def job_settings(args: argparse.Namespace, file: Path | None, sha256: str | None) -> dict:
    """Every setting that shapes the results, the victim's sha256 included: what run.json records, what --resume
    must match and what the finished settings in cells.json are keyed by (swap the agent file: nothing is reused)."""
    kind = "sb3" if args.sb3 is not None else "random" if args.random_agent else "state_dict"
    victim = {"kind": kind, "file": file.name if file else None, "sha256": sha256}
    if kind == "sb3":
        victim["sb3_algo"] = args.sb3_algo
    names = ("game", "attacks", "lambdas", "episodes", "max_steps", "pgd_steps", "perturb", "seed", "device")
    return {"victim": victim, **{name: getattr(args, name) for name in names}}


def main(argv: list[str] | None = None) -> int | None:
    """Attack the victim at every setting; returns :data:`INTERRUPTED_STATUS` when stopped by Ctrl-C or SIGTERM."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    file = victim_file(args)
    victim, victim_name = load_victim(args)
    check_actions(victim, args.game, args.device)
    sha256 = sha256_of(file) if file is not None else None
    settings = job_settings(args, file, sha256)
    stem = f"{file.stem if file is not None else 'random-agent'}-{args.game}"
    out = args.out if args.out is not None else fresh_run_dir(RUNS_ROOT, stem)
    args.out = claim_output_dir(out, settings, resume=args.resume, overwrite=args.overwrite)
    with RunLock(args.out):
        if args.overwrite:
            remove_outputs(args.out, OUTPUTS)
        if read_run_record(args.out) is None:
            write_run_record(args.out, "attack_policy", settings, {"victim": file or "random actor-critic"})
        store = CellStore(args.out, settings)
        print(f"Victim: {victim_name} (sha256 {sha256[:12] if sha256 else 'n/a'}); output folder: {args.out}")
        started = time.perf_counter()
        rows, interrupted = play_grid(args, victim, store, {"agent": victim_name, "agent_sha256": sha256})
        partial = f"interrupted after {len(rows)} of {len(settings_grid(args))} settings" if interrupted else ""
        if rows:
            write_outputs(args, rows, victim_name, time.perf_counter() - started, partial=partial)
    if interrupted:
        print(
            f"\nInterrupted: {len(rows)} finished settings kept in {args.out / CELLS_FILE}. Continue with:\n  "
            + resume_command("scripts/attack_policy.py", argv, args.out),
            file=sys.stderr,
        )
        return INTERRUPTED_STATUS
    return None


def cell_key(attack: str, lam: float) -> str:
    """A setting's key in cells.json (the agent's sha256 and the other settings key the whole file)."""
    return f"{attack}|lambda={lam!r}"


def play_grid(args: argparse.Namespace, victim: object, store: CellStore, identity: dict) -> tuple[list[dict], bool]:
    """Every setting's row, in grid order (finished ones from ``store``, each new one added to it at once), and
    whether Ctrl-C or SIGTERM stopped the grid early."""
    grid = settings_grid(args)
    kept = sum(cell_key(attack, lam) in store for attack, lam in grid)
    if kept:
        print(f"resuming: {kept} of {len(grid)} settings already done in {store.path}")
    rows: list[dict] = []
    try:
        with sigterm_as_interrupt(), tqdm(total=len(grid), desc="settings", disable=args.no_progress) as bar:
            for attack, lam in grid:
                key = cell_key(attack, lam)
                if key not in store:
                    store.add(key, play_setting(attack, lam, victim, args, identity))
                    row = store.get(key)
                    tqdm.write(f"{row['attack']:>20} lambda={lam:<4g} mean score {row['mean_score']:.1f}")
                rows.append(store.get(key))
                bar.update()
    except KeyboardInterrupt:
        return rows, True
    return rows, False


def play_setting(attack: str, lam: float, victim: object, args: argparse.Namespace, identity: dict) -> dict:
    """One row: the victim's first episode in each environment under ``attack`` at budget ``lam``."""
    tic = time.perf_counter()
    env = wrapped_env(attack, lam, victim, args)
    try:
        records = first_episodes(
            env,
            make_policy(victim, args),  # a fresh policy: its lost-life memory must not carry over from other games
            seed=args.seed,
            max_steps=args.max_steps,
            progress=not args.no_progress,
            description=f"{label(attack, args)} lambda={lam:g}",
        )
    finally:
        env.close()
    return {**identity, "attack": label(attack, args), "lambda": lam, **summarise(records)} | {
        "seconds": time.perf_counter() - tic
    }


def score_table(rows: list[dict], lambdas: list[float]) -> list[dict[str, str]]:
    """One line per attack, one column per budget; the clean score (no budget) fills every column of its line."""
    table: dict[str, dict[str, str]] = {}
    for r in rows:
        cell = f"{r['mean_score']:.2f} ({r['action_change_rate']:.0%})"
        line = table.setdefault(r["attack"], {"attack": r["attack"]})
        for lam in lambdas if r["attack"] == "clean" else [r["lambda"]]:
            line[f"lambda={lam:g}"] = cell
    return list(table.values())


def write_outputs(
    args: argparse.Namespace, rows: list[dict], victim_name: str, seconds: float, partial: str = ""
) -> None:
    """The tables, the plot and TensorBoard scalars under ``args.out``; ``partial`` marks an interrupted run's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = (
        f"Victim: {victim_name} (sha256 {rows[0]['agent_sha256'] or 'n/a'}); game {args.game} (ale-py vector env, "
        f"DeepMind preprocessing, no sticky actions, "
        f"unclipped rewards); {args.episodes} episodes per setting (the first episode of each environment, seed "
        f"{args.seed}, capped at {args.max_steps} steps; `capped` counts episodes stopped by the cap); perturb "
        f"{args.perturb}; lambda on the 0-255 scale. action_change_rate: share of observations whose greedy action "
        f"the perturbation changed. {seconds:.0f} s on {args.device} (this run)."
    )
    warning = f"**PARTIAL TABLE: {partial}; continue with --resume.**\n\n" if partial else ""
    paths = write_tables(
        rows,
        args.out,
        title=f"Attacking {victim_name} in {args.game}",
        notes=warning + notes + " Cells: mean score (greedy-action change rate).",
        markdown_rows=score_table(rows, args.lambdas),
    )
    clean = next((r["mean_score"] for r in rows if r["attack"] == "clean"), None)
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
    if clean is not None:
        axes[0].axhline(clean, color="black", linestyle="--", label="clean")
    axes[0].set(xlabel="lambda (0-255 scale)", ylabel=f"mean score ({args.episodes} episodes)", title=args.game)
    axes[1].set(xlabel="lambda (0-255 scale)", ylabel="greedy-action change rate", ylim=(0, 1))
    for axis in axes:
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "scores.png", dpi=120)
    plt.close(fig)
    shutil.rmtree(args.out / "tensorboard", ignore_errors=True)  # a resumed run's scalars replace the partial ones
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
