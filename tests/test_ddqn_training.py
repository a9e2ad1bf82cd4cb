"""Short real training runs on Bowling: run directory, TensorBoard scores, checkpoints, resume, Ctrl-C, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import DoubleDQN, NatureQNetwork, load_agent
from agents.checkpoints import checkpoints
from agents.training import TrainConfig, resume_run, start_run
from scripts.train_ddqn import main as train_main

REPO = Path(__file__).resolve().parents[1]
SHORT = TrainConfig(
    game="Bowling",
    total_steps=400,
    learning_starts=100,
    buffer_size=500,
    exploration_steps=200,
    max_episode_steps=120,  # Bowling games are ~2,000 steps; truncation gives scores within the run
    checkpoint_every=200,
    eval_every=200,
    eval_episodes=1,
    log_every=50,
    torch_threads=1,
)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    return start_run(dataclasses.replace(SHORT), tmp_path_factory.mktemp("runs"), progress=False)


def test_short_bowling_run_logs_scores_and_leaves_loadable_models(short_run):
    run_dir = short_run.run_dir
    assert short_run.steps == 400 and not short_run.interrupted
    logged = scalars(run_dir)
    for tag in ("episode/score", "episode/length", "train/epsilon", "train/loss", "train/mean_q", "eval/score"):
        assert logged.get(tag), f"no {tag} in TensorBoard"
    assert 100 < logged["episode/length"][0][1] <= 120  # truncated games (ALE counts the no-op start frames too)
    assert logged["train/epsilon"][-1][1] == pytest.approx(0.1)
    assert [step for step, _ in logged["eval/score"]] == [200, 400]
    assert [p.name for p in checkpoints(run_dir)] == ["step_000000000200.zip", "step_000000000400.zip"]

    record = json.loads((run_dir / "config.json").read_text())
    assert record["config"]["game"] == "Bowling" and record["config"]["buffer_size"] == 500
    assert {"torch", "stable_baselines3", "gymnasium", "ale_py"} <= set(record["versions"])
    assert "commit" in record["git"]

    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    model = DoubleDQN.load(run_dir / "final_model.zip", device="cpu")
    expected = model.q_net(frames)
    for path in (run_dir / "final_model.zip", run_dir / "q_network.pt", run_dir, checkpoints(run_dir)[-1]):
        network = load_agent(path)
        assert isinstance(network, NatureQNetwork)
        torch.testing.assert_close(network(frames), expected)
    assert model.num_timesteps == 400 and model._n_updates == (400 - 100) // 4


def test_resume_continues_the_step_count_schedule_optimizer_and_curves(short_run):
    before = DoubleDQN.load(checkpoints(short_run.run_dir)[-1], device="cpu")
    result = resume_run(short_run.run_dir, {"total_steps": 600}, progress=False)
    assert result.steps == 600
    after = DoubleDQN.load(result.run_dir / "final_model.zip", device="cpu")
    assert after.num_timesteps == 600 and after._episode_num > before._episode_num
    # the replay is refilled with learning_starts = 100 transitions (steps 401-500), then one update per 4 steps
    assert after._n_updates == before._n_updates + (600 - 500) // 4 + 1
    assert after.exploration_rate == pytest.approx(0.1)
    assert (
        after.policy.optimizer.state_dict()["state"][0]["step"]
        > before.policy.optimizer.state_dict()["state"][0]["step"]
    )
    logged = scalars(result.run_dir)
    steps = [step for step, _ in logged["episode/score"]]
    assert steps == sorted(steps) and steps[-1] > 400 and min(steps) < 400  # one curve across both sessions
    assert [step for step, _ in logged["eval/score"]] == [200, 400, 600]
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["resumes"][-1]["checkpoint"] == "step_000000000400.zip"
    assert record["resumes"][-1]["overrides"] == {"total_steps": 600}


def test_resume_refuses_to_change_the_experiment(short_run):
    with pytest.raises(ValueError, match="cannot change game"):
        resume_run(short_run.run_dir, {"game": "Pong"}, progress=False)


def test_cli_errors_are_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match=r"error: unknown Atari game 'Bowlnig'; did you mean Bowling"):
        train_main(["--game", "Bowlnig", "--logdir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"learning_starts .* exceeds buffer_size"):
        train_main(["--learning-starts", "2000", "--buffer-size", "1000", "--logdir", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a training run directory"):
        train_main(["--resume", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # nothing was created


def test_compile_flag_takes_auto_on_or_off(capsys):
    with pytest.raises(SystemExit):
        train_main(["--compile", "yes"])
    assert "argument --compile: invalid choice: 'yes'" in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    command = [sys.executable, str(REPO / "scripts/train_ddqn.py"), "--game", "Pong", "--total-steps", "100000"]
    command += ["--learning-starts", "50", "--buffer-size", "500", "--torch-threads", "1", "--no-progress"]
    command += ["--logdir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*/tensorboard/events.*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the writer exists once training has started
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    (saved,) = checkpoints(run_dir)
    assert "--resume" in out and str(saved) in out
    assert load_agent(saved)(torch.zeros(1, 4, 84, 84)).shape == (1, 6)
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"] is True
    assert os.path.getsize(saved) > 1_000_000


@pytest.mark.slow
def test_two_games_at_once_keep_one_update_per_four_agent_steps(tmp_path):
    config = dataclasses.replace(SHORT, num_envs=2, vec_backend="async", eval_every=0, checkpoint_every=0)
    result = start_run(config, tmp_path, progress=False)
    model = DoubleDQN.load(result.run_dir / "final_model.zip", device="cpu")
    assert model.num_timesteps == 400
    assert model._n_updates == (400 - 100) // 4  # as with one game
