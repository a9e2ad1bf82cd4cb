"""The attack-policy job (agents/jobs/attack_policy.py): a tiny real run end to end, a fresh run folder per job,
results keyed by the agent file's content (not its path), resuming, and a run stopped by Ctrl-C (bad input:
tests/test_corpus_rl_eval.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agents.actor_critic import ActorCritic
from agents.jobs import attack_policy
from rlrobust.files import sha256_of
from rlrobust.runs import INTERRUPTED_STATUS
from tests.test_wrappers_fixtures import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

SMOKE = ["--episodes", "2", "--max-episode-steps", "6", "--eps", "2", "--quiet"]


def save_agent(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(ActorCritic(6).state_dict(), path)
    return path


def test_script_writes_tables_plot_and_a_fresh_folder_per_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative: runs/attack_policy/<agent>-<game>-<stamp>
    for attacks in (["fgsm", "noise"], ["fgsm"]):
        attack_policy.main(["--random-agent", *SMOKE, "--attacks", *attacks])
    first, second = sorted(Path("runs/attack_policy").iterdir())  # never the same folder, even within a second
    assert first.name.startswith("random-agent-Pong-") and second.name.startswith("random-agent-Pong-")
    rows = json.loads((first / "results.json").read_text())
    assert [(r["attack"], r["lambda"]) for r in rows] == [("clean", 0.0), ("fgsm", 2.0), ("noise", 2.0), ("worst", 2.0)]
    assert all(r["episodes"] == 2 and r["capped"] == 2 and r["agent"] == "random actor-critic" for r in rows)
    assert rows[3]["worst_of"] == min(rows[1:3], key=lambda r: r["mean"])["attack"]
    fgsm = rows[1]
    assert fgsm["attack_rate"] == 1.0 and fgsm["mean_linf"] == pytest.approx(2.0)
    for name in ("results.csv", "results.md", "scores.png", "run.json", "cells.json"):
        assert (first / name).is_file()
    assert "| FGSM |" in (first / "results.md").read_text()
    again = json.loads((second / "results.json").read_text())
    assert [r | {"seconds": 0} for r in again[:2]] == [r | {"seconds": 0} for r in rows[:2]]  # same seed, same rows


def test_results_are_keyed_by_the_agent_files_content_not_its_path(tmp_path, capsys, monkeypatch):
    agent, out = save_agent(tmp_path / "agent.pt", seed=0), tmp_path / "out"
    argv = [str(agent), *SMOKE, "--attacks", "fgsm", "--out", str(out)]
    attack_policy.main(argv)
    first = json.loads((out / "results.json").read_text())
    assert {r["agent_sha256"] for r in first} == {sha256_of(agent)}
    cells = json.loads((out / "cells.json").read_text())
    assert cells["settings"]["victim"]["sha256"] == sha256_of(agent) and len(cells["cells"]) == 2

    def must_not_play(*args, **kwargs):
        raise AssertionError("a finished setting was played again")

    with monkeypatch.context() as patch:  # the same file: every finished setting is reused
        patch.setattr(attack_policy.GameEvaluation, "run", must_not_play)
        attack_policy.main([*argv, "--resume"])
    assert "2 of 2 settings already done" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text()) == first

    save_agent(agent, seed=1)  # another agent at the same path: the saved scores are not its scores
    with pytest.raises(ValueError, match=r"cannot resume .*other settings.*sha256"):
        attack_policy.main([*argv, "--resume"])
    with pytest.raises(ValueError, match="already holds results of another run"):
        attack_policy.main(argv)
    attack_policy.main([*argv, "--overwrite"])
    second = json.loads((out / "results.json").read_text())
    assert {r["agent_sha256"] for r in second} == {sha256_of(agent)} != {first[0]["agent_sha256"]}
    assert json.loads((out / "cells.json").read_text())["settings"]["victim"]["sha256"] == sha256_of(agent)


def test_ctrl_c_keeps_finished_settings_and_resume_completes_the_table(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = ["--random-agent", *SMOKE, "--attacks", "fgsm", "noise", "--out", str(out)]
    play = attack_policy.GameEvaluation.run
    calls = []

    def stop_at_the_third(evaluation, *args, **kwargs):
        calls.append(args[:1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return play(evaluation, *args, **kwargs)

    monkeypatch.setattr(attack_policy.GameEvaluation, "run", stop_at_the_third)
    assert attack_policy.main(argv) == INTERRUPTED_STATUS
    err = capsys.readouterr().err
    assert "Interrupted: 2 of 3 settings finished, kept in" in err and f"--out {out} --resume" in err
    partial = json.loads((out / "results.json").read_text())
    assert [r["attack"] for r in partial] == ["clean", "fgsm"]
    assert "PARTIAL TABLE: interrupted after 2 of 3 settings" in (out / "results.md").read_text()
    monkeypatch.setattr(attack_policy.GameEvaluation, "run", play)
    assert attack_policy.main([*argv, "--resume"]) is None
    rows = json.loads((out / "results.json").read_text())
    assert rows[:2] == partial and [r["attack"] for r in rows] == ["clean", "fgsm", "noise", "worst"]
    assert "PARTIAL" not in (out / "results.md").read_text()
