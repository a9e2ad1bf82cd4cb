"""The ``rlrobust`` command (rlrobust/console.py) and its job table in pyproject.toml: every listed job imports
and is callable, every ``scripts/<job>.py`` is listed, ``rlrobust --help`` lists the jobs, ``rlrobust JOB --help``
is the job's own help, an unknown job is one error line."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from rlrobust import console

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
TABLE = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
JOBS = TABLE["entry-points"][console.GROUP]


def present(module: str) -> bool:
    """Whether ``module``'s package is in this checkout (the classifier jobs arrive with their branch)."""
    return importlib.util.find_spec(module.rsplit(".", 1)[0]) is not None


def test_the_console_script_is_declared() -> None:
    assert TABLE["scripts"]["rlrobust"] == "rlrobust.console:main"


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_listed_job_imports_and_is_callable(name: str) -> None:
    module, function = JOBS[name].split(":")
    if not present(module):
        pytest.skip(f"{module} is not in this checkout")
    job = getattr(importlib.import_module(module), function)
    assert callable(job)
    assert callable(importlib.import_module(module).build_parser)


def test_every_script_is_a_listed_job() -> None:
    listed = {value.split(":")[0].rsplit(".", 1)[1] for value in JOBS.values()}
    scripts = {path.stem for path in (REPO / "scripts").glob("*.py")}
    assert scripts <= listed, sorted(scripts - listed)
    assert len(listed) == len(JOBS) == 10


def test_help_lists_every_job_with_one_line(capsys) -> None:
    assert console.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in JOBS:
        (line,) = [line for line in out.splitlines() if line.strip().startswith(f"{name} ")]
        assert (len(line) <= 120 and "(not installed)" not in line) or not present(JOBS[name].split(":")[0])
    assert console.main([]) == 2  # nothing asked: the same list, and a usage status


def test_a_job_help_is_the_job_own_help(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["rlrobust"])
    assert console.main(["eval-sap", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rlrobust eval-sap ") and "--eps" in out and "--lambdas" not in out


def test_an_unknown_job_is_one_error_line(capsys) -> None:
    assert console.main(["eval-sp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown job 'eval-sp'; did you mean eval-sap?" in err


def test_a_user_error_of_a_job_is_one_error_line_and_status_2(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["rlrobust"])
    assert console.main(["attack-policy", "--random-agent", "--eps", "nan"]) == 2
    assert "argument --eps: must be a finite number" in capsys.readouterr().err


def test_python_dash_m_runs_the_console(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rlrobust", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "train-ddqn" in done.stdout and "robustness-report" in done.stdout
