"""scripts/eval_rl_sap.py: a short real run on a random agent, the table's arithmetic, reproducibility, bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import eval_rl_sap

from agents.networks import NeurIPSQNetwork
from agents.sap_evaluation import (
    Agent,
    EvalSettings,
    GameEvaluation,
    PlayResult,
    evaluate,
    prepare_agent,
    relative_change,
    standard_error,
    table_columns,
)
from agents.sap_report import markdown_rows
from tests.conftest import shared_file
from tests.test_wrappers_fixtures import one_torch_thread
from wrappers.evaluation import greedy_policy

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

TINY = ["--episodes", "2", "--max-episode-steps", "8", "--lambdas", "0", "2", "--no-progress"]
TINY += ["--sap-passes", "2", "--mc-samples", "2", "--eot-samples", "2", "--pgd-steps", "2"]
TINY_SETTINGS = {"episodes": 2, "max_episode_steps": 8, "lambdas": (0, 2), "sap_passes": 2, "mc_samples": 2}
TINY_SETTINGS |= {"eot_samples": 2, "pgd_steps": 2, "progress": False}


def save_state(path: Path, n_actions: int = 6, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(NeurIPSQNetwork(n_actions).state_dict(), path)
    return path


def fake_run(logdir: Path, game: str = "Pong") -> Path:
    """A training run directory as train_ddqn.py leaves it: config.json and an SB3-style final_model.zip."""
    run = logdir / f"{game}-ddqn-seed0-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"game": game}}))
    torch.manual_seed(0)
    state = {f"q_net.network.{k}": v for k, v in NeurIPSQNetwork(6).state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(run / "final_model.zip", "w") as archive:
        archive.writestr("policy.pth", buffer.getvalue())
    return run


def test_latest_run_end_to_end_writes_every_output(tmp_path, capsys):
    run = fake_run(tmp_path / "runs")
    out = tmp_path / "out"
    eval_rl_sap.main([*TINY, "--logdir", str(tmp_path / "runs"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"evaluating the most recent training run under {tmp_path / 'runs'}/: {run}" in printed
    settings = EvalSettings(**TINY_SETTINGS).validate()
    with (out / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == table_columns(settings)
        rows = list(reader)
    assert [(r["game"], float(r["lambda"])) for r in rows] == [("Pong", 0.0), ("Pong", 2.0)]  # game from config.json
    assert all(r["agent"] == run.name and r["episodes"] == "2" for r in rows)
    clean, attacked = json.loads((out / "results.json").read_text())
    assert clean["dense_action_change"] == 0.0 and clean["dense_capped"] == 2
    # lambda = 0: one clean play per agent, shared by its columns
    assert clean["sap_transfer_mean"] == clean["sap_mc_mean"] == clean["sap_eot_mean"]
    assert clean["dense_mean"] == clean["dense_pgd_mean"]
    assert attacked["dense_action_change"] > 0  # FGSM with lambda = 2 flips a random net's greedy action
    markdown = (out / "results.md").read_text()
    assert "**2 episodes**" in markdown and "**seed 0**" in markdown
    for title in ("(transfer)", "MC gradient n=2 (paper)", "EOT-PGD-2 on the SAP net, n=2 (adaptive)"):
        assert title in markdown
    assert (out / "scores.png").stat().st_size > 0
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))


def test_a_fixed_seed_reproduces_every_figure(tmp_path):
    agent = prepare_agent(save_state(tmp_path / "pong.pt"), ["Pong"])
    settings = EvalSettings(**TINY_SETTINGS, attack="iterative").validate()
    first = evaluate([agent], settings)
    assert json.dumps(evaluate([agent], settings)) == json.dumps(first)  # NaN (dense mean 0) compares as text
    assert first[1]["sap_mc_action_change"] > 0


def test_greedy_policy_presses_fire_after_a_lost_life():
    policy = greedy_policy(lambda observations, infos: np.zeros(2, dtype=np.int32), fire_action=1)
    assert policy(None, {"lives": np.array([3, 3])}).tolist() == [0, 0]
    actions = policy(None, {"lives": np.array([2, 3])})
    assert actions.tolist() == [1, 0] and actions.dtype == np.int64


def test_relative_change_and_standard_error():
    assert relative_change(15.0, 10.0) == 50.0
    assert relative_change(-5.0, -10.0) == 50.0  # Pong: less negative is better, and the change is positive
    assert relative_change(-15.0, -10.0) == -50.0
    assert relative_change(35.259, 1.0) == pytest.approx(3425.9)  # the paper's Bowling cell needs a tiny dense mean
    assert math.isnan(relative_change(3.0, 0.0))
    assert standard_error([1.0, 3.0]) == pytest.approx(1.0)  # std 1.414 / sqrt(2)
    assert math.isnan(standard_error([4.0]))


def test_rows_compare_each_sap_column_with_its_dense_baseline(tmp_path):
    network = NeurIPSQNetwork(6).eval()
    settings = EvalSettings(lambdas=(0, 1), episodes=2, progress=False).validate()
    evaluation = GameEvaluation(Agent("toy", tmp_path, network, ["Pong"]), "Pong", settings)
    means = {("dense", None): -20.0, ("sap", 1.0): -10.0}
    for play in evaluation.plays():
        mean = means[(play.agent, play.frac)] + (play.attack == "pgd") * 5.0 + (play.attacker == "sap") * 1.0
        evaluation.results[play] = PlayResult([mean - 1, mean + 1], [10, 10], 0, 4)
    clean, attacked = evaluation.rows()
    assert clean["sap_transfer_rel_change_pct"] == clean["sap_eot_rel_change_pct"] == 50.0  # -10 vs -20
    assert attacked["sap_transfer_rel_change_pct"] == 50.0
    assert attacked["sap_mc_rel_change_pct"] == pytest.approx(100 * (-9 + 20) / 20)
    assert attacked["sap_eot_rel_change_pct"] == pytest.approx(100 * (-4 + 15) / 15)  # against dense under PGD
    assert attacked["dense_action_change"] == 0.2 and attacked["dense_se"] == pytest.approx(1.0)
    evaluation.results = {p: PlayResult([0.0, 0.0], [5, 5], 1, 0) for p in evaluation.plays()}
    cells = markdown_rows(evaluation.rows(), settings)[1]
    assert "0.0 ± 0.0 (n/a) [0%]" in cells.values()
    evaluation.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}", "--games", "Pong"], "agent checkpoint not found"),
        (["{agent}", "--games", "Pongg"], "unknown Atari game 'Pongg'; did you mean Pong"),
        (["{agent}", "--games", "Pong", "--lambdas", "-1"], "lambda must lie in"),
        (["{agent}", "--games", "Pong", "--sap-frac", "0"], "SAP fractions must be > 0"),
        (["{four}", "--games", "Pong"], "scores 4 actions but Pong has 6: it is not an agent for Pong"),
        (["{agent}"], "cannot tell which game"),
        (["--logdir", "{empty}"], "no agent given and no training run"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path, arguments, message):
    paths = {
        "missing": tmp_path / "missing.pt",
        "agent": save_state(tmp_path / "agent.pt"),
        "four": save_state(tmp_path / "four.pt", n_actions=4),
        "empty": tmp_path / "no_runs",
    }
    argv = [a.format(**paths) for a in arguments]
    with pytest.raises(SystemExit, match=message):
        eval_rl_sap.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])


@pytest.mark.slow
def test_real_pong_dqn_loses_its_actions_to_fgsm(tmp_path):
    path = shared_file("atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth")
    settings = EvalSettings(**{**TINY_SETTINGS, "max_episode_steps": 60, "lambdas": (0, 1)}).validate()
    clean, attacked = evaluate([prepare_agent(path, ["Pong"])], settings)
    assert clean["dense_action_change"] == 0.0
    assert attacked["dense_action_change"] > 0.5  # one grey level flips this agent's action on most frames
