"""Demo of the core on real Atari frames: how often attacks flip a trained agent's greedy action.

How often do FGSM, the SAP paper's iterative attack and PGD flip a Pong agent's greedy action, for the dense
agent and for the same agent with SAP-100, compared with random-sign noise of the same size? Budgets are in
pixel units on 0-255 frames, as in the SAP paper. The SAP agent acts on the mean Q-values of several
stochastic passes and is attacked three ways: by transfer from the dense agent, with the paper's Monte-Carlo
gradient (FGSM), and adaptively (EOT-PGD).

    python scripts/demo_core.py                 # real Pong agent from ../shared/data if present
    python scripts/demo_core.py --agent my.pt --game Breakout --frames 64

Writes results.csv/.json/.md, two plots, TensorBoard scalars and run.json (agent file and sha256, every setting)
into a fresh folder under runs/demo/ (or --out, which must be new or empty unless --overwrite).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import NatureQNetwork, load_agent, make_atari_env
from agents.rollout import collect_observations
from rlrobust import stochastic
from rlrobust.attacks import fgsm, iterative, pgd
from rlrobust.cli import count, device, real, run_main
from rlrobust.reporting import pivot, write_tables
from rlrobust.runs import RunLock, claim_output_dir, fresh_run_dir, write_run_record
from rlrobust.sap import insert_sap

SHARED_PONG_AGENT = (
    Path(__file__).resolve().parents[2] / "shared/data/atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth"
)
BOUNDS = (0.0, 255.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--agent", type=Path, help="Q-network state dict (default: the shared Pong agent)")
    parser.add_argument("--frames", type=count(), default=32, help="real frames to attack")
    parser.add_argument("--lambdas", type=real(0, 255), nargs="+", default=[0, 1, 2, 4, 8], help="budgets, 0-255 scale")
    parser.add_argument("--mc-samples", type=count(), default=10, help="SAP passes per action and per gradient")
    parser.add_argument("--pgd-steps", type=count(), default=10)
    parser.add_argument("--seed", type=count(0), default=0)
    parser.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="output folder (default: a new one under runs/demo/)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results in a used --out folder")
    args = parser.parse_args(argv)
    return args


def load_victim(args: argparse.Namespace, n_actions: int) -> tuple[torch.nn.Module, str]:
    path = args.agent or (SHARED_PONG_AGENT if args.game.lower() == "pong" and SHARED_PONG_AGENT.is_file() else None)
    if path is None:
        print("No trained agent given or found: attacking a RANDOMLY INITIALISED Nature Q-network.")
        return NatureQNetwork(n_actions).eval(), "random Nature DQN"
    victim = load_agent(path)
    out_features = victim(torch.zeros(1, 4, 84, 84)).shape[1]
    if out_features != n_actions:
        raise ValueError(f"{path} has {out_features} actions but {args.game} has {n_actions}: not an agent for it")
    return victim, str(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    env = make_atari_env(args.game)
    victim, victim_name = load_victim(args, env.action_space.n)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite")}
    out = args.out or fresh_run_dir("runs/demo", args.game)
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
    m = args.mc_samples

    def dense_action(batch):
        return stochastic.predict(victim, batch, 1)

    def sap_action(batch):
        return stochastic.mean_scores(sap_victim, batch, m).argmax(1)

    clean = {"dense": dense_action(x), "SAP-100": sap_action(x)}
    rows, examples = [], {}
    started = time.perf_counter()
    for lam in tqdm(args.lambdas, desc="budgets"):
        g = torch.Generator(device=args.device).manual_seed(args.seed)
        noise = (x + lam * torch.randn(x.shape, generator=g, device=args.device).sign()).clamp(*BOUNDS)
        dense_fgsm = fgsm(victim, x, eps=lam, bounds=BOUNDS)
        cases = {
            ("dense", "random sign noise"): noise,
            ("dense", "FGSM"): dense_fgsm,
            ("dense", "iterative (step 1)"): iterative(victim, x, eps=lam, step=1.0, bounds=BOUNDS),
            ("dense", f"PGD-{args.pgd_steps}"): pgd(
                victim, x, eps=lam, steps=args.pgd_steps, bounds=BOUNDS, generator=g
            ),
            ("SAP-100", "random sign noise"): noise,
            ("SAP-100", "FGSM transferred from dense"): dense_fgsm,
            ("SAP-100", f"FGSM, MC gradient n={m}"): fgsm(sap_victim, x, eps=lam, bounds=BOUNDS, eot_samples=m),
            ("SAP-100", f"EOT-PGD-{args.pgd_steps}, n={m}"): pgd(
                sap_victim, x, eps=lam, steps=args.pgd_steps, bounds=BOUNDS, eot_samples=m, generator=g
            ),
        }
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
        examples[lam] = dense_fgsm[0, -1].cpu()

    write_outputs(args, rows, x[0, -1].cpu(), examples, victim_name, time.perf_counter() - started)


def write_outputs(args, rows, clean_frame, examples, victim_name, seconds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = (
        f"Victim: {victim_name}; game {args.game}; {args.frames} real frames (seed {args.seed}); SAP agent acts on "
        f"the mean Q of {args.mc_samples} passes; action-change rate = share of frames whose greedy action "
        f"differs from the clean one (for SAP at lambda 0 it measures SAP's own randomness). {seconds:.0f} s on "
        f"{args.device}."
    )
    wide = pivot(rows, ("victim", "attack"), "lambda", "action_change_rate")
    paths = write_tables(
        rows,
        args.out,
        title="Core demo: greedy-action change rate under attack",
        notes=notes,
        markdown_rows=wide,
    )

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, key in enumerate(dict.fromkeys((r["victim"], r["attack"]) for r in rows)):
        pts = [(r["lambda"], r["action_change_rate"]) for r in rows if (r["victim"], r["attack"]) == key]
        style = "-" if key[0] == "dense" else "--"
        ax.plot(
            *zip(*pts, strict=True),
            marker="os^vD<>p"[i % 8],
            linestyle=style,
            label=" / ".join(key),
            alpha=0.85,
        )
    ax.set(xlabel="lambda (pixel units, 0-255)", ylabel="greedy-action change rate", ylim=(0, 1), title=args.game)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "action_change.png", dpi=120)
    plt.close(fig)

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
    fig.savefig(args.out / "example_frame.png", dpi=120)
    plt.close(fig)

    with SummaryWriter(args.out / "tensorboard") as writer:
        for r in rows:
            writer.add_scalar(f"action_change/{r['victim']}/{r['attack']}", r["action_change_rate"], r["lambda"])

    print(paths["md"].read_text())
    print(f"Results: {paths['csv']}, {paths['json']}, {paths['md']}")
    print(
        f"Plots: {args.out / 'action_change.png'}, {args.out / 'example_frame.png'}; "
        f"TensorBoard: {args.out / 'tensorboard'}"
    )


if __name__ == "__main__":
    run_main(main)
