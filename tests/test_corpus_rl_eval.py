"""Bad-input corpus of the RL evaluation scripts (scripts/eval_rl_sap.py, scripts/attack_policy.py,
scripts/robustness_report.py): every case ends with one ``error: ...`` line naming the problem, exit status 2 and
nothing written to the output folder.

Agent files are made per case in the case's temporary folder (``{tmp}``): a Pong-sized NeurIPS Q-network
(``pong6.pt``), a 4-action one (``four.pt``), a text file, an empty folder, a plain file where a folder belongs and
a folder holding another run's results. Cases on the shared Atari agents skip cleanly where they are absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from agents.evaluation import GameEvaluation, split_agent_argument
from agents.networks import NeurIPSQNetwork
from tests.conftest import SHARED_DATA
from tests.corpus import Case, run_case

PPO = SHARED_DATA / "atari/rl-policies-attacks-defenses"
DQN = SHARED_DATA / "atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth"


def sap(*argv: str, message: str, out: bool = True, agent: bool = True) -> Case:
    """An eval_rl_sap.py case on the Pong-sized agent (``--games Pong``) unless ``argv`` names its own agent or
    ``agent`` is false; ``--out {out}`` is added unless ``argv`` has its own or ``out`` is false."""
    named = argv and not argv[0].startswith("-")
    agent = () if named or not agent else ("{tmp}/pong6.pt", "--games", "Pong")
    return Case("eval_rl_sap", (*agent, *argv, "--quiet", *_out(argv, out)), message)


def attack(*argv: str, message: str, out: bool = True) -> Case:
    """An attack_policy.py case on the random agent unless ``argv`` names a victim."""
    victim = (
        () if (argv and not argv[0].startswith("-")) or {"--sb3", "--random-agent"} & set(argv) else ("--random-agent",)
    )
    return Case("attack_policy", (*victim, *argv, "--quiet", *_out(argv, out)), message)


def report(*argv: str, message: str, out: bool = True) -> Case:
    """A robustness_report.py case on the Pong-sized agent (``pong6.pt@Pong``) unless ``argv`` names its agents."""
    named = argv and not argv[0].startswith("-")
    agent = () if named else ("{tmp}/pong6.pt@Pong",)
    return Case("robustness_report", (*agent, *argv, "--quiet", *_out(argv, out)), message)


def _out(argv: tuple[str, ...], out: bool) -> tuple[str, ...]:
    return () if "--out" in argv or not out else ("--out", "{out}")


SAP_CASES = [
    # numbers: non-finite, out of range, not numbers at all
    sap("--eps", "nan", message="--eps: must be a finite number"),
    sap("--eps", "1", "inf", message="--eps: must be a finite number"),
    sap("--eps", "-1", message="--eps: must lie in [0, 255]"),
    sap("--eps", "256", message="--eps: must lie in [0, 255]"),
    sap("--eps", "8/0", message="--eps: not a number or fraction"),
    sap("--episodes", "0", message="--episodes: must be an integer in [1, 1024]"),
    sap("--episodes", "-3", message="--episodes: must be an integer in [1, 1024]"),
    sap("--episodes", "5000", message="--episodes: must be an integer in [1, 1024]"),
    sap("--episodes", "2.5", message="--episodes: not an integer"),
    sap("--sap-frac", "1e9", message="--sap-frac: must lie in (0, 100]"),
    sap("--sap-frac", "0", message="--sap-frac: must lie in (0, 100]"),
    sap("--sap-frac", "nan", message="--sap-frac: must be a finite number"),
    sap("--samples", "0", message="--samples: must be an integer >= 1"),
    sap("--mc-samples", "-1", message="--mc-samples: must be an integer >= 1"),
    sap("--eot-samples", "0", message="--eot-samples: must be an integer >= 1"),
    sap("--pgd-steps", "0", message="--pgd-steps: must be an integer >= 1"),
    sap("--max-episode-steps", "0", message="--max-episode-steps: must be an integer >= 1"),
    sap("--seed", "-1", message="--seed: must be an integer in [0, 4294967295]"),
    sap("--threads", "-1", message="--threads: must be an integer in [0, 4096]"),
    sap("--device", "gpu", message="--device: not a torch device: 'gpu'"),
    sap("--device", "meta", message="--device: unsupported device 'meta'"),
    sap("--attack", "cw", message="--attack: invalid choice: 'cw'"),
    # games and agent files
    sap("{tmp}/pong6.pt", "--games", "Pongg", message="unknown Atari game 'Pongg'; did you mean Pong"),
    sap("{tmp}/missing.pt", "--games", "Pong", message="agent checkpoint not found"),
    sap("{tmp}/notes.txt", "--games", "Pong", message="cannot read agent checkpoint"),
    sap("{tmp}/folder", "--games", "Pong", message="is a directory without final_model.zip"),
    sap("{tmp}/four.pt", "--games", "Pong", message="scores 4 actions but Pong has 6: it is not an agent for Pong"),
    sap("{tmp}/pong6.pt", "--games", "Pong", "Breakout", message="scores 6 actions but Breakout has 4"),
    sap("{tmp}/pong6.pt", message="cannot tell which game"),
    sap("--runs", "{tmp}/no_runs", message="no agent given and no training run", agent=False),
    sap("{tmp}/pong6.pt", "{tmp}/pong6.pt", "--games", "Pong", message="the same agent weights are given twice"),
    # output folders and conflicting flags
    sap("--out", "{tmp}/outfile", message="exists and is not a folder"),
    sap("--out", "{tmp}/taken", message="already holds results of another run"),
    sap("--out", "{tmp}/taken", "--resume", message="other settings"),
    sap("--resume", message="--resume needs --out", out=False),
    sap("--resume", "--overwrite", message="not allowed with argument"),
]

ATTACK_CASES = [
    attack("--eps", "0", message="--eps: must lie in (0, 255]"),
    attack("--eps", "nan", message="--eps: must be a finite number"),
    attack("--eps", "300", message="--eps: must lie in (0, 255]"),
    attack("--eps=-inf", message="--eps: must be a finite number"),
    attack("--episodes", "0", message="--episodes: must be an integer in [1, 1024]"),
    attack("--max-episode-steps", "0", message="--max-episode-steps: must be an integer >= 1"),
    attack("--max-episode-steps", "2.5", message="--max-episode-steps: not an integer"),
    attack("--pgd-steps", "-2", message="--pgd-steps: must be an integer >= 1"),
    attack("--seed", "1.5", message="--seed: not an integer"),
    attack("--device", "tpu", message="--device: not a torch device: 'tpu'"),
    attack("--attacks", "cw", message="--attacks: invalid choice: 'cw'"),
    attack("--perturb", "oldest", message="--perturb: invalid choice: 'oldest'"),
    attack("--game", "Pongg", message="unknown Atari game 'Pongg'"),
    attack("{tmp}/missing.pt", message="agent file not found"),
    attack("{tmp}/folder", message="is a folder, not an agent file"),
    attack("{tmp}/notes.txt", message="cannot read agent checkpoint"),
    attack("{tmp}/four.pt", message="four.pt scores 4 actions but Pong has 6"),
    attack("{tmp}/pong6.pt", "--game", "Breakout", message="scores 6 actions but Breakout has 4"),
    attack("--sb3", "{tmp}/missing.zip", message="agent file not found"),
    attack("{tmp}/pong6.pt", "--sb3", "{tmp}/x.zip", message="AGENT and --sb3 exclude each other"),
    attack("{tmp}/pong6.pt", "--random-agent", message="AGENT and --random-agent exclude each other"),
    attack("--agent", "{tmp}/pong6.pt", "--random-agent", message="AGENT and --random-agent exclude each other"),
    attack("{tmp}/four.pt", "--game", "Bowling", message="scores 4 actions but Bowling has 6"),
    attack("--out", "{tmp}/outfile", message="exists and is not a folder"),
    attack("--out", "{tmp}/taken", message="already holds results of another run"),
    attack("--out", "{tmp}/taken", "--resume", message="other settings"),
    attack("--resume", message="--resume needs --out", out=False),
]

REPORT_CASES = [
    # protocols, attacks and budgets (on the protocol's scale)
    report("--protocol", "atari", message="unknown protocol 'atari'; choose one of sa-dqn, nature, sap-paper"),
    report("--attacks", "pgd", "cw", message="unknown attack 'cw'; choose from noise, fgsm, iterative, pgd"),
    report("--eps", "-0.01", message="budgets must be finite and > 0"),
    report("--eps=-1/255", message="budgets must be finite and > 0"),
    report("--eps", "0", message="budgets must be finite and > 0"),
    report("--eps", "nan", message="--eps: must be a finite number"),
    report("--eps", "1/255", "inf", message="--eps: must be a finite number"),
    report("--eps", "1/0", message="--eps: not a number or fraction"),
    report("--eps", "3", message="3 looks like the 0-255 scale (write 3/255)"),
    report("--protocol", "nature", "--eps", "8", message="the nature protocol takes eps on [0, 1]-scaled"),
    report("--protocol", "sap-paper", "--eps", "0.01", message="0.01 looks like the [0, 1] scale (write 2.55)"),
    report("--protocol", "sap-paper", "--eps", "300", message="[1, 255], got 300"),
    # other numbers
    report("--episodes", "0", message="--episodes: must be an integer in [1, 1024]"),
    report("--episodes", "2.5", message="--episodes: not an integer"),
    report("--max-frames", "0", message="--max-frames: must be an integer >= 1"),
    report("--sap-frac", "0", message="--sap-frac: must lie in (0, 100]"),
    report("--sap-frac", "nan", message="--sap-frac: must be a finite number"),
    report("--seed", "-1", message="--seed: must be an integer in [0, 4294967295]"),
    report("--threads", "-1", message="--threads: must be an integer in [0, 4096]"),
    report("--device", "gpu", message="--device: not a torch device: 'gpu'"),
    # games and agent files
    report("{tmp}/pong6.pt@Pongg", message="unknown Atari game 'Pongg'; did you mean Pong"),
    report("{tmp}/pong6.pt", "--games", "Pongg", message="unknown Atari game 'Pongg'"),
    report("{tmp}/four.pt@Pong", message="scores 4 actions but Pong has 6: it is not an agent for Pong"),
    report("{tmp}/pong6.pt", "--games", "Pong", "Breakout", message="scores 6 actions but Breakout has 4"),
    report("{tmp}/pong6.pt@Pong", "{tmp}/four.pt@Pong", message="scores 4 actions but Pong has 6"),
    report("{tmp}/missing.pt@Pong", message="agent checkpoint not found"),
    report("{tmp}/notes.txt@Pong", message="cannot read agent checkpoint"),
    report("{tmp}/folder@Pong", message="is a directory without final_model.zip"),
    report("{tmp}/pong6.pt", message="cannot tell which game"),
    report("{tmp}/pong6.pt@Pong", "{tmp}/pong6.pt@Pong", message="the same agent weights are given twice"),
    # output folders and conflicting flags
    report("--out", "{tmp}/outfile", message="exists and is not a folder"),
    report("--out", "{tmp}/outfile/report", message="exists and is not a folder"),
    report("--out", "{tmp}/taken", message="already holds results of another run"),
    report("--out", "{tmp}/taken", "--resume", message="other settings"),
    report("--resume", message="--resume needs --out", out=False),
    report("--resume", "--overwrite", message="not allowed with argument"),
]

# The shared trained agents: the wrong game for each (skipped where ../shared/data is absent).
SHARED_CASES = [
    sap(str(PPO / "breakout_ppo_state_dict.pt"), "--games", "Pong", message="scores 4 actions but Pong has 6"),
    sap(str(DQN), "--games", "Breakout", message="scores 6 actions but Breakout has 4"),
    sap(str(DQN), "--games", "Pong", "--sap-frac", "1", "1e9", message="--sap-frac: must lie in (0, 100]"),
    attack(str(PPO / "pong_ppo_state_dict.pt"), "--game", "Breakout", message="Breakout has 4"),
    attack(str(PPO / "breakout_ppo_state_dict.pt"), message="scores 4 actions but Pong has 6"),
    report(f"{PPO / 'breakout_ppo_state_dict.pt'}@Pong", message="scores 4 actions but Pong has 6"),
]


def make_inputs(tmp: Path) -> None:
    """The agent files and folders the cases name under ``{tmp}``."""
    torch.manual_seed(0)
    torch.save(NeurIPSQNetwork(6).state_dict(), tmp / "pong6.pt")
    torch.save(NeurIPSQNetwork(4).state_dict(), tmp / "four.pt")
    (tmp / "notes.txt").write_text("not an agent\n")
    (tmp / "folder").mkdir()
    (tmp / "outfile").write_text("a file where the output folder should go\n")
    taken = tmp / "taken"
    taken.mkdir()
    (taken / "results.csv").write_text("attack,lambda\n")
    (taken / "run.json").write_text(json.dumps({"job": "someone else", "settings": {"episodes": 99}}))


@pytest.mark.parametrize("case", SAP_CASES + ATTACK_CASES, ids=lambda c: c.id)
def test_bad_input_is_one_clear_error_line(case, tmp_path, capsys):
    make_inputs(tmp_path)
    run_case(case, tmp_path, capsys)
    assert (tmp_path / "taken" / "results.csv").read_text() == "attack,lambda\n"  # another run's results untouched


@pytest.fixture
def no_game_is_played(monkeypatch):
    """A bad input is refused before any game starts: a play fails the case (a bug, so a traceback)."""

    def refuse(self, play, description=""):
        raise AssertionError(f"a game was played before the bad input was refused: {play}")

    monkeypatch.setattr(GameEvaluation, "run", refuse)


@pytest.mark.parametrize("case", REPORT_CASES, ids=lambda c: c.id)
def test_robustness_report_refuses_bad_input_before_playing(case, tmp_path, capsys, no_game_is_played):
    make_inputs(tmp_path)
    run_case(case, tmp_path, capsys)
    assert (tmp_path / "taken" / "results.csv").read_text() == "attack,lambda\n"


def test_robustness_report_refuses_an_unwritable_output_folder_before_playing(
    tmp_path, capsys, monkeypatch, no_game_is_played
):
    make_inputs(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root ignores the mode: deny it as a read-only mount would
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and access(path, mode, **kw))
    try:
        line = run_case(report("--out", "{tmp}/locked/report", message="is not writable"), tmp_path, capsys)
    finally:
        locked.chmod(0o755)
    assert f"no write permission on {locked}" in line and not any(locked.iterdir())


@pytest.mark.parametrize("case", SHARED_CASES, ids=lambda c: c.id)
def test_shared_agents_on_the_wrong_game_are_refused(case, tmp_path, capsys):
    for arg in case.argv:
        path, _ = split_agent_argument(arg)  # PATH@GAME names the file PATH
        if arg.startswith(str(SHARED_DATA)) and not path.is_file():
            pytest.skip(f"shared data file not present: {path}")
    run_case(case, tmp_path, capsys)


def test_the_corpus_is_large_enough():
    assert len(SAP_CASES) + len(ATTACK_CASES) + len(SHARED_CASES) >= 60
    assert len(REPORT_CASES) >= 30
