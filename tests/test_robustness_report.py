"""The robustness-report job (agents/jobs/robustness_report.py) end to end on a random Pong-sized agent: every
output file, rows that name the agent's sha256 and the protocol, a run stopped by SIGTERM that resumes to the same
table, folders it must not write into, and the same table from two processes under torchrun (bad input:
test_corpus_rl_eval.py; the engine: test_evaluation_engine.py)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from agents.evaluation import GameEvaluation
from agents.jobs import robustness_report
from agents.networks import NeurIPSQNetwork
from rlrobust.runs import INTERRUPTED_STATUS
from tests.test_wrappers_fixtures import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--episodes", "2", "--max-frames", "200", "--eps", "1/255", "--attacks", "fgsm", "pgd-timed"]
SMALL += ["--threads", "1", "--quiet", "--device", "cpu"]
CELLS = 3  # clean, FGSM and timed PGD at one budget


def save_agent(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(NeurIPSQNetwork(6).state_dict(), path)
    return path


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """One uninterrupted run of the script (in this process), shared by the tests that compare with it."""
    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("report")
    agent = save_agent(folder / "pong6.pt")
    argv = [f"{agent}@Pong", *SMALL]
    try:
        paths = robustness_report.main([*argv, "--out", str(folder / "whole")])
    finally:
        torch.set_num_threads(threads)
    yield SimpleNamespace(folder=folder, agent=agent, argv=argv, out=folder / "whole", paths=paths)


def interrupt_at(monkeypatch, play_number: int) -> list:
    """Make the ``play_number``-th play (1-based) of this process send itself SIGTERM, as a cluster's pre-emption
    would (0: never); returns the plays started."""
    started = []
    run = GameEvaluation.run

    def run_or_stop(self, play, description=""):
        started.append(play)
        if len(started) == play_number:
            os.kill(os.getpid(), signal.SIGTERM)
        return run(self, play, description)

    monkeypatch.setattr(GameEvaluation, "run", run_or_stop)
    return started


def test_a_run_writes_every_output_and_each_row_names_the_agent_and_protocol(whole):
    out = whole.out
    for name in ("results.csv", "results.json", "results.md", "scores.png", "run.json", "cells.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    assert whole.paths["json"] == out / "results.json"
    sha = hashlib.sha256(whole.agent.read_bytes()).hexdigest()
    rows = json.loads((out / "results.json").read_text())
    assert [row["attack"] for row in rows] == ["clean", "fgsm", "pgd-timed", "worst"]
    for row in rows:
        assert (row["agent"], row["agent_sha256"], row["game"], row["protocol"]) == ("pong6", sha, "Pong", "sa-dqn")
        assert row["episodes"] == 2 and row["capped"] == 2 and row["mean_length"] == 50
    clean, fgsm, timed, worst = rows
    assert clean["eps"] == 0 and fgsm["eps"] == timed["eps"] == 1 / 255 and fgsm["eps_pixels"] == pytest.approx(1)
    assert clean["action_change_rate"] == 0.0 and fgsm["attack_rate"] == 1.0 and 0 < timed["attack_rate"] < 1
    assert worst["mean"] == min(fgsm["mean"], timed["mean"]) and worst["worst_of"] in ("fgsm", "pgd-timed")
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["attack"], r["agent_sha256"]) for r in table] == [(r["attack"], sha) for r in rows]
    markdown = (out / "results.md").read_text()
    assert "protocol sa-dqn" in markdown and "eps=1/255" in markdown and "| worst case | " in markdown
    assert f"[{worst['worst_of']}]" in markdown and "of steps attacked" in markdown  # each worst cell names its attack
    record = json.loads((out / "run.json").read_text())
    assert record["job"] == "robustness_report" and record["settings"]["protocol"]["name"] == "sa-dqn"
    assert record["settings"]["agents"][0]["sha256"] == sha and record["inputs"]["pong6"]["sha256"] == sha
    assert record["settings"]["protocol"]["episodes"] == 2 and record["settings"]["attacks"] == ["fgsm", "pgd-timed"]
    cells = json.loads((out / "cells.json").read_text())["cells"]
    assert len(cells) == CELLS and all(sha[:16] in key for key in cells)


def test_sigterm_keeps_finished_cells_and_resume_gives_the_same_table(whole, tmp_path, capsys, monkeypatch):
    stopped = tmp_path / "stopped"
    interrupt_at(monkeypatch, 3)  # the clean play and FGSM finish; the timed attack is stopped
    assert robustness_report.main([*whole.argv, "--out", str(stopped)]) == INTERRUPTED_STATUS
    err = capsys.readouterr().err
    assert "Interrupted: 2 cells finished, kept in" in err
    assert f"{whole.agent}@Pong" in err and f"--out {stopped} --resume" in err
    assert len(json.loads((stopped / "cells.json").read_text())["cells"]) == 2
    partial = json.loads((stopped / "results.json").read_text())
    assert [row["attack"] for row in partial] == ["clean", "fgsm"]  # no worst case before every attack is done
    assert "PARTIAL TABLE" in (stopped / "results.md").read_text()
    with pytest.raises(ValueError, match="already holds results of another run"):
        robustness_report.main([*whole.argv, "--out", str(stopped)])  # neither --resume nor --overwrite
    started = interrupt_at(monkeypatch, 0)
    robustness_report.main([*whole.argv, "--out", str(stopped), "--resume"])
    assert len(started) == 1  # only the cell that had not finished
    resumed = json.loads((stopped / "results.json").read_text())
    assert without_seconds(resumed) == without_seconds(json.loads((whole.out / "results.json").read_text()))
    assert "PARTIAL" not in (stopped / "results.md").read_text()


def test_resume_refuses_another_agent_file_behind_the_same_path(tmp_path, monkeypatch):
    agent = save_agent(tmp_path / "agent.pt")
    argv = [f"{agent}@Pong", *SMALL, "--out", str(tmp_path / "out")]
    interrupt_at(monkeypatch, 1)  # stopped before any cell finished: run.json holds the settings
    assert robustness_report.main(argv) == INTERRUPTED_STATUS
    save_agent(agent, seed=1)  # other weights, same path
    started = interrupt_at(monkeypatch, 0)
    with pytest.raises(ValueError, match=r"cannot resume .* other settings \(agents: .*'sha256'"):
        robustness_report.main([*argv, "--resume"])
    assert started == []  # refused before any game is played


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_give_the_single_process_table(whole, tmp_path):
    out = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    command += [str(REPO / "scripts/robustness_report.py"), *whole.argv, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.glob("cells*.json")) == ["cells.rank0.json", "cells.rank1.json"]
    shares = [len(json.loads((out / f"cells.rank{r}.json").read_text())["cells"]) for r in range(2)]
    assert sum(shares) == CELLS and min(shares) >= 1  # each process played its share
    rows = json.loads((out / "results.json").read_text())
    assert without_seconds(rows) == without_seconds(json.loads((whole.out / "results.json").read_text()))
