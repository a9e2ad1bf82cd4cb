"""Every attack of a published protocol, for any agent the project loads: how robust is it?

For each agent, game and budget: clean, random sign noise of the budget, FGSM, PGD on the cross-entropy, PGD on
the margin, PGD toward the worst action and strategically timed PGD (its attack rate in the table), EOT versions
for a stochastic agent, and the worst case; per cell the mean score with its standard error and 95 % interval, the
action-change rate and the time. Protocols: ``sa-dqn`` (default; eps 1/255, 3/255, 5/255 on [0, 1] frames, 50
games), ``nature`` (epsilon-greedy 0.05, 5-minute games) and ``sap-paper`` (lambda on 0-255, FGSM and the
iterative attack); see ``agents/evaluation/protocols.py``.

    rlrobust robustness-report runs/Pong-ddqn-seed0-20261122-120000
    rlrobust robustness-report ../shared/data/atari/rl-policies-attacks-defenses/pong_ppo_state_dict.pt@Pong \\
        --protocol sa-dqn --eps 1/255 3/255 --episodes 10
    torchrun --nproc_per_node=4 scripts/robustness_report.py AGENT@Pong AGENT2@Breakout   # cells over 4 processes

(``python scripts/robustness_report.py`` is the same job.) Agents: run directories, our or SB3 DQN/PPO/A2C zips,
NeurIPS/Nature DQN and PPO/A2C state dicts; ``PATH@GAME`` names the game of a file that does not record one (else
``--games``). Every run writes a fresh folder, <--runs>/robustness_report/<agent>-<protocol>-<YYYYmmdd-HHMMSS>/
unless --out names one: results.csv/.json/.md, scores.png, tensorboard/, run.json and the finished cells (keyed by
each agent file's sha256 and every setting). Ctrl-C or SIGTERM keeps every finished cell, writes the finished rows,
prints the command that continues, exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from agents.evaluation import (
    ATTACKS,
    PROTOCOLS,
    GameEvaluation,
    Play,
    ReportSpec,
    check_attacks,
    distinct_agents,
    get_protocol,
    prepare_agent,
    report_rows,
    split_agent_argument,
    write_report,
)
from agents.evaluation.outputs import budget_text
from agents.jobs import common
from rlrobust import cli
from rlrobust.distributed import Runtime, gather_objects, start_runtime, stop_runtime
from rlrobust.runs import CELLS_FILE, INTERRUPTED_STATUS, CellStore, RunLock, resume_command
from rlrobust.sap import MAX_FRAC

JOB = "robustness_report"


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (the shared ones from :mod:`rlrobust.cli`, old names as hidden aliases)."""
    parser = cli.job_parser(__doc__)
    parser.add_argument(
        "agents", nargs="+", metavar="AGENT", help="agent files or run directories; PATH@GAME: its game"
    )
    parser.add_argument("--games", nargs="+", help="games for agents without @GAME (default: the run's own game)")
    parser.add_argument("--protocol", default="sa-dqn", help=f"one of {', '.join(PROTOCOLS)}")
    cli.add_budget_flag(  # the protocol checks them against its own scale
        parser, "on the protocol's scale (default: the protocol's)", None, low=None, aliases=("--budgets",)
    )
    parser.add_argument("--attacks", nargs="+", help=f"from {', '.join(ATTACKS)} (default: the protocol's)")
    common.add_episodes_flag(parser, None, "games per cell (default: the protocol's)")
    parser.add_argument("--max-frames", type=cli.count(), help="emulator frames per game (default: the protocol's)")
    parser.add_argument("--sap-frac", type=cli.real(0, MAX_FRAC, low_open=True), help="insert SAP (1.0 = SAP-100)")
    common.add_fire_flag(parser, "press FIRE after every lost life (off in every protocol)")
    common.add_run_flags(parser, JOB)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return cli.parse_checked(build_parser(), argv)


def report_spec(args: argparse.Namespace) -> ReportSpec:
    """The protocol with the command line's changes, its attacks and SAP, all checked."""
    protocol = get_protocol(args.protocol).with_changes(
        budgets=args.eps,
        episodes=args.episodes,
        max_frames=args.max_frames,
        fire_after_life_loss=args.fire_after_life_loss or None,
    )
    attacks = check_attacks(args.attacks) if args.attacks else protocol.attacks
    return ReportSpec(protocol, attacks, args.sap_frac)


def recorded_settings(spec: ReportSpec, agents: list, args: argparse.Namespace) -> dict:
    """Every setting that shapes the results, the agents' sha256 included (what --resume must match)."""
    return {
        "protocol": spec.protocol.describe(),
        "attacks": list(spec.attacks),
        "sap_frac": spec.sap_frac,
        "agents": [{**agent.describe(), "games": agent.games, "stochastic": agent.stochastic} for agent in agents],
        "seed": args.seed,
    }


def claim(args: argparse.Namespace, agents: list, settings: dict, runtime: Runtime) -> Path:
    """The output folder, claimed by rank 0 before any game is played (others wait and share its answer)."""
    error, out = None, None
    if runtime.is_main:
        stem = f"{agents[0].name}{f'+{len(agents) - 1}' if len(agents) > 1 else ''}-{args.protocol}"
        try:
            out = common.claim_run_folder(args, JOB, stem, settings)
            ranks = tuple(p.name for p in out.glob("cells.rank*.json"))
            common.start_run_folder(out, args, JOB, settings, {a.name: a.file for a in agents}, extra_outputs=ranks)
        except (ValueError, OSError) as err:
            error = str(err)
    error, out = gather_objects((error, out), runtime)[0]
    if error:
        raise ValueError(error)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Path] | int | None:
    """Report; returns the output paths (rank 0), or :data:`INTERRUPTED_STATUS` when stopped."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    spec = report_spec(args)
    runtime = start_runtime(args.device, amp="off", channels_last="off")
    try:
        cli.use_threads(args.threads)
        agents = load_agents(args, runtime)
        settings = recorded_settings(spec, agents, args)
        out = claim(args, agents, settings, runtime)
        with RunLock(out) if runtime.is_main else contextlib.nullcontext():
            name = CELLS_FILE if not runtime.distributed else f"cells.rank{runtime.rank}.json"
            store = CellStore(out, settings, name=name)
            resume = resume_command("robustness-report", argv, out, first=args.agents)
            return report(args, spec, agents, store, runtime, out, resume)
    finally:
        stop_runtime(runtime)


def load_agents(args: argparse.Namespace, runtime: Runtime) -> list:
    """Every agent, checked against its games before anything is written or played."""
    agents = []
    for text in args.agents:
        path, games = split_agent_argument(text)
        agents.append(prepare_agent(path, games or args.games, runtime.device))
    return distinct_agents(agents)


def report(args, spec: ReportSpec, agents: list, store: CellStore, runtime: Runtime, out: Path, resume: str):
    """Play the clean games, then every attack (finished cells from ``store``); write the report on rank 0."""
    progress = not args.quiet and runtime.is_main
    evaluations = [
        GameEvaluation(agent, game, spec.protocol, seed=args.seed, device=runtime.device, progress=progress)
        for agent in agents
        for game in agent.games
    ]
    if runtime.is_main:
        for agent in agents:
            kind = "stochastic" if agent.stochastic else "deterministic"
            print(f"Agent {agent.name} ({agent.file}, sha256 {agent.sha256[:12]}, {kind}) on {', '.join(agent.games)}")
        budgets = ", ".join(budget_text(b, spec.protocol) for b in spec.protocol.budgets)
        print(f"Protocol {spec.protocol.name}: {spec.protocol.budget_name} {budgets}; output folder {out}")
    results, interrupted = common.play_report(evaluations, spec, store, runtime, progress=progress, describe=_describe)
    if not runtime.is_main:
        return INTERRUPTED_STATUS if interrupted else None
    return finish(args, spec, evaluations, results, out, resume, interrupted)


def _describe(evaluation: GameEvaluation, play: Play) -> str:
    """A play's name on its progress bar."""
    attack = play.attack
    variant = "-targeted" if attack.targeted else "-timed" if attack.timed_threshold is not None else ""
    loss = "" if attack.loss == "ce" else f"-{attack.loss}"
    return f"{evaluation.agent.name} {evaluation.game} {attack.kind}{loss}{variant} eps={attack.eps:g}"


def finish(args, spec, evaluations, results, out: Path, resume: str, interrupted: bool):
    """Write the finished rows; on an interrupted run say how to continue and return the status."""
    rows = report_rows(evaluations, spec, results)
    p = spec.protocol
    notes = (
        f"Protocol {p.name} ({p.source}): {p.episodes} games per cell (the first game of each of {p.episodes} "
        f"seeded environments, seed {args.seed}), epsilon-greedy {p.exploration:g}, up to {p.noop_max} no-ops, "
        f"FIRE at reset{' and after every lost life' if p.fire_after_life_loss else ' only'}, games capped at "
        f"{p.max_frames:,} frames (`capped`), unclipped scores; PGD {p.pgd_steps} steps of {p.pgd_step_frac:g} x "
        f"budget from a uniform random start; the timed attack calibrated to {p.timed_rate:.0%} of clean steps. "
        f"The cells took {sum(r['seconds'] for r in rows if r['attack'] != 'worst'):.0f} s on {args.device}."
    )
    if interrupted:
        notes = f"**PARTIAL TABLE: interrupted; continue with --resume.**\n\n{notes}"
    paths = write_report(rows, out, p, notes) if rows else {}
    if interrupted:
        common.say_interrupted(f"{len(results)} cells", out, paths.get("md"), resume)
        return INTERRUPTED_STATUS
    common.show_report(paths, out)
    return paths
