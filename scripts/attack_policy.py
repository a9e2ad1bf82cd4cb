"""Attack a trained Atari policy (PPO/A2C actor-critic, DQN, or a Stable-Baselines3 model) at lambda budgets.

A thin view on the RL evaluation engine (``agents.evaluation``, as ``robustness_report.py``): the same episode
loop, attack columns (noise, fgsm, iterative, pgd, worst) and cell store. It plays ``--episodes`` seeded games at
once (the first of each vector environment, capped at ``--max-steps`` agent steps), clean and under every attack
and lambda (0-255 scale, the ``sap-paper`` protocol's; PGD: ``--pgd-steps`` steps of lambda / 10), and reports the
mean score with its 95 % interval, the greedy-action change rate and the perturbation size.

    python scripts/attack_policy.py                        # the shared PPO Pong agent from ../shared/data
    python scripts/attack_policy.py --game Breakout        # the shared PPO Breakout agent
    python scripts/attack_policy.py --agent pong_a2c_state_dict.pt --attacks fgsm noise --lambdas 1 2
    python scripts/attack_policy.py --sb3 ppo_pong.zip --sb3-algo ppo   # an SB3 PPO/A2C/DQN CnnPolicy zip

FIRE is pressed at reset only. This script used to press it after every lost life too; that hides the stalls an
attack can cause (an agent that never serves again), so it is now off, and ``--fire-after-life-loss`` brings it
back to compare with older results.

Every run writes a fresh folder, runs/attack_policy/<agent>-<game>-<YYYYmmdd-HHMMSS>/ unless --out names one, with
run.json (every setting, the agent file's sha256) and cells.json (each finished setting, keyed by that sha256 and
the settings). A folder holding another run is refused unless --resume (same agent file and settings: finished
settings are reused) or --overwrite. Ctrl-C or SIGTERM keeps the finished settings, writes their table, prints the
command that continues and exits with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import load_agent, resolve_game
from agents.actor_critic import ActorCritic
from agents.env import action_meanings
from agents.evaluation import (
    PROTOCOLS,
    Agent,
    GameEvaluation,
    Play,
    PlayResult,
    ReportSpec,
    attack_tasks,
    clean_tasks,
    prepare_agent,
    report_rows,
    run_plays,
    write_report,
)
from agents.evaluation.protocols import Protocol
from agents.loading import model_file
from agents.sb3_policies import load_sb3_policy
from rlrobust.cli import count, device, real, run_main
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

SHARED_ATARI = Path(__file__).resolve().parents[2] / "shared/data/atari/rl-policies-attacks-defenses"
SHARED_AGENTS = {game: SHARED_ATARI / f"{game.lower()}_ppo_state_dict.pt" for game in ("Pong", "Breakout")}
ATTACK_CHOICES = ("noise", "fgsm", "iterative", "pgd")
RUNS_ROOT = Path("runs/attack_policy")  # where each run's fresh folder goes when --out is not given
MAX_EPISODES = 1024  # episodes run in parallel, one ALE emulator each: more only exhausts memory
OUTPUTS = ("results.csv", "results.json", "results.md", "scores.png", "tensorboard", CELLS_FILE, RUN_FILE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Pong")
    victim = parser.add_mutually_exclusive_group()
    victim.add_argument("--agent", type=Path, help="a state dict, agent file or run folder (default: shared PPO)")
    victim.add_argument("--sb3", type=Path, help="a Stable-Baselines3 model .zip (see --sb3-algo)")
    victim.add_argument("--random-agent", action="store_true", help="a randomly initialised actor-critic (smoke runs)")
    parser.add_argument("--sb3-algo", choices=("ppo", "a2c", "dqn"), default="ppo")
    parser.add_argument("--attacks", nargs="+", choices=ATTACK_CHOICES, default=list(ATTACK_CHOICES))
    parser.add_argument(
        "--lambdas", type=real(0, 255, low_open=True), nargs="+", default=[1, 2, 4], help="budgets in (0, 255]"
    )
    parser.add_argument("--episodes", type=count(1, MAX_EPISODES), default=4, help="games per setting, in parallel")
    parser.add_argument("--max-steps", type=count(), default=3000, help="cap on a game's agent steps")
    parser.add_argument("--pgd-steps", type=count(), default=10)
    parser.add_argument("--perturb", choices=("stack", "newest"), default="stack")
    parser.add_argument("--fire-after-life-loss", action="store_true", help="press FIRE after every lost life too")
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
    """The file or run folder the victim is read from (None for --random-agent), checked before anything loads or
    is written: a missing file, a folder without a model or a game without a shared agent is one clear line."""
    if args.random_agent:
        return None
    path = args.sb3 if args.sb3 is not None else args.agent or SHARED_AGENTS.get(args.game)
    if path is None:
        raise ValueError(
            f"no trained agent for {args.game}: pass --agent STATE_DICT (an actor-critic or a Q-network), --sb3 "
            f"MODEL.zip, or --random-agent for a smoke run (shared PPO agents exist for {', '.join(SHARED_AGENTS)})"
        )
    if path.is_dir() and (args.sb3 is not None or not _holds_model(path)):
        raise ValueError(f"{path} is a folder, not an agent file (a state dict or an SB3 .zip) or a training run")
    if not path.exists():
        shared = " (the shared PPO agent; pass --agent, --sb3 or --random-agent)"
        raise FileNotFoundError(f"agent file not found: {path}{shared if path in SHARED_AGENTS.values() else ''}")
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
        budgets=tuple(sorted(set(args.lambdas))),
        attacks=tuple(dict.fromkeys(args.attacks)),
        episodes=args.episodes,
        max_frames=4 * args.max_steps,  # 4 emulator frames per agent step
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


def main(argv: list[str] | None = None) -> int | None:
    """Attack the victim at every setting; returns :data:`INTERRUPTED_STATUS` when stopped by Ctrl-C or SIGTERM."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    file = victim_file(args)
    agent, described = load_victim(args, file)
    protocol = attack_protocol(args)
    spec = ReportSpec(protocol, protocol.attacks, perturb=args.perturb)
    settings = job_settings(args, spec, agent)
    stem = f"{file.stem if file is not None else 'random-agent'}-{args.game}"
    out = claim_output_dir(
        args.out or fresh_run_dir(RUNS_ROOT, stem), settings, resume=args.resume, overwrite=args.overwrite
    )
    with RunLock(out):
        if args.overwrite:
            remove_outputs(out, OUTPUTS)
        if read_run_record(out) is None:
            write_run_record(out, "attack_policy", settings, {"victim": file or "random actor-critic"})
        store = CellStore(out, settings)
        print(f"Victim: {described} (sha256 {(agent.sha256 or 'n/a')[:12]}); output folder: {out}")
        total = 1 + len(spec.attacks) * len(protocol.budgets)
        if len(store):
            print(f"resuming: {len(store)} of {total} settings already done in {store.path}")
        progress = not args.no_progress
        evaluation = GameEvaluation(agent, args.game, protocol, seed=args.seed, device=args.device, progress=progress)
        results, interrupted = play_all(evaluation, spec, store, progress)
        rows = report_rows([evaluation], spec, results)
        partial = f"interrupted after {len(results)} of {total} settings" if interrupted else ""
        if rows:
            write_outputs(args, out, rows, spec, described, partial)
    if interrupted:
        print(
            f"\nInterrupted: {len(results)} finished settings kept in {out / CELLS_FILE}. Continue with:\n  "
            + resume_command("scripts/attack_policy.py", argv, out),
            file=sys.stderr,
        )
        return INTERRUPTED_STATUS
    return None


def play_all(
    evaluation: GameEvaluation, spec: ReportSpec, store: CellStore, progress: bool
) -> tuple[dict[str, PlayResult], bool]:
    """Every play's result (finished ones from ``store``, each new one added to it at once), and whether Ctrl-C or
    SIGTERM stopped the run early (then the results are the finished ones)."""
    try:
        with sigterm_as_interrupt():
            results = run_plays(clean_tasks([evaluation], spec), store, progress=progress)
            attacked = [task for task, _, _ in attack_tasks([evaluation], spec, results)]
            return results | run_plays(attacked, store, progress=progress, describe=_play_name), False
    except KeyboardInterrupt:
        return {key: PlayResult(**store.get(key)) for key in store.cells}, True
    finally:
        evaluation.close()


def _play_name(evaluation: GameEvaluation, play: Play) -> str:
    return f"{play.attack.kind} lambda={play.attack.eps:g}"


def write_outputs(
    args: argparse.Namespace, out: Path, rows: list[dict], spec: ReportSpec, described: str, partial: str
) -> None:
    """The tables, the plot and TensorBoard scalars under ``out`` (the report's writers); ``partial`` marks an
    interrupted run's."""
    p = spec.protocol
    notes = (
        f"Victim: {described} (sha256 {rows[0]['agent_sha256'] or 'n/a'}); game {args.game} (ale-py vector env, "
        f"DeepMind preprocessing, no sticky actions, unclipped rewards, up to {p.noop_max} no-ops, FIRE at reset"
        f"{' and after every lost life' if p.fire_after_life_loss else ' only'}); {p.episodes} games per setting "
        f"(the first game of each of {p.episodes} environments, seed {args.seed}, capped at {args.max_steps} agent "
        f"steps; `capped` counts the games stopped by the cap); perturb {spec.perturb}; lambda on the 0-255 scale; "
        f"PGD {p.pgd_steps} steps of lambda / 10 from a random start. action_change_rate: share of observations "
        f"whose greedy action the perturbation changed; mean_linf: the perturbation's mean L-inf size. The settings "
        f"took {sum(r['seconds'] for r in rows if r['attack'] != 'worst'):.0f} s on {args.device}."
    )
    warning = f"**PARTIAL TABLE: {partial}; continue with --resume.**\n\n" if partial else ""
    paths = write_report(rows, out, p, warning + notes, title=f"Attacking {described} in {args.game}")
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(f"Plot: {out / 'scores.png'}; TensorBoard: {out / 'tensorboard'}")


if __name__ == "__main__":
    run_main(main)
