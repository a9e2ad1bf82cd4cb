"""Bad inputs to scripts/demo_core.py: one ``error:`` line, status 2, nothing written (see tests/corpus.py)."""

from __future__ import annotations

import pytest

from tests.corpus import Case, run_case

CASES = [
    Case("demo_core", ("--frames", "0", "--out", "{out}"), "--frames: must be an integer >= 1"),
    Case("demo_core", ("--frames", "2.5", "--out", "{out}"), "not an integer"),
    Case("demo_core", ("--lambdas", "nan", "--out", "{out}"), "must be a finite number"),
    Case("demo_core", ("--lambdas", "1", "inf", "--out", "{out}"), "must be a finite number"),
    Case("demo_core", ("--lambdas", "256", "--out", "{out}"), "must lie in [0, 255]"),
    Case("demo_core", ("--lambdas", "-1", "--out", "{out}"), "must lie in [0, 255]"),
    Case("demo_core", ("--lambdas", "8/0", "--out", "{out}"), "not a number or fraction"),
    Case("demo_core", ("--mc-samples", "0", "--out", "{out}"), "--mc-samples: must be an integer >= 1"),
    Case("demo_core", ("--pgd-steps", "-3", "--out", "{out}"), "--pgd-steps: must be an integer >= 1"),
    Case("demo_core", ("--seed", "-1", "--out", "{out}"), "--seed: must be an integer >= 0"),
    Case("demo_core", ("--device", "tpu", "--out", "{out}"), "not a torch device"),
    Case("demo_core", ("--game", "Pongg", "--out", "{out}"), "unknown Atari game"),
    Case("demo_core", ("--agent", "{tmp}/missing.pt", "--out", "{out}"), "not found"),
    Case("demo_core", ("--agent", "{tmp}/empty.pt", "--out", "{out}"), "empty.pt"),
    Case("demo_core", ("--agent", "{tmp}/notes.txt", "--out", "{out}"), "notes.txt"),
    Case("demo_core", ("--game", "Pong", "--frames", "1", "--out", "{tmp}/notes.txt"), "not a folder"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_demo_core_refuses_bad_input(case, tmp_path, capsys):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model\n")
    run_case(case, tmp_path, capsys)
