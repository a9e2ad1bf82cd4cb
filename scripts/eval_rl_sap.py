"""SAP on trained Atari agents under attack: the SAP paper's RL table (relative % change of reward of the SAP
agent over the dense one, per game and lambda), with the attacker the paper used and with an adaptive one.

Columns: the dense agent attacked on itself; the SAP agent attacked through the dense network (transfer); the SAP
agent attacked on itself with the paper's Monte-Carlo gradient; and, against the dense agent under PGD, the SAP agent
under EOT-PGD (Athalye et al. 2018). Budgets lambda are pixel units of 0-255 frames. The games are played by the
evaluation engine (agents/evaluation, its sap-paper protocol with these settings; agents/sap_evaluation.py builds the
plays): FIRE is pressed at reset only, unless --fire-after-life-loss (this script's behaviour before the engine).

    python scripts/eval_rl_sap.py                                # the most recent training run under runs/
    python scripts/eval_rl_sap.py runs/Bowling-ddqn-seed0-20261122-120000 --episodes 8
    python scripts/eval_rl_sap.py ../shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth \\
        --games Pong --lambdas 0 1 2 4 --sap-passes 10 --mc-samples 10 --max-episode-steps 1000

Every run writes a fresh folder, runs/eval_rl_sap/<agent>-<YYYYmmdd-HHMMSS>/ unless --out names one: results.csv,
results.json, results.md (rows name the agent and its sha256), scores.png, tensorboard/, run.json (the settings and
the agent files' sha256) and cells.json (every finished play). A folder holding another run's results is refused
unless --resume (continue it: finished plays are kept, the table comes out as if never stopped) or --overwrite.
Ctrl-C or SIGTERM keeps every finished play, writes the table of the finished rows, prints the command that
continues the run and exits with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.checkpoints import latest_run
from agents.evaluation import Agent, distinct_agents, prepare_agent, run_plays
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
from rlrobust.sap import MAX_FRAC

TRAIN_HINT = (
    "python scripts/train_ddqn.py --game Bowling --total-steps 6000 --learning-starts 1000 --buffer-size 6000 "
    "--exploration-steps 4000 --eval-every 6000 --eval-episodes 1 --max-episode-steps 4000"
)
RUNS_ROOT = Path("runs/eval_rl_sap")  # where each run's fresh folder goes when --out is not given
MAX_EPISODES = 1024  # episodes run in parallel, one ALE emulator each: more only exhausts memory
OUTPUTS = ("results.csv", "results.json", "results.md", "scores.png", "tensorboard", CELLS_FILE, RUN_FILE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = EvalSettings()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "agents",
        nargs="*",
        type=Path,
        help="run directories, SB3/our zips or state dicts (DQN, NeurIPS DQN, PPO/A2C); none: the latest run",
    )
    parser.add_argument("--games", nargs="+", help="games to play (default: the game each agent's run recorded)")
    budget = real(0, MAX_LAMBDA)
    parser.add_argument("--lambdas", type=budget, nargs="+", default=list(defaults.lambdas), help="budgets, 0-255")
    parser.add_argument(
        "--episodes", type=count(1, MAX_EPISODES), default=defaults.episodes, help="episodes per cell, in parallel"
    )
    parser.add_argument(
        "--sap-frac",
        dest="sap_fracs",
        type=real(0, MAX_FRAC, low_open=True),
        nargs="+",
        default=list(defaults.sap_fracs),
        help=f"draws per activation, in (0, {MAX_FRAC:g}]; 1.0 = SAP-100",
    )
    parser.add_argument("--sap-passes", type=count(), default=defaults.sap_passes, help="passes the SAP agent averages")
    parser.add_argument("--mc-samples", type=count(), default=defaults.mc_samples, help="the MC attacker's passes")
    parser.add_argument("--attack", choices=ATTACK_CHOICES, default=defaults.attack, help="the paper's columns' attack")
    parser.add_argument("--eot-samples", type=count(), default=defaults.eot_samples, help="EOT-PGD passes per gradient")
    parser.add_argument("--pgd-steps", type=count(), default=defaults.pgd_steps, help="steps of PGD and EOT-PGD")
    parser.add_argument("--max-episode-steps", type=count(), help="cap on an episode's agent steps (None: ALE's)")
    parser.add_argument(
        "--fire-after-life-loss",
        action="store_true",
        help="press FIRE after every lost life too (this script's behaviour before the engine; default: at reset only)",
    )
    parser.add_argument("--seed", type=count(0, 2**32 - 1), default=defaults.seed, help="the games' and draws' seed")
    parser.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--torch-threads", type=count(0, 4096), default=0, help="CPU threads for torch (0 = torch's default)"
    )
    parser.add_argument("--logdir", type=Path, default=Path("runs"), help="where to look for the latest run")
    parser.add_argument("--out", type=Path, help=f"output folder (None: a fresh one under {RUNS_ROOT}/)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    again.add_argument("--overwrite", action="store_true", help="replace the results of the run in --out")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out: the folder of the run to continue")
    return args


def eval_settings(args: argparse.Namespace) -> EvalSettings:
    """The evaluation's settings from the command line, checked."""
    fields = {f.name for f in dataclasses.fields(EvalSettings)} - {"progress"}
    chosen = {k: v for k, v in vars(args).items() if k in fields}
    return EvalSettings(**chosen, progress=not args.no_progress).validate()


def agent_paths(args: argparse.Namespace) -> list[Path]:
    """The agents given, or the latest training run under --logdir (saying so), or an explanation."""
    if args.agents:
        return args.agents
    run = latest_run(args.logdir)
    if run is None:
        raise FileNotFoundError(
            f"no agent given and no training run with a model under {args.logdir}/: train one first (about 3 "
            f"minutes on a CPU) or pass a checkpoint with its game\n{TRAIN_HINT}\npython scripts/eval_rl_sap.py "
            "../shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth --games Pong"
        )
    print(f"No agent given: evaluating the most recent training run under {args.logdir}/: {run}")
    return [run]


def output_folder(args: argparse.Namespace, agents: list[Agent], settings: dict) -> Path:
    """--out, or a fresh folder named after the agents, claimed for this run (refused if it holds another run's
    results and neither --resume nor --overwrite is given)."""
    stem = agents[0].name + (f"+{len(agents) - 1}" if len(agents) > 1 else "")
    out = args.out if args.out is not None else fresh_run_dir(RUNS_ROOT, stem)
    return claim_output_dir(out, settings, resume=args.resume, overwrite=args.overwrite)


def resume_hint(argv: list[str], agents: list[Agent], out: Path) -> str:
    """The command that continues this run: the same agent files (in order: it is part of the settings) and flags."""
    return resume_command("scripts/eval_rl_sap.py", argv, out, first=[str(agent.path) for agent in agents])


def main(argv: list[str] | None = None) -> dict[str, Path] | int:
    """Evaluate; returns the output paths, or :data:`INTERRUPTED_STATUS` when stopped by Ctrl-C or SIGTERM."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    settings = eval_settings(args)
    agents = distinct_agents([prepare_agent(path, args.games, args.device) for path in agent_paths(args)])
    recorded = run_settings(agents, settings, torch_threads=args.torch_threads)
    out = output_folder(args, agents, recorded)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    with RunLock(out):
        if args.overwrite:
            remove_outputs(out, OUTPUTS)
        if read_run_record(out) is None:
            write_run_record(out, "eval_rl_sap", recorded, {a.name: a.file for a in agents})
        store = CellStore(out, recorded)
        return evaluate_into(out, agents, settings, store, resume_hint(argv, agents, out))


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
    done = len(results)
    partial = f"interrupted after {done} of {total} plays; resume with --resume" if interrupted else ""
    names = [f"{a.name} (sha256 {a.sha256[:12]})" for a in agents]
    seconds = time.perf_counter() - started
    paths = write_report(rows, settings, out, agents=names, seconds=seconds, partial=partial) if rows else {}
    if interrupted:
        kept = f"the finished rows in {paths['md']}" if rows else "no row finished yet"
        print(
            f"\nInterrupted: {done} of {total} plays finished, kept in {out / CELLS_FILE}; {kept}. Continue with:\n"
            f"  {resume}",
            file=sys.stderr,
        )
        return INTERRUPTED_STATUS
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(f"Plot: {paths['png']}; TensorBoard: tensorboard --logdir {paths['tensorboard']}")
    return paths


if __name__ == "__main__":
    run_main(main)
