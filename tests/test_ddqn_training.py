"""Short real training runs on Bowling: run directory, TensorBoard scores, checkpoints, resume (rebuilt without
unpickling, from an older checkpoint when the newest is truncated), Ctrl-C and SIGTERM, a stop at the first NaN,
the run lock, and evaluation games that end."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from stable_baselines3.common.logger import Logger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import DoubleDQN, NatureQNetwork, load_agent
from agents.callbacks import StopRequest
from agents.checkpoints import checkpoint_step, checkpoints
from agents.jobs.train_ddqn import main as train_main
from agents.rollout import play_episodes
from agents.training import (
    TrainConfig,
    build_model,
    create_run,
    load_for_resume,
    make_eval_env,
    make_training_env,
    prepare_resume,
    read_config,
    replay_kwargs,
    resolve_device,
    resume_run,
    start_run,
)
from rlrobust.runs import RunLock

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


SB3_TAGS = ("rollout/ep_rew_mean", "rollout/ep_len_mean", "rollout/exploration_rate", "time/fps", "train/n_updates")


def test_the_tags_of_stable_baselines3_are_written_beside_ours_with_its_meanings(short_run):
    """Curves that overlay SB3 and rl-zoo runs: ep_rew_mean is the mean raw score of the last 100 finished games
    (SB3's ep_info_buffer), exploration_rate is epsilon, n_updates counts gradient updates, fps is positive."""
    logged = {
        tag: [(step, value) for step, value in values if step <= 400]
        for tag, values in scalars(short_run.run_dir).items()
    }
    for tag in SB3_TAGS:
        assert logged.get(tag), f"no {tag} in TensorBoard"
    assert logged["rollout/exploration_rate"] == logged["train/epsilon"]
    games = list(zip(logged["episode/score"], logged["episode/length"], strict=True))
    for (step, mean_score), (_, mean_length) in zip(
        logged["rollout/ep_rew_mean"], logged["rollout/ep_len_mean"], strict=True
    ):
        finished = [(score, length) for (at, score), (_, length) in games if at <= step][-100:]
        assert mean_score == pytest.approx(statistics.fmean(score for score, _ in finished), rel=1e-6)
        assert mean_length == pytest.approx(statistics.fmean(length for _, length in finished), rel=1e-6)
    updates = [value for _, value in logged["train/n_updates"]]
    assert updates == sorted(updates) and 0 < updates[-1] <= (400 - 100) // 4
    assert all(value > 0 for _, value in logged["time/fps"])


def test_resume_continues_the_step_count_schedule_optimizer_and_curves(short_run, capsys):
    before = DoubleDQN.load(checkpoints(short_run.run_dir)[-1], device="cpu")
    # as if killed between the checkpoint at step 400 and its evaluation: the resume plays that evaluation first
    evaluations = json.loads((short_run.run_dir / "evaluations.json").read_text())
    assert [row["step"] for row in evaluations] == [200, 400]
    (short_run.run_dir / "evaluations.json").write_text(json.dumps(evaluations[:1]))
    result = resume_run(short_run.run_dir, {"total_steps": 600}, progress=False)
    assert "refilling it with 100 agent steps" in capsys.readouterr().out
    replayed = json.loads((short_run.run_dir / "evaluations.json").read_text())
    assert [row["step"] for row in replayed] == [200, 400, 600]
    assert replayed[1] == evaluations[1]  # the same greedy games of the same network
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
    # 400 twice: the first session logged it before the row was dropped above (a real kill would not have)
    assert sorted({step for step, _ in logged["eval/score"]}) == [200, 400, 600]
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["resumes"][-1]["checkpoint"] == "step_000000000400.zip"
    assert record["resumes"][-1]["overrides"] == {"total_steps": 600}


def test_resume_refuses_to_change_the_experiment(short_run):
    with pytest.raises(ValueError, match="cannot change game"):
        resume_run(short_run.run_dir, {"game": "Pong"}, progress=False)


def sb3_load(checkpoint: Path, config: TrainConfig) -> DoubleDQN:
    """SB3's own (unpickling) load of a checkpoint, with the run's resumable settings: the reference a resume is
    compared with."""
    train_freq, gradient_steps = config.update_schedule()
    return DoubleDQN.load(
        checkpoint,
        env=make_training_env(config),
        device=resolve_device(config.device),
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        replay_buffer_kwargs=replay_kwargs(config),
        train_freq=train_freq,
        gradient_steps=gradient_steps,
    )


def test_resume_rebuilds_the_model_as_sb3_load_did_without_unpickling(short_run, monkeypatch):
    """The resumed model (config.json + the checkpoint's tensors and counters) equals SB3's unpickling
    ``DoubleDQN.load`` of the same checkpoint, and trains on identically."""
    config, _ = read_config(short_run.run_dir)
    config = dataclasses.replace(config, learning_starts=20)  # a shorter refill after the restart
    checkpoint = checkpoints(short_run.run_dir)[-1]
    reference = sb3_load(checkpoint, config)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a resume must not unpickle the checkpoint")

    monkeypatch.setattr("stable_baselines3.common.save_util.load_from_zip_file", no_unpickling)
    monkeypatch.setattr("cloudpickle.loads", no_unpickling)
    rebuilt = load_for_resume(config, checkpoint, make_training_env(config))
    monkeypatch.undo()
    for name in ("num_timesteps", "_n_updates", "_n_calls", "_episode_num", "exploration_rate", "exploration_steps"):
        assert getattr(rebuilt, name) == getattr(reference, name), name
    assert rebuilt.num_timesteps == checkpoint_step(checkpoint)
    for model in (reference, rebuilt):
        model.set_logger(Logger(folder=None, output_formats=[]))
        model.set_random_seed(config.seed + model.num_timesteps)  # the global streams, as each run would have them
        model.learn(config.learning_starts + 12, reset_num_timesteps=False)  # refill, then 3 updates
    assert rebuilt._n_updates == reference._n_updates
    for (name, a), b in zip(reference.policy.state_dict().items(), rebuilt.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    steps = [state["step"] for state in rebuilt.policy.optimizer.state_dict()["state"].values()]
    assert steps == [state["step"] for state in reference.policy.optimizer.state_dict()["state"].values()]
    for model in (reference, rebuilt):
        model.env.close()


def test_a_truncated_newest_checkpoint_falls_back_to_the_older_one(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run.run_dir, run_dir, ignore=shutil.ignore_patterns("tensorboard"))
    older, newest = checkpoints(run_dir)[-2:]
    newest.write_bytes(newest.read_bytes()[:5000])  # a copy cut short (full disk, killed rsync)
    config_before = (run_dir / "config.json").read_bytes()
    with pytest.warns(UserWarning, match=f"skipping an unreadable checkpoint.*{newest.name}.*using {older.name}"):
        config, checkpoint = prepare_resume(run_dir, {"total_steps": 2_000})
    assert checkpoint == older
    assert (run_dir / "config.json").read_bytes() == config_before  # nothing recorded before the checkpoint loads

    from agents.training import resumed_model

    env = make_training_env(config)
    with pytest.warns(UserWarning, match="renamed the unreadable"):
        model = resumed_model(config, run_dir, checkpoint, env)
    env.close()
    assert model.num_timesteps == checkpoint_step(older)
    assert checkpoints(run_dir) == [older]  # set aside, so pruning cannot delete the good one for it
    assert (run_dir / "checkpoints" / f"{newest.name}.unreadable").is_file()
    resumes = json.loads((run_dir / "config.json").read_text())["resumes"]
    assert resumes[-1]["checkpoint"] == older.name and resumes[-1]["overrides"]["total_steps"] == 2_000


def test_a_checkpoint_that_does_not_load_records_no_resume(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run.run_dir, run_dir, ignore=shutil.ignore_patterns("tensorboard"))
    config_before = (run_dir / "config.json").read_bytes()
    config, checkpoint = prepare_resume(run_dir, {"total_steps": 2_000})
    foreign = dataclasses.replace(config, network="neurips")  # a network the checkpoint's tensors do not fit
    with pytest.raises(ValueError, match="does not fit this run's network"):
        resume_run_with(foreign, run_dir, checkpoint)
    assert (run_dir / "config.json").read_bytes() == config_before


def resume_run_with(config: TrainConfig, run_dir: Path, checkpoint: Path):
    from agents.training import run

    return run(config, run_dir, checkpoint=checkpoint, progress=False)


def test_a_second_job_on_the_same_run_is_refused(short_run):
    config_before = (short_run.run_dir / "config.json").read_bytes()
    with RunLock(short_run.run_dir), pytest.raises(ValueError, match="in use by another running job"):
        resume_run(short_run.run_dir, {"total_steps": 2_000}, progress=False)
    assert (short_run.run_dir / "config.json").read_bytes() == config_before


def test_load_agent_of_a_run_takes_its_newest_model(short_run, tmp_path):
    """After a resume stopped early, the run's newest checkpoint is newer than its final model: load_agent says so
    and loads the checkpoint."""
    older, newest = checkpoints(short_run.run_dir)[-2:]
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(older, run_dir / "final_model.zip")
    shutil.copy(newest, run_dir / "checkpoints" / newest.name)
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with pytest.warns(UserWarning, match="newer than final_model.zip"):
        network = load_agent(run_dir)
    torch.testing.assert_close(network(frames), load_agent(newest)(frames), rtol=0, atol=0)
    shutil.copy(newest, run_dir / "final_model.zip")  # a final model as new as the checkpoint is preferred
    torch.testing.assert_close(load_agent(run_dir)(frames), load_agent(newest)(frames), rtol=0, atol=0)


def test_a_nan_loss_stops_the_run_with_one_line_and_no_final_model(tmp_path, capsys):
    """An absurd (finite) learning rate blows the weights up within a few updates: the run stops at the next check,
    exits 1 with one error line, keeps the checkpoint from before and writes no final model."""
    argv = ["--game", "Bowling", "--total-steps", "300", "--learning-starts", "50", "--buffer-size", "100"]
    argv += ["--exploration-steps", "100", "--max-episode-steps", "120", "--checkpoint-every", "50"]
    argv += ["--eval-every", "0", "--log-every", "25", "--threads", "1", "--quiet"]
    argv += ["--lr", "1e30", "--runs", str(tmp_path)]
    assert train_main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "training diverged: " in lines[0] and "between agent steps 50 and 75" in lines[0], err
    (run_dir,) = tmp_path.iterdir()
    assert [p.name for p in checkpoints(run_dir)] == ["step_000000000050.zip"]
    assert "step_000000000050.zip" in lines[0]
    assert not (run_dir / "final_model.zip").exists() and not (run_dir / "q_network.pt").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "between agent steps 50 and 75" in summary["diverged"] and summary["final_model"] is None
    assert torch.isfinite(load_agent(run_dir)(torch.zeros(1, 4, 84, 84))).all()


def test_a_model_with_nan_weights_reports_it():
    config = dataclasses.replace(SHORT, game="Pong", device="cpu")
    env = make_training_env(config)
    model = build_model(config, env)
    assert model.training_problem() is None
    with torch.no_grad():
        next(model.q_net.parameters())[0].fill_(float("inf"))
    assert "weight tensors became NaN or infinite (q_net.network.features.0.weight" in model.training_problem()
    env.close()


def test_sigint_and_sigterm_both_ask_for_a_stop_and_a_second_one_aborts():
    previous = signal.getsignal(signal.SIGTERM)
    for number in (signal.SIGTERM, signal.SIGINT):
        stop = StopRequest()
        with stop.on_sigint():
            os.kill(os.getpid(), number)
            time.sleep(0.01)  # the handler runs between bytecodes of the main thread
            assert stop.requested and stop.signal == signal.Signals(number).name
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_evaluation_games_end_at_the_evaluation_cap(capsys):
    config = TrainConfig(game="Bowling", eval_max_steps=40, noop_max=0)
    env = make_eval_env(config)
    network = NatureQNetwork(n_actions=env.action_space.n).eval()
    ((_, length),) = play_episodes(env, network, 1, progress=True, desc="evaluating at step 0")
    env.close()
    assert length == 40  # a random network never ends a Bowling game in 40 steps; the cap does
    assert "evaluating at step 0" in capsys.readouterr().err


def test_compile_flag_takes_auto_on_or_off(capsys):
    with pytest.raises(SystemExit):
        train_main(["--compile", "yes"])
    assert "argument --compile: invalid choice: 'yes'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"]
)
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, signum):
    """Ctrl-C and a cluster's pre-emption (SIGTERM) both checkpoint and exit with 130."""
    command = [sys.executable, str(REPO / "scripts/train_ddqn.py"), "--game", "Pong", "--total-steps", "100000"]
    command += ["--learning-starts", "50", "--buffer-size", "500", "--threads", "1", "--quiet"]
    command += ["--runs", str(tmp_path)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*/tensorboard/events.*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the writer exists once training has started
    time.sleep(1.0)
    process.send_signal(signum)
    out, err = process.communicate(timeout=180)  # generous: a loaded 2-core machine saves slowly
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


def test_a_run_written_before_the_training_package_still_resumes(short_run, tmp_path):
    """config.json as train_ddqn.py wrote it before its provenance came from rlrobust.runs, lacking a setting
    added since (it takes today's default) and holding one removed since (ignored)."""
    run_dir = tmp_path / "run"
    shutil.copytree(short_run.run_dir, run_dir, ignore=shutil.ignore_patterns("tensorboard"))
    record = json.loads((run_dir / "config.json").read_text())
    settings = {k: v for k, v in record["config"].items() if k != "replay_on_device"} | {"a_removed_setting": 1}
    old = {"config": settings, "created": "2025-01-01T00:00:00+00:00", "command": ["scripts/train_ddqn.py"]}
    (run_dir / "config.json").write_text(json.dumps(old | {k: record[k] for k in ("versions", "machine", "git")}))
    config, checkpoint = prepare_resume(run_dir, {"total_steps": 2_000})
    assert config.replay_on_device is True and checkpoint == checkpoints(run_dir)[-1]


@pytest.mark.parametrize("name", ["config", "build", "records", "resume", "session"])
def test_the_examples_in_the_training_modules_run(name):
    module = importlib.import_module(f"agents.training.{name}")
    assert doctest.testmod(module).failed == 0


def test_a_run_in_a_given_folder_refuses_another_runs_files_unless_overwritten(tmp_path):
    out = tmp_path / "mine"
    assert create_run(dataclasses.replace(SHORT), out=out) == out and (out / "config.json").is_file()
    (out / "checkpoints").mkdir()
    (out / "notes.txt").write_text("kept")
    with pytest.raises(ValueError, match="already holds results of another run"):
        create_run(dataclasses.replace(SHORT, seed=1), out=out)
    assert read_config(out)[0].seed == 0
    create_run(dataclasses.replace(SHORT, seed=1), out=out, overwrite=True)
    assert read_config(out)[0].seed == 1 and not (out / "checkpoints").exists() and (out / "notes.txt").is_file()
