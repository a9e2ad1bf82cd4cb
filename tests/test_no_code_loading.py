"""Loading runs no code: crafted SB3 zips, run directories and CIFAR batches whose unpickling would create a marker
file are handed to every loader, which must refuse them in one clear line (or ignore the pickled parts) without
the marker appearing. Each payload is first shown to be live: ordinary unpickling (or SB3's own ``load``) does
create the marker. Also: the SB3 policies rebuilt without SB3's ``load`` act exactly as SB3's ``predict``."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO

from agents import load_agent
from agents.checkpoints import CHECKPOINT_DIR, FINAL_MODEL, save_checkpoint
from agents.networks import NatureQNetwork
from agents.sb3_policies import load_sb3_policy
from agents.sb3_zip import read_sb3_zip
from agents.training import TrainConfig, build_model, create_run, load_for_resume, make_training_env, prepare_resume
from classifiers.data import load_dataset
from tests.corpus import Case, load_script, run_case

FRAMES = np.random.default_rng(0).integers(0, 256, (32, 4, 84, 84), dtype=np.uint8)
ALGOS = {"ppo": PPO, "a2c": A2C, "dqn": DQN}


class Payload:
    """Unpickling this creates ``marker``: a stand-in for any code a crafted file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


class FrameEnv(gym.Env):
    """Uint8 Atari-like frame stacks (channel-first, or channel-last as a VecFrameStack gives) and 6 actions."""

    def __init__(self, shape: tuple[int, ...] = (4, 84, 84), action_space: spaces.Space | None = None) -> None:
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = action_space or spaces.Discrete(6)

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def sb3_model(algo: str, shape: tuple[int, ...] = (4, 84, 84), action_space: spaces.Space | None = None, **kwargs):
    """A tiny SB3 model with CnnPolicy whose action head is scaled up, so that actions differ between frames."""
    extra = {"dqn": {"buffer_size": 10}, "ppo": {"n_steps": 8, "batch_size": 8}, "a2c": {"n_steps": 5}}[algo]
    model = ALGOS[algo]("CnnPolicy", FrameEnv(shape, action_space), device="cpu", seed=0, **extra, **kwargs)
    head = model.policy.q_net.q_net[0] if algo == "dqn" else model.policy.action_net
    with torch.no_grad():
        head.weight.mul_(300)
    return model


def live_payload(marker: Path) -> bytes:
    """The pickled payload, checked to create ``marker`` when unpickled normally (then the marker is removed)."""
    raw = pickle.dumps(Payload(marker))
    pickle.loads(raw)
    assert marker.exists(), "the payload must be live for these tests to mean anything"
    marker.unlink()
    return raw


def malicious_torch_file(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": Payload(marker)}, buffer)
    return buffer.getvalue()


def rewrite_zip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of the zip ``source`` at ``target`` with the members in ``replace`` swapped (or added)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))
        for name in set(replace) - set(old.namelist()):
            new.writestr(name, replace[name])
    return target


def poisoned_data(source: Path, marker: Path) -> bytes:
    """``source``'s ``data`` JSON with SB3-style ``:serialized:`` entries that run the payload when SB3 loads."""
    data = json.loads(zipfile.ZipFile(source).read("data"))
    encoded = base64.b64encode(live_payload(marker)).decode()
    for key in ("policy_class", "lr_schedule", "observation_space"):
        entry = data[key] if isinstance(data.get(key), dict) else {}
        data[key] = {**entry, ":serialized:": encoded}
    return json.dumps(data).encode()


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sb3") / "ppo.zip"
    sb3_model("ppo").save(path)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "loading ran code from the file"


# ------------------------------------------------------------------ rebuilt SB3 policies act as SB3's own load
@pytest.mark.parametrize(
    ("algo", "shape"),
    [
        ("ppo", (4, 84, 84)),
        pytest.param("a2c", (84, 84, 4), marks=pytest.mark.slow),
        pytest.param("dqn", (4, 84, 84), marks=pytest.mark.slow),  # test_agents_loading checks DQN's Q-values too
    ],
)
def test_rebuilt_sb3_policy_acts_as_sb3_load(tmp_path, request, algo, shape):
    """Same greedy actions as ``ALGO.load(...).predict(deterministic=True)`` (channel-last models: SB3 transposes
    their frames; ours take the channel-first stacks), and the same action distribution."""
    path = tmp_path / "model.zip"
    if algo == "ppo":
        path = request.getfixturevalue("ppo_zip")
    else:
        sb3_model(algo, shape).save(path)
    reference = ALGOS[algo].load(path, device="cpu")
    network = load_sb3_policy(path, algo)
    assert isinstance(network, NatureQNetwork) and not network.training
    observations = FRAMES if shape[0] == 4 else FRAMES.transpose(0, 2, 3, 1)
    expected = reference.predict(observations, deterministic=True)[0]
    with torch.no_grad():
        scores = network(torch.as_tensor(FRAMES))
    assert len(set(expected.tolist())) > 1  # the comparison tells actions apart
    np.testing.assert_array_equal(scores.argmax(1).numpy(), expected)
    with torch.no_grad():
        obs = reference.policy.obs_to_tensor(observations)[0]
        if algo == "dqn":
            torch.testing.assert_close(scores, reference.policy.q_net(obs))
        else:
            logits = reference.policy.get_distribution(obs).distribution.logits
            torch.testing.assert_close(scores.log_softmax(1), logits)
    torch.testing.assert_close(load_agent(path)(torch.as_tensor(FRAMES[:2])), scores[:2])


# ------------------------------------------------------------------------------------ (a) crafted SB3 zips
def test_pickled_entries_of_an_sb3_zip_are_never_decoded(tmp_path, ppo_zip, marker):
    """The ``data`` JSON's cloudpickled entries run code under SB3's load, and are ignored here."""
    crafted = rewrite_zip(ppo_zip, tmp_path / "crafted.zip", {"data": poisoned_data(ppo_zip, marker)})
    with contextlib.suppress(Exception):  # SB3 may fail in any way after the payload ran
        PPO.load(crafted, device="cpu")
    assert marker.exists(), "SB3's own load runs the payload: the crafted zip is live"
    marker.unlink()
    clean, network = load_sb3_policy(ppo_zip, "ppo"), load_sb3_policy(crafted, "ppo")
    torch.testing.assert_close(network(torch.as_tensor(FRAMES[:4])), clean(torch.as_tensor(FRAMES[:4])))
    assert isinstance(load_agent(crafted), NatureQNetwork)
    assert read_sb3_zip(crafted, optimizer=True).data["policy_class"][":serialized:"] == "<not unpickled>"


@pytest.mark.parametrize("member", ["policy.pth", "policy.optimizer.pth"])
def test_code_in_an_sb3_tensor_file_is_refused(tmp_path, ppo_zip, marker, member):
    crafted = rewrite_zip(ppo_zip, tmp_path / "crafted.zip", {member: malicious_torch_file(marker)})
    with pytest.raises(ValueError) as err:
        read_sb3_zip(crafted, optimizer=True)
    assert "not weights only" in one_line(err) and "crafted.zip" in str(err.value)
    if member == "policy.pth":
        for load in (lambda: load_sb3_policy(crafted, "ppo"), lambda: load_agent(crafted)):
            with pytest.raises(ValueError, match="not weights only") as err:
                load()
            one_line(err)
    else:  # acting needs no optimizer: the file is not even read
        assert isinstance(load_sb3_policy(crafted, "ppo"), NatureQNetwork)


def test_unread_members_stay_unread(tmp_path, ppo_zip, marker):
    crafted = rewrite_zip(ppo_zip, tmp_path / "crafted.zip", {"pytorch_variables.pth": malicious_torch_file(marker)})
    assert isinstance(load_agent(crafted), NatureQNetwork)


# ------------------------------------------------------------------------------------ (b) run directories
SHORT = TrainConfig(game="Bowling", total_steps=400, learning_starts=100, buffer_size=200, exploration_steps=200,
                    checkpoint_every=200, eval_every=200, torch_threads=1, compile="off")  # fmt: skip


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of our Double DQN, as train_ddqn.py writes it."""
    config = dataclasses.replace(SHORT)
    env = make_training_env(config)
    try:
        return save_checkpoint(build_model(config, env), tmp_path_factory.mktemp("ckpt"))
    finally:
        env.close()


def test_a_run_directory_of_crafted_models_is_refused(tmp_path, ppo_zip, marker):
    run_dir = create_run(dataclasses.replace(SHORT), tmp_path)
    bad = rewrite_zip(ppo_zip, tmp_path / "bad.zip", {"policy.pth": malicious_torch_file(marker)})
    (run_dir / CHECKPOINT_DIR).mkdir()
    (run_dir / CHECKPOINT_DIR / "step_000000000200.zip").write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match="not weights only") as err:
        load_agent(run_dir)
    one_line(err)
    with pytest.raises(ValueError, match="no readable checkpoint") as err:
        prepare_resume(run_dir)
    assert "not weights only" in one_line(err)
    (run_dir / FINAL_MODEL).write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match="not weights only") as err:
        load_agent(run_dir)
    one_line(err)


def test_resume_ignores_pickled_entries_and_refuses_code_in_tensors(tmp_path, real_checkpoint, marker):
    """A checkpoint whose ``data`` carries payloads resumes without running them; a newer one with code in its
    tensors is skipped (with a warning) for it."""
    run_dir = create_run(dataclasses.replace(SHORT), tmp_path)
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir()
    poisoned = rewrite_zip(
        real_checkpoint, folder / real_checkpoint.name, {"data": poisoned_data(real_checkpoint, marker)}
    )
    rewrite_zip(
        real_checkpoint, folder / "step_000000000300.zip", {"policy.optimizer.pth": malicious_torch_file(marker)}
    )
    with pytest.warns(UserWarning, match="not weights only"):
        config, checkpoint = prepare_resume(run_dir)
    assert checkpoint == poisoned
    env = make_training_env(config)
    try:
        model = load_for_resume(config, checkpoint, env)
    finally:
        env.close()
    assert model.num_timesteps == 0
    assert isinstance(load_agent(poisoned), NatureQNetwork)


# ------------------------------------------------------------------------------------ (c) CIFAR batches
def write_cifar10(root: Path, poisoned: dict[str, bytes] | None = None) -> Path:
    """A tiny CIFAR-10 folder (Python-2 style pickles), with the files in ``poisoned`` replaced."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            b"labels": [0, 1, 2, 3],
            b"batch_label": b"x",
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    for name, raw in (poisoned or {}).items():
        (folder / name).write_bytes(raw)
    return root


def test_clean_cifar_pickles_of_every_protocol_load(tmp_path):
    """The restricted unpickler still reads what Python 2 and every Python 3 protocol write for a batch."""
    root = write_cifar10(tmp_path / "plain")
    assert len(load_dataset("cifar10", "train", root)) == 20
    rows = np.random.default_rng(1).integers(0, 256, (4, 3072), dtype=np.uint8)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        batch = {"data": rows, "labels": np.arange(4), "count": np.int64(4)}
        (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
        test = load_dataset("cifar10", "test", root)
        assert test.labels.tolist() == [0, 1, 2, 3]
        np.testing.assert_array_equal(test.images.numpy(), rows.reshape(4, 3, 32, 32).transpose(0, 2, 3, 1))


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("data_batch_3", lambda m: pickle.dumps({b"data": Payload(m), b"labels": [0]}, protocol=2)),
        ("data_batch_1", lambda m: pickle.dumps(Payload(m), protocol=0)),
        ("data_batch_5", lambda m: pickle.dumps({b"data": np.array([Payload(m)], dtype=object), b"labels": [0]})),
        ("batches.meta", lambda m: pickle.dumps({b"label_names": [Payload(m)]}, protocol=2)),
    ],
    ids=["in-a-batch-dict", "protocol-0-file", "inside-an-object-array", "class-names"],
)
def test_code_in_a_cifar_folder_is_refused(tmp_path, marker, name, make):
    raw = make(marker)
    pickle.loads(raw)
    assert marker.exists(), "the payload must be live"
    marker.unlink()
    root = write_cifar10(tmp_path / "data", {name: raw})
    with pytest.raises(ValueError, match=r"is not a CIFAR pickle: refused to load") as err:
        load_dataset("cifar10", "train", root)
    assert name in one_line(err)


# ------------------------------------------------------------------------------------ (d) attack_policy --sb3
def test_attack_policy_refuses_a_crafted_sb3_zip(tmp_path, capsys, ppo_zip, marker):
    rewrite_zip(ppo_zip, tmp_path / "crafted.zip", {"policy.pth": malicious_torch_file(marker)})
    case = Case("attack_policy", ("--sb3", "{tmp}/crafted.zip", "--out", "{out}"), "not weights only")
    run_case(case, tmp_path, capsys)


@pytest.mark.slow  # a real (tiny) run: Pong, two settings, tables and plots
def test_attack_policy_plays_an_sb3_zip_without_running_its_pickles(tmp_path, capsys, ppo_zip, marker):
    crafted = rewrite_zip(ppo_zip, tmp_path / "crafted.zip", {"data": poisoned_data(ppo_zip, marker)})
    script = load_script("attack_policy")
    argv = ["--sb3", str(crafted), "--attacks", "fgsm", "--lambdas", "1", "--episodes", "1", "--max-steps", "3"]
    script.main([*argv, "--no-progress", "--out", str(tmp_path / "out")])
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["attack"] for row in rows] == ["clean", "fgsm", "worst"]
    assert "SB3 PPO CnnPolicy crafted.zip" in capsys.readouterr().out
