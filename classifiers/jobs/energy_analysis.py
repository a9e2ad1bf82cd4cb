"""WEAT's energy lens: how attacks move a classifier's or an agent's energies, and how energies evolve over training.

    python scripts/energy_analysis.py --model $SHARED/cifar10_robust_models/alpha-beta-CROWN/resnet4b.pth \
        --model $SHARED/cifar10_models/akamaster_pytorch_resnet_cifar10/resnet20-12fca82f.th --images 500
    python scripts/energy_analysis.py --training-runs runs/pgd_at runs/trades   # curves from training logs

With ``--model`` (repeatable): histograms of ``E(x)`` and ``E(x, y)`` for natural images and their untargeted (PGD,
APGD-T) and targeted (PGD toward a random wrong class) adversarial versions, and a table of the mean shifts (the
paper: untargeted attacks lower ``E(x)``, targeted ones raise it). With ``--training-runs`` (run folders of
scripts/train_classifier.py): natural and adversarial energy against the epoch with the three phases marked, and the
runs' energy gaps side by side (TRADES against PGD-AT). Writes energy_shift.*, energy_<model>.png, energy_curves.*
and energy_curves.png, with run.json, under ``--out`` (default: a new runs/energy_analysis/<model>-<time>; a folder
holding another run is refused unless --resume, which reruns it with the same settings, or --overwrite). Every row of
energy_shift names its model file and sha256. ($SHARED: ../shared/data)

With agents (AGENT ..., a file or run folder; PATH@GAME names its game, else --game or the game its run recorded):
the same lens on an agent's scores f(s), Q-values or policy logits: E(s) = -logsumexp f(s) and E(s, a*) of the clean
greedy action, over --observations frames met in greedy play, clean, under sign noise of the budget and under
untargeted and targeted (toward the worst action) PGD of the SA-DQN protocol, --eps on [0, 1]-scaled frames
(default 1/255) applied in grey levels (agents.energy_lens). Agents and --model are not mixed in one run.

    python scripts/energy_analysis.py $SHARED/atari/rl-policies-attacks-defenses/pong_ppo_state_dict.pt@Pong \\
        --eps 1/255 3/255 --observations 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

from classifiers.experiments.energy_curves import curve_rows, plot_curves, read_run
from classifiers.experiments.energy_lens import KINDS, LensSettings, measure_energies, plot_histograms, summary_rows
from classifiers.experiments.figures import write_scalars
from classifiers.jobs import common
from rlrobust import cli
from rlrobust.reporting import write_tables

JOB = "energy_analysis"
CLASSIFIER_EPS, CLASSIFIER_PGD_STEPS = 8.0, 20  # --model: eps on --scale, PGD-20
#: Flags of one mode only: given in the other, they are refused (they would be ignored), and left out of its run.json.
CLASSIFIER_ONLY = ("kinds", "scale", "apgd_steps", "target_classes", "batch_size", "dataset", "data_dir", "split",
                   "images")  # fmt: skip
AGENT_ONLY = ("game", "observations")
AGENT_EPS, AGENT_PGD_STEPS = 1 / 255, 10  # agents: eps on [0, 1]-scaled frames; PGD-10 as the SA-DQN protocol


def build_parser() -> argparse.ArgumentParser:
    """This job's flags."""
    parser = cli.job_parser(__doc__)
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model file (repeatable)")
    parser.add_argument(
        "--training-runs", type=Path, nargs="+", default=[], metavar="RUN",
        help="run folders of train_classifier (their metrics.csv)",
    )  # fmt: skip
    cli.alias(parser, "--runs", "--training-runs")  # --runs is the shared flag of the folder runs are made in
    add_agent_flags(parser)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="inputs to compare (--model)")
    cli.add_budget_flag(
        parser, "L-inf; --model: one, on --scale, 8 by default; agents: on [0, 1]-scaled frames, 1/255 by default",
        None, high=255, low_open=True,
    )  # fmt: skip
    parser.add_argument(
        "--scale", type=cli.real(1, 255), default=255.0, choices=[1.0, 255.0], help="255: pixel units; 1: [0, 1]"
    )
    cli.add_count_flag(
        parser, "--pgd-steps", None, "iterations of PGD (default: 20 with --model; 10, SA-DQN's, with agents)",
        aliases=("--steps",),
    )  # fmt: skip
    cli.add_steps_flags(parser, apgd_steps=50)
    cli.add_count_flag(parser, "--target-classes", 3, "APGD-T's wrong classes tried in turn")
    cli.add_count_flag(parser, "--batch-size", 128, "images per batch")
    common.add_data_flags(parser)
    common.add_common_flags(parser, JOB)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, checked against each other."""
    parser = build_parser()
    args = cli.parse_checked(parser, argv)
    if not args.model and not args.training_runs and not args.agents:
        parser.error(
            "give --model (energies under attack), AGENT (an agent's energies under attack) and/or --training-runs "
            "(energy curves of training runs)"
        )
    if args.agents:
        check_agent_flags(parser, args)
        return args
    given = [name for name in AGENT_ONLY if getattr(args, name) != parser.get_default(name)]
    if given:
        parser.error(f"--{given[0]} applies to agents (AGENT), not to --model or --training-runs")
    eps = [CLASSIFIER_EPS] if args.eps is None else args.eps
    if len(eps) > 1:
        parser.error("--eps takes one budget with --model")
    args.eps, args.pgd_steps = eps[0], args.pgd_steps or CLASSIFIER_PGD_STEPS
    if args.eps > args.scale:
        parser.error(f"--eps must lie in (0, {args.scale:g}] (the --scale)")
    return args


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    """AGENT ... (hidden alias --agent, repeatable), --game and --observations."""
    parser.set_defaults(agents=[])  # the positional's own default would overwrite values given by --agent
    parser.add_argument(
        "agents", nargs="*", action="extend", default=argparse.SUPPRESS, metavar="AGENT",
        help="agent files or run folders (PATH@GAME: its game); not with --model",
    )  # fmt: skip
    cli.alias(parser, "--agent", "agents")
    parser.add_argument("--game", help="the game of agents without @GAME (default: the one their run recorded)")
    cli.add_count_flag(parser, "--observations", 200, "agents: frames met in greedy play, measured per agent")


def check_agent_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Agent mode: no --model, one or more --eps in (0, 1] (filled with 1/255), --pgd-steps (filled with the
    SA-DQN protocol's 10), a known --game."""
    from agents.env import resolve_game  # lazily: the classifier mode needs no Gym

    if args.model or args.training_runs:
        parser.error("AGENT is measured in a run of its own: not with --model or --training-runs")
    given = [name for name in CLASSIFIER_ONLY if getattr(args, name) != parser.get_default(name)]
    if given:
        parser.error(f"--{given[0].replace('_', '-')} applies to --model, not to agents")
    args.eps = [AGENT_EPS] if args.eps is None else args.eps
    wrong = [eps for eps in args.eps if eps > 1]
    if wrong:
        parser.error(f"--eps for agents lies in (0, 1] on [0, 1]-scaled frames; {wrong[0]:g} looks like grey levels "
                     f"(write {wrong[0]:g}/255)")  # fmt: skip
    args.eps = sorted(set(args.eps))
    args.pgd_steps = args.pgd_steps or AGENT_PGD_STEPS
    if args.game is not None:
        try:
            args.game = resolve_game(args.game)
        except ValueError as err:
            parser.error(f"--game: {err}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = common.setup(args)
    if args.agents:
        return main_agents(args, device)
    runs = [read_run(path) for path in args.training_runs]
    data, models = None, []
    if args.model:
        data = common.load_data(args).to(device)
        if "apgd-t" in args.kinds and args.target_classes > data.num_classes - 1:
            raise ValueError(f"--target-classes {args.target_classes} but {data.name} has only "
                             f"{data.num_classes - 1} wrong classes")  # fmt: skip
        models = [(path, common.load_model(path, data, device), common.model_id(path)) for path in args.model]
    ids = {f"model{i}_{k}": v for i, (_, _, facts) in enumerate(models) for k, v in facts.items()}
    extra = {"data": data.name, "image_count": len(data)} if data is not None else {}
    settings = common.run_settings(args, **ids, **extra)
    inputs = {f"model{i}": path for i, (path, _, _) in enumerate(models)}
    inputs.update({f"run{i}": path / "metrics.csv" for i, path in enumerate(args.training_runs)})
    stem = args.model[0].stem if args.model else "runs"
    with common.run_folder(args, JOB, stem, settings, inputs) as out:
        try:
            if models:
                analyse_models(args, out, data, models)
            if runs:
                rows = curve_rows(runs)
                paths = write_tables(rows, out, "energy_curves", title="Energies over adversarial training")
                plot_curves(runs, out / "energy_curves.png")
                print(paths["md"].read_text())
                print(f"Curves: {out / 'energy_curves.png'}")
        except KeyboardInterrupt:
            return common.interrupted(out)
    return 0


def analyse_models(args: argparse.Namespace, out: Path, data, models: list) -> None:
    """Energies of natural and attacked images under each model: table (rows naming the model), histograms."""
    settings = LensSettings(
        eps=args.eps / args.scale,
        steps=args.pgd_steps,
        apgd_steps=args.apgd_steps,
        target_classes=args.target_classes,
        batch_size=args.batch_size,
    )
    budget = f"{args.eps:g}/255" if args.scale == 255 else f"{args.eps:g}"
    rows = []
    for path, model, facts in models:
        energies = measure_energies(model, data, args.kinds, settings, seed=args.seed, progress=not args.quiet)
        rows += [{**r, **facts} for r in summary_rows(energies, path.name)]
        plot_histograms(energies, out / f"energy_{path.stem}.png", title=f"{path.name}, {len(data)} images")
    notes = (
        f"{len(data)} images of {data.name}; L-inf eps {budget}; PGD {args.pgd_steps} steps of eps/4 with a random "
        f"start; APGD-T {args.apgd_steps} steps over {args.target_classes} target classes; pgd-targeted descends "
        f"cross-entropy toward a random wrong class. E(x) = -logsumexp f(x); E(x,y) with the true label. Shifts are "
        f"against the natural images; 'share E(x) raised' counts images whose E(x) went up. Seed {args.seed}."
        + "".join(f" Note: {n}." for n in data.notes)
    )
    paths = write_tables(rows, out, "energy_shift", title="Energies of natural and adversarial inputs", notes=notes)
    write_scalars(out, rows, lambda r: f"energy/{r['model']}", "E(x) mean", lambda r: KINDS.index(r["input"]))
    print(paths["md"].read_text())
    print(f"Histograms: {out}/energy_*.png")


def main_agents(args: argparse.Namespace, device) -> int:
    """The lens on agents: load and check each (a stochastic one is refused), then measure, in one run folder."""
    from agents.evaluation import distinct_agents, prepare_agent, split_agent_argument

    agents = []
    for text in args.agents:
        path, games = split_agent_argument(str(text))
        agent = prepare_agent(path, games or ([args.game] if args.game else None), device)
        if agent.stochastic:
            raise ValueError(f"{path}: two passes on the same observation differ (a stochastic agent); energies of "
                             "a random function are not defined here")  # fmt: skip
        if len(agent.games) != 1:
            raise ValueError(f"{path}: give one game for it, got {agent.games}")
        agents.append(agent)
    agents = distinct_agents(agents)
    ids = {f"agent{i}": {**a.describe(), "game": a.games[0]} for i, a in enumerate(agents)}
    settings = {k: v for k, v in common.run_settings(args, **ids).items() if k not in CLASSIFIER_ONLY}
    inputs = {f"agent{i}": a.file for i, a in enumerate(agents)}
    stem = agents[0].name + (f"+{len(agents) - 1}" if len(agents) > 1 else "")
    with common.run_folder(args, JOB, stem, settings, inputs) as out:
        try:
            analyse_agents(args, out, agents)
        except KeyboardInterrupt:
            return common.interrupted(out)
    return 0


def analyse_agents(args: argparse.Namespace, out: Path, agents: list) -> None:
    """Per agent: observations of its greedy play, their energies clean and attacked at each --eps; one table
    (rows naming the agent file and sha256), histograms per agent, TensorBoard scalars."""
    from agents.energy_lens import KINDS as AGENT_KINDS
    from agents.energy_lens import PROTOCOL, collect_observations, measure_agent_energies, plot_histograms
    from agents.energy_lens import summary_rows as agent_rows
    from agents.evaluation import get_protocol

    protocol = get_protocol(PROTOCOL).with_changes(pgd_steps=args.pgd_steps)
    rows = []
    for agent in agents:
        game = agent.games[0]
        if not args.quiet:
            print(f"{agent.name} on {game}: {args.observations} observations of greedy play", flush=True)
        frames = collect_observations(agent.network, game, args.observations, seed=args.seed, protocol=protocol,
                                      device=next(agent.network.parameters()).device)  # fmt: skip
        lenses = {
            eps: measure_agent_energies(agent.network, frames, eps, protocol=protocol, seed=args.seed)
            for eps in args.eps
        }
        facts = {"agent_file": agent.file.name, "agent_sha256": agent.sha256}
        rows += [{**r, **facts} for r in agent_rows(lenses, agent.name, game)]
        plot_histograms(lenses, out / f"energy_{agent.name}.png", title=f"{agent.name} on {game}, {len(frames)} "
                        "observations of greedy play")  # fmt: skip
    budgets = ", ".join(f"{eps * 255:g}/255" for eps in args.eps)
    notes = (
        f"{args.observations} distinct observations per agent: every 10th step of 4 games of greedy play, repeats "
        f"skipped (the {PROTOCOL} "
        f"protocol's environment: up to {protocol.noop_max} no-ops, FIRE at reset), seed {args.seed}. L-inf eps "
        f"{budgets} on [0, 1]-scaled frames, applied in grey levels of the 0-255 frames; noise: every value moved "
        f"by eps up or down; pgd: {args.pgd_steps} steps of eps/10 from a uniform random start, cross-entropy against "
        "the clean greedy action a* ascended; pgd-targeted: cross-entropy toward the worst action (argmin of the "
        "clean scores) descended. E(s) = -logsumexp f(s), E(s,a*) = -f(s)[a*] of the agent's scores f (Q-values or "
        "policy logits: compare shifts within an agent, not energies across agents). Shifts are against the clean "
        "observations; 'share E(s) raised' counts observations whose E(s) went up; the action-change rate counts "
        "greedy actions that differ from the clean ones."
    )
    paths = write_tables(rows, out, "energy_shift", title="Energies of clean and adversarial observations",
                         notes=notes)  # fmt: skip
    scalars = [r for r in rows if r["kind"] != "clean"]
    scalars += [{**r, "eps": f"{eps * 255:g}/255"} for r in rows if r["kind"] == "clean" for eps in args.eps]
    write_scalars(out, scalars, lambda r: f"energy/{r['agent']}/eps{r['eps'].split('/')[0]}", "E(s) mean",
                  lambda r: AGENT_KINDS.index(r["kind"]))  # fmt: skip
    print(paths["md"].read_text())
    print(f"Histograms: {out}/energy_*.png; TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
