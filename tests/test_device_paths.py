"""Every GPU path the code promises, run on the device present (issue 17, "no GPU-only surprises").

Each test takes the ``device`` fixture: "cpu" in the default suite and, where ``torch.cuda.is_available()``, "cuda"
(marked ``gpu``, so ``pytest -m gpu`` and ``make gpu-check`` run it). The paths: the replay memory held on the device,
ale-py's vector envs stepped by a Double DQN acting on the device, the compiled Double-DQN update, bf16 autocast with
channels-last in the classifier trainer, DDP with gloo on the CPU, and SAP sampling on the device. Then two guards:
no hard-coded ``cuda`` outside device selection, and ``--device cuda`` without a GPU is one clear line everywhere.

Tests elsewhere that cover a path on the CPU (cited where they apply, not repeated here):
tests/test_ddqn_replay.py (the replay against SB3's, and the device store's indexing),
tests/test_ddqn_target.py::test_compiled_update_trains_exactly_like_the_eager_one (the compiled update, 14 s),
tests/test_classifiers_training.py::test_torchrun_ddp_on_cpu_with_gloo (slow: torchrun and the command line),
tests/test_robustness_report.py::test_two_processes_under_torchrun_give_the_single_process_table (the RL engine).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from classifiers.models import ARCHITECTURES, build_model
from classifiers.training import make_config, train
from classifiers.training import methods as methods_module
from classifiers.training.checkpoint import LAST, load_training_checkpoint
from rlrobust.cli import USER_ERRORS
from rlrobust.sap import SAMPLINGS, insert_sap, sap_mask, stochastic_activation_pruning
from tests.corpus import Case, run_case
from tests.test_classifiers_data import one_torch_thread
from tests.test_classifiers_training import TinyCNN, tiny_arch  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

REPO = Path(__file__).resolve().parents[1]
DEVICES = [pytest.param("cpu", id="cpu")]
if torch.cuda.is_available():
    DEVICES.append(pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The devices this machine has: cpu, and cuda (marked ``gpu``) where there is one."""
    return torch.device(request.param)


def on(tensor: torch.Tensor, device: torch.device) -> bool:
    """Whether ``tensor`` lives on ``device`` ("cuda" matches the current CUDA device, cuda:0 here)."""
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


# ------------------------------------------------------------------------------------------ replay on the device
def test_replay_on_the_device_samples_what_the_host_replay_samples(device, monkeypatch):
    """A FrameReplayBuffer whose frames live on ``device`` (the torch store; on the CPU it is forced, so the GPU
    code path runs here too) returns the host replay's transitions, on the training device, for the same draws."""
    from agents import replay as replay_module
    from agents.replay import FrameReplayBuffer, _DeviceFrames
    from tests.test_ddqn_replay import all_stored, store, synthetic_stream

    obs_space, actions = spaces.Box(0, 255, (4, 3, 3), dtype=np.uint8), spaces.Discrete(5)
    host = FrameReplayBuffer(60, obs_space, actions, "cpu", n_envs=3, storage_device="cpu")
    with monkeypatch.context() as patch:
        patch.setattr(replay_module, "_frame_store", lambda shape, where: _DeviceFrames(shape, where))
        held = FrameReplayBuffer(60, obs_space, actions, device, n_envs=3)  # storage: the training device
    assert isinstance(held.frames, _DeviceFrames) and on(held.frames.tensor, device)
    rng = np.random.default_rng(5)
    for obs, next_obs, dones, infos in synthetic_stream(rng, 150, 3):  # wraps the ring twice, short episodes
        store((host, held), obs, next_obs, rng.integers(0, 5, 3), rng.normal(size=3), dones.astype(float), infos)
    rows, envs = all_stored(host)
    present = host.frames_present(rows, envs)
    every = (host.transitions(rows[present], envs[present]), held.transitions(rows[present], envs[present]))
    np.random.seed(11)
    expected = host.sample(64)
    np.random.seed(11)
    sampled = held.sample(64)
    for want, got in (every, (expected, sampled)):
        for name in ("observations", "actions", "next_observations", "dones", "rewards"):
            value = getattr(got, name)
            assert on(value, device), (name, value.device)
            assert torch.equal(value.cpu(), getattr(want, name)), name


# --------------------------------------------------------------------------------- ale-py vector envs, acting on it
def test_ale_vector_envs_train_with_actions_from_the_device(device, monkeypatch):
    """The trainer's own pieces (make_training_env, build_model) with ``vec_backend="ale"``: ale-py's C++ vector
    env steps with the greedy actions the Q-network computes on ``device``, the replay holds its frames there, and
    updates run (finite loss and weights)."""
    from stable_baselines3.common.logger import Logger

    from agents import replay as replay_module
    from agents.replay import _DeviceFrames
    from agents.training import TrainConfig, build_model, make_training_env

    if device.type == "cpu":  # the device store's code path, as on a GPU
        monkeypatch.setattr(replay_module, "_frame_store", lambda shape, where: _DeviceFrames(shape, where))
    config = TrainConfig(
        game="Pong", num_envs=2, vec_backend="ale", device=str(device), compile="off", replay_on_device=True,
        total_steps=64, learning_starts=16, buffer_size=64, batch_size=8, target_update=16,
        epsilon_start=0.0, epsilon_final=0.0, exploration_steps=1, max_episode_steps=50, eval_every=0,
    ).validate()  # fmt: skip
    env = make_training_env(config)
    assert type(env.frames).__module__.startswith("ale_py")
    model = build_model(config, env)
    model.set_logger(Logger(folder=None, output_formats=[]))
    greedy, stepped = [], []
    choose, step_async = model._greedy_actions, env.step_async

    def spy_choose(observation):
        greedy.append(choose(observation))
        return greedy[-1]

    def spy_step(actions):
        stepped.append(np.array(actions))
        step_async(actions)

    monkeypatch.setattr(model, "_greedy_actions", spy_choose)
    monkeypatch.setattr(env, "step_async", spy_step)
    try:
        model.learn(total_timesteps=48)
    finally:
        env.close()
    assert next(model.q_net.parameters()).device.type == device.type
    assert on(model.replay_buffer.frames.tensor, device)
    assert len(greedy) == 16  # epsilon 0: every vector step after learning_starts (16 agent steps) acts greedily
    for chosen, sent in zip(greedy, stepped[-len(greedy) :], strict=True):
        assert chosen.dtype.kind == "i" and np.array_equal(chosen, sent)  # what the device chose, ale stepped
    assert model._n_updates >= 8 and model.training_problem() is None
    stats = model.pop_train_stats()
    assert stats is not None and np.isfinite(stats["loss"])


# -------------------------------------------------------------------------------------- the compiled Double-DQN update
def test_compiled_double_dqn_update_matches_the_eager_one_on_the_device(device):
    """torch.compile of the update (and, on a GPU, whatever graph capture it uses) changes speed, not the result: the
    paper's batch of 32 on ``device``, three updates, the same loss and weights as eagerly (to 1 % of the change)."""
    if device.type == "cpu":
        pytest.skip("on the CPU: tests/test_ddqn_target.py::test_compiled_update_trains_exactly_like_the_eager_one")
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from tests.test_ddqn_target import tiny_model

    generator = torch.Generator().manual_seed(3)
    frames = (32, 4, 84, 84)
    batch = ReplayBufferSamples(
        observations=torch.randint(0, 256, frames, dtype=torch.uint8, generator=generator).to(device),
        actions=torch.randint(0, 6, (32, 1), generator=generator).to(device),
        next_observations=torch.randint(0, 256, frames, dtype=torch.uint8, generator=generator).to(device),
        dones=(torch.rand(32, 1, generator=generator) < 0.2).float().to(device),
        rewards=torch.randint(-1, 2, (32, 1), generator=generator).float().to(device),
    )
    paper_rmsprop = {"optimizer_kwargs": {"alpha": 0.95, "eps": 0.01, "centered": True}}
    torch.manual_seed(0)
    models = [
        tiny_model(device=device, learning_rate=1e-3, policy_kwargs=paper_rmsprop, batch_size=32, compile_update=c)
        for c in (False, True)
    ]
    eager, compiled = models
    with torch.no_grad():
        for p in eager.q_net_target.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    compiled.policy.load_state_dict(eager.policy.state_dict())
    start = [p.detach().clone() for p in eager.policy.parameters()]
    for model in models:
        model.replay_buffer.sample = lambda *args, **kwargs: batch
        model.replay_buffer.size = lambda: 64
        for _ in range(3):
            model.train(gradient_steps=1, batch_size=32)
        model.env.close()
    assert compiled.compile_update and compiled._compile_checked  # it really ran compiled
    largest = 0.0
    for before, a, b in zip(start, eager.policy.parameters(), compiled.policy.parameters(), strict=True):
        assert on(b, device)
        moved = (a - before).abs().max().item()  # 0 for the target network, which these updates leave alone
        assert (a - b).abs().max().item() <= 0.01 * moved + 1e-7
        largest = max(largest, moved)
    assert largest > 0
    assert eager.pop_train_stats() == pytest.approx(compiled.pop_train_stats(), rel=1e-3)


# ---------------------------------------------------------------------- bf16 autocast and channels-last in training
def test_classifier_training_with_bf16_autocast_and_channels_last(device, tmp_path, tiny_arch):  # noqa: F811
    """``amp="bf16"`` and ``channels_last="on"`` on ``device``: the attacked model's conv weights and every batch
    stay channels-last through the optimizer steps, the losses are computed from bf16 logits, and they are finite."""
    seen = []
    perturb, loss = methods_module.Trades.perturb, methods_module.Trades.loss

    def spy_perturb(self, model, x, y, generator):
        convs = [p for p in model.parameters() if p.ndim == 4]
        last = torch.channels_last
        seen.append(("batch", on(x, device), x.is_contiguous(memory_format=last)))
        seen.append(("weights", bool(convs), all(p.is_contiguous(memory_format=last) for p in convs)))
        return perturb(self, model, x, y, generator)

    def spy_loss(self, natural, adversarial, y):
        seen.append(("logits", natural.dtype == torch.bfloat16, adversarial.dtype == torch.bfloat16))
        return loss(self, natural, adversarial, y)

    config = make_config(
        "trades", dataset="synthetic", arch=tiny_arch, train_size=64, holdout_size=16, epochs=1, batch_size=16,
        max_batches=2, attack_steps=2, eval_steps=2, select_from_epoch=1, schedule="constant",
        device=str(device), amp="bf16", channels_last="on", out_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(methods_module.Trades, "perturb", spy_perturb)
        patch.setattr(methods_module.Trades, "loss", spy_loss)
        summary = train(config, progress=False)
    assert {kind for kind, *_ in seen} == {"batch", "weights", "logits"} and len(seen) == 6  # two batches
    assert all(a and b for _, a, b in seen), seen
    assert np.isfinite(summary["last"]["train.loss"])


# ----------------------------------------------------------------------------------------- DDP with gloo on the CPU
class NoNormCNN(nn.Module):
    """TinyCNN without BatchNorm: with per-rank batch statistics out of the way, DDP over 2 processes of 8 images
    computes what one process does with the same 16 images."""

    def __init__(self, num_classes: int = 10, **_norm) -> None:
        super().__init__()
        self.body = nn.Sequential(*(m for m in TinyCNN(num_classes).body if not isinstance(m, nn.BatchNorm2d)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _ddp_settings(out: Path) -> dict:
    """Plain training (no attack, no augmentation, no BN), 3 batches of 16 synthetic images, constant LR."""
    return dict(
        dataset="synthetic", arch="no_norm_cnn", train_size=64, holdout_size=16, epochs=1, batch_size=16, lr=0.05,
        augment=False, attack_steps=1, eval_steps=1, select_from_epoch=1, schedule="constant", device="cpu",
        out_dir=str(out),
    )  # fmt: skip


def _ddp_rank(rank: int, world_size: int, port: int, out: str) -> None:
    """One process of a gloo group, set up as torchrun would (its environment variables), training the run."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    ARCHITECTURES["no_norm_cnn"] = NoNormCNN
    train(make_config("standard", **_ddp_settings(Path(out))), progress=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ddp_over_two_gloo_processes_trains_like_one_process(tmp_path, monkeypatch):
    """The trainer's distributed path (rlrobust.distributed: gloo, DistributedDataParallel, strided shards of one
    permutation): two processes of 8 images per batch end with the weights of one process with batches of 16."""
    monkeypatch.setitem(ARCHITECTURES, "no_norm_cnn", NoNormCNN)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    train(make_config("standard", **_ddp_settings(tmp_path / "one")), progress=False)
    torch.multiprocessing.spawn(_ddp_rank, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    assert '"world_size": 2' in (tmp_path / "two" / "environment.json").read_text()
    one, two = (load_training_checkpoint(tmp_path / run / LAST)["model"] for run in ("one", "two"))
    torch.manual_seed(0)  # the trainer's initial weights (seed 0)
    initial = build_model("no_norm_cnn", 10).state_dict()
    assert one.keys() == two.keys() == initial.keys()
    for name in one:
        moved = (one[name] - initial[name]).abs().max().item()
        assert moved > 0, name  # training changed every tensor, so agreeing is not trivial
        assert (one[name] - two[name]).abs().max().item() <= 1e-4 * moved + 1e-7, name


# ------------------------------------------------------------------------------------------ SAP sampling on the device
class DeviceLedger(TorchDispatchMode):
    """Records where every op's tensor results live and every read of a tensor value into Python (a host sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.placed: set[tuple[str, torch.device]] = set()
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._local_scalar_dense.default:
            self.host_reads += 1
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor) and value.ndim > 0:  # 0-d CPU tensors are wrapped Python scalars
                self.placed.add((str(func), value.device))
        return out


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_sap_samples_on_the_input_device_without_a_host_round_trip(device, sampling, module_net, images):
    """Masks and outputs on the activations' device and dtype; every intermediate tensor of the sampler stays on
    that device (no copy to the host and back); off the CPU no value is read back either (a host sync at every SAP
    layer), and on the CPU only the exact sampler reads some (there it sizes its draws by the data, for free)."""
    h = torch.relu(torch.randn(8, 4, 5, 5, generator=torch.Generator().manual_seed(0))).to(device)
    h[0] = 0  # an all-zero map
    generator = torch.Generator(device=device).manual_seed(1)
    ledger = DeviceLedger()
    with ledger:
        mask = sap_mask(h, 1.0, sampling=sampling, generator=generator)
    assert on(mask, device) and mask.dtype == torch.float32 and mask.shape == h.shape
    off_device = {op for op, where in ledger.placed if where.type != device.type}
    assert not off_device, off_device
    if sampling == "independent" or device.type != "cpu":  # exact sampling sizes its draws by the data on the CPU only
        assert ledger.host_reads == 0
    assert torch.equal(mask[0], torch.zeros_like(mask[0]))  # nothing to keep in an all-zero map
    half = h.to(torch.bfloat16)
    out = stochastic_activation_pruning(half, 0.5, sampling=sampling, generator=generator)
    assert on(out, device) and out.dtype == torch.bfloat16
    model = insert_sap(module_net.to(device), 1.0, sampling=sampling, generator=generator)
    scores = model(images.to(device))
    assert on(scores, device) and torch.isfinite(scores).all()


# ----------------------------------------------------------------------------------- no hard-coded cuda in the code
SOURCE_DIRS = ("agents", "wrappers", "classifiers", "rlrobust", "scripts", "benchmarks")
# What breaks on a CPU-only machine or picks the wrong GPU under --device cuda:1: a bare .cuda(), a "cuda" literal
# as a device (not as a device *type*), an exact comparison with "cuda" (false for "cuda:1"), a fixed GPU index,
# and calls that default to the current GPU (GPU 0) where the chosen device should be named.
HARD_CODED = {
    ".cuda()": re.compile(r"\.cuda\("),
    'device="cuda"': re.compile(r"""device\s*=\s*["']cuda(:\d+)?["']"""),
    'torch.device("cuda")': re.compile(r"""torch\.device\(\s*["']cuda(:\d+)?["']\s*\)"""),
    '.to("cuda")': re.compile(r"""\.to\(\s*["']cuda"""),
    'a fixed "cuda:N"': re.compile(r"""["']cuda:\d+["']"""),
    '== "cuda" on a name, not a .type': re.compile(r"""(?<!\.type)\s[!=]=\s*["']cuda["']"""),
    "synchronize() of the current GPU": re.compile(r"torch\.cuda\.synchronize\(\s*\)"),
    "get_device_name of GPU 0": re.compile(r"torch\.cuda\.get_device_name\(\s*0?\s*\)"),
}
# Device selection ("cuda" when there is one) is where "cuda" belongs; and the machine record names GPU 0 on purpose.
ALLOWED = (
    re.compile(r"""["']cuda["']\s+if\s+(\w+\s+==\s+["']auto["']\s+and\s+)?torch\.cuda\.is_available\(\)"""),
    re.compile(r"def _cuda_device_name|return torch\.cuda\.get_device_name\(0\) if torch is not None"),
)


def hard_coded_cuda(root: Path = REPO) -> list[str]:
    """``path:line: what`` for every hard-coded CUDA device in the sources (comments and docstrings ignored)."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            for number, line in enumerate(_code_lines(path), start=1):
                if not line or any(rule.search(line) for rule in ALLOWED):
                    continue
                where = f"{path.relative_to(root)}:{number}"
                found += [f"{where}: {what}" for what, rule in HARD_CODED.items() if rule.search(line)]
    return found


def _code_lines(path: Path) -> list[str]:
    """The file's lines with comments and docstrings blanked (examples in prose are not code)."""
    text = path.read_text()
    lines = [re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else "" for line in text.splitlines()]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for number in range(node.lineno - 1, node.end_lineno):
                lines[number] = ""
    return lines


def test_no_hard_coded_cuda_outside_device_selection():
    assert hard_coded_cuda() == []


def test_the_scan_finds_each_kind_of_hard_coded_cuda(tmp_path):
    """The guard above is only as good as its patterns: each kind is caught, device selection is not."""
    bad = [
        "x = x.cuda()",
        'y = torch.zeros(3, device="cuda")',
        'z = torch.device("cuda")',
        'w = w.to("cuda:1")',
        'flag = args.device == "cuda"',
        "torch.cuda.synchronize()",
        "name = torch.cuda.get_device_name()",
    ]
    fine = [
        'default = "cuda" if torch.cuda.is_available() else "cpu"',
        'on_gpu = device.type == "cuda"',
        "torch.cuda.synchronize(device)",
        'ok = text.startswith("cuda")  # torch.device("cuda") in a comment',
        '"""x.cuda() in a docstring"""',
    ]
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "bad.py").write_text("\n".join(bad) + "\n")
    (tmp_path / "agents" / "fine.py").write_text("\n".join(fine) + "\n")
    for folder in SOURCE_DIRS[1:]:
        (tmp_path / folder).mkdir()
    found = hard_coded_cuda(tmp_path)
    assert sorted({int(f.split(":")[1]) for f in found}) == list(range(1, len(bad) + 1)), found
    assert all(f.startswith("agents/bad.py") for f in found), found


# ----------------------------------------------------------------------- --device cuda without a GPU: one clear line
def commands() -> list[Path]:
    """Every script and benchmark (gpu_check.py has its own test: tests/test_gpu_check.py)."""
    return sorted((REPO / "scripts").glob("*.py")) + sorted((REPO / "benchmarks").glob("bench_*.py"))


def device_commands() -> list[Path]:
    """The commands that take ``--device``: a job's parser has it (``scripts/`` callers), or a benchmark names it in
    its source or has a config field ``device``; :func:`test_every_command_with_a_device_flag_is_checked` keeps this
    exact."""
    pattern = re.compile(r'"--device"|f\.name == "device"')
    found = []
    for path in commands():
        job = re.search(r"^from (\w+\.jobs\.\w+) import", path.read_text(), flags=re.M)
        if job:  # a thin caller: ask its job's parser
            offered = "--device" in importlib.import_module(job.group(1)).build_parser()._option_string_actions
        else:
            offered = bool(pattern.search(path.read_text()))
        if offered:
            found.append(path)
    return found


def _entry(path: Path, monkeypatch):
    """The command's ``main`` as ``main(argv)``; a benchmark reads ``sys.argv``, so it gets it there."""
    if path.parent.name == "scripts":
        from tests.corpus import load_script

        return load_script(path.stem).main
    key = f"_device_paths_{path.stem}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    main = sys.modules[key].main

    def with_argv(argv: list[str]):
        monkeypatch.setattr(sys, "argv", [path.name, *argv])
        return main()

    return with_argv


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda is valid here")
@pytest.mark.parametrize("path", device_commands(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_device_cuda_without_a_gpu_is_one_clear_line(path, tmp_path, capsys, monkeypatch):
    """Through ``rlrobust.cli.device`` (or a wrapper of it): refused while parsing, before any work or output."""
    errors = None if path.parent.name == "scripts" else USER_ERRORS  # a script's own, as run_case finds them
    case = Case(path.stem, ("--device", "cuda"), "'cuda': CUDA is not available on this machine", errors)
    run_case(case, tmp_path, capsys, main=_entry(path, monkeypatch))


def test_every_command_with_a_device_flag_is_checked(capsys, monkeypatch):
    """The commands whose ``--help`` offers ``--device`` are exactly those the test above checks."""
    offered = []
    for path in commands():
        with pytest.raises(SystemExit) as exit_info:
            _entry(path, monkeypatch)(["--help"])
        assert exit_info.value.code == 0, path
        if "--device" in capsys.readouterr().out:
            offered.append(path)
    assert offered == device_commands()
    assert {"train_ddqn", "train_classifier", "robustness_report", "bench_core"} <= {p.stem for p in offered}


def test_train_ddqn_keeps_auto_and_checks_any_other_device():
    """train_ddqn.py's ``--device`` is ``auto`` or what ``rlrobust.cli.device`` accepts (cuda:N included)."""
    from tests.corpus import load_script

    parser = load_script("train_ddqn").build_parser()
    assert parser.parse_args(["--device", "auto"]).device == "auto"
    assert parser.parse_args(["--device", "cpu"]).device == "cpu"


def test_classifier_commands_make_the_chosen_gpu_the_current_one(monkeypatch):
    """``--device cuda:N`` of eval_classifier.py, generate.py, ... becomes the current CUDA device, so that a library
    placing work on "the" GPU (torch-fidelity's ``cuda=True``) uses GPU N; cpu and a bare "cuda" change nothing."""
    import argparse

    from classifiers.jobs import common as experiments_cli

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for name in ("cpu", "cuda", "cuda:1"):
        args = argparse.Namespace(threads=None, seed=0, device=name)
        assert experiments_cli.setup(args) == torch.device(name)
    assert chosen == [torch.device("cuda:1")]
