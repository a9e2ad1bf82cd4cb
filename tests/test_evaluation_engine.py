"""agents.evaluation: the protocols' facts and checks, the interval arithmetic, loading agents, and the engine's
plays on a random Pong-sized agent (clean and attacked, deterministic, cached by the agent file's sha256,
epsilon-greedy, FIRE after a lost life, the strategically-timed calibration, the worst case, sharding over
processes). The command line is in test_robustness_report.py, its bad inputs in test_corpus_rl_eval.py."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import threading
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import agents.evaluation.engine as engine
from agents.env import fire_action
from agents.evaluation import (
    ATTACKS,
    Actor,
    Agent,
    Attack,
    GameEvaluation,
    Play,
    PlayResult,
    Protocol,
    ReportSpec,
    attack_tasks,
    check_attacks,
    get_protocol,
    is_stochastic,
    prepare_agent,
    report_rows,
    run_plays,
    split_agent_argument,
)
from agents.evaluation.acting import GreedyAgent
from agents.evaluation.report import attack_for
from agents.evaluation.stats import summary, t_quantile_975
from agents.networks import FRAME_SHAPE, NeurIPSQNetwork
from rlrobust.distributed import Runtime, shard
from rlrobust.runs import CellStore
from rlrobust.sap import insert_sap
from tests.test_wrappers_fixtures import one_torch_thread
from wrappers import StrategicallyTimed

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

FRAMES = 200  # emulator frames per game: 50 agent steps
SMALL = {"episodes": 2, "max_frames": FRAMES, "budgets": (1 / 255,)}


def save_agent(path: Path, n_actions: int = 6, seed: int = 0) -> Path:
    """A randomly initialised NeurIPS Q-network's state dict, as torch.save writes it."""
    torch.manual_seed(seed)
    torch.save(NeurIPSQNetwork(n_actions).state_dict(), path)
    return path


def without_seconds(result: PlayResult) -> dict:
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "seconds"}


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    """A random Pong agent under a small sa-dqn protocol, with its clean and FGSM (1 grey level) plays, made once:
    every play costs seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("pong")
    agent = prepare_agent(save_agent(folder / "pong6.pt"), ["Pong"])
    protocol = get_protocol("sa-dqn").with_changes(**SMALL)
    evaluation = GameEvaluation(agent, "Pong", protocol, progress=False)
    fgsm = Play(Actor(), attack_for("fgsm", protocol.to_pixels(1 / 255), protocol, 1, None))
    clean = evaluation.run(Play())
    attacked = evaluation.run(fgsm)
    yield SimpleNamespace(
        folder=folder, agent=agent, protocol=protocol, evaluation=evaluation, clean=clean, fgsm_play=fgsm, fgsm=attacked
    )
    evaluation.close()
    torch.set_num_threads(threads)


@pytest.fixture
def record_actions(monkeypatch):
    """Every step's (lives, observations, actions) as the engine's policy acts, and the FIRE action it was given."""
    steps: list[tuple] = []
    fires: list = []
    make = engine.greedy_policy

    def recording(act, fire=None):
        fires.append(fire)
        policy = make(act, fire)

        def record(observations, infos):
            actions = policy(observations, infos)
            steps.append((np.asarray(infos["lives"]).copy(), np.array(observations), actions.copy()))
            return actions

        return record

    monkeypatch.setattr(engine, "greedy_policy", recording)
    return SimpleNamespace(steps=steps, fires=fires)


# --- protocols -------------------------------------------------------------------------------------------------


def test_sa_dqn_is_the_released_sa_dqn_evaluation():
    p = get_protocol("sa-dqn")
    assert p.budget_scale == "unit" and p.budget_name == "eps"
    assert p.budgets == (1 / 255, 3 / 255, 5 / 255)
    assert [p.to_pixels(b) for b in p.budgets] == pytest.approx([1.0, 3.0, 5.0])
    assert p.episodes == 50 and p.max_frames == 60_000 and p.exploration == 0.0 and p.passes == 1
    assert p.noop_max == 30 and not p.fire_after_life_loss
    assert p.pgd_steps == 10 and p.pgd_step_frac == 0.1
    pgd = attack_for("pgd", p.to_pixels(3 / 255), p, 1, None)  # what the report plays at eps 3/255
    assert (pgd.kind, pgd.steps, pgd.loss, pgd.targeted) == ("pgd", 10, "ce", False)
    assert pgd.eps == pytest.approx(3.0) and pgd.step == pytest.approx(0.3)  # 10 steps of eps/10
    assert attack_for("pgd-margin", 3.0, p, 1, None).loss == "margin"
    assert attack_for("pgd-targeted", 3.0, p, 1, None).targeted


def test_nature_and_sap_paper_protocols():
    nature = get_protocol("nature")
    assert nature.exploration == 0.05 and nature.max_frames == 18_000 and nature.episodes == 30
    assert nature.budgets == get_protocol("sa-dqn").budgets and nature.attacks == get_protocol("sa-dqn").attacks
    sap = get_protocol("sap-paper")
    assert sap.budget_scale == "pixel" and sap.budget_name == "lambda"
    assert sap.to_pixels(4.0) == 4.0 and sap.budgets == (1.0, 2.0, 4.0, 8.0)
    assert sap.attacks == ("noise", "fgsm", "iterative") and sap.passes == 100 and sap.eot_samples == 100
    for protocol in (nature, sap):
        assert not protocol.fire_after_life_loss and set(protocol.attacks) <= set(ATTACKS)
        assert protocol.describe()["name"] == protocol.name and protocol.source


@pytest.mark.parametrize(
    ("protocol", "budget", "message"),
    [
        ("sa-dqn", -1 / 255, "budgets must be finite and > 0"),
        ("sa-dqn", 0.0, "budgets must be finite and > 0"),
        ("sa-dqn", math.nan, "budgets must be finite and > 0 (the clean play is always included), got nan"),
        ("sa-dqn", math.inf, "got inf"),
        ("sa-dqn", 3.0, "3 looks like the 0-255 scale (write 3/255)"),
        ("nature", 1.0, "1 looks like the 0-255 scale"),
        ("sap-paper", 0.01, "0.01 looks like the [0, 1] scale (write 2.55)"),
        ("sap-paper", -4.0, "budgets must be finite and > 0"),
        ("sap-paper", 300.0, "[1, 255], got 300"),
    ],
)
def test_budgets_are_checked_on_the_protocols_scale(protocol, budget, message):
    with pytest.raises(ValueError) as error:
        get_protocol(protocol).with_changes(budgets=[budget])
    assert message in str(error.value)


def test_budgets_are_sorted_and_deduplicated_and_none_keeps_the_protocols():
    p = get_protocol("sa-dqn")
    assert p.with_changes(budgets=[3 / 255, 1 / 255, 3 / 255]).budgets == (1 / 255, 3 / 255)
    assert p.with_changes(budgets=None, episodes=None) == p
    with pytest.raises(ValueError, match="give at least one budget"):
        p.check_budgets([])


def test_unknown_protocols_and_attacks_are_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown protocol 'atari'; choose one of sa-dqn, nature, sap-paper"):
        get_protocol("atari")
    with pytest.raises(ValueError, match=f"unknown attack 'cw'; choose from {', '.join(ATTACKS)}"):
        check_attacks(["pgd", "cw"])
    with pytest.raises(ValueError, match="give at least one attack"):
        check_attacks([])
    assert check_attacks(["pgd", "fgsm", "pgd"]) == ("pgd", "fgsm")


# --- stats ------------------------------------------------------------------------------------------------------


def test_t_quantiles_are_the_tables_and_read_between_rows():
    assert [t_quantile_975(d) for d in (1, 2, 9, 29, 30, 40, 60, 120)] == [
        12.706, 4.303, 2.262, 2.045, 2.042, 2.021, 2.000, 1.980
    ]  # fmt: skip
    exact = {35: 2.0301, 49: 2.0096, 100: 1.9840, 500: 1.9647, 1023: 1.9623}  # scipy.stats.t.ppf(0.975, dof)
    for dof, value in exact.items():
        assert t_quantile_975(dof) == pytest.approx(value, abs=1e-3), dof
    assert t_quantile_975(10**9) == pytest.approx(1.96, abs=1e-4)
    values = [t_quantile_975(d) for d in range(1, 2000)]
    assert all(a >= b for a, b in pairwise(values))  # fewer games, never a narrower interval
    with pytest.raises(ValueError, match="degrees of freedom must be >= 1, got 0"):
        t_quantile_975(0)


def test_summary_of_a_known_sample():
    scores = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]  # mean 5, sample variance 32/7
    s = summary(scores)
    se = math.sqrt(32 / 7) / math.sqrt(8)
    assert s["mean"] == 5.0 and s["se"] == pytest.approx(se)
    assert s["ci95_low"] == pytest.approx(5 - 2.365 * se) and s["ci95_high"] == pytest.approx(5 + 2.365 * se)
    two = summary([1.0, 3.0])
    assert (two["se"], two["ci95_low"], two["ci95_high"]) == pytest.approx((1.0, 2 - 12.706, 2 + 12.706))
    one = summary([4.0])
    assert one["mean"] == 4.0 and all(math.isnan(one[k]) for k in ("se", "ci95_low", "ci95_high"))


# --- agents -----------------------------------------------------------------------------------------------------


def test_split_agent_argument():
    assert split_agent_argument("a/pong.pt@Pong") == (Path("a/pong.pt"), ["Pong"])
    assert split_agent_argument("runs/Pong-ddqn") == (Path("runs/Pong-ddqn"), None)
    assert split_agent_argument("me@host/agent.pt") == (Path("me@host/agent.pt"), None)  # an @ in a folder name
    assert split_agent_argument("me@host/agent.pt@Breakout") == (Path("me@host/agent.pt"), ["Breakout"])


def test_prepare_agent_keys_the_file_by_sha256_and_refuses_another_games_agent(tmp_path):
    path = save_agent(tmp_path / "pong6.pt")
    agent = prepare_agent(path, ["Pong"])
    assert agent.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and agent.file == path
    assert (agent.name, agent.games, agent.stochastic) == ("pong6", ["Pong"], False)
    assert agent.describe() == {"name": "pong6", "sha256": agent.sha256}  # not the path: a moved file resumes
    four = save_agent(tmp_path / "four.pt", n_actions=4)
    with pytest.raises(ValueError, match=r"four\.pt scores 4 actions but Pong has 6: it is not an agent for Pong"):
        prepare_agent(four, ["Pong"])
    with pytest.raises(ValueError, match="scores 6 actions but Breakout has 4"):
        prepare_agent(path, ["Pong", "Breakout"])
    with pytest.raises(ValueError, match="cannot tell which game"):
        prepare_agent(path, None)


def test_a_network_with_sap_is_stochastic_and_a_plain_one_is_not():
    torch.manual_seed(0)
    network = NeurIPSQNetwork(6).eval()
    assert not is_stochastic(network)
    assert is_stochastic(insert_sap(copy.deepcopy(network), 1.0))
    assert not is_stochastic(network)  # insert_sap changed the copy only


# --- the engine -------------------------------------------------------------------------------------------------


def test_a_clean_play_changes_no_action_and_calibrates_the_timed_attack(pong):
    clean = pong.clean
    assert len(clean.scores) == len(clean.lengths) == 2
    assert all(0 < length <= FRAMES // 4 for length in clean.lengths) and clean.capped == 2  # the cap ended them
    assert clean.action_changes == 0 and clean.action_change_rate == 0.0
    assert clean.attacks == 0 and clean.attack_rate == 0.0
    assert 0.0 < clean.timed_threshold < 1.0


def test_fgsm_of_one_grey_level_changes_a_random_agents_actions(pong):
    attacked = pong.fgsm
    assert attacked.lengths == pong.clean.lengths  # capped games: same length, other actions
    assert attacked.attack_rate == 1.0 and attacked.observations == sum(attacked.lengths) + 2  # with the resets
    assert 0.0 < attacked.mean_linf <= 1.0 + 1e-4  # within the budget, in grey levels
    assert attacked.action_change_rate > 0.3
    assert attacked.timed_threshold is None


def test_a_play_is_deterministic_whatever_was_played_before(pong):
    again = play_once(pong.agent, "Pong", pong.protocol, pong.fgsm_play)  # the fixture's came after a clean play
    assert without_seconds(again) == without_seconds(pong.fgsm)


def test_run_plays_stores_each_cell_and_plays_it_only_once(pong, tmp_path, monkeypatch):
    tasks = [(pong.evaluation, Play()), (pong.evaluation, Play(Actor(), Attack("noise", 1.0)))]
    settings = {"agent": pong.agent.sha256}
    first = run_plays(tasks, CellStore(tmp_path, settings), progress=False)
    keys = [pong.evaluation.cell_key(play) for _, play in tasks]
    assert list(first) == keys and all(pong.agent.sha256[:16] in key and "/Pong/" in key for key in keys)
    assert without_seconds(first[keys[0]]) == without_seconds(pong.clean)
    assert first[keys[1]].attack_rate == 1.0 and first[keys[1]].mean_linf == pytest.approx(1.0)

    def refuse(self, play, description=""):
        raise AssertionError(f"played {play} again")

    monkeypatch.setattr(GameEvaluation, "run", refuse)
    again = run_plays(tasks, CellStore(tmp_path, settings), progress=False)
    assert again == first


def test_another_file_behind_the_same_path_is_played_again(pong, tmp_path, monkeypatch):
    path = save_agent(tmp_path / "agent.pt", seed=0)
    store = CellStore(tmp_path / "cells", {"path": str(path)})  # the path alone: the cell key must tell them apart
    before = GameEvaluation(prepare_agent(path, ["Pong"]), "Pong", pong.protocol, progress=False)
    store.add(before.cell_key(Play()), dataclasses.asdict(pong.clean))
    save_agent(path, seed=1)  # other weights, same path
    after = GameEvaluation(prepare_agent(path, ["Pong"]), "Pong", pong.protocol, progress=False)
    assert after.agent.sha256 != before.agent.sha256
    assert after.cell_key(Play()) != before.cell_key(Play())
    played = []
    run = GameEvaluation.run
    monkeypatch.setattr(GameEvaluation, "run", lambda self, play, d="": played.append(play) or run(self, play, d))
    try:
        results = run_plays([(after, Play())], store, progress=False)
    finally:
        after.close()
    assert played == [Play()] and len(store) == 2
    assert results[after.cell_key(Play())].timed_threshold != pong.clean.timed_threshold  # other weights, other play


def test_epsilon_greedy_agent_explores_from_seeded_streams():
    torch.manual_seed(0)
    network = NeurIPSQNetwork(6).eval()
    observations = torch.randint(0, 256, (20, 8, *FRAME_SHAPE), generator=torch.Generator().manual_seed(1))
    greedy = network(observations.flatten(0, 1).float()).argmax(1).view(20, 8).numpy()

    def actions(exploration: float, seed: int) -> np.ndarray:
        agent = GreedyAgent(network, 1, "cpu", exploration=exploration, seed=seed, num_envs=8)
        with torch.no_grad():
            return np.stack([agent(o.numpy(), {}) for o in observations])

    assert (actions(0.0, 0) == greedy).all()
    explored = actions(0.5, 0)
    assert 0.2 < (explored != greedy).mean() < 0.65  # about 0.5 * 5/6 of the actions
    assert (actions(0.5, 0) == explored).all() and (actions(0.5, 1) != explored).any()
    with pytest.raises(ValueError, match=r"exploration \(epsilon-greedy\) must lie in \[0, 1\], got 1.5"):
        GreedyAgent(network, 1, "cpu", exploration=1.5)


def test_the_protocols_exploration_reaches_the_played_actions(pong, record_actions):
    protocol = pong.protocol.with_changes(exploration=0.5)

    def play() -> tuple[PlayResult, list]:
        result = play_once(pong.agent, "Pong", protocol)
        steps = record_actions.steps[:]
        record_actions.steps.clear()
        return result, steps

    result, steps = play()
    acted = np.stack([actions for _, _, actions in steps])
    with torch.no_grad():
        greedy = np.stack([pong.agent.network(torch.as_tensor(o).float()).argmax(1).numpy() for _, o, _ in steps])
    assert 0.2 < (acted != greedy).mean() < 0.65
    assert result.action_changes == 0  # exploring is not an attack: the greedy action on clean frames is unchanged
    again, steps_again = play()
    assert (np.stack([actions for _, _, actions in steps_again]) == acted).all()
    assert without_seconds(again) == without_seconds(result)


def play_once(agent: Agent, game: str, protocol: Protocol, play: Play | None = None) -> PlayResult:
    """One play in new environments, closed after it."""
    evaluation = GameEvaluation(agent, game, protocol, progress=False)
    try:
        return evaluation.run(play or Play())
    finally:
        evaluation.close()


def lives_and_actions(steps: list) -> tuple[list[int], list[int]]:
    """The first environment's lives and actions at each recorded step."""
    return [int(lives[0]) for lives, _, _ in steps], [int(actions[0]) for _, _, actions in steps]


def test_fire_after_life_loss_presses_fire_after_each_lost_life(pong, record_actions):
    torch.manual_seed(0)
    network = NeurIPSQNetwork(4)
    with torch.no_grad():
        network.fc[-1].bias[0] += 100.0  # always NOOP: a random net might press FIRE by itself
    torch.save(network.state_dict(), pong.folder / "noop.pt")
    breakout = prepare_agent(pong.folder / "noop.pt", ["Breakout"])
    fire = fire_action("Breakout")
    protocol = pong.protocol.with_changes(episodes=1, max_frames=240, fire_after_life_loss=True)
    play_once(breakout, "Breakout", protocol)
    lives, actions = lives_and_actions(record_actions.steps)
    lost = [t for t in range(1, len(lives)) if lives[t] < lives[t - 1]]
    assert len(lost) >= 2  # each FIRE served a new ball, which was lost again
    assert [t for t, action in enumerate(actions) if action == fire] == lost and set(actions) == {0, fire}
    record_actions.steps.clear()
    play_once(breakout, "Breakout", protocol.with_changes(fire_after_life_loss=False))
    lives, actions = lives_and_actions(record_actions.steps)
    assert set(actions) == {0} and min(lives) == lives[0] - 1  # FIRE at reset only: one ball, then a stalled game
    assert record_actions.fires == [fire, None]


# --- the strategically-timed column and the worst case ----------------------------------------------------------


def test_the_timed_threshold_attacks_the_protocols_share_of_the_agents_own_observations():
    torch.manual_seed(0)
    network = NeurIPSQNetwork(6).eval()
    agent = GreedyAgent(network, 1, "cpu", num_envs=4)
    frames = torch.randint(0, 256, (40, 4, *FRAME_SHAPE), generator=torch.Generator().manual_seed(2)).float()
    lengths = [40, 30, 40, 20]  # first episodes of unequal lengths: later steps belong to second episodes
    with torch.no_grad():
        for step in frames:
            agent(step.numpy(), {})
        threshold = agent.preference_quantile(lengths, 0.25)
        schedule = StrategicallyTimed(threshold)  # the wrapper's rule: attack where the preference reaches it
        attacked = np.concatenate([schedule.select(None, network(frames[:n, i]), None) for i, n in enumerate(lengths)])
    assert abs(attacked.mean() - 0.25) <= 2 / len(attacked)


def test_the_timed_attack_attacks_a_share_near_the_protocols_rate(pong):
    timed = Play(Actor(), attack_for("pgd-timed", 1.0, pong.protocol, 1, None)).with_threshold(
        pong.clean.timed_threshold
    )
    result = pong.evaluation.run(timed)
    assert pong.protocol.timed_rate == 0.25
    assert 0.05 < result.attack_rate < 0.6  # calibrated on the clean play; the attacked games go elsewhere
    assert result.action_changes <= result.attacks  # an unattacked frame is clean: the same greedy action


def toy_evaluation(budgets: tuple[float, ...]) -> GameEvaluation:
    """An evaluation that is never played (no environment is made until a play runs)."""
    agent = Agent("toy", Path("toy.pt"), NeurIPSQNetwork(6), ["Pong"], sha256="ab" * 32)
    return GameEvaluation(agent, "Pong", get_protocol("sa-dqn").with_changes(budgets=budgets), progress=False)


def test_the_worst_case_row_is_the_lowest_mean_of_the_attacks_at_each_budget():
    evaluation = toy_evaluation((1 / 255, 3 / 255))
    spec = ReportSpec(evaluation.protocol, ("noise", "fgsm", "pgd", "pgd-timed"))
    results = {evaluation.cell_key(Play()): PlayResult([10.0, 12.0], [100, 100], 0, 0, timed_threshold=0.2)}
    means = {("noise", 1): 9.0, ("fgsm", 1): 4.0, ("pgd", 1): 5.0, ("pgd-timed", 1): 7.0}
    means |= {("noise", 3): 8.0, ("fgsm", 3): 2.0, ("pgd", 3): -3.0}  # pgd-timed at 3/255 not played yet
    for (task_evaluation, play), name, budget in attack_tasks([evaluation], spec, results):
        if name == "pgd-timed":
            assert play.attack.timed_threshold == 0.2  # from the clean play
        mean = means.get((name, round(budget * 255)))
        if mean is not None:
            results[task_evaluation.cell_key(play)] = PlayResult([mean - 1, mean + 1], [100, 100], 0, 50, 200, 200)
    rows = report_rows([evaluation], spec, results)
    assert [(r["attack"], round(r["eps"] * 255)) for r in rows] == [
        ("clean", 0), ("noise", 1), ("fgsm", 1), ("pgd", 1), ("pgd-timed", 1), ("noise", 3), ("fgsm", 3), ("pgd", 3),
        ("worst", 1),  # 3/255 has no worst case until every attack of it is done
    ]  # fmt: skip
    worst = rows[-1]
    assert (
        worst["mean"]
        == 4.0
        == min(r["mean"] for r in rows if r["attack"] not in ("clean", "worst") and r["eps_pixels"] == 1)
    )
    assert worst["worst_of"] == "fgsm" and worst["label"] == "worst case"
    assert rows[0]["mean"] == 11.0 and rows[0]["action_change_rate"] == 0.0 and rows[0]["attack_rate"] == 0.0
    assert rows[2]["action_change_rate"] == 0.25 and rows[2]["attack_rate"] == 1.0
    assert all(r["agent_sha256"] == "ab" * 32 and r["protocol"] == "sa-dqn" for r in rows)


# --- sharding over processes ------------------------------------------------------------------------------------


def test_shard_splits_every_item_once():
    items = list(range(7))
    shares = [shard(items, Runtime(torch.device("cpu"), rank=r, world_size=3)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard(items, Runtime(torch.device("cpu"))) == items


class CountedEvaluation:
    """Stands in for a GameEvaluation in :func:`run_plays`: a play's result is made from its budget, at once."""

    def __init__(self) -> None:
        self.played: list[Play] = []

    def cell_key(self, play: Play) -> str:
        return f"toy/{play.key()}"

    def run(self, play: Play, description: str = "") -> PlayResult:
        self.played.append(play)
        eps = play.attack.eps if play.attack else 0.0
        return PlayResult([-eps, eps], [10, 10], 0, int(eps))


def threaded_gather(world_size: int):
    """``gather_objects`` for ranks played by threads of this process, as torch.distributed's all-gather."""
    barrier = threading.Barrier(world_size, timeout=60)  # a rank that failed breaks it, never a hang
    slots: list = [None] * world_size

    def gather(value, runtime):
        barrier.wait()
        slots[runtime.rank] = value
        barrier.wait()
        gathered = list(slots)
        barrier.wait()
        return gathered

    return gather


def run_ranks(tasks_of, stores, monkeypatch) -> list[dict]:
    """``run_plays`` on two ranks at once (threads), each with its own store; every rank's results."""
    results: list = [None, None]
    errors: list = []

    def rank(r: int) -> None:
        try:
            runtime = Runtime(torch.device("cpu"), rank=r, world_size=2)
            results[r] = run_plays(tasks_of(r), stores[r], runtime, progress=False)
        except BaseException as err:  # re-raised in the test's thread
            errors.append(err)

    with monkeypatch.context() as patched:
        patched.setattr(engine, "gather_objects", threaded_gather(2))
        threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_ranks_play_their_shares_and_a_store_of_their_files_resumes_everything(tmp_path, monkeypatch):
    plays = [Play(), *(Play(Actor(), Attack("noise", float(eps))) for eps in range(1, 5))]
    evaluations = [CountedEvaluation(), CountedEvaluation()]
    settings = {"agent": "toy"}
    stores = [CellStore(tmp_path, settings, name=f"cells.rank{r}.json") for r in range(2)]
    results = run_ranks(lambda r: [(evaluations[r], play) for play in plays], stores, monkeypatch)
    keys = [f"toy/{play.key()}" for play in plays]
    assert set(results[0]) == set(keys) and results[0] == results[1]  # every rank ends with every result
    assert evaluations[0].played == plays[0::2] and evaluations[1].played == plays[1::2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.rank0.json", "cells.rank1.json"]
    single = CellStore(tmp_path, settings)  # one process resuming a two-process run
    assert len(single) == 5
    monkeypatch.setattr(CountedEvaluation, "run", lambda *a: pytest.fail("a stored cell was played again"))
    assert run_plays([(CountedEvaluation(), play) for play in plays], single, progress=False) == results[0]


def test_ranks_agree_on_the_cells_to_play_when_one_store_saw_more(tmp_path, monkeypatch):
    plays = [Play(), *(Play(Actor(), Attack("noise", float(eps))) for eps in range(1, 5))]
    settings = {"agent": "toy"}
    early = CellStore(tmp_path, settings, name="cells.rank0.json")  # rank 0 opens its store: nothing stored
    stored = CellStore(tmp_path, settings, name="cells.rank0.json")
    stored.add(f"toy/{plays[0].key()}", dataclasses.asdict(CountedEvaluation().run(plays[0])))  # rank 0 stores one
    late = CellStore(tmp_path, settings, name="cells.rank1.json")  # rank 1 opens its store after that: sees one
    assert len(early) == 0 and len(late) == 1
    evaluations = [CountedEvaluation(), CountedEvaluation()]
    results = run_ranks(lambda r: [(evaluations[r], play) for play in plays], [early, late], monkeypatch)
    assert len(results[0]) == len(results[1]) == 5 and results[0] == results[1]
    played = [play.key() for play in evaluations[0].played + evaluations[1].played]
    assert sorted(played) == sorted(play.key() for play in plays)  # the same shares: every cell played once
