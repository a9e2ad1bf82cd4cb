"""Attack a trained Atari policy at budgets lambda: a PPO/A2C actor-critic, a DQN or a Stable-Baselines3 model.

A thin view on the RL evaluation engine (``agents.evaluation``, as robustness-report): the same episode loop, attack
columns (noise, fgsm, iterative, pgd, worst) and cell store. It plays ``--episodes`` seeded games at once (the
first of each vector environment, capped at ``--max-episode-steps`` agent steps), clean and under every attack and
budget (``--eps``, lambda on the 0-255 scale, the ``sap-paper`` protocol's; PGD: ``--pgd-steps`` steps of
lambda / 10), and reports the mean score with its 95 % interval, the greedy-action change rate and the
perturbation size.

    rlrobust attack-policy                        # the shared PPO Pong agent from ../shared/data
    rlrobust attack-policy --game Breakout        # the shared PPO Breakout agent
    rlrobust attack-policy pong_a2c_state_dict.pt --attacks fgsm noise --eps 1 2
    rlrobust attack-policy --sb3 ppo_pong.zip --sb3-algo ppo   # an SB3 PPO/A2C/DQN CnnPolicy zip

(``python scripts/attack_policy.py`` is the same job.) FIRE is pressed at reset only. This job used to press it
after every lost life too; that hides the stalls an attack can cause (an agent that never serves again), so it is
now off, and ``--fire-after-life-loss`` brings it back to compare with older results.

Every run writes a fresh folder, <--runs>/attack_policy/<agent>-<game>-<YYYYmmdd-HHMMSS>/ unless --out names one,
with run.json (every setting, the agent file's sha256) and cells.json (each finished setting, keyed by that sha256
and the settings). A folder holding another run is refused unless --resume (same agent file and settings: finished
settings are reused) or --overwrite. Ctrl-C or SIGTERM keeps the finished settings, writes their table, prints the
command that continues and exits with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from agents import load_agent, resolve_game
from agents.actor_critic import ActorCritic
from agents.env import action_meanings
from agents.evaluation import PROTOCOLS, Agent, GameEvaluation, Play, ReportSpec, prepare_agent, report_rows
from agents.evaluation import write_report as write_tables
from agents.evaluation.protocols import Protocol
from agents.jobs import common
from agents.loading import model_file
from agents.sb3_policies import load_sb3_policy
from rlrobust import cli
from rlrobust.runs import INTERRUPTED_STATUS, CellStore, RunLock, resume_command

JOB = "attack_policy"
ATTACK_CHOICES = ("noise", "fgsm", "iterative", "pgd")


def shared_agents() -> dict[str, Path]:
    """The shared PPO agents (Pong, Breakout) in the shared data folder."""
    folder = cli.shared_data_dir() / "atari/rl-policies-attacks-defenses"
    return {game: folder / f"{game.lower()}_ppo_state_dict.pt" for game in ("Pong", "Breakout")}


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (the shared ones from :mod:`rlrobust.cli`, old names as hidden aliases)."""
    parser = cli.job_parser(__doc__)
    cli.add_agent_argument(parser, "a state dict, agent file or run folder (default: the game's shared PPO agent)")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--sb3", type=Path, help="a Stable-Baselines3 model .zip (see --sb3-algo)")
    parser.add_argument("--random-agent", action="store_true", help="a randomly initialised actor-critic (smoke runs)")
    parser.add_argument("--sb3-algo", choices=("ppo", "a2c", "dqn"), default="ppo")
    parser.add_argument("--attacks", nargs="+", choices=ATTACK_CHOICES, default=list(ATTACK_CHOICES))
    cli.add_budget_flag(parser, "0-255 scale", [1, 2, 4], high=255, low_open=True, aliases=("--lambdas",))
    common.add_episodes_flag(parser, 4, "games per setting, in parallel")
    cli.add_episode_cap_flag(parser, 3000)
    cli.add_steps_flags(parser, pgd_steps=10)
    parser.add_argument("--perturb", choices=("stack", "newest"), default="stack")
    common.add_fire_flag(parser, "press FIRE after every lost life too")
    common.add_run_flags(parser, JOB)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = cli.parse_checked(parser, argv)
    victims = [
        name
        for name, given in (("AGENT", args.agent), ("--sb3", args.sb3), ("--random-agent", args.random_agent))
        if given
    ]
    if len(victims) > 1:
        parser.error(f"{' and '.join(victims)} exclude each other: give one victim")
    args.game = resolve_game(args.game)
    return args


def victim_file(args: argparse.Namespace) -> Path | None:
    """The file or run folder the victim is read from (None for --random-agent), checked before anything loads or
    is written: a missing file, a folder without a model or a game without a shared agent is one clear line."""
    if args.random_agent:
        return None
    shared = shared_agents()
    path = args.sb3 if args.sb3 is not None else args.agent or shared.get(args.game)
    if path is None:
        raise ValueError(
            f"no trained agent for {args.game}: pass AGENT (a state dict of an actor-critic or a Q-network), --sb3 "
            f"MODEL.zip, or --random-agent for a smoke run (shared PPO agents exist for {', '.join(shared)})"
        )
    if path.is_dir() and (args.sb3 is not None or not _holds_model(path)):
        raise ValueError(f"{path} is a folder, not an agent file (a state dict or an SB3 .zip) or a training run")
    if not path.exists():
        hint = " (the shared PPO agent; pass AGENT, --sb3 or --random-agent)" if path in shared.values() else ""
        raise FileNotFoundError(f"agent file not found: {path}{hint}")
    return path


def _holds_model(folder: Path) -> bool:
    """Whether ``folder`` is a training run holding a model (its final model or a checkpoint)."""
    try:
        return model_file(folder).is_file()
    except FileNotFoundError:
        return False


def load_victim(args: argparse.Namespace, file: Path | None) -> tuple[Agent, str]:
    """The victim checked against the game, and its description for the report.

    Files are read weights-only: SB3 zips are rebuilt from their tensors and readable JSON
    (:func:`agents.sb3_policies.load_sb3_policy`, which also checks ``--sb3-algo``), never with SB3's ``load``,
    which unpickles, so a crafted file runs nothing and is refused in one line."""
    if file is None:
        print("Attacking a RANDOMLY INITIALISED actor-critic (--random-agent): a smoke run, not a measurement.")
        torch.manual_seed(args.seed)
        network = ActorCritic(len(action_meanings(args.game))).eval().to(args.device)
        name = "random actor-critic"
        return Agent(name, Path("random-agent"), network, [args.game], sha256=None), name
    if args.sb3 is not None:
        agent = prepare_agent(file, [args.game], args.device, load=lambda f: load_sb3_policy(f, args.sb3_algo))
        return agent, f"SB3 {args.sb3_algo.upper()} CnnPolicy {file.name}"
    agent = prepare_agent(file, [args.game], args.device, load=load_agent)
    kind = "actor-critic" if isinstance(agent.network, ActorCritic) else "Q-network"
    return agent, f"{kind} {agent.file.name}"


def attack_protocol(args: argparse.Namespace) -> Protocol:
    """The ``sap-paper`` protocol (lambda on the 0-255 scale, greedy acting, up to 30 no-ops) with this command's
    games, cap and PGD: ``--pgd-steps`` steps of lambda / 10, the wrappers' default PGD step."""
    return dataclasses.replace(
        PROTOCOLS["sap-paper"],
        name="attack-policy",
        budgets=tuple(sorted(set(args.eps))),
        attacks=tuple(dict.fromkeys(args.attacks)),
        episodes=args.episodes,
        max_frames=4 * args.max_episode_steps,  # 4 emulator frames per agent step
        fire_after_life_loss=args.fire_after_life_loss,
        pgd_steps=args.pgd_steps,
        pgd_step_frac=0.1,
        passes=1,
        source="scripts/attack_policy.py: the sap-paper protocol's lambda scale, its own games, cap and PGD",
    )


def job_settings(args: argparse.Namespace, spec: ReportSpec, agent: Agent) -> dict:
    """Every setting that shapes the results, the victim's sha256 included: what run.json records, what --resume
    must match and what the finished settings in cells.json are keyed by (swap the agent file: nothing is reused)."""
    kind = "sb3" if args.sb3 is not None else "random" if args.random_agent else "state_dict"
    victim = {"kind": kind, "file": agent.file.name if agent.file else None, "sha256": agent.sha256}
    if kind == "sb3":
        victim["sb3_algo"] = args.sb3_algo
    return {
        "victim": victim,
        "game": args.game,
        "protocol": spec.protocol.describe(),
        "perturb": spec.perturb,
        "seed": args.seed,
        "device": args.device,
    }


def main(argv: Sequence[str] | None = None) -> int | None:
    """Attack the victim at every setting; returns :data:`INTERRUPTED_STATUS` when stopped by Ctrl-C or SIGTERM."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    file = victim_file(args)
    agent, described = load_victim(args, file)
    protocol = attack_protocol(args)
    spec = ReportSpec(protocol, protocol.attacks, perturb=args.perturb)
    settings = job_settings(args, spec, agent)
    out = common.claim_run_folder(
        args, JOB, f"{file.stem if file is not None else 'random-agent'}-{args.game}", settings
    )
    cli.use_threads(args.threads)
    with RunLock(out):
        common.start_run_folder(out, args, JOB, settings, {"victim": file or "random actor-critic"})
        store = CellStore(out, settings)
        print(f"Victim: {described} (sha256 {(agent.sha256 or 'n/a')[:12]}); output folder: {out}")
        finished, table = attack(args, agent, spec, store, described, out)
    if finished is not None:
        common.say_interrupted(finished, out, table, resume_command("attack-policy", argv, out))
        return INTERRUPTED_STATUS
    return None


def attack(
    args: argparse.Namespace, agent: Agent, spec: ReportSpec, store: CellStore, described: str, out: Path
) -> tuple[str | None, Path | None]:
    """Play every setting (finished ones from ``store``) and write the report of those finished. Returns what an
    interrupted run kept ("2 of 5 settings"; None when all finished) and the table written (None if none)."""
    total = 1 + len(spec.attacks) * len(spec.protocol.budgets)
    if len(store):
        print(f"resuming: {len(store)} of {total} settings already done in {store.path}")
    evaluation = GameEvaluation(
        agent, args.game, spec.protocol, seed=args.seed, device=args.device, progress=not args.quiet
    )
    results, interrupted = common.play_report([evaluation], spec, store, progress=not args.quiet, describe=_play_name)
    rows = report_rows([evaluation], spec, results)
    finished = f"{len(results)} of {total} settings"
    partial = f"interrupted after {finished}" if interrupted else ""
    table = write_outputs(args, out, rows, spec, described, partial)["md"] if rows else None
    return (finished if interrupted else None), table


def _play_name(evaluation: GameEvaluation, play: Play) -> str:
    return f"{play.attack.kind} lambda={play.attack.eps:g}"


def write_outputs(
    args: argparse.Namespace, out: Path, rows: list[dict], spec: ReportSpec, described: str, partial: str
) -> dict[str, Path]:
    """The tables, the plot and TensorBoard scalars under ``out`` (the report's writers; returns their paths);
    ``partial`` marks an interrupted run's."""
    p = spec.protocol
    notes = (
        f"Victim: {described} (sha256 {rows[0]['agent_sha256'] or 'n/a'}); game {args.game} (ale-py vector env, "
        f"DeepMind preprocessing, no sticky actions, unclipped rewards, up to {p.noop_max} no-ops, FIRE at reset"
        f"{' and after every lost life' if p.fire_after_life_loss else ' only'}); {p.episodes} games per setting "
        f"(the first game of each of {p.episodes} environments, seed {args.seed}, capped at "
        f"{args.max_episode_steps} agent steps; `capped` counts the games stopped by the cap); perturb "
        f"{spec.perturb}; lambda on the 0-255 scale; PGD {p.pgd_steps} steps of lambda / 10 from a random start. "
        f"action_change_rate: share of observations whose greedy action the perturbation changed; mean_linf: the "
        f"perturbation's mean L-inf size. The settings took "
        f"{sum(r['seconds'] for r in rows if r['attack'] != 'worst'):.0f} s on {args.device}."
    )
    warning = f"**PARTIAL TABLE: {partial}; continue with --resume.**\n\n" if partial else ""
    paths = write_tables(rows, out, p, warning + notes, title=f"Attacking {described} in {args.game}")
    if not partial:
        common.show_report(paths, out)
    return paths
