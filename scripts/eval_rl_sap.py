"""SAP on trained Atari agents under attack: the SAP paper's RL table (relative % change of reward of the SAP
agent over the dense one, per game and lambda), with the attacker the paper used and with an adaptive one.

Columns: the dense agent attacked on itself; the SAP agent attacked through the dense network (transfer); the SAP
agent attacked on itself with the paper's Monte-Carlo gradient; and, against the dense agent under PGD, the SAP agent
under EOT-PGD (Athalye et al. 2018). Budgets lambda are pixel units of 0-255 frames.

    python scripts/eval_rl_sap.py                                # the most recent training run under runs/
    python scripts/eval_rl_sap.py runs/Bowling-ddqn-seed0-20261122-120000 --episodes 8
    python scripts/eval_rl_sap.py ../shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth \\
        --games Pong --lambdas 0 1 2 4 --sap-passes 10 --mc-samples 10 --max-episode-steps 1000

Writes results.csv, results.json, results.md, scores.png and tensorboard/ under --out.
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
from agents.sap_evaluation import ATTACK_CHOICES, EvalSettings, evaluate, prepare_agent
from agents.sap_report import write_report

TRAIN_HINT = (
    "python scripts/train_ddqn.py --game Bowling --total-steps 6000 --learning-starts 1000 --buffer-size 6000 "
    "--exploration-steps 4000 --eval-every 6000 --eval-episodes 1 --max-episode-steps 4000"
)


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
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(defaults.lambdas), help="budgets, 0-255")
    parser.add_argument("--episodes", type=int, default=defaults.episodes, help="episodes per cell, in parallel")
    parser.add_argument(
        "--sap-frac", dest="sap_fracs", type=float, nargs="+", default=list(defaults.sap_fracs), help="1.0 = SAP-100"
    )
    parser.add_argument("--sap-passes", type=int, default=defaults.sap_passes, help="passes the SAP agent averages")
    parser.add_argument("--mc-samples", type=int, default=defaults.mc_samples, help="the MC attacker's passes")
    parser.add_argument("--attack", choices=ATTACK_CHOICES, default=defaults.attack, help="the paper's columns' attack")
    parser.add_argument("--eot-samples", type=int, default=defaults.eot_samples, help="EOT-PGD passes per gradient")
    parser.add_argument("--pgd-steps", type=int, default=defaults.pgd_steps, help="steps of PGD and EOT-PGD")
    parser.add_argument("--max-episode-steps", type=int, help="cap on an episode's agent steps (default: none)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--torch-threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    parser.add_argument("--logdir", type=Path, default=Path("runs"), help="where to look for the latest run")
    parser.add_argument("--out", type=Path, default=Path("runs/eval_rl_sap"))
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def agent_paths(args: argparse.Namespace) -> list[Path]:
    """The agents given, or the latest training run under --logdir (saying so), or an explanation."""
    if args.agents:
        return args.agents
    run = latest_run(args.logdir)
    if run is None:
        raise SystemExit(
            f"error: no agent given and no training run with a model under {args.logdir}/. Train one first, e.g. "
            f"(about 3 minutes on a CPU):\n  {TRAIN_HINT}\nor pass a checkpoint, e.g. the shared Pong DQN: "
            f"python scripts/eval_rl_sap.py ../shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth "
            f"--games Pong"
        )
    print(f"No agent given: evaluating the most recent training run under {args.logdir}/: {run}")
    return [run]


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    if args.torch_threads < 0:
        raise SystemExit(f"error: --torch-threads must be >= 0, got {args.torch_threads}")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    try:
        fields = {f.name for f in dataclasses.fields(EvalSettings)} - {"progress"}
        chosen = {k: v for k, v in vars(args).items() if k in fields}
        settings = EvalSettings(**chosen, progress=not args.no_progress).validate()
        agents = [prepare_agent(path, args.games, args.device) for path in agent_paths(args)]
    except (ValueError, FileNotFoundError) as err:  # bad settings, game or agent file: say so, no traceback
        raise SystemExit(f"error: {err}") from None
    for agent in agents:
        print(f"Agent {agent.name} ({agent.path}) on {', '.join(agent.games)}")
    started = time.perf_counter()
    rows = evaluate(agents, settings)
    seconds = time.perf_counter() - started
    paths = write_report(rows, settings, args.out, agents=[a.name for a in agents], seconds=seconds)
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(f"Plot: {paths['png']}; TensorBoard: tensorboard --logdir {paths['tensorboard']}")
    return paths


if __name__ == "__main__":
    main()
