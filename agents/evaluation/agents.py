"""The agents an evaluation plays: any network the project loads, with the games it plays and its file's sha256.

Results and stored plays are keyed by the sha256 of the weights file, never by its path: replace the file behind
a path and nothing saved for the old one is reused; move it and everything still resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agents.checkpoints import recorded_game, run_dir_of
from agents.env import action_meanings, resolve_game
from agents.loading import load_agent, model_file
from agents.networks import FRAME_SHAPE
from rlrobust.files import sha256_of


@dataclass
class Agent:
    """A loaded agent, the games it is evaluated on, and the file its weights came from with its sha256.

    Made by :func:`prepare_agent` from a file; by hand for a network without a file (a smoke run):

    >>> from agents.networks import NeurIPSQNetwork
    >>> agent = Agent("random", Path("-"), NeurIPSQNetwork(6), ["Pong"], sha256=None)
    >>> agent.describe()
    {'name': 'random', 'sha256': None}
    """

    name: str
    path: Path
    network: nn.Module
    games: list[str]
    sha256: str | None = ""  # None: no file (a randomly initialised agent for smoke runs)
    file: Path | None = None
    stochastic: bool = False  # two passes on one observation differ (dropout, noise, SAP already inside)

    def describe(self) -> dict[str, Any]:
        """What recorded settings hold of the agent: its weights' sha256, not where the file lies (run.json's
        inputs have the path), so a moved file still resumes and a swapped one never does."""
        return {"name": self.name, "sha256": self.sha256}


def split_agent_argument(text: str) -> tuple[Path, list[str] | None]:
    """``PATH`` or ``PATH@Game`` (the game that agent plays, for files that do not record one).

    >>> split_agent_argument("pong_ppo.pt@Pong")
    (PosixPath('pong_ppo.pt'), ['Pong'])
    """
    path, _, game = text.rpartition("@") if "@" in Path(text).name else (text, "", "")
    return Path(path), [game] if game else None


def prepare_agent(
    path: str | Path,
    games: Sequence[str] | None,
    device: str | torch.device = "cpu",
    load: Callable[[Path], nn.Module] = load_agent,
) -> Agent:
    """Load the agent at ``path`` with ``load`` (a stricter loader may replace :func:`load_agent`, e.g. one that
    checks an SB3 zip's algorithm) and check it against its games (``games``, else the one its run recorded).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an unknown game, a game the agent cannot
    play (another number of actions) or an agent whose game is unknown.

    >>> import tempfile
    >>> from agents.networks import NeurIPSQNetwork
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     file = Path(folder) / "pong_dqn.pt"
    ...     torch.save(NeurIPSQNetwork(6).state_dict(), file)  # a plain state dict: no game recorded
    ...     agent = prepare_agent(file, ["Pong"])
    ...     prepare_agent(file, ["Breakout"])
    Traceback (most recent call last):
    ...
    ValueError: ... scores 6 actions but Breakout has 4: it is not an agent for Breakout
    >>> agent.name, agent.games, len(agent.sha256), agent.stochastic
    ('pong_dqn', ['Pong'], 64, False)
    """
    path = Path(path)
    file = model_file(path)
    network = load(file)
    recorded = recorded_game(path)
    chosen = [resolve_game(g) for g in games] if games else [resolve_game(recorded)] if recorded else []
    if not chosen:
        raise ValueError(
            f"cannot tell which game {path} plays (it is not part of a training run): name it with "
            f"{path}@GAME or --games"
        )
    scored = _scored_actions(network)
    for game in chosen:
        n_actions = len(action_meanings(game))
        if scored != n_actions:
            trained = f" (its run trained it on {recorded})" if recorded else ""
            raise ValueError(
                f"{path} scores {scored} actions but {game} has {n_actions}: it is not an agent for {game}{trained}"
            )
    run_dir = run_dir_of(path)
    name = run_dir.name if run_dir is not None else path.stem
    network = network.to(device)
    return Agent(name, path, network, chosen, sha256_of(file), file, stochastic=is_stochastic(network, device))


def _scored_actions(network: nn.Module) -> int:
    with torch.no_grad():
        return int(network(torch.zeros((1, *FRAME_SHAPE))).shape[1])


def is_stochastic(network: nn.Module, device: str | torch.device = "cpu") -> bool:
    """Whether two passes on the same observation give different scores (AutoAttack's check for a randomised
    model); the observation is fixed noise, the draws are torch's own.

    >>> from agents.networks import NeurIPSQNetwork
    >>> from rlrobust.sap import insert_sap
    >>> is_stochastic(NeurIPSQNetwork(6)), is_stochastic(insert_sap(NeurIPSQNetwork(6)))
    (False, True)
    """
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (4, *FRAME_SHAPE), generator=generator).float().to(device)
    with torch.no_grad():
        return not torch.equal(network(frames), network(frames))


def distinct_agents(agents: Sequence[Agent]) -> list[Agent]:
    """``agents`` with names made unique (a clash gets the start of the file's sha256 appended), so that every
    table row says which agent it is; the same weights given twice are refused.

    >>> twins = [Agent("final_model", Path(p), nn.Identity(), ["Pong"], sha256=s) for p, s in (("a", "1" * 64),
    ...          ("b", "2" * 64))]
    >>> [agent.name for agent in distinct_agents(twins)]
    ['final_model-11111111', 'final_model-22222222']
    """
    seen: dict[str, Path] = {}
    for agent in agents:
        if agent.sha256 in seen:
            raise ValueError(f"the same agent weights are given twice: {seen[agent.sha256]} and {agent.path}")
        seen[agent.sha256] = agent.path
    names = [agent.name for agent in agents]
    for agent in agents:
        if names.count(agent.name) > 1:
            agent.name = f"{agent.name}-{agent.sha256[:8]}"
    return list(agents)
