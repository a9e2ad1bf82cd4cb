"""The layering: code outside the core uses rlrobust's public modules and names only.

A private module (``rlrobust._checks``, ``rlrobust.attacks._base``) or name (``from rlrobust.x import _name``) may
change with the core at any time; what the halves need is made public instead (``rlrobust.checks``,
``rlrobust.attacks.pgd(x_init=...)``, ``rlrobust.attacks.scores_unwatched``, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTSIDE_THE_CORE = ("agents", "wrappers", "classifiers", "scripts", "benchmarks")


def _private(name: str) -> bool:
    """A single-underscore name (dunders such as ``__version__`` are public)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each import of a private rlrobust module or name in ``source``.

    >>> private_uses("from rlrobust._checks import check_count\\nfrom rlrobust.checks import check_count")
    [(1, 'rlrobust._checks')]
    >>> private_uses("import rlrobust.attacks._base as b\\nfrom rlrobust.attacks import _rows, pgd")
    [(1, 'rlrobust.attacks._base'), (2, 'rlrobust.attacks._rows')]
    >>> private_uses("from rlrobust import __version__\\nfrom other._lib import _x")
    []
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _private_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "rlrobust":
            if _private_module(node.module):
                found.append((node.lineno, node.module))
            else:
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if _private(a.name)]
    return sorted(found)


def _private_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "rlrobust" and any(_private(part) for part in parts[1:])


def _python_files() -> list[Path]:
    return sorted(path for folder in OUTSIDE_THE_CORE for path in (REPO / folder).rglob("*.py"))


def test_the_scan_reads_every_part_outside_the_core():
    files = _python_files()
    assert {path.relative_to(REPO).parts[0] for path in files} == set(OUTSIDE_THE_CORE)


@pytest.mark.parametrize("folder", OUTSIDE_THE_CORE)
def test_nothing_outside_the_core_imports_its_private_modules_or_names(folder):
    uses = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in _python_files()
        if path.relative_to(REPO).parts[0] == folder
        for line, what in private_uses(path.read_text(encoding="utf-8"))
    ]
    assert not uses, "import the public API instead (rlrobust.checks, rlrobust.attacks, ...):\n" + "\n".join(uses)
