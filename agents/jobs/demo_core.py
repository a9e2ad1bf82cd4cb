"""Demo of the core on real Atari frames: how often attacks flip a trained agent's greedy action.

How often do FGSM, the SAP paper's iterative attack and PGD flip a Pong agent's greedy action, for the dense
agent and for the same agent with SAP-100, compared with random-sign noise of the same size? Budgets (``--eps``,
the paper's lambda) are in pixel units on 0-255 frames, as in the SAP paper. The SAP agent acts on the mean
Q-values of ``--samples`` stochastic passes and is attacked three ways: by transfer from the dense agent, with the
paper's Monte-Carlo gradient (FGSM) and adaptively (EOT-PGD), each gradient averaged over ``--eot-samples`` passes.

    rlrobust demo-core                           # the real Pong agent from the shared data folder if present
    rlrobust demo-core my.pt --game Breakout --frames 64

(``python scripts/demo_core.py`` is the same job.) Writes results.csv/.json/.md, two plots, TensorBoard scalars
and run.json (agent file and sha256, every setting) into a fresh folder under <--runs>/demo/ (or --out, which must
be new or empty unless --overwrite).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents import NatureQNetwork, load_agent, make_atari_env
from agents.rollout import collect_observations
from rlrobust import cli, stochastic
from rlrobust.attacks import fgsm, iterative, pgd
from rlrobust.reporting import pivot, write_tables
from rlrobust.runs import RunLock, claim_output_dir, fresh_run_dir, write_run_record
from rlrobust.sap import insert_sap

BOUNDS = (0.0, 255.0)
#: Flags that do not change the results, left out of run.json's settings.
NOT_SETTINGS = ("out", "overwrite", "runs", "quiet", "threads")


def shared_pong_agent() -> Path:
    """The shared NeurIPS-DQN Pong agent (the default victim where it exists)."""
    return cli.shared_data_dir() / "atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth"


class _BothPasses(argparse.Action):
    """The old ``--mc-samples N``: SAP's passes per action and per gradient at once (now two flags)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(cli.ALIAS_NOTE.format(old=option_string, new="--samples and --eot-samples"), file=sys.stderr)
        namespace.samples = namespace.eot_samples = values


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (the shared ones from :mod:`rlrobust.cli`, old names as hidden aliases)."""
    parser = cli.job_parser(__doc__)
    cli.add_agent_argument(parser, "Q-network state dict (default: the shared Pong agent)")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--frames", type=cli.count(), default=32, metavar="N", help="real frames to attack")
    cli.add_budget_flag(parser, "pixel units of 0-255 frames", [0, 1, 2, 4, 8], high=255, aliases=("--lambdas",))
    cli.add_pass_flags(parser, 10, 10)
    parser.add_argument(
        "--mc-samples", type=cli.count(), action=_BothPasses, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    cli.add_steps_flags(parser, pgd_steps=10)
    cli.add_runs_flag(parser, "root of the fresh output folders (<ROOT>/demo/...)")
    cli.add_output_flags(
        parser, "demo", resumable=False, out_help="output folder (default: a new one under <--runs>/demo/)"
    )
    cli.add_runtime_flags(parser, seed_max=None)  # torch's seeds: any integer >= 0
    return parser


def load_victim(args: argparse.Namespace, n_actions: int) -> tuple[torch.nn.Module, str]:
    shared = shared_pong_agent()
    path = args.agent or (shared if args.game.lower() == "pong" and shared.is_file() else None)
    if path is None:
        print("No trained agent given or found: attacking a RANDOMLY INITIALISED Nature Q-network.")
        return NatureQNetwork(n_actions).eval(), "random Nature DQN"
    victim = load_agent(path)
    out_features = victim(torch.zeros(1, 4, 84, 84)).shape[1]
    if out_features != n_actions:
        raise ValueError(f"{path} has {out_features} actions but {args.game} has {n_actions}: not an agent for it")
    return victim, str(path)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    cli.use_threads(args.threads)
    env = make_atari_env(args.game)
    victim, victim_name = load_victim(args, env.action_space.n)
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    out = args.out or fresh_run_dir(args.runs / "demo", args.game)
    args.out = claim_output_dir(out, settings, overwrite=args.overwrite, resumable=False)
    agent = Path(victim_name) if Path(victim_name).is_file() else victim_name
    with RunLock(args.out):
        write_run_record(args.out, "demo_core", settings, {"agent": agent})
        run(args, env, victim, victim_name)


def run(args: argparse.Namespace, env, victim: torch.nn.Module, victim_name: str) -> None:
    """Attack the agent on real frames and write the tables and plots."""
    victim = victim.to(args.device)
    frames = collect_observations(env, victim, args.frames, seed=args.seed)
    env.close()
    x = torch.as_tensor(frames, device=args.device).float()
    sap_victim = insert_sap(copy.deepcopy(victim), 1.0)

    def dense_action(batch):
        return stochastic.predict(victim, batch, 1)

    def sap_action(batch):
        return stochastic.mean_scores(sap_victim, batch, args.samples).argmax(1)

    clean = {"dense": dense_action(x), "SAP-100": sap_action(x)}
    rows, examples = [], {}
    started = time.perf_counter()
    for lam in tqdm(args.eps, desc="budgets", disable=args.quiet):
        cases = attacked_frames(args, victim, sap_victim, x, lam)
        for (who, attack), x_adv in cases.items():
            act = dense_action(x_adv) if who == "dense" else sap_action(x_adv)
            rows.append(
                {
                    "victim": who,
                    "attack": attack,
                    "lambda": lam,
                    "action_change_rate": (act != clean[who]).float().mean().item(),
                    "max_abs_perturbation": (x_adv - x).abs().max().item(),
                }
            )
        examples[lam] = cases[("dense", "FGSM")][0, -1].cpu()

    write_outputs(args, rows, x[0, -1].cpu(), examples, victim_name, time.perf_counter() - started)


def attacked_frames(
    args: argparse.Namespace, victim: torch.nn.Module, sap_victim: torch.nn.Module, x: torch.Tensor, lam: float
) -> dict[tuple[str, str], torch.Tensor]:
    """Every (victim, attack) case's perturbed frames at budget ``lam``."""
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    noise = (x + lam * torch.randn(x.shape, generator=g, device=args.device).sign()).clamp(*BOUNDS)
    dense_fgsm = fgsm(victim, x, eps=lam, bounds=BOUNDS)
    n, steps = args.eot_samples, args.pgd_steps
    return {
        ("dense", "random sign noise"): noise,
        ("dense", "FGSM"): dense_fgsm,
        ("dense", "iterative (step 1)"): iterative(victim, x, eps=lam, step=1.0, bounds=BOUNDS),
        ("dense", f"PGD-{steps}"): pgd(victim, x, eps=lam, steps=steps, bounds=BOUNDS, generator=g),
        ("SAP-100", "random sign noise"): noise,
        ("SAP-100", "FGSM transferred from dense"): dense_fgsm,
        ("SAP-100", f"FGSM, MC gradient n={n}"): fgsm(sap_victim, x, eps=lam, bounds=BOUNDS, eot_samples=n),
        ("SAP-100", f"EOT-PGD-{steps}, n={n}"): pgd(
            sap_victim, x, eps=lam, steps=steps, bounds=BOUNDS, eot_samples=n, generator=g
        ),
    }


def write_outputs(args, rows, clean_frame, examples, victim_name, seconds) -> None:
    """The tables, two plots and TensorBoard scalars under ``--out``; prints where they went."""
    notes = (
        f"Victim: {victim_name}; game {args.game}; {args.frames} real frames (seed {args.seed}); SAP agent acts on "
        f"the mean Q of {args.samples} passes (its gradients average {args.eot_samples}); action-change rate = "
        f"share of frames whose greedy action differs from the clean one (for SAP at lambda 0 it measures SAP's "
        f"own randomness). {seconds:.0f} s on {args.device}."
    )
    wide = pivot(rows, ("victim", "attack"), "lambda", "action_change_rate")
    title = "Core demo: greedy-action change rate under attack"
    paths = write_tables(rows, args.out, title=title, notes=notes, markdown_rows=wide)
    plot_change_rates(rows, args.game, args.out / "action_change.png")
    plot_example(clean_frame, examples, args.out / "example_frame.png")
    with SummaryWriter(args.out / "tensorboard") as writer:
        for r in rows:
            writer.add_scalar(f"action_change/{r['victim']}/{r['attack']}", r["action_change_rate"], r["lambda"])
    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(
        f"Plots: {args.out / 'action_change.png'}, {args.out / 'example_frame.png'}; "
        f"TensorBoard: {args.out / 'tensorboard'}"
    )


def plot_change_rates(rows: list[dict], game: str, path: Path) -> None:
    """The action-change rate of every (victim, attack) against lambda."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, key in enumerate(dict.fromkeys((r["victim"], r["attack"]) for r in rows)):
        pts = [(r["lambda"], r["action_change_rate"]) for r in rows if (r["victim"], r["attack"]) == key]
        style = "-" if key[0] == "dense" else "--"
        ax.plot(*zip(*pts, strict=True), marker="os^vD<>p"[i % 8], linestyle=style, label=" / ".join(key), alpha=0.85)
    ax.set(xlabel="lambda (pixel units, 0-255)", ylabel="greedy-action change rate", ylim=(0, 1), title=game)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_example(clean_frame: torch.Tensor, examples: dict[float, torch.Tensor], path: Path) -> None:
    """The clean newest frame, its FGSM version at the largest lambda and the perturbation."""
    plt = _pyplot()
    lam = max(examples)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    shown = max(lam, 1.0)
    for axis, image, title, cmap, scale in (
        (axes[0], clean_frame, "clean (newest frame)", "gray", (0, 255)),
        (axes[1], examples[lam], f"FGSM lambda={lam:g}", "gray", (0, 255)),
        (axes[2], examples[lam] - clean_frame, "perturbation", "coolwarm", (-shown, shown)),
    ):
        axis.imshow(image, cmap=cmap, vmin=scale[0], vmax=scale[1])
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
