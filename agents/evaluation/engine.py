"""The one episode loop of every RL evaluation: play an agent in a game, clean or under an attack, and keep what
was played.

A :class:`GameEvaluation` plays :class:`~agents.evaluation.plays.Play` values for one agent and one game under a
:class:`~agents.evaluation.protocols.Protocol`: the first episode of each of ``episodes`` environments of ale-py's
vector env (the first of each, so that short lost games are not favoured), all seeded, the attack in the
wrappers. :func:`run_plays` plays a list of them, takes finished ones from a
:class:`rlrobust.runs.CellStore` (keyed by the agent's sha256, the game and every field of the play) and adds each
new one at once, so Ctrl-C or SIGTERM loses at most the plays that were running; under ``torchrun`` each process
plays its share and every process ends with every result.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import nn
from tqdm import tqdm

from agents.env import fire_action, make_atari_eval_vec_env
from agents.evaluation.acting import GreedyAgent, RecordCleanObservations
from agents.evaluation.agents import Agent
from agents.evaluation.plays import Play, attacked_env
from agents.evaluation.protocols import Protocol
from rlrobust.distributed import Runtime, gather_objects, shard
from rlrobust.runs import CellStore
from rlrobust.sap import insert_sap
from wrappers.evaluation import first_episodes, greedy_policy


@dataclass
class PlayResult:
    """One play's first episodes: scores, lengths, how many the cap stopped, and what the attack did.

    >>> result = PlayResult(scores=[-21.0, -20.0], lengths=[800, 1000], capped=0, action_changes=1710)
    >>> result.mean, result.action_change_rate  # changes per step, pooled over both games
    (-20.5, 0.95)
    """

    scores: list[float]
    lengths: list[int]
    capped: int
    action_changes: int
    attacks: int = 0
    observations: int = 0
    mean_linf: float = 0.0
    seconds: float = 0.0
    timed_threshold: float | None = None  # clean plays: the preference threshold for the protocol's timed rate

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def action_change_rate(self) -> float:
        return self.action_changes / max(sum(self.lengths), 1)

    @property
    def attack_rate(self) -> float:
        return self.attacks / self.observations if self.observations else 0.0


class GameEvaluation:
    """Plays any :class:`Play` of one agent in one game under ``protocol``; the environments are made once.

    Nothing is played until :meth:`run` (or :func:`run_plays`, which has an example); each play is keyed by the
    agent's sha256, the game and every field of the play:

    >>> from agents.evaluation import Agent, get_protocol
    >>> from agents.networks import NeurIPSQNetwork
    >>> agent = Agent("random", None, NeurIPSQNetwork(6), ["Pong"], sha256="ab" * 32)
    >>> GameEvaluation(agent, "Pong", get_protocol("sa-dqn")).cell_key(Play())
    'random@abababababababab/Pong/Play(actor=Actor(sap_frac=None, passes=1), attack=None)'
    """

    def __init__(
        self,
        agent: Agent,
        game: str,
        protocol: Protocol,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        self.agent = agent
        self.game = game
        self.protocol = protocol
        self.seed = seed
        self.device = device
        self.progress = progress
        self._networks: dict[float | None, nn.Module] = {None: agent.network}
        self._games: VectorEnv | None = None

    def network(self, sap_frac: float | None) -> nn.Module:
        """The agent as loaded (None), or a copy with SAP at ``sap_frac`` after every ReLU (made once)."""
        if sap_frac not in self._networks:
            self._networks[sap_frac] = insert_sap(copy.deepcopy(self.agent.network), sap_frac)
        return self._networks[sap_frac]

    def close(self) -> None:
        if self._games is not None:
            self._games.close()
            self._games = None

    def cell_key(self, play: Play) -> str:
        """The play's key in a :class:`CellStore`: agent (name and sha256), game and every field of the play."""
        return f"{self.agent.name}@{(self.agent.sha256 or 'no-file')[:16]}/{self.game}/{play.key()}"

    def run(self, play: Play, description: str = "") -> PlayResult:
        """Play the first episode of each of the protocol's environments, attacked as ``play`` says."""
        p = self.protocol
        tic = time.perf_counter()
        if self._games is None:
            self._games = make_atari_eval_vec_env(self.game, p.episodes, noop_max=p.noop_max, max_frames=p.max_frames)
        env: VectorEnv = RecordCleanObservations(self._games)
        if play.attack is not None:
            attacker = self.network(play.attack.on_sap_frac)
            env = attacked_env(env, play.attack, attacker, seed=self.seed, device=self.device)
        agent = GreedyAgent(
            self.network(play.actor.sap_frac),
            play.actor.passes,
            self.device,
            exploration=p.exploration,
            seed=self.seed,
            num_envs=p.episodes,
        )
        torch.manual_seed(self.seed)  # a stochastic agent's own draws: the same for every play
        fire = fire_action(self.game) if p.fire_after_life_loss else None
        records = first_episodes(
            env,
            greedy_policy(agent, fire),
            seed=self.seed,
            progress=self.progress,
            description=description or f"{self.agent.name} {self.game}",
        )
        lengths = [r.length for r in records]
        attacks = sum(r.attacks for r in records)
        return PlayResult(
            scores=[r.score for r in records],
            lengths=lengths,
            capped=sum(r.truncated for r in records),
            action_changes=int(agent.changes(lengths).sum()),
            attacks=attacks,
            observations=sum(r.observations for r in records),
            mean_linf=sum(r.mean_linf * r.attacks for r in records) / attacks if attacks else 0.0,
            seconds=time.perf_counter() - tic,
            timed_threshold=agent.preference_quantile(lengths, p.timed_rate) if play.attack is None else None,
        )


Task = tuple[GameEvaluation, Play]


def run_plays(
    tasks: Sequence[Task],
    store: CellStore | None = None,
    runtime: Runtime | None = None,
    *,
    progress: bool = True,
    describe=None,
) -> dict[str, PlayResult]:
    """Every task's result by cell key: from ``store`` where it holds it, else played (this process's share under
    ``torchrun``) and added to ``store`` at once; the results of all processes are gathered before returning.
    ``describe(task)`` names a play on its progress bar.

    Two short games of Pong by a random NeurIPS DQN, clean and under FGSM of 3 grey levels (the dense agent's
    greedy action changes on every attacked step):

    >>> from agents.evaluation import Agent, Attack, get_protocol
    >>> from agents.networks import NeurIPSQNetwork
    >>> _ = torch.manual_seed(0)
    >>> agent = Agent("random", None, NeurIPSQNetwork(6), ["Pong"], sha256=None)
    >>> protocol = get_protocol("sa-dqn").with_changes(episodes=2, max_frames=40)  # 10 agent steps a game
    >>> evaluation = GameEvaluation(agent, "Pong", protocol, progress=False)
    >>> clean, fgsm = Play(), Play(attack=Attack("fgsm", 3.0))
    >>> results = run_plays([(evaluation, clean), (evaluation, fgsm)], progress=False)
    >>> evaluation.close()
    >>> [(results[evaluation.cell_key(p)].lengths, results[evaluation.cell_key(p)].action_change_rate)
    ...  for p in (clean, fgsm)]
    [([10, 10], 0.0), ([10, 10], 1.0)]
    """
    runtime = runtime or Runtime(torch.device("cpu"))
    unique = {evaluation.cell_key(play): (evaluation, play) for evaluation, play in tasks}
    stored = {key for key in unique if store is not None and key in store}
    # Every process must shard the same list: a process whose store was opened after another had added a cell
    # sees more, so a cell counts as stored only where every process holds it (the rest are played again).
    stored = set.intersection(*gather_objects(stored, runtime))
    results = {key: PlayResult(**store.get(key)) for key in unique if key in stored}
    pending = [key for key in unique if key not in results]
    mine = shard(pending, runtime)
    played: dict[str, dict] = {}
    with tqdm(total=len(mine), desc="plays", unit="play", disable=not progress, position=0) as bar:
        for key in mine:
            evaluation, play = unique[key]
            result = evaluation.run(play, describe(evaluation, play) if describe else "")
            played[key] = dataclasses.asdict(result)
            if store is not None:
                store.add(key, played[key])
            bar.update()
    for part in gather_objects(played, runtime):
        results |= {key: PlayResult(**value) for key, value in part.items()}
    return results
