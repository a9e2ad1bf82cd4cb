"""WEAT's energy lens pointed at agents: how observation attacks move the energies of an agent's action scores.

For an agent's scores ``f(s)`` (Q-values or policy logits) on an observation ``s``, ``E(s) = -logsumexp f(s)`` is the
free energy and ``E(s, a) = -f(s)[a]`` the joint energy of an action (Mirza et al. 2024, "WEAT", Sec. 4, read the
classifier's logits so; :mod:`rlrobust.energy`). Observations are frames the agent meets when it plays greedily
(:func:`collect_observations`); each is measured as it is and under attacks of the SA-DQN protocol
(:data:`agents.evaluation.PROTOCOLS` ``["sa-dqn"]``: budgets on [0, 1]-scaled frames, applied in grey levels of the
0-255 frames; PGD of 10 steps of eps/10 from a uniform random start). Kinds of input:

- ``clean``: the observation as the game gave it;
- ``noise``: random sign noise of the budget (every value moved by eps up or down, clipped to 0-255), a control;
- ``pgd``: untargeted PGD, cross-entropy against the clean greedy action ``a*`` ascended;
- ``pgd-targeted``: PGD that descends cross-entropy toward the worst action (argmin of the clean scores).

``E(s, a*)`` always uses the clean greedy action. WEAT's finding for classifiers: untargeted attacks lower ``E(x)``,
targeted ones raise it. Q-values and logits have different scales, so compare shifts within an agent only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agents.env import make_atari_eval_vec_env
from agents.evaluation.protocols import PIXELS, Protocol, get_protocol
from rlrobust.attacks import pgd, project
from rlrobust.energy import energy, joint_energy
from rlrobust.files import atomic_write

KINDS = ("clean", "noise", "pgd", "pgd-targeted")
PROTOCOL = "sa-dqn"


@dataclass
class AgentEnergies:
    """Per observation of one kind: ``E(s)``, ``E(s, a*)`` of the clean greedy action ``a*``, and the greedy action
    the agent takes on this input."""

    free: torch.Tensor
    joint: torch.Tensor
    actions: torch.Tensor


def check_frames(frames: torch.Tensor) -> torch.Tensor:
    """``frames`` if they are a non-empty uint8 batch (N, ...) of 0-255 observations, else one clear error (a
    float batch might be on [0, 1], where the grey-level budgets would be 255 times too large).

    >>> check_frames(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape
    torch.Size([2, 4, 84, 84])
    """
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
        raise TypeError("frames must be a uint8 tensor of 0-255 observations (N, ...), as the games give them")
    if frames.ndim < 2 or len(frames) < 1:
        raise ValueError(f"frames must be a non-empty batch (N, ...), got shape {tuple(frames.shape)}")
    return frames


def check_deterministic(network: nn.Module, frames: torch.Tensor) -> None:
    """Refuse an agent whose two passes on the same observations differ (SAP inserted, dropout, noise): the
    energies of a random function are not defined here.

    >>> from rlrobust.sap import insert_sap
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3))
    >>> check_deterministic(net, torch.full((4, 4), 100, dtype=torch.uint8))  # passes: deterministic
    >>> check_deterministic(insert_sap(net), torch.full((4, 4), 100, dtype=torch.uint8))
    Traceback (most recent call last):
    ...
    ValueError: the agent is stochastic (two passes on the same observations differ): its energies are not defined
    """
    x = frames[:4].float()
    with torch.no_grad():
        if not torch.equal(network(x), network(x)):
            raise ValueError(
                "the agent is stochastic (two passes on the same observations differ): its energies are not defined"
            )


def collect_observations(
    network: nn.Module,
    game: str,
    count: int,
    *,
    seed: int = 0,
    games: int = 4,
    every: int = 10,
    protocol: Protocol | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``count`` distinct uint8 observations (N, 4, 84, 84) met by ``network`` playing ``game`` greedily: every
    ``every``-th step of ``games`` seeded games in the evaluation engine's environment
    (:func:`agents.env.make_atari_eval_vec_env` with the protocol's no-op starts and frame cap; a game that ends
    starts again), in order of time, then game. Repeats are skipped: a greedy agent in a game without sticky actions
    plays two games with the same no-op start identically, and those frames would count twice."""
    protocol = protocol or get_protocol(PROTOCOL)
    if min(count, games, every) < 1:
        raise ValueError(f"count, games and every must be >= 1, got {count}, {games} and {every}")
    env = make_atari_eval_vec_env(game, games, noop_max=protocol.noop_max, max_frames=protocol.max_frames)
    seen: set[bytes] = set()
    kept: list[np.ndarray] = []
    limit = 20 * -(-count // games) * every  # agent steps: 20 times what distinct games would need
    try:
        observations, _ = env.reset(seed=seed)
        for step in range(1, limit + 1):
            with torch.no_grad():
                scores = network(torch.as_tensor(observations, device=device).float())
            observations, *_ = env.step(scores.argmax(1).cpu().numpy())
            if step % every == 0:
                for frame in observations:
                    if frame.tobytes() not in seen:
                        seen.add(frame.tobytes())
                        kept.append(np.array(frame, copy=True))
            if len(kept) >= count:
                return torch.as_tensor(np.stack(kept[:count]))
    finally:
        env.close()
    raise ValueError(
        f"only {len(kept)} distinct observations in {limit} steps of {games} games of {game}: ask for fewer"
    )


def attacked(
    kind: str, network: nn.Module, frames: torch.Tensor, eps: float, protocol: Protocol, generator: torch.Generator
) -> torch.Tensor:
    """The float frames (0-255) of one kind of input at budget ``eps`` on [0, 1] (``eps * 255`` grey levels)."""
    x = frames.float()
    if kind == "clean":
        return x
    budget = eps * PIXELS
    if kind == "noise":
        signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).float() * 2 - 1
        return project(x + budget * signs, x, budget, "linf", (0.0, PIXELS))
    if kind not in KINDS:
        raise ValueError(f"unknown kind of input {kind!r}; available: {list(KINDS)}")
    with torch.no_grad():
        scores = network(x)
    targeted = kind == "pgd-targeted"
    labels = scores.argmin(1) if targeted else scores.argmax(1)  # the worst action, or the clean greedy one
    step = protocol.pgd_step(budget)
    return pgd(network, x, labels, eps=budget, step=step, steps=protocol.pgd_steps, bounds=(0.0, PIXELS),
               targeted=targeted, generator=generator)  # fmt: skip


def measure_agent_energies(
    network: nn.Module,
    frames: torch.Tensor,
    eps: float,
    kinds: Sequence[str] = KINDS,
    *,
    protocol: Protocol | None = None,
    seed: int = 0,
    batch_size: int = 100,
) -> dict[str, AgentEnergies]:
    """The energies of every observation in ``frames`` (uint8, 0-255) for each kind of input at budget ``eps``
    (on [0, 1]-scaled frames, as the SA-DQN protocol states it; ``1/255`` is one grey level).

    >>> from agents.networks import NeurIPSQNetwork
    >>> _ = torch.manual_seed(0)
    >>> frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    >>> lens = measure_agent_energies(NeurIPSQNetwork(6).eval(), frames, 1 / 255, ("clean", "pgd"))
    >>> sorted(lens), lens["pgd"].free.shape
    (['clean', 'pgd'], torch.Size([3]))
    """
    protocol = protocol or get_protocol(PROTOCOL)
    frames = check_frames(frames)
    if not isinstance(eps, (int, float)) or not 0 < eps <= 1:
        raise ValueError(f"eps must lie in (0, 1] on [0, 1]-scaled frames (1/255 is one grey level), got {eps}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown kinds of input {unknown}; available: {list(KINDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(network.parameters()).device
    check_deterministic(network, frames.to(device))
    generator = torch.Generator(device=device).manual_seed(seed)
    parts: dict[str, list[tuple[torch.Tensor, ...]]] = {k: [] for k in kinds}
    for start in range(0, len(frames), batch_size):
        batch = frames[start : start + batch_size].to(device)
        with torch.no_grad():
            greedy = network(batch.float()).argmax(1)
        for kind in kinds:
            x = attacked(kind, network, batch, eps, protocol, generator)
            with torch.no_grad():
                scores = network(x).float()
            parts[kind].append((energy(scores).cpu(), joint_energy(scores, greedy).cpu(), scores.argmax(1).cpu()))
    return {k: AgentEnergies(*(torch.cat(column) for column in zip(*v, strict=True))) for k, v in parts.items()}


def summary_rows(lenses: dict[float, dict[str, AgentEnergies]], agent: str, game: str) -> list[dict[str, object]]:
    """One row per kind and budget (``lenses``: eps on [0, 1] -> kind -> energies; the clean row once, at eps 0):
    mean ``E(s)`` and ``E(s, a*)``, their shifts from the clean observations, the share of observations whose
    ``E(s)`` rose, and the action-change rate (greedy action differs from the clean one)."""
    clean = next((lens["clean"] for lens in lenses.values() if "clean" in lens), None)
    rows = []
    for eps, lens in lenses.items():
        for kind, e in lens.items():
            if kind == "clean" and rows and rows[0]["kind"] == "clean":
                continue
            row: dict[str, object] = {
                "agent": agent,
                "game": game,
                "kind": kind,
                "eps": "0" if kind == "clean" else f"{eps * PIXELS:g}/255",
                "E(s) mean": e.free.mean().item(),
                "E(s) std": e.free.std().item() if len(e.free) > 1 else 0.0,
                "E(s,a*) mean": e.joint.mean().item(),
            }
            if clean is not None:
                row["E(s) shift"] = row["E(s) mean"] - clean.free.mean().item()
                row["E(s,a*) shift"] = row["E(s,a*) mean"] - clean.joint.mean().item()
                row["share E(s) raised"] = (e.free > clean.free).float().mean().item()
                row["action-change rate"] = (e.actions != clean.actions).float().mean().item()
            row["observations"] = len(e.free)
            rows.append(row)
    return rows


def plot_histograms(lenses: dict[float, dict[str, AgentEnergies]], path: str | Path, title: str = "") -> Path:
    """Histograms of ``E(s)`` and ``E(s, a*)``: one row of panels per budget, every kind on shared bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(lenses), 2, figsize=(11, 3.6 * len(lenses)), squeeze=False)
    for (eps, lens), pair in zip(lenses.items(), axes, strict=True):
        for ax, field, label in ((pair[0], "free", "E(s)"), (pair[1], "joint", "E(s, a*)")):
            values = torch.cat([getattr(e, field) for e in lens.values()])
            edges = torch.linspace(values.min().item(), values.max().item() + 1e-6, 41).tolist()
            for kind, e in lens.items():
                mean = getattr(e, field).mean().item()
                ax.hist(getattr(e, field).tolist(), bins=edges, alpha=0.45, label=f"{kind} (mean {mean:.2f})")
            ax.set(xlabel=label, ylabel="observations", title=f"{label} at eps {eps * PIXELS:g}/255")
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda handle: fig.savefig(handle, dpi=120, format="png"))
    finally:
        plt.close(fig)
