"""What the RL evaluation jobs share beyond :mod:`rlrobust.cli`: their run folder (claimed, cleared on
``--overwrite``, recorded in run.json), playing a report's cells so that Ctrl-C or SIGTERM keeps the finished
ones, and saying where the results went or how to continue."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.evaluation import GameEvaluation, PlayResult, ReportSpec, attack_tasks, clean_tasks, run_plays
from rlrobust import cli
from rlrobust.distributed import Runtime
from rlrobust.runs import (
    CELLS_FILE,
    RUN_FILE,
    CellStore,
    claim_output_dir,
    fresh_run_dir,
    read_run_record,
    remove_outputs,
    sigterm_as_interrupt,
    write_run_record,
)

#: What an RL evaluation writes into its folder (``--overwrite`` removes these and only these).
OUTPUTS = ("results.csv", "results.json", "results.md", "scores.png", "tensorboard", CELLS_FILE, RUN_FILE)
MAX_EPISODES = 1024  # episodes run in parallel, one ALE emulator each: more only exhausts memory


def add_run_flags(parser: argparse.ArgumentParser, job: str, *, seed_help: str = "the games' seed") -> None:
    """The flags every RL evaluation takes: ``--runs``, ``--out``/``--resume``/``--overwrite``, ``--device``,
    ``--seed``, ``--threads`` and ``--quiet`` (with their old names as hidden aliases)."""
    cli.add_runs_flag(parser, f"root of the fresh output folders (<ROOT>/{job}/...)")
    cli.add_output_flags(parser, job, out_help=f"output folder (default: a fresh one under <--runs>/{job}/)")
    cli.add_runtime_flags(parser, seed_help=seed_help)


def add_fire_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """``--fire-after-life-loss``: press FIRE after every lost life too (every job's default: at reset only)."""
    parser.add_argument("--fire-after-life-loss", action="store_true", help=help)


def add_episodes_flag(parser: argparse.ArgumentParser, default: int | None, help: str) -> None:
    """``--episodes``: games per cell, played at once (one emulator each, so at most :data:`MAX_EPISODES`)."""
    parser.add_argument("--episodes", type=cli.count(1, MAX_EPISODES), default=default, metavar="N", help=help)


def claim_run_folder(args: argparse.Namespace, job: str, stem: str, settings: Mapping[str, Any]) -> Path:
    """``--out``, or a fresh ``<--runs>/<job>/<stem>-<time>``, claimed for a run with ``settings`` (refused if it
    holds another run's results and neither ``--resume`` nor ``--overwrite`` is given)."""
    out = args.out if args.out is not None else fresh_run_dir(args.runs / job, stem)
    return claim_output_dir(out, settings, resume=args.resume, overwrite=args.overwrite)


def start_run_folder(
    out: Path,
    args: argparse.Namespace,
    job: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Any],
    extra_outputs: Sequence[str] = (),
) -> None:
    """Clear a claimed folder's old results on ``--overwrite`` and record this run (once: a resume keeps it)."""
    if args.overwrite:
        remove_outputs(out, OUTPUTS + tuple(extra_outputs))
    if read_run_record(out) is None:
        write_run_record(out, job, settings, inputs)


def play_report(
    evaluations: Sequence[GameEvaluation],
    spec: ReportSpec,
    store: CellStore,
    runtime: Runtime | None = None,
    *,
    progress: bool = True,
    describe: Callable | None = None,
) -> tuple[dict[str, PlayResult], bool]:
    """Play the clean games, then every attack (finished cells from ``store``, each new one added at once), and
    close the games. Returns the results and whether Ctrl-C or SIGTERM stopped it early (then the results are the
    finished ones)."""
    try:
        with sigterm_as_interrupt():
            results = run_plays(clean_tasks(evaluations, spec), store, runtime, progress=progress)
            attacked = [task for task, _, _ in attack_tasks(evaluations, spec, results)]
            return results | run_plays(attacked, store, runtime, progress=progress, describe=describe), False
    except KeyboardInterrupt:
        return {key: PlayResult(**store.get(key)) for key in store.cells}, True
    finally:
        for evaluation in evaluations:
            evaluation.close()


def say_interrupted(finished: str, out: Path, table: Path | None, resume: str) -> None:
    """Tell the user what an interrupted run kept (``finished``: "2 of 5 plays", "3 cells") and how to go on."""
    kept = f"the finished rows in {table}" if table is not None else "no row finished yet"
    print(
        f"\nInterrupted: {finished} finished, kept in {out / CELLS_FILE}; {kept}. Continue with:\n  {resume}",
        file=sys.stderr,
    )


def show_report(paths: Mapping[str, Path], out: Path) -> None:
    """Print the Markdown table and where the tables, the plot and the TensorBoard scalars went."""
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(f"Plot: {out / 'scores.png'}; TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
