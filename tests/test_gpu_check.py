"""benchmarks/gpu_check.py: every part in its own time box, a failing or overrunning part recorded as such while the
rest still runs, the report rewritten after every part, the issue's GPU plan within its 7.5-minute budget with flags
the scripts accept, and (slow) the SMOKE run end to end on the CPU."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from classifiers.data.registry import dataset_files
from classifiers.data.shared import CIFAR_LOSSLESS

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str):
    """Import a script that is not in a package (registered, so that its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_check = load_script("benchmarks/gpu_check.py", "gpu_check")
PY = sys.executable


def toy_part(name: str, code: str, tmp_path: Path, box: float = 20.0, **kwargs) -> object:
    return gpu_check.Part(name, f"toy {name}", (PY, "-c", code), box, tmp_path / "work" / name, **kwargs)


def figure_from_output(work: Path, output: str) -> object:
    """The toy parts' results: the number after 'figure' in their output."""
    value = int(output.split("figure")[1].split()[0])
    return gpu_check.Collected({"figure": value}, [("toy table", "| a |\n|---|\n| 1 |\n")])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by init, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_failing_and_overrunning_parts_are_recorded_and_the_rest_still_runs(tmp_path):
    md, js = tmp_path / "report.md", tmp_path / "report.json"
    snapshot, child_pid = tmp_path / "snapshot.json", tmp_path / "child.pid"
    parts = [
        toy_part("fine", "print('figure 42')", tmp_path, collect=figure_from_output),
        toy_part("snapshot", f"import shutil; shutil.copy({str(js)!r}, {str(snapshot)!r})", tmp_path),
        toy_part("broken", "import sys; print('going wrong', flush=True); sys.exit(3)", tmp_path),
        toy_part(  # starts a child as a benchmark's workers would: the whole group must go at the box
            "slow",
            "import subprocess, time; child = subprocess.Popen(['sleep', '60']); "
            f"open({str(child_pid)!r}, 'w').write(str(child.pid)); print('started', flush=True); time.sleep(60)",
            tmp_path,
            box=2.0,
        ),
        toy_part(  # a time-limited run: SIGTERM at 2 s, it saves and exits 130 as the training scripts do
            "timed",
            "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (print('figure 7'), sys.exit(130))); "
            "print('ready', flush=True); time.sleep(30)",
            tmp_path,
            box=15.0,
            stop_after_s=2.0,
            collect=figure_from_output,
        ),
        toy_part("after", "print('figure 5')", tmp_path, collect=figure_from_output),
    ]
    head = {"command": "test", "date": "2026-01-01T00:00:00+00:00", "device": "cpu", "device_name": "cpu"}
    head |= {"smoke": True, "torch": torch.__version__, "cuda": None, "git_commit": "x", "git_dirty": False}
    results = gpu_check.run_check(parts, head | {"work_dir": str(tmp_path)}, md, js)

    status = {r.name: r.status for r in results}
    assert status == {
        "fine": "ok",
        "snapshot": "ok",
        "broken": "failed",
        "slow": "overran",
        "timed": "time-limited",
        "after": "ok",
    }
    by_name = {r.name: r for r in results}
    assert by_name["broken"].returncode == 3 and "going wrong" in by_name["broken"].tail
    assert by_name["slow"].seconds < 10 and "started" in by_name["slow"].tail
    assert not alive(int(child_pid.read_text())), "the overrunning part's child outlived its time box"
    assert by_name["timed"].figures == {"figure": 7} and by_name["timed"].seconds < 10

    record = json.loads(js.read_text())
    assert record["state"] == "finished"
    assert [p["status"] for p in record["parts"]] == list(status.values())
    assert record["parts"][0]["figures"] == {"figure": 42}
    text = md.read_text()
    assert "| fine | ok |" in text and "figure: 42" in text and "going wrong" in text
    assert "killed at its 2 s time box" in text and "exit status 3" in text

    # Written while the second part ran: the first part's figures already there, the rest announced.
    during = json.loads(snapshot.read_text())
    assert during["state"] == "incomplete"
    assert [p["status"] for p in during["parts"]] == ["ok", "running"] + ["not run yet"] * 4
    assert during["parts"][0]["figures"] == {"figure": 42}


def test_unreadable_results_fail_the_part_and_a_skipped_part_does_not_run(tmp_path):
    def unreadable(work: Path, output: str):
        raise FileNotFoundError("no table")

    def partial(work: Path, output: str):
        return gpu_check.Collected({"replay bytes": 1}, [], missing=["training.json"])

    marker = tmp_path / "ran"
    ran = gpu_check.run_part(toy_part("ran", "print('done')", tmp_path, collect=unreadable))
    assert ran.status == "failed" and "could not be read: FileNotFoundError: no table" in ran.problem
    cut = gpu_check.run_part(toy_part("cut", "import time; time.sleep(30)", tmp_path, box=1.0, collect=partial))
    assert cut.status == "overran" and cut.figures == {"replay bytes": 1}  # what it wrote before the box is kept
    whole = gpu_check.run_part(toy_part("whole", "print('done')", tmp_path, collect=partial))
    assert whole.status == "failed" and "not written: training.json" in whole.problem
    skipped = gpu_check.run_part(
        toy_part("skip", f"open({str(marker)!r}, 'w')", tmp_path, skip_reason=lambda: "no data here")
    )
    assert skipped.status == "skipped" and skipped.problem == "no data here" and not marker.exists()


def test_gpu_plan_fits_the_budget_and_its_flags_are_checked_by_the_smoke_plan(tmp_path):
    gpu = gpu_check.plan(False, "cuda", tmp_path)
    toy = gpu_check.plan(True, "cpu", tmp_path)
    assert [p.name for p in gpu] == [p.name for p in toy] == list(gpu_check.PART_NAMES)
    assert sum(p.time_box_s for p in gpu) <= 450  # 7.5 minutes, inside the 8
    pong = {p.name: p for p in gpu}["pong-ddqn"]
    assert pong.stop_after_s is not None and 150 <= pong.stop_after_s < pong.time_box_s <= 180
    for g, t in zip(gpu, toy, strict=True):
        assert "cpu" not in g.command and "cuda" not in t.command
        gpu_flags = {a for a in g.command if a.startswith("--")}
        toy_flags = {a for a in t.command if a.startswith("--")}
        assert gpu_flags <= toy_flags, f"{g.name}: flags only the GPU run uses, untried by the smoke run"


def as_cpu(command: tuple[str, ...]) -> list[str]:
    """A script's arguments with cuda replaced by cpu (the parsers refuse a device this machine lacks)."""
    return ["cpu" if arg == "cuda" else arg for arg in command[2:]]


def test_gpu_training_commands_are_valid_settings(tmp_path):
    """The two training scripts' GPU settings pass their own parsers and config checks (with cpu for cuda)."""
    plan = {p.name: p for p in gpu_check.plan(False, "cuda", tmp_path)}

    from agents.jobs import train_ddqn
    from agents.training import TrainConfig
    from rlrobust.cli import config_from_args

    args = train_ddqn.build_parser().parse_args(as_cpu(plan["pong-ddqn"].command))
    config = config_from_args(args, TrainConfig).validate()
    assert (config.num_envs, config.vec_backend, config.replay_on_device) == (16, "ale", True)

    from classifiers.jobs import train_classifier
    from classifiers.training import TrainConfig as ClassifierConfig
    from classifiers.training import make_config

    names = {f.name for f in dataclasses.fields(ClassifierConfig)} - {"method", "preset"}
    for name in ("at-pgd", "at-weat"):
        args = vars(train_classifier.parse_args(as_cpu(plan[name].command)))
        config = make_config(args["method"], args["preset"], **{k: v for k, v in args.items() if k in names})
        assert config.method == {"at-pgd": "pgd_at", "at-weat": "weat_adv"}[name]
        assert (config.dataset, config.holdout_source, config.holdout_size) == ("cifar10-shared-split", "test", 1017)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(capsys):
    for argv in (["--device", "cuda"], []):
        with pytest.raises(SystemExit) as stop:
            gpu_check.parse_args(argv)
        assert stop.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert "CUDA is not available" in error and "SMOKE=1" in error


def test_small_readers():
    out = "tests/x.py s\nSKIPPED [1] tests/x.py:3: needs a CUDA device\n1 passed, 1 skipped, 9 deselected in 2.50s\n"
    collected = gpu_check.collect_pytest(Path("."), out)
    assert collected.figures == {"passed": 1, "failed": 0, "skipped": 1, "deselected": 9}
    assert "needs a CUDA device" in collected.tables[0][1]
    assert gpu_check.titled_table("# Title\n\nnotes\n\n| a |\n", "x") == ("Title", "notes\n\n| a |\n")
    assert gpu_check.titled_table("| a |\n", "x") == ("x", "| a |\n")
    assert gpu_check.slug("NVIDIA H200 (141 GB)") == "nvidia-h200-141-gb"
    assert gpu_check.shown_command([PY, str(REPO / "benchmarks" / "x.py"), "--a b"]) == "python benchmarks/x.py '--a b'"


def test_shared_split_is_disjoint_jpeg_train_and_lossless_test():
    if len(dataset_files("cifar10-shared-split")) != 2:
        pytest.skip("shared CIFAR-10 files not present")
    from classifiers.data import load_dataset

    train, test = load_dataset("cifar10-shared-split", "train"), load_dataset("cifar10-shared-split", "test")
    lossless = load_dataset("cifar10-shared", "test")
    assert (len(train), len(test)) == (10_000 - len(lossless), len(lossless)) == (8983, 1017)
    assert torch.equal(test.images, lossless.images) and torch.equal(test.labels, lossless.labels)
    with np.load(dataset_files("cifar10-shared")[CIFAR_LOSSLESS]) as data:
        y_all = torch.from_numpy(data["y_all"])
    assert torch.equal(train.labels, y_all[1017:])
    assert "lossy" in " ".join(train.notes)


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    """``make gpu-check SMOKE=1``: every part at toy sizes on the CPU, the report complete."""
    out, work = tmp_path / "out", tmp_path / "work"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [PY, "benchmarks/gpu_check.py", "--smoke", "--out", str(out), "--work", str(work)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stem = f"{datetime.now(timezone.utc):%Y-%m-%d}-cpu-smoke"
    record = json.loads((out / f"{stem}.json").read_text())
    assert record["state"] == "finished" and record["smoke"] and record["device_name"] == "cpu"
    shared = len(dataset_files("cifar10-shared-split")) == 2
    for part in record["parts"]:
        expected = {"skipped"} if part["name"].startswith("at-") and not shared else {"ok"}
        assert part["status"] in expected, (part["name"], part["status"], part["problem"], part["tail"])
        if part["status"] == "ok":
            assert part["figures"], part["name"]
    text = (out / f"{stem}.md").read_text()
    assert "SMOKE run" in text and "| bench-ddqn | ok |" in text
    assert not shared or "PGD accuracy (last epoch)" in text
