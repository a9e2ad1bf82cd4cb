"""The ``rlrobust`` command: one subcommand per job (``rlrobust train-ddqn ...``, ``rlrobust eval-sap ...``).

The jobs are the entry points of the group ``rlrobust.jobs`` (``name = "package.module:main"``, declared in
pyproject.toml), so the core names no job package itself and any installed package can add jobs. In a source
checkout the checkout's own pyproject.toml table is read too, so a job added there works before a reinstall.
Listing the jobs reads each module's docstring from its file: nothing is imported until a job runs.

    rlrobust --help                 # the jobs, one line each
    rlrobust eval-sap --help        # a job's flags
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from rlrobust.cli import run_main

GROUP = "rlrobust.jobs"
CHECKOUT_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def jobs() -> dict[str, EntryPoint]:
    """Every job by name: the installed entry points, updated from a source checkout's pyproject.toml."""
    found = {entry.name: entry for entry in entry_points(group=GROUP)}
    for name, value in _checkout_table().items():
        found[name] = EntryPoint(name, value, GROUP)
    return dict(sorted(found.items()))


def _checkout_table() -> dict[str, str]:
    """The ``rlrobust.jobs`` table of the pyproject.toml beside this package (a source checkout's), if any."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the installed entry points only
        return {}
    if not CHECKOUT_PYPROJECT.is_file():
        return {}
    project = tomllib.loads(CHECKOUT_PYPROJECT.read_text()).get("project", {})
    if project.get("name") != "rlrobust":
        return {}
    return dict(project.get("entry-points", {}).get(GROUP, {}))


def summary(entry: EntryPoint, width: int = 90) -> str:
    """The job module's first sentence (up to its colon when long), read from its file without importing it."""
    file = module_file(entry.module)
    if file is None:
        return "(not installed)"
    doc = ast.get_docstring(ast.parse(file.read_text())) or ""
    line = " ".join(doc.split("\n\n", 1)[0].split())
    line = line.split(". ", 1)[0].rstrip(".")
    if len(line) > width and ": " in line:
        line = line.split(": ", 1)[0]
    return line if len(line) <= width else line[: width - 3] + "..."


def module_file(module: str) -> Path | None:
    """The source file of ``module`` (``a.b.c``), found without importing ``a`` or ``a.b``."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder, *rest[:-1], f"{rest[-1]}.py") if rest else Path(folder, "__init__.py")
        if path.is_file():
            return path
    return None


def usage(found: dict[str, EntryPoint]) -> str:
    """``rlrobust --help``: what the command is and every job with its one line."""
    width = max((len(name) for name in found), default=0)
    lines = [f"  {name:<{width}}  {summary(entry)}" for name, entry in found.items()]
    return (
        "usage: rlrobust JOB [--help] [flags of the job]\n\n"
        "Adversarial robustness of RL agents and image classifiers. Jobs:\n\n" + "\n".join(lines) + "\n\n"
        "rlrobust JOB --help lists a job's flags."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by the first word of ``argv`` with the rest; ``--help`` (or nothing) lists the jobs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    found = jobs()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(found))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in found:
        close = difflib.get_close_matches(name, found, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        print(f"rlrobust: error: unknown job {name!r}{hint} (rlrobust --help lists them)", file=sys.stderr)
        return 2
    job = found[name].load()
    sys.argv = [f"rlrobust {name}", *rest]  # argparse names the command after it in usage and errors
    try:
        run_main(lambda: job(rest))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0
