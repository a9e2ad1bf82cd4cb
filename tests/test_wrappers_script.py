"""scripts/attack_policy.py: a tiny real run end to end, resuming, and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import attack_policy

from tests.test_wrappers_fixtures import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

SMOKE = ["--random-agent", "--episodes", "2", "--max-steps", "6", "--lambdas", "2", "--no-progress"]


def test_script_writes_tables_plot_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    attack_policy.main([*SMOKE, "--attacks", "fgsm", "noise", "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())
    assert [(r["attack"], r["lambda"]) for r in rows] == [("clean", 0.0), ("FGSM", 2.0), ("random sign noise", 2.0)]
    assert all(r["episodes"] == 2 and r["capped"] == 2 for r in rows)
    fgsm = rows[1]
    assert fgsm["attack_rate"] == 1.0 and fgsm["mean_linf"] == pytest.approx(2.0)
    for name in ("results.csv", "results.md", "scores.png", "progress.json"):
        assert (out / name).is_file()
    assert "| FGSM |" in (out / "results.md").read_text()
    capsys.readouterr()
    attack_policy.main([*SMOKE, "--attacks", "fgsm", "noise", "--out", str(out)])
    assert "3 settings already done" in capsys.readouterr().out


def test_script_explains_a_missing_agent(tmp_path):
    with pytest.raises(SystemExit, match="no trained agent for Pong"):
        attack_policy.main(["--agent", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown Atari game 'Pongg'"):
        attack_policy.main(["--game", "Pongg", "--random-agent", "--out", str(tmp_path)])
