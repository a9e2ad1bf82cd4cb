"""The bad-input corpus's one check: a command line given a bad input ends with one ``error: ...`` line and exit
status 2, no traceback, and nothing written to its output folder.

Scripts run in-process (``main(argv)`` under :func:`rlrobust.cli.run_main`, as their ``__main__`` does), so a
case costs milliseconds, not a fresh Python with torch. A case lists the script, its arguments (``{tmp}`` is
replaced by a fresh temporary folder, ``{out}`` by an output folder inside it that must stay empty or absent) and a
piece of the expected message.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlrobust.cli import USAGE_ERROR_STATUS, run_main

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@dataclass(frozen=True)
class Case:
    """One bad input: ``script`` (file stem under scripts/), ``argv`` and a piece of the error message."""

    script: str
    argv: tuple[str, ...]
    message: str
    errors: tuple[type[Exception], ...] | None = None  # the script's own user-error types, if it has them

    @property
    def id(self) -> str:
        return f"{self.script}:{' '.join(self.argv)}"[:90]


#: Where the jobs behind ``scripts/<name>.py`` live (``<package>.<name>``, with ``main``).
JOB_PACKAGES = ("agents.jobs", "classifiers.jobs")


def load_script(name: str):
    """The job module behind ``scripts/<name>.py`` (``agents.jobs.<name>`` or ``classifiers.jobs.<name>``), or the
    script itself loaded from its file where no job module holds it."""
    for package in JOB_PACKAGES:
        if importlib.util.find_spec(package) is not None and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
    key = f"_corpus_script_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def run_case(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture, main: Callable | None = None) -> str:
    """Run ``case`` and assert the corpus's contract; returns the error line."""
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{out}", str(out)) for a in case.argv]
    entry = main or load_script(case.script).main
    errors = case.errors or getattr(load_script(case.script), "USER_ERRORS", None)
    with pytest.raises(SystemExit) as exit_info:
        if errors is None:
            run_main(lambda: entry(argv))
        else:
            run_main(lambda: entry(argv), errors)
    captured = capsys.readouterr()
    assert exit_info.value.code == USAGE_ERROR_STATUS, (exit_info.value.code, captured.err[-2000:])
    assert "Traceback" not in captured.err, captured.err
    lines = [line for line in captured.err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, captured.err
    assert case.message.lower() in lines[0].lower(), (case.message, lines[0])
    assert not out.exists() or not any(out.iterdir()), f"wrote into {out}: {sorted(p.name for p in out.iterdir())}"
    return lines[0]
