"""Bad-input corpus, loading: wrong-kind, empty, truncated and code-carrying files handed to the scripts' file
arguments end in one ``error:`` line with status 2, write nothing, and run nothing (see tests/corpus.py).

A case names its input files as ``{tmp}/<name>``; :data:`MAKERS` writes them first. SB3 zips are real tiny models
(built once per module) or edits of them, so the refusals are the ones a user would meet."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from agents.actor_critic import ActorCritic
from agents.checkpoints import CHECKPOINT_DIR, CONFIG_FILE, FINAL_MODEL
from agents.training import TrainConfig
from tests.corpus import Case, run_case
from tests.test_no_code_loading import Payload, malicious_torch_file, sb3_model, write_cifar10

MARKER = "MARKER"  # what every payload would create in {tmp} if it ran

Maker = Callable[[Path, Callable[[str], bytes]], None]  # (tmp folder, SB3 zip bytes by name) -> writes the input


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def actor_critic(n_actions: int, nan: bool = False) -> bytes:
    torch.manual_seed(0)
    state = ActorCritic(n_actions).state_dict()
    if nan:  # a diverged run
        state["base.main.7.weight"][3, 5] = float("nan")
    return torch_bytes(state)


def diverged(raw: bytes) -> bytes:
    """The SB3 zip ``raw`` with one infinite weight in its feature extractor."""
    return edit_policy(raw, lambda policy: policy["features_extractor.linear.0.weight"][0].fill_(float("inf")))


def edit_zip(raw: bytes, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> bytes:
    """The zip ``raw`` with members swapped or added (``replace``) and removed (``drop``)."""
    replace = replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as old, zipfile.ZipFile(out, "w") as new:
        for name in old.namelist():
            if name not in drop:
                new.writestr(name, replace.get(name, old.read(name)))
        for name in set(replace) - set(old.namelist()):
            new.writestr(name, replace[name])
    return out.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def edit_data(raw: bytes, change: Callable[[dict], None]) -> bytes:
    """The SB3 zip ``raw`` with its ``data`` JSON changed in place by ``change``."""
    data = json.loads(zipfile.ZipFile(io.BytesIO(raw)).read("data"))
    change(data)
    return edit_zip(raw, {"data": json.dumps(data).encode()})


def four_actions(raw: bytes) -> bytes:
    """A consistent PPO zip for a 4-action game (Breakout): action head and action space cut to 4."""

    def cut(policy: dict[str, torch.Tensor]) -> None:
        policy.update({k: v[:4].clone() for k, v in policy.items() if k.startswith("action_net.")})

    return edit_data(edit_policy(raw, cut), lambda data: data["action_space"].update(n="4"))


def policy_class(module: str, name: str) -> Callable[[bytes], bytes]:
    """An edit naming another policy class in the zip's JSON, as SB3 writes it for a subclass."""

    def change(data: dict) -> None:
        data["policy_class"].update({"__module__": module, "__init__": f"<function {name}.__init__ at 0x0>"})

    return lambda raw: edit_data(raw, change)


def edit_policy(raw: bytes, change: Callable[[dict[str, torch.Tensor]], None]) -> bytes:
    """The SB3 zip ``raw`` with its ``policy.pth`` state dict changed in place by ``change``."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        policy = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)
    change(policy)
    return edit_zip(raw, {"policy.pth": torch_bytes(policy)})


def one_frame(raw: bytes) -> bytes:
    """A PPO zip as SB3 writes it for single 84x84 frames (no frame stack): 1-channel first convolutions."""

    def first_channel(policy: dict[str, torch.Tensor]) -> None:
        for key in [k for k in policy if k.endswith("cnn.0.weight")]:
            policy[key] = policy[key][:, :1].clone()

    return edit_data(edit_policy(raw, first_channel), lambda data: data["observation_space"].update(_shape=[1, 84, 84]))


def continuous_actions(raw: bytes) -> bytes:
    """A PPO zip as SB3 writes it for 2 continuous actions: a Gaussian head (``log_std``) and a Box action space."""

    def gaussian(policy: dict[str, torch.Tensor]) -> None:
        policy.update(
            {k: v[:2].clone() for k, v in policy.items() if k.startswith("action_net.")}, log_std=torch.zeros(2)
        )

    box = {":type:": "<class 'gymnasium.spaces.box.Box'>", "dtype": "float32", "_shape": [2], "low": "[-1. -1.]"}
    return edit_data(edit_policy(raw, gaussian), lambda data: data.update(action_space=box))


def observation_space(**fields: str) -> Callable[[bytes], bytes]:
    """An edit of the observation space's fields in the zip's JSON."""
    return lambda raw: edit_data(raw, lambda data: data["observation_space"].update(fields))


def code_in_policy(tmp: Path, zips: Callable[[str], bytes]) -> bytes:
    return edit_zip(zips("ppo"), {"policy.pth": malicious_torch_file(tmp / MARKER)})


def file(data: bytes | Callable[[Path, Callable[[str], bytes]], bytes]) -> Callable[[str], Maker]:
    """A maker writing ``data`` (bytes, or made from the tmp folder and the SB3 zips) to ``{tmp}/<name>``."""

    def maker(name: str) -> Maker:
        return lambda tmp, zips: (tmp / name).write_bytes(data(tmp, zips) if callable(data) else data)

    return maker


def sb3(base: str, edit: Callable[[bytes], bytes] = lambda raw: raw) -> Callable[[str], Maker]:
    return file(lambda tmp, zips: edit(zips(base)))


def run_folder(final: bool, checkpoint: bool) -> Callable[[str], Maker]:
    """A training run directory of Pong (a real config.json) whose final model and/or checkpoint carry code."""

    def maker(name: str) -> Maker:
        def write(tmp: Path, zips: Callable[[str], bytes]) -> None:
            folder = tmp / name
            (folder / CHECKPOINT_DIR).mkdir(parents=True)
            record = {"config": dataclasses.asdict(TrainConfig(game="Pong")), "resumes": []}
            (folder / CONFIG_FILE).write_text(json.dumps(record))
            if final:
                (folder / FINAL_MODEL).write_bytes(code_in_policy(tmp, zips))
            if checkpoint:
                (folder / CHECKPOINT_DIR / "step_000000000200.zip").write_bytes(code_in_policy(tmp, zips))

        return write

    return maker


def cifar(batch: str, raw: Callable[[Path], bytes]) -> Callable[[str], Maker]:
    """A CIFAR-10 folder whose ``batch`` file is replaced by ``raw``."""
    return lambda name: lambda tmp, zips: write_cifar10(tmp / name, {batch: raw(tmp)})


def payload_batch(tmp: Path) -> bytes:
    return pickle.dumps({b"data": Payload(tmp / MARKER), b"labels": [0]}, protocol=2)


MAKERS: dict[str, Callable[[str], Maker]] = {
    "empty.pt": file(b""),
    "notes.txt": file(b"these are not weights\n"),
    "code.pt": file(lambda tmp, zips: malicious_torch_file(tmp / MARKER)),
    "list.pt": file(torch_bytes([1, 2, 3])),
    "other_layout.pt": file(torch_bytes({"layer.weight": torch.zeros(3, 3)})),
    "cut.pt": file(actor_critic(6)[:5000]),
    "breakout_ac.pt": file(actor_critic(4)),
    "nan_ac.pt": file(actor_critic(6, nan=True)),
    "inf_ppo.zip": sb3("ppo", diverged),
    "text.zip": file(lambda tmp, zips: zip_of({"readme.txt": b"not a model"})),
    "code_policy.zip": file(code_in_policy),
    "no_policy.zip": sb3("ppo", lambda raw: edit_zip(raw, drop=("policy.pth",))),
    "cut.zip": sb3("ppo", lambda raw: raw[: len(raw) // 2]),
    "bad_json.zip": sb3("ppo", lambda raw: edit_zip(raw, {"data": b"{not json"})),
    "ppo.zip": sb3("ppo"),
    "dqn.zip": sb3("dqn"),
    "ppo_net_arch.zip": sb3("ppo_net_arch"),
    "dqn_raw_pixels.zip": sb3("dqn_raw_pixels"),
    "ppo_one_frame.zip": sb3("ppo", one_frame),
    "ppo_box_actions.zip": sb3("ppo", continuous_actions),
    "breakout_ppo.zip": sb3("ppo", four_actions),
    "custom_policy.zip": sb3("ppo", policy_class("my_lab.nets", "MyPolicy")),
    "unit_box.zip": sb3("ppo", observation_space(high="[[[1 1 1 ... 1 1 1]]]")),
    "float_frames.zip": sb3("ppo", observation_space(dtype="float32")),
    "ours_as_sb3.zip": sb3("dqn", policy_class("agents.policies", "AtariQPolicy")),
    "run": run_folder(final=True, checkpoint=False),
    "run_ckpt": run_folder(final=False, checkpoint=True),
    "empty_dir": lambda name: lambda tmp, zips: (tmp / name).mkdir(),
    "cifar": cifar("data_batch_2", payload_batch),
    "cifar_test": cifar("test_batch", payload_batch),
    "cifar_cut": cifar("data_batch_4", lambda tmp: pickle.dumps({b"data": b"x" * 100, b"labels": [0]})[:-30]),
    "cifar_text": cifar("test_batch", lambda tmp: b"hello"),
}

AP = "attack_policy"
ER = "eval_rl_sap"
EVAL = ("--dataset", "synthetic", "--out", "{out}", "--model")
TRAIN = ("--method", "standard", "--dataset", "cifar10", "--epochs", "1", "--out-dir", "{out}", "--data-dir")


def agent(*argv: str) -> tuple[str, ...]:
    return (*argv, "--out", "{out}")


CASES = [
    # attack_policy.py --agent: the state dict, or any agent file
    Case(AP, agent("--agent", "{tmp}/empty.pt"), "cannot read agent checkpoint"),
    Case(AP, agent("--agent", "{tmp}/notes.txt"), "cannot read agent checkpoint"),
    Case(AP, agent("--agent", "{tmp}/code.pt"), "not weights only"),
    Case(AP, agent("--agent", "{tmp}/list.pt"), "no state dict of tensors"),
    Case(AP, agent("--agent", "{tmp}/other_layout.pt"), "unrecognised Q-network layout"),
    Case(AP, agent("--agent", "{tmp}/cut.pt"), "cannot read agent checkpoint"),
    Case(AP, agent("--agent", "{tmp}/breakout_ac.pt"), "scores 4 actions but Pong has 6"),
    Case(AP, agent("--agent", "{tmp}/nan_ac.pt"), "base.main.7.weight holds NaN or infinite values"),
    Case(AP, agent("--agent", "{tmp}/text.zip"), "cannot read agent checkpoint"),
    Case(AP, agent("--agent", "{tmp}/code_policy.zip"), "not weights only"),
    Case(AP, agent("--agent", "{tmp}/empty_dir"), "is a folder"),
    # attack_policy.py --sb3: read without SB3's unpickling load, stock CnnPolicy only
    Case(AP, agent("--sb3", "{tmp}/code_policy.zip"), "not weights only"),
    Case(AP, agent("--sb3", "{tmp}/no_policy.zip"), "not a stable-baselines3 model"),
    Case(AP, agent("--sb3", "{tmp}/cut.zip"), "cannot read stable-baselines3 zip"),
    Case(AP, agent("--sb3", "{tmp}/notes.txt"), "cannot read stable-baselines3 zip"),
    Case(AP, agent("--sb3", "{tmp}/bad_json.zip"), "cannot read stable-baselines3 zip"),
    Case(AP, agent("--sb3", "{tmp}/dqn.zip"), "holds a DQN model, not PPO: pass --sb3-algo dqn"),
    Case(AP, agent("--sb3", "{tmp}/ppo.zip", "--sb3-algo", "a2c"), "holds a PPO model, not A2C"),
    Case(AP, agent("--sb3", "{tmp}/ppo.zip", "--sb3-algo", "dqn"), "holds a PPO model, not DQN"),
    Case(AP, agent("--sb3", "{tmp}/ppo_net_arch.zip"), "net_arch=[]"),
    Case(AP, agent("--sb3", "{tmp}/dqn_raw_pixels.zip", "--sb3-algo", "dqn"), "normalize_images=False"),
    Case(AP, agent("--sb3", "{tmp}/ppo_one_frame.zip"), "observations of shape (1, 84, 84)"),
    Case(AP, agent("--sb3", "{tmp}/ppo_box_actions.zip"), "only discrete actions"),
    Case(AP, agent("--sb3", "{tmp}/unit_box.zip"), "are not pixels (255)"),
    Case(AP, agent("--sb3", "{tmp}/float_frames.zip"), "takes float32 observations"),
    Case(AP, agent("--sb3", "{tmp}/breakout_ppo.zip"), "scores 4 actions but Pong has 6"),
    Case(AP, agent("--sb3", "{tmp}/inf_ppo.zip"), "features_extractor.linear.0.weight holds NaN or infinite values"),
    Case(AP, agent("--sb3", "{tmp}/custom_policy.zip"), "policy class my_lab.nets.MyPolicy"),
    Case(AP, agent("--sb3", "{tmp}/ours_as_sb3.zip", "--sb3-algo", "dqn"), "an rlrobust model"),
    # eval_rl_sap.py AGENT: files and run directories
    Case(ER, agent("{tmp}/code.pt", "--games", "Pong"), "not weights only"),
    Case(ER, agent("{tmp}/run"), "not weights only"),
    Case(ER, agent("{tmp}/run_ckpt"), "not weights only"),
    Case(ER, agent("{tmp}/empty_dir"), "without final_model.zip"),
    Case(ER, agent("{tmp}/notes.txt", "--games", "Pong"), "cannot read agent checkpoint"),
    Case(ER, agent("{tmp}/ppo_net_arch.zip", "--games", "Pong"), "net_arch=[]"),
    Case(ER, agent("{tmp}/breakout_ppo.zip", "--games", "Pong"), "scores 4 actions but Pong has 6"),
    # eval_classifier.py --model, and a CIFAR folder carrying code
    Case("eval_classifier", (*EVAL, "{tmp}/code.pt"), "not weights only"),
    Case("eval_classifier", (*EVAL, "{tmp}/empty.pt"), "cannot read"),
    Case("eval_classifier", (*EVAL, "{tmp}/notes.txt"), "cannot read"),
    Case("eval_classifier", (*EVAL, "{tmp}/code_policy.zip"), "cannot read"),
    Case(
        "eval_classifier",
        ("--dataset", "cifar10", "--data-dir", "{tmp}/cifar_test", "--out", "{out}", "--model", "{tmp}/code.pt"),
        "refused to load",
    ),
    # train_classifier.py --data-dir: bad CIFAR folders
    Case("train_classifier", (*TRAIN, "{tmp}/cifar"), "refused to load"),
    Case("train_classifier", (*TRAIN, "{tmp}/cifar_cut"), "truncated"),
    Case(  # the test split is read only when selection is on test images
        "train_classifier", ("--holdout-source", "test", *TRAIN, "{tmp}/cifar_text"), "not a readable CIFAR pickle"
    ),
    # train_ddqn.py --resume: not a run, or a run whose only checkpoint carries code
    Case("train_ddqn", ("--resume", "{tmp}/empty_dir"), "not a training run directory"),
    Case("train_ddqn", ("--resume", "{tmp}/notes.txt"), "not a training run directory"),
    Case("train_ddqn", ("--resume", "{tmp}/run_ckpt"), "no readable checkpoint"),
]


@pytest.fixture(scope="module")
def sb3_zips(tmp_path_factory) -> dict[str, bytes]:
    """Real tiny SB3 models (CnnPolicy), built on first use: stock PPO and DQN, and two the Nature network cannot
    stand for (other variants are edits of the PPO zip, made as SB3 writes them)."""
    folder = tmp_path_factory.mktemp("sb3")
    recipes = {
        "ppo": lambda: sb3_model("ppo"),
        "dqn": lambda: sb3_model("dqn"),
        "ppo_net_arch": lambda: sb3_model("ppo", policy_kwargs={"net_arch": {"pi": [64], "vf": [64]}}),
        "dqn_raw_pixels": lambda: sb3_model("dqn", policy_kwargs={"normalize_images": False}),
    }
    built: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in built:
            recipes[name]().save(folder / f"{name}.zip")
            built[name] = (folder / f"{name}.zip").read_bytes()
        return built[name]

    return get


def inputs(case: Case) -> list[str]:
    """The names of the ``{tmp}/<name>`` inputs of ``case``."""
    return [m.group(1) for arg in case.argv for m in [re.match(r"\{tmp\}/([^/]+)", arg)] if m]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_file_is_refused_and_runs_nothing(case, tmp_path, capsys, sb3_zips):
    for name in inputs(case):
        MAKERS[name](name)(tmp_path, sb3_zips)
    run_case(case, tmp_path, capsys)
    assert not (tmp_path / MARKER).exists(), "loading ran code from the file"
