"""benchmarks/sappo_mujoco.py at toy size on an untrained Hopper PPO: every attack played, the budget held on the
normalised observations, results written with provenance, resumed rather than replayed, and never mixed with
another model's. Skipped without MuJoCo (``pip install -e ".[mujoco]"``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
pytest.importorskip("mujoco")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def victim_folder(tmp_path_factory) -> Path:
    trainer = load("train_mujoco_ppo")
    model, venv = trainer.build("Hopper-v5", seed=0)
    folder = tmp_path_factory.mktemp("hopper-ppo")
    trainer.save(model, venv, folder, {"steps": 0, "episodes": [], "seconds": 0.0})
    return folder


def test_every_attack_is_played_and_resumed_not_replayed(victim_folder, tmp_path):
    bench = load("sappo_mujoco")
    out = tmp_path / "sappo"
    argv = ["--model", str(victim_folder), "--episodes", "2", "--max-steps", "5", "--steps", "2", "--out", str(out)]
    bench.main(argv)
    record = json.loads((out / "results.json").read_text())
    assert set(record["cells"]) == set(bench.ATTACKS) and record["settings"]["eps"] == 0.075  # SA-PPO's Hopper eps
    assert len(record["inputs"]["ppo.zip"]) == 64 and "machine" in record
    for attack in ("random", "critic", "mad"):
        summary = record["cells"][attack]["summary"]
        assert summary["mean_action_distance"] > 0 and summary["mean_length"] <= 5
    assert "| mad |" in (out / "results.md").read_text()
    stamp = (out / "results.json").stat().st_mtime_ns
    bench.main(argv)  # every cell is finished: nothing is played or written again
    assert (out / "results.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit, match="other settings or another model"):
        bench.main([*argv[:-2], "--eps", "0.05", "--out", str(out)])


def test_the_budget_holds_on_the_normalised_observations(victim_folder):
    bench = load("sappo_mujoco")
    stats = json.loads((victim_folder / "obs_normalization.json").read_text())
    model = bench.load_victim(victim_folder, "Hopper-v5")
    env = bench.attacked_env("mad", bench.normalised_env("Hopper-v5", stats, 5), model, 0.075, 2, seed=0)
    _, info = env.reset(seed=0)
    assert info["attack"]["linf"] <= 0.075 + 1e-6 and info["attack"]["action_distance"] > 0


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"must hold ppo\.zip and obs_normalization\.json"):
        load("sappo_mujoco").main(["--model", str(tmp_path), "--out", str(tmp_path / "out")])
