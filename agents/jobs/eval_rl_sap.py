"""SAP on trained Atari agents under attack: the SAP paper's RL table (relative % change of reward of the SAP
agent over the dense one, per game and lambda), with the attacker the paper used and with an adaptive one.

Columns: the dense agent attacked on itself; the SAP agent attacked through the dense network (transfer); the SAP
agent attacked on itself with the paper's Monte-Carlo gradient; and, against the dense agent under PGD, the SAP agent
under EOT-PGD (Athalye et al. 2018). Budgets (``--eps``, the paper's lambda) are pixel units of 0-255 frames. The
games are played by the evaluation engine (agents/evaluation, its sap-paper protocol with these settings;
agents/sap_evaluation.py builds the plays): FIRE is pressed at reset only, unless --fire-after-life-loss (this
job's behaviour before the engine).

    rlrobust eval-sap                                            # the most recent training run under runs/
    rlrobust eval-sap runs/Bowling-ddqn-seed0-20261122-120000 --episodes 8
    rlrobust eval-sap ../shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth \\
        --games Pong --eps 0 1 2 4 --samples 10 --mc-samples 10 --max-episode-steps 1000

(``python scripts/eval_rl_sap.py`` is the same job.) Every run writes a fresh folder,
<--runs>/eval_rl_sap/<agent>-<YYYYmmdd-HHMMSS>/ unless --out names one: results.csv, results.json, results.md (rows
name the agent and its sha256), scores.png, tensorboard/, run.json (the settings and the agent files' sha256) and
cells.json (every finished play). A folder holding another run's results is refused unless --resume (continue it:
finished plays are kept, the table comes out as if never stopped) or --overwrite. Ctrl-C or SIGTERM keeps every
finished play, writes the table of the finished rows, prints the command that continues the run and exits with
status 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agents.checkpoints import latest_run
from agents.evaluation import Agent, distinct_agents, prepare_agent, run_plays
from agents.jobs import common
from agents.sap_evaluation import (
    ATTACK_CHOICES,
    MAX_LAMBDA,
    EvalSettings,
    close_all,
    describe_play,
    game_evaluations,
    run_settings,
    stored_results,
    table_rows,
    table_tasks,
)
from agents.sap_report import write_report
from rlrobust import cli
from rlrobust.runs import INTERRUPTED_STATUS, CellStore, RunLock, resume_command, sigterm_as_interrupt
from rlrobust.sap import MAX_FRAC

JOB = "eval_rl_sap"
TRAIN_HINT = (
    "rlrobust train-ddqn --game Bowling --total-steps 6000 --learning-starts 1000 --buffer-size 6000 "
    "--exploration-steps 4000 --eval-every 6000 --eval-episodes 1 --max-episode-steps 4000"
)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (the shared ones from :mod:`rlrobust.cli`, old names as hidden aliases)."""
    defaults = EvalSettings()
    parser = cli.job_parser(__doc__)
    parser.add_argument(
        "agents",
        nargs="*",
        type=Path,
        metavar="AGENT",
        help="run directories, SB3/our zips or state dicts (DQN, NeurIPS DQN, PPO/A2C); none: the latest run",
    )
    parser.add_argument("--games", nargs="+", help="games to play (default: the game each agent's run recorded)")
    cli.add_budget_flag(
        parser, "pixel units of 0-255 frames", defaults.lambdas, high=MAX_LAMBDA, aliases=("--lambdas",)
    )
    common.add_episodes_flag(parser, defaults.episodes, "episodes per cell, in parallel")
    parser.add_argument(
        "--sap-frac",
        dest="sap_fracs",
        type=cli.real(0, MAX_FRAC, low_open=True),
        nargs="+",
        default=list(defaults.sap_fracs),
        help=f"draws per activation, in (0, {MAX_FRAC:g}]; 1.0 = SAP-100",
    )
    cli.add_pass_flags(parser, defaults.sap_passes, defaults.eot_samples, samples_aliases=("--sap-passes",))
    cli.add_count_flag(parser, "--mc-samples", defaults.mc_samples, "passes per gradient of the paper's MC attacker")
    parser.add_argument("--attack", choices=ATTACK_CHOICES, default=defaults.attack, help="the paper's columns' attack")
    cli.add_steps_flags(parser, pgd_steps=defaults.pgd_steps)
    cli.add_episode_cap_flag(parser, None, "cap on an episode's agent steps (default: ALE's)")
    common.add_fire_flag(
        parser, "press FIRE after every lost life too (this job's behaviour before the engine; default: at reset only)"
    )
    common.add_run_flags(parser, JOB, seed_help="the games' and draws' seed")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return cli.parse_checked(build_parser(), argv)


def eval_settings(args: argparse.Namespace) -> EvalSettings:
    """The evaluation's settings from the command line, checked."""
    return EvalSettings(
        lambdas=args.eps,
        episodes=args.episodes,
        sap_fracs=args.sap_fracs,
        sap_passes=args.samples,
        mc_samples=args.mc_samples,
        attack=args.attack,
        eot_samples=args.eot_samples,
        pgd_steps=args.pgd_steps,
        max_episode_steps=args.max_episode_steps,
        fire_after_life_loss=args.fire_after_life_loss,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    ).validate()


def agent_paths(args: argparse.Namespace) -> list[Path]:
    """The agents given, or the latest training run under --runs (saying so), or an explanation."""
    if args.agents:
        return args.agents
    run = latest_run(args.runs)
    if run is None:
        raise FileNotFoundError(
            f"no agent given and no training run with a model under {args.runs}/: train one first (about 3 "
            f"minutes on a CPU) or pass a checkpoint with its game\n{TRAIN_HINT}\nrlrobust eval-sap "
            "../shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth --games Pong"
        )
    print(f"No agent given: evaluating the most recent training run under {args.runs}/: {run}")
    return [run]


def main(argv: Sequence[str] | None = None) -> dict[str, Path] | int:
    """Evaluate; returns the output paths, or :data:`INTERRUPTED_STATUS` when stopped by Ctrl-C or SIGTERM."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    settings = eval_settings(args)
    agents = distinct_agents([prepare_agent(path, args.games, args.device) for path in agent_paths(args)])
    recorded = run_settings(agents, settings, torch_threads=args.threads)  # the key old runs recorded
    stem = agents[0].name + (f"+{len(agents) - 1}" if len(agents) > 1 else "")
    out = common.claim_run_folder(args, JOB, stem, recorded)
    cli.use_threads(args.threads)
    with RunLock(out):
        common.start_run_folder(out, args, JOB, recorded, {a.name: a.file for a in agents})
        store = CellStore(out, recorded)
        resume = resume_command("eval-sap", argv, out, first=[str(agent.path) for agent in agents])
        return evaluate_into(out, agents, settings, store, resume)


def evaluate_into(
    out: Path, agents: list[Agent], settings: EvalSettings, store: CellStore, resume: str
) -> dict[str, Path] | int:
    """Play every play (finished ones from ``store``) and write the table; on Ctrl-C or SIGTERM write the finished
    rows, say how to continue and return :data:`INTERRUPTED_STATUS`."""
    for agent in agents:
        print(f"Agent {agent.name} ({agent.file}, sha256 {agent.sha256[:12]}) on {', '.join(agent.games)}")
    print(f"Output folder: {out}" + (f" ({len(store)} finished plays kept from before)" if len(store) else ""))
    evaluations = game_evaluations(agents, settings)
    tasks = table_tasks(evaluations, settings)
    total = len({evaluation.cell_key(play) for evaluation, play in tasks})
    started = time.perf_counter()
    interrupted = False
    try:
        with sigterm_as_interrupt():
            results = run_plays(tasks, store, progress=settings.progress, describe=describe_play)
    except KeyboardInterrupt:
        interrupted = True
        results = stored_results(tasks, store)
    finally:
        close_all(evaluations)
    rows = table_rows(evaluations, settings, results)
    partial = f"interrupted after {len(results)} of {total} plays; resume with --resume" if interrupted else ""
    names = [f"{a.name} (sha256 {a.sha256[:12]})" for a in agents]
    seconds = time.perf_counter() - started
    paths = write_report(rows, settings, out, agents=names, seconds=seconds, partial=partial) if rows else {}
    if interrupted:
        common.say_interrupted(f"{len(results)} of {total} plays", out, paths.get("md"), resume)
        return INTERRUPTED_STATUS
    common.show_report(paths, out)
    return paths
