"""The eval-sap job (agents/jobs/eval_rl_sap.py): a short real run on a random agent, the table's arithmetic,
reproducibility, a run stopped by SIGTERM that resumes to the same table, and the SAP fraction's bound (bad input:
test_corpus_rl_eval)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.evaluation import Agent, GameEvaluation, PlayResult, prepare_agent
from agents.evaluation.stats import standard_error
from agents.jobs import eval_rl_sap
from agents.networks import NeurIPSQNetwork
from agents.sap_evaluation import (
    EvalSettings,
    columns,
    evaluate,
    relative_change,
    table_columns,
    table_plays,
    table_rows,
)
from agents.sap_report import markdown_rows
from rlrobust.runs import INTERRUPTED_STATUS
from rlrobust.sap import MAX_FRAC, StochasticActivationPruning, insert_sap, sap_mask
from tests.conftest import shared_file
from tests.test_wrappers_fixtures import one_torch_thread
from wrappers.evaluation import first_episodes, greedy_policy

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

TINY = ["--episodes", "2", "--max-episode-steps", "8", "--eps", "0", "2", "--quiet"]
TINY += ["--samples", "2", "--mc-samples", "2", "--eot-samples", "2", "--pgd-steps", "2"]
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


def test_latest_run_end_to_end_writes_every_output_into_a_fresh_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative: runs/eval_rl_sap/<agent>-<stamp>
    run = fake_run(tmp_path / "runs")
    paths = eval_rl_sap.main([*TINY, "--runs", "runs"])
    printed = capsys.readouterr().out
    assert f"evaluating the most recent training run under runs/: {Path('runs') / run.name}" in printed
    out = paths["csv"].parent
    assert out.parent == Path("runs/eval_rl_sap") and out.name.startswith(f"{run.name}-")
    record = json.loads((out / "run.json").read_text())
    sha = record["settings"]["agents"][0]["sha256"]
    assert record["inputs"][run.name]["sha256"] == sha and record["settings"]["lambdas"] == [0.0, 2.0]
    protocol = record["settings"]["protocol"]  # how the engine played: FIRE at reset only, 8 steps of 4 frames
    assert (protocol["name"], protocol["fire_after_life_loss"], protocol["max_frames"]) == ("sap-paper", False, 32)
    settings = EvalSettings(**TINY_SETTINGS).validate()
    with (out / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == table_columns(settings)
        rows = list(reader)
    assert [(r["game"], float(r["lambda"])) for r in rows] == [("Pong", 0.0), ("Pong", 2.0)]  # game from config.json
    assert all(r["agent"] == run.name and r["agent_sha256"] == sha and r["episodes"] == "2" for r in rows)
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
    settings = EvalSettings(**{**TINY_SETTINGS, "max_episode_steps": 4}, attack="iterative").validate()
    first = evaluate([agent], settings)
    assert json.dumps(evaluate([agent], settings)) == json.dumps(first)  # NaN (dense mean 0) compares as text
    assert first[1]["sap_mc_action_change"] > 0


def test_greedy_policy_presses_fire_after_a_lost_life():
    policy = greedy_policy(lambda observations, infos: np.zeros(2, dtype=np.int32), fire_action=1)
    assert policy(None, {"lives": np.array([3, 3])}).tolist() == [0, 0]
    actions = policy(None, {"lives": np.array([2, 3])})
    assert actions.tolist() == [1, 0] and actions.dtype == np.int64


def test_first_episodes_refuses_a_cap_below_one_step():
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1 or None, got 0"):
        first_episodes(None, None, max_steps=0)  # refused before the environment is touched


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
    evaluation = GameEvaluation(Agent("toy", tmp_path, network, ["Pong"]), "Pong", settings.protocol())
    means = {None: -20.0, 1.0: -10.0}  # the dense agent, SAP-100
    results = {}
    for play in table_plays(settings):
        attack = play.attack
        mean = means[play.actor.sap_frac] + (attack is not None and attack.kind == "pgd") * 5.0
        mean += (attack is not None and attack.on_sap_frac is not None) * 1.0  # attacked through the SAP net
        results[evaluation.cell_key(play)] = PlayResult([mean - 1, mean + 1], [10, 10], 0, 4)
    clean, attacked = table_rows([evaluation], settings, results)
    assert clean["sap_transfer_rel_change_pct"] == clean["sap_eot_rel_change_pct"] == 50.0  # -10 vs -20
    assert attacked["sap_transfer_rel_change_pct"] == 50.0
    assert attacked["sap_mc_rel_change_pct"] == pytest.approx(100 * (-9 + 20) / 20)
    assert attacked["sap_eot_rel_change_pct"] == pytest.approx(100 * (-4 + 15) / 15)  # against dense under PGD
    assert attacked["dense_action_change"] == 0.2 and attacked["dense_se"] == pytest.approx(1.0)
    results = {evaluation.cell_key(p): PlayResult([0.0, 0.0], [5, 5], 1, 0) for p in table_plays(settings)}
    cells = markdown_rows(table_rows([evaluation], settings, results), settings)[1]
    assert "0.0 ± 0.0 (n/a) [0%]" in cells.values()
    evaluation.close()


def test_the_columns_are_engine_plays_of_the_sap_paper_protocol():
    settings = EvalSettings(lambdas=(0, 4), sap_passes=3, mc_samples=5, eot_samples=7, pgd_steps=5).validate()
    protocol = settings.protocol()
    assert (protocol.name, protocol.max_frames, protocol.fire_after_life_loss) == ("sap-paper", 108_000, False)
    assert (protocol.passes, protocol.eot_samples, protocol.pgd_steps, protocol.budgets) == (3, 7, 5, (4.0,))
    capped = EvalSettings(max_episode_steps=100, fire_after_life_loss=True).validate().protocol()
    assert (capped.max_frames, capped.fire_after_life_loss) == (400, True)
    args = eval_rl_sap.parse_args(["--fire-after-life-loss", "--max-episode-steps", "100"])
    assert eval_rl_sap.eval_settings(args).protocol() == capped  # the flag brings back the old FIRE
    plays = {c.key: c.play(1.0, 4.0, protocol) for c in columns(settings)}
    assert plays["dense"].actor.sap_frac is None and plays["dense"].actor.passes == 1
    assert plays["sap_transfer"].actor.sap_frac == 1.0 and plays["sap_transfer"].actor.passes == 3
    assert plays["sap_transfer"].attack.on_sap_frac is None and plays["sap_transfer"].attack.kind == "fgsm"
    assert (plays["sap_mc"].attack.on_sap_frac, plays["sap_mc"].attack.eot_samples) == (1.0, 5)
    eot = plays["sap_eot"].attack
    assert (eot.kind, eot.eps, eot.eot_samples, eot.steps) == ("pgd", 4.0, 7, 5)
    assert eot.step == pytest.approx(2.5 * 4.0 / 5)  # Madry et al.'s 2.5 budgets over the steps
    assert plays["dense_pgd"].attack.step == pytest.approx(2.0) and plays["dense_pgd"].attack.eot_samples == 1
    assert len(table_plays(settings)) == 2 + 5  # lambda 0: one clean play per agent; lambda 4: five


def interrupt_at(monkeypatch, play_number: int) -> list:
    """Make the ``play_number``-th play (1-based) of this process send itself SIGTERM, as a cluster's pre-emption
    would; returns the list of plays started."""
    started = []
    run = GameEvaluation.run

    def run_or_stop(self, play, description=""):
        started.append(play)
        if len(started) == play_number:
            os.kill(os.getpid(), signal.SIGTERM)
        return run(self, play, description)

    monkeypatch.setattr(GameEvaluation, "run", run_or_stop)
    return started


def test_sigterm_keeps_finished_plays_and_resume_gives_the_uninterrupted_table(tmp_path, capsys, monkeypatch):
    agent = save_state(tmp_path / "pong.pt")
    argv = [str(agent), "--games", "Pong", *TINY, "--eps", "2", "--max-episode-steps", "5"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    eval_rl_sap.main([*argv, "--out", str(whole)])
    interrupt_at(monkeypatch, 3)
    assert eval_rl_sap.main([*argv, "--out", str(stopped)]) == INTERRUPTED_STATUS
    err = capsys.readouterr().err
    assert "Interrupted: 2 of 5 plays finished" in err
    assert f"--out {stopped} --resume" in err and str(agent) in err
    assert len(json.loads((stopped / "cells.json").read_text())["cells"]) == 2
    assert not (stopped / "results.json").exists()  # no row has all its plays yet: no table
    with pytest.raises(ValueError, match="already holds results of another run"):
        eval_rl_sap.main([*argv, "--out", str(stopped)])  # neither --resume nor --overwrite: refused
    started = interrupt_at(monkeypatch, 0)
    eval_rl_sap.main([*argv, "--out", str(stopped), "--resume"])
    assert len(started) == 3  # only the plays that had not finished
    assert (stopped / "results.json").read_text() == (whole / "results.json").read_text()
    with pytest.raises(ValueError, match=r"cannot resume .* other settings .*episodes"):
        eval_rl_sap.main([*argv, "--episodes", "3", "--out", str(stopped), "--resume"])


def test_a_run_interrupted_after_whole_rows_writes_them_as_a_partial_table(tmp_path, capsys, monkeypatch):
    agent = save_state(tmp_path / "pong.pt")
    interrupt_at(monkeypatch, 4)  # lambda 0 needs 2 plays (clean dense, clean SAP); lambda 2 needs 5 more
    out = tmp_path / "out"
    argv = [str(agent), "--games", "Pong", *TINY, "--max-episode-steps", "3", "--out", str(out)]
    assert eval_rl_sap.main(argv) == INTERRUPTED_STATUS
    rows = json.loads((out / "results.json").read_text())
    assert [row["lambda"] for row in rows] == [0.0]
    assert "PARTIAL TABLE: interrupted after 3 of 7 plays" in (out / "results.md").read_text()


def test_sap_refuses_absurd_fractions_at_once():
    h = torch.rand(2, 8)
    for call in (
        lambda: sap_mask(h, 1e9),
        lambda: StochasticActivationPruning(1e9),
        lambda: insert_sap(NeurIPSQNetwork(6), 101),
    ):
        with pytest.raises(ValueError, match=f"at most {MAX_FRAC:g} .*1.0 is SAP-100"):
            call()
    assert (sap_mask(h, MAX_FRAC) > 0).all()  # the bound itself is accepted (and keeps every positive value)


@pytest.mark.slow
def test_real_pong_dqn_loses_its_actions_to_fgsm(tmp_path):
    path = shared_file("atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth")
    settings = EvalSettings(**{**TINY_SETTINGS, "max_episode_steps": 60, "lambdas": (0, 1)}).validate()
    clean, attacked = evaluate([prepare_agent(path, ["Pong"])], settings)
    assert clean["dense_action_change"] == 0.0
    assert attacked["dense_action_change"] > 0.5  # one grey level flips this agent's action on most frames
