"""README.md and docs/: the Quickstart comes first, every command shown names a real job with its current flags,
every link resolves, and every Python block runs."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO

try:
    import tomllib
except ImportError:  # Python 3.10: the agreed list of jobs
    tomllib = None

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
# The jobs agreed for issue 15 (rlrobust <job>) and the script of each (python scripts/<script>.py).
AGREED_JOBS = {
    "train-ddqn": "train_ddqn",
    "eval-sap": "eval_rl_sap",
    "attack-policy": "attack_policy",
    "robustness-report": "robustness_report",
    "demo-core": "demo_core",
    "train-classifier": "train_classifier",
    "eval-classifier": "eval_classifier",
    "sap-experiments": "sap_experiments",
    "energy-analysis": "energy_analysis",
    "generate": "generate",
}
# Old flag names kept as hidden aliases for one release: the docs show the new ones.
OLD_FLAGS = {
    "--torch-threads", "--no-progress", "--logdir", "--out-dir", "--lambdas", "--budgets", "--sap-passes",
    "--max-steps", "--agent", "--eot", "--adaptive-eot", "--adaptive-steps", "--adaptive-lambdas",
    "--iterative-lambdas", "--iterative-mc", "--rand-eot", "--rand-steps",
}  # fmt: skip
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def job_modules() -> dict[str, str]:
    """Job name -> module: pyproject.toml's entry-point group rlrobust.jobs where it exists, else the agreed list."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"] if tomllib else {}
    table = project.get("entry-points", {}).get("rlrobust.jobs")
    if table:
        return {name: value.split(":")[0] for name, value in table.items()}
    return {name: f"scripts.{script}" for name, script in AGREED_JOBS.items()}


def fences(page: Path, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if language is None or lang == language]


def commands(page: Path) -> list[list[str]]:
    """Every job command a page shows, as tokens: lines of its shell blocks (continuations joined) and inline code
    spans that start with ``rlrobust <job>`` or run ``scripts/<job>.py``."""
    found = []
    for body in fences(page, "sh"):
        for line in body.replace("\\\n", " ").splitlines():
            found.append(line.split("#", 1)[0])
    found += re.findall(r"`(rlrobust [a-z][^`]*)`", page.read_text())
    out = []
    for text in found:
        tokens = shlex.split(text.replace("<", "").replace(">", ""), posix=True)
        if any(t == "rlrobust" or t.startswith("scripts/") for t in tokens[:3]):
            out.append(tokens)
    return out


def job_of(tokens: list[str], jobs: dict[str, str]) -> str:
    """The job a command runs: ``rlrobust <job>`` or ``[python|torchrun ...] scripts/<script>.py``."""
    if "rlrobust" in tokens[:1]:
        return tokens[1]
    script = next(t for t in tokens if t.startswith("scripts/"))
    by_script = {module.rsplit(".", 1)[1]: job for job, module in jobs.items()}
    return by_script.get(Path(script).stem, f"<no job for {script}>")


def job_arguments(tokens: list[str]) -> list[str]:
    """The tokens after the job (a launcher's own flags, e.g. torchrun's, come before it)."""
    if "rlrobust" in tokens[:1]:
        return tokens[2:]
    return tokens[next(i for i, t in enumerate(tokens) if t.startswith("scripts/")) + 1 :]


def test_readme_starts_with_what_it_is_then_the_quickstart_of_two_commands():
    text = README.read_text()
    assert text.startswith("# rlrobust\n")
    before, _, after = text.partition("\n## ")
    assert after.startswith("Quickstart\n"), "the first section must be ## Quickstart"
    intro = [line for line in before.splitlines()[1:] if line.strip()]
    assert 1 <= len(intro) <= 2, "two lines say what rlrobust is"
    quickstart = after.split("\n## ", 1)[0]
    assert FENCE.search(quickstart).group(2).split() == ["make", "demo", "make", "test"]
    assert "make demo\nmake test\n" in quickstart


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_names_a_real_job_without_old_flag_names(page):
    jobs = job_modules()
    shown = commands(page)
    for tokens in shown:
        job = job_of(tokens, jobs)
        assert job in jobs, f"{page.name}: {' '.join(tokens)} runs no job ({job})"
        for script in (t for t in tokens if t.startswith("scripts/")):
            assert (REPO / script).is_file(), f"{page.name}: {script} does not exist"
        old = [t for t in tokens if t.split("=")[0] in OLD_FLAGS]
        assert not old, f"{page.name}: {' '.join(tokens)} shows old flag names {old}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_flag_shown_is_a_current_flag_of_its_job(page):
    cli = importlib.import_module("rlrobust.cli")
    if not hasattr(cli, "hidden_aliases"):
        pytest.skip("the jobs' shared flags (rlrobust.cli.hidden_aliases) are not in this checkout yet")
    jobs = job_modules()
    for tokens in commands(page):
        parser = importlib.import_module(jobs[job_of(tokens, jobs)]).build_parser()
        hidden = cli.hidden_aliases(parser)
        for flag in (t.split("=")[0] for t in job_arguments(tokens) if t.startswith("--")):
            assert flag in parser._option_string_actions, f"{page.name}: {' '.join(tokens)}: no flag {flag}"
            assert flag not in hidden, f"{page.name}: {' '.join(tokens)}: {flag} is an old name"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor:
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings(file)}
            assert anchor in slugs, f"{page.name}: no heading for #{anchor} in {file.name}"


def headings(page: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]


def test_the_docs_pages_are_linked_from_the_readme():
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(README.read_text())}
    assert {page.name for page in PAGES[1:]} <= linked


@pytest.mark.parametrize(
    "page, index",
    [(page, i) for page in PAGES for i in range(len(fences(page, "python")))],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
@pytest.mark.usefixtures("one_torch_thread")
def test_every_python_block_runs(page, index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    code = fences(page, "python")[index]
    exec(compile(code, f"{page.name}[python block {index}]", "exec"), {"__name__": "__readme__"})
