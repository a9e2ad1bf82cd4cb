"""SAP on trained Atari agents under observation attacks: the SAP paper's RL table, with an adaptive attacker.

For every agent, game, SAP fraction and budget lambda (0-255 pixel units), the same seeded games are played by
the dense agent and by the agent with SAP inserted after every ReLU, which acts greedily on its mean Q-values
over ``sap_passes`` stochastic passes (the paper's prediction rule). Five columns, each a play of those games:

- ``dense``: the dense agent under ``attack`` computed on itself (the paper's baseline);
- ``sap_transfer``: the SAP agent under ``attack`` computed on the dense network (transfer);
- ``sap_mc``: the SAP agent under ``attack`` computed on the SAP network, every gradient the mean over
  ``mc_samples`` stochastic passes (the paper's Monte-Carlo attacker);
- ``dense_pgd``: the dense agent under PGD on itself, the baseline of the adaptive column;
- ``sap_eot``: the SAP agent under EOT-PGD, PGD whose every gradient averages ``eot_samples`` passes
  (Athalye et al. 2018, the attack that breaks randomised defences).

At lambda = 0 nothing is attacked: the SAP columns share one clean play of the SAP agent, the dense columns one
of the dense agent. The games run in parallel in ale-py's vector env, one episode per environment (the first of
each, so that short lost games are not favoured), the attacks in ``wrappers.VectorAdversarialObservation``.

Every finished play can be kept in a :class:`rlrobust.runs.CellStore` (one cell per distinct play, keyed by the
agent's sha256 and every setting), so an interrupted evaluation resumes where it stopped and gives the same table.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper
from torch import nn
from tqdm import tqdm

from agents.checkpoints import FINAL_MODEL, latest_checkpoint, recorded_game, run_dir_of
from agents.env import action_meanings, fire_action, make_atari_eval_vec_env, resolve_game
from agents.loading import load_agent
from agents.networks import FRAME_SHAPE
from rlrobust.files import sha256_of
from rlrobust.runs import CellStore
from rlrobust.sap import check_frac, insert_sap
from rlrobust.stochastic import mean_scores
from wrappers import VectorAdversarialObservation
from wrappers.evaluation import first_episodes, greedy_policy

ATTACK_CHOICES = ("fgsm", "iterative", "pgd")
CLEAN_KEY = "clean_observation"
ROW_KEYS = ("agent", "agent_sha256", "game", "sap_frac", "lambda", "episodes")
MAX_LAMBDA = 255.0


@dataclass
class EvalSettings:
    """What to play and how to attack; the defaults are the SAP paper's (100 passes, 100 MC samples, FGSM)."""

    lambdas: Sequence[float] = (0, 1, 2, 4, 8)
    episodes: int = 5
    sap_fracs: Sequence[float] = (1.0,)
    sap_passes: int = 100  # stochastic passes whose mean Q-values the SAP agent acts on
    mc_samples: int = 100  # passes per gradient of the paper's Monte-Carlo attacker
    attack: str = "fgsm"  # the attack of the dense, transfer and Monte-Carlo columns
    eot_samples: int = 10  # passes per gradient of the adaptive EOT-PGD attacker
    pgd_steps: int = 10  # steps of PGD (dense_pgd and sap_eot), each 2.5 * lambda / steps (Madry et al.)
    max_episode_steps: int | None = None  # cap on an episode's agent steps (None: ALE's 108,000-frame cap)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> EvalSettings:
        """Raise ``ValueError`` naming the first bad setting; returns self with sorted, de-duplicated budgets."""
        if not self.lambdas:
            raise ValueError("give at least one lambda")
        for lam in self.lambdas:
            if not 0 <= lam <= MAX_LAMBDA or math.isnan(lam):
                raise ValueError(f"lambda must lie in [0, {MAX_LAMBDA:g}] (pixel units of 0-255 frames), got {lam:g}")
        if not self.sap_fracs or any(not frac > 0 for frac in self.sap_fracs):
            raise ValueError(f"SAP fractions must be > 0 (1.0 is SAP-100), got {list(self.sap_fracs)}")
        for frac in self.sap_fracs:
            check_frac(frac, "SAP fraction")
        for name in ("episodes", "sap_passes", "mc_samples", "eot_samples", "pgd_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max-episode-steps must be >= 1, got {self.max_episode_steps}")
        if self.attack not in ATTACK_CHOICES:
            raise ValueError(f"unknown attack {self.attack!r}; choose one of {ATTACK_CHOICES}")
        self.lambdas = sorted({float(lam) for lam in self.lambdas})
        self.sap_fracs = sorted({float(frac) for frac in self.sap_fracs})
        return self


@dataclass(frozen=True)
class Column:
    """One attacker setting: who acts, whose network the attack differentiates, and with how many passes."""

    key: str
    agent: str  # "dense" or "sap"
    attacker: str  # "dense" or "sap"
    attack: str
    eot_samples: int
    baseline: str | None  # the dense column a SAP column is compared with


def columns(settings: EvalSettings) -> list[Column]:
    """The five columns of the table, in order (see the module docstring)."""
    return [
        Column("dense", "dense", "dense", settings.attack, 1, None),
        Column("sap_transfer", "sap", "dense", settings.attack, 1, "dense"),
        Column("sap_mc", "sap", "sap", settings.attack, settings.mc_samples, "dense"),
        Column("dense_pgd", "dense", "dense", "pgd", 1, None),
        Column("sap_eot", "sap", "sap", "pgd", settings.eot_samples, "dense_pgd"),
    ]


def table_columns(settings: EvalSettings) -> list[str]:
    """The columns of ``results.csv``: the row keys, then mean, standard error, relative change (SAP columns),
    action-change rate and capped episodes of each attacker setting."""
    names = list(ROW_KEYS)
    for column in columns(settings):
        names += [f"{column.key}_mean", f"{column.key}_se"]
        names += [f"{column.key}_rel_change_pct"] if column.baseline else []
        names += [f"{column.key}_action_change", f"{column.key}_capped"]
    return names


def relative_change(sap: float, dense: float) -> float:
    """The paper's relative % change of reward, ``100 * (sap - dense) / |dense|``; NaN where ``dense`` is 0
    (no finite percentage exists; the report shows "n/a")."""
    return 100.0 * (sap - dense) / abs(dense) if dense != 0 else float("nan")


def standard_error(scores: Sequence[float]) -> float:
    """Standard error of the mean score (sample standard deviation / sqrt(n)); NaN for a single episode."""
    return float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else float("nan")


@dataclass
class Agent:
    """A loaded agent, the games it is evaluated on, and the file its weights came from with its sha256 (what the
    results and the cells of an interrupted run are keyed by: swap the file and nothing saved is reused)."""

    name: str
    path: Path
    network: nn.Module
    games: list[str]
    sha256: str = ""
    file: Path | None = None

    def describe(self) -> dict[str, Any]:
        """What the recorded settings hold of the agent: its weights' sha256, not where the file lies (run.json's
        inputs have the path), so a moved file still resumes and a swapped one never does."""
        return {"name": self.name, "sha256": self.sha256}


def prepare_agent(path: str | Path, games: Sequence[str] | None, device: str | torch.device = "cpu") -> Agent:
    """Load the agent at ``path`` and check it against its games (``games``, else the one its run recorded).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an unknown game, a game the agent cannot
    play (another number of actions) or an agent whose game is unknown.
    """
    path = Path(path)
    file = model_file(path)
    network = load_agent(file)
    recorded = recorded_game(path)
    chosen = [resolve_game(g) for g in games] if games else [resolve_game(recorded)] if recorded else []
    if not chosen:
        raise ValueError(f"cannot tell which game {path} plays (it is not part of a training run): pass --games")
    with torch.no_grad():
        scored = network(torch.zeros((1, *FRAME_SHAPE))).shape[1]
    for game in chosen:
        n_actions = len(action_meanings(game))
        if scored != n_actions:
            trained = f" (its run trained it on {recorded})" if recorded else ""
            raise ValueError(
                f"{path} scores {scored} actions but {game} has {n_actions}: it is not an agent for {game}{trained}"
            )
    run_dir = run_dir_of(path)
    name = run_dir.name if run_dir is not None else path.stem
    return Agent(name, path, network.to(device), chosen, sha256=sha256_of(file), file=file)


def model_file(path: Path) -> Path:
    """The file holding an agent's weights: ``path`` itself, or a run directory's final model (else its newest
    checkpoint). Raises ``FileNotFoundError`` naming what is missing."""
    if path.is_dir():
        final = path / FINAL_MODEL
        found = final if final.is_file() else latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path} is a folder without {FINAL_MODEL} or checkpoints/step_*.zip")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"agent checkpoint not found: {path}")
    return path


def distinct_agents(agents: Sequence[Agent]) -> list[Agent]:
    """``agents`` with names made unique (a clash gets the start of the file's sha256 appended), so that every
    table row says which agent it is; the same weights given twice are refused."""
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


class _RecordCleanObservations(VectorWrapper):
    """Copies each batch of observations into ``info[CLEAN_KEY]``; placed under an attack wrapper, it lets the
    agent see what the attack changed."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observations, infos = self.env.reset(**kwargs)
        return observations, {**infos, CLEAN_KEY: np.array(observations, copy=True)}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        return observations, rewards, terminated, truncated, {**infos, CLEAN_KEY: np.array(observations, copy=True)}


class GreedyAgent:
    """Acts greedily on the mean scores of ``passes`` passes (1 for a dense network) and records, at every step,
    whether that action differs from the one it takes on the clean observation (a fresh set of passes)."""

    def __init__(self, network: nn.Module, passes: int, device: str | torch.device) -> None:
        self.network = network
        self.passes = passes
        self.device = torch.device(device)
        self.changed: list[np.ndarray] = []

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        seen = torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=self.device)
        clean = infos.get(CLEAN_KEY)
        batch = seen if clean is None else torch.cat([seen, torch.as_tensor(clean, device=self.device).float()])
        actions = mean_scores(self.network, batch, self.passes).argmax(1).cpu().numpy()
        acted = actions[: len(seen)]
        self.changed.append(acted != actions[len(seen) :] if clean is not None else np.zeros(len(seen), dtype=bool))
        return acted

    def changes(self, lengths: Sequence[int]) -> np.ndarray:
        """Action changes within each environment's first episode (its first ``lengths[i]`` steps)."""
        history = np.stack(self.changed)
        return np.array([history[:length, i].sum() for i, length in enumerate(lengths)])


@dataclass
class PlayResult:
    """The scores of one play (one episode per environment) and how often the attack changed the action."""

    scores: list[float]
    lengths: list[int]
    capped: int
    action_changes: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def action_change_rate(self) -> float:
        return self.action_changes / max(sum(self.lengths), 1)


@dataclass(frozen=True)
class Play:
    """One distinct play: the acting agent and, for lambda > 0, the attack. Equal plays run once."""

    agent: str  # "dense" or "sap"
    frac: float | None  # SAP fraction of the acting agent
    lam: float
    attacker: str | None = None
    attacker_frac: float | None = None
    attack: str | None = None
    eot_samples: int = 1

    def key(self) -> str:
        """Every field, for the cell store (``describe`` is for people)."""
        return (
            f"{self.agent}:{self.frac!r}|lambda={self.lam!r}|{self.attack}:{self.attacker}:{self.attacker_frac!r}"
            f":n={self.eot_samples}"
        )

    def describe(self) -> str:
        who = "dense" if self.agent == "dense" else f"SAP-{self.frac * 100:g}"
        if self.attack is None:
            return f"{who} clean"
        return f"{who} vs {self.attack}(on {self.attacker}, n={self.eot_samples}) lambda={self.lam:g}"


def play_for(column: Column, frac: float, lam: float) -> Play:
    """The play a column needs at one SAP fraction and budget."""
    agent_frac = frac if column.agent == "sap" else None
    if lam == 0:
        return Play(column.agent, agent_frac, 0.0)
    attacker_frac = frac if column.attacker == "sap" else None
    return Play(column.agent, agent_frac, lam, column.attacker, attacker_frac, column.attack, column.eot_samples)


@dataclass
class GameEvaluation:
    """Plays every needed game of one agent and one game, and assembles the table rows."""

    agent: Agent
    game: str
    settings: EvalSettings
    results: dict[Play, PlayResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dense = self.agent.network
        self.networks = {None: dense} | {f: insert_sap(copy.deepcopy(dense), f) for f in self.settings.sap_fracs}
        self.fire = fire_action(self.game)
        self._games: VectorEnv | None = None  # made once (about a second), reset with the seed by every play

    def close(self) -> None:
        if self._games is not None:
            self._games.close()
            self._games = None

    def plays(self) -> list[Play]:
        """Every distinct play, in table order."""
        needed = [
            play_for(column, frac, lam)
            for frac in self.settings.sap_fracs
            for lam in self.settings.lambdas
            for column in columns(self.settings)
        ]
        return list(dict.fromkeys(needed))

    def run(self, play: Play) -> PlayResult:
        """Play the first episode of each of ``episodes`` environments, attacked as ``play`` says."""
        s = self.settings
        if self._games is None:
            self._games = make_atari_eval_vec_env(self.game, s.episodes)
        env: VectorEnv = _RecordCleanObservations(self._games)
        if play.attack is not None:
            env = VectorAdversarialObservation(
                env,
                self.networks[play.attacker_frac],
                eps=play.lam,
                attack=play.attack,
                eot_samples=play.eot_samples,
                attack_options=attack_options(play.attack, play.lam, s.pgd_steps),
                seed=s.seed,
                device=s.device,
            )
        passes = 1 if play.agent == "dense" else s.sap_passes
        agent = GreedyAgent(self.networks[play.frac], passes, s.device)
        torch.manual_seed(s.seed)  # the SAP agent's own draws: the same for every play
        records = first_episodes(
            env,
            greedy_policy(agent, self.fire),
            seed=s.seed,
            max_steps=s.max_episode_steps,
            progress=s.progress,
            description=f"{self.game} {play.describe()}",
        )
        lengths = [r.length for r in records]
        return PlayResult(
            scores=[r.score for r in records],
            lengths=lengths,
            capped=sum(r.truncated for r in records),
            action_changes=int(agent.changes(lengths).sum()),
        )

    def cell_key(self, play: Play) -> str:
        """The play's key in a :class:`CellStore`: agent (name and sha256), game and every field of the play."""
        return f"{self.agent.name}@{self.agent.sha256[:16]}/{self.game}/{play.key()}"

    def play_all(self, store: CellStore | None = None, bar: tqdm | None = None) -> None:
        """Play every play not yet in ``results``: taken from ``store`` where it holds it, else played and added
        to ``store`` at once (so Ctrl-C loses at most the play that was running)."""
        for play in self.plays():
            key = self.cell_key(play)
            if play not in self.results and store is not None and key in store:
                self.results[play] = PlayResult(**store.get(key))
            if play not in self.results:
                self.results[play] = self.run(play)
                if store is not None:
                    store.add(key, dataclasses.asdict(self.results[play]))
            if bar is not None:
                bar.update()

    def rows(self) -> list[dict[str, Any]]:
        """One row per SAP fraction and budget whose plays are all done, the columns of :func:`table_columns`."""
        out = []
        for frac in self.settings.sap_fracs:
            for lam in self.settings.lambdas:
                needed = [play_for(column, frac, lam) for column in columns(self.settings)]
                if not all(play in self.results for play in needed):
                    continue  # an interrupted run: only complete rows go into the table
                row: dict[str, Any] = {"agent": self.agent.name, "agent_sha256": self.agent.sha256}
                row |= {"game": self.game, "sap_frac": frac, "lambda": lam, "episodes": self.settings.episodes}
                for column, play in zip(columns(self.settings), needed, strict=True):
                    row |= _cells(column, self.results[play], row)
                out.append(row)
        return out


def _cells(column: Column, result: PlayResult, row: dict[str, Any]) -> dict[str, Any]:
    """A column's figures; a SAP column's relative change is taken against its baseline, already in ``row``."""
    cells: dict[str, Any] = {f"{column.key}_mean": result.mean, f"{column.key}_se": standard_error(result.scores)}
    if column.baseline:
        cells[f"{column.key}_rel_change_pct"] = relative_change(result.mean, row[f"{column.baseline}_mean"])
    cells[f"{column.key}_action_change"] = result.action_change_rate
    cells[f"{column.key}_capped"] = result.capped
    return cells


def attack_options(attack: str, lam: float, pgd_steps: int) -> dict[str, Any] | None:
    """PGD: ``pgd_steps`` steps of 2.5 * lambda / steps from a random start; the other attacks keep the wrapper's
    defaults (FGSM: one step of lambda; iterative: steps of one grey level, ceil(lambda) of them, as the paper)."""
    return {"steps": pgd_steps, "step": 2.5 * lam / pgd_steps} if attack == "pgd" else None


def game_evaluations(agents: Sequence[Agent], settings: EvalSettings) -> list[GameEvaluation]:
    """One :class:`GameEvaluation` per agent and game, nothing played yet."""
    return [GameEvaluation(agent, game, settings) for agent in agents for game in agent.games]


def play_all(evaluations: Sequence[GameEvaluation], store: CellStore | None = None) -> None:
    """Play every play of every evaluation (those in ``store`` are taken from it), with a bar over the plays;
    the games' environments are closed however it ends."""
    total = sum(len(evaluation.plays()) for evaluation in evaluations)
    progress = any(evaluation.settings.progress for evaluation in evaluations)
    try:
        with tqdm(total=total, desc="plays", unit="play", disable=not progress) as bar:
            for evaluation in evaluations:
                evaluation.play_all(store, bar)
    finally:
        for evaluation in evaluations:
            evaluation.close()


def table_rows(evaluations: Sequence[GameEvaluation]) -> list[dict[str, Any]]:
    """The complete rows of every evaluation, in table order."""
    return [row for evaluation in evaluations for row in evaluation.rows()]


def evaluate(agents: Sequence[Agent], settings: EvalSettings, store: CellStore | None = None) -> list[dict[str, Any]]:
    """The table rows of every agent and game (see :func:`table_columns`); finished plays kept in ``store``."""
    evaluations = game_evaluations(agents, settings)
    play_all(evaluations, store)
    return table_rows(evaluations)


def run_settings(agents: Sequence[Agent], settings: EvalSettings, **extra: Any) -> dict[str, Any]:
    """Every setting that shapes the results, the agents' files and sha256 included: what run.json records, what
    ``--resume`` must match and what the cell store is keyed by (``extra``: e.g. torch threads)."""
    chosen = {k: v for k, v in dataclasses.asdict(settings).items() if k != "progress"}
    agents_info = [{**agent.describe(), "games": list(agent.games)} for agent in agents]
    return {"agents": agents_info, **chosen, **extra}
