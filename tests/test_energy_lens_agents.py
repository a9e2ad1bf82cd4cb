"""WEAT's energy lens on agents (agents.energy_lens): energies of clean, noisy and attacked observations, the
budgets the attacks keep, and scripts/energy_analysis.py with agents end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from agents.energy_lens import (
    KINDS,
    attacked,
    check_deterministic,
    collect_observations,
    measure_agent_energies,
    plot_histograms,
    summary_rows,
)
from agents.evaluation import get_protocol
from agents.networks import NeurIPSQNetwork
from classifiers.jobs.energy_analysis import main, parse_args
from rlrobust.energy import energy, joint_energy
from rlrobust.sap import insert_sap
from tests import _experiment_fixtures as fx
from tests._experiment_fixtures import one_thread
from tests.conftest import shared_file

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

PONG_DQN = "atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth"


class TinyAgent(nn.Module):
    """Scores 6 actions from small 0-255 frame stacks (4, 12, 12), scaled to [0, 1] inside as the agents do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4 * 12 * 12, 32), nn.ReLU(), nn.Linear(32, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x / 255.0)


def tiny_agent_and_frames(n: int = 24) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (n, 4, 12, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    return TinyAgent().eval(), frames


def test_clean_energies_are_the_cores_and_untargeted_pgd_changes_more_actions_than_noise():
    net, frames = tiny_agent_and_frames()
    lens = measure_agent_energies(net, frames, 8 / 255, seed=0, batch_size=10)
    assert list(lens) == list(KINDS)
    scores = net(frames.float()).detach()
    greedy = scores.argmax(1)
    assert torch.allclose(lens["clean"].free, energy(scores), atol=1e-5)
    assert torch.allclose(lens["clean"].joint, joint_energy(scores, greedy), atol=1e-5)
    assert torch.equal(lens["clean"].actions, greedy)
    rates = {k: (e.actions != greedy).float().mean().item() for k, e in lens.items()}
    assert rates["clean"] == 0 and rates["pgd"] > rates["noise"] and rates["pgd"] >= 0.5
    # Untargeted PGD ascends cross-entropy against a* = E(s, a*) - E(s): the gap must grow on average.
    gap = {k: (e.joint - e.free).mean().item() for k, e in lens.items()}
    assert gap["pgd"] > gap["clean"] and gap["pgd"] > gap["noise"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eps", [1 / 255, 3 / 255])
def test_every_kind_keeps_the_budget_in_grey_levels_and_the_frame_range(kind, eps):
    net, frames = tiny_agent_and_frames(8)
    frames[0] = 0  # all black and all white frames: the range must clip, not wrap
    frames[1] = 255
    x = attacked(kind, net, frames, eps, get_protocol("sa-dqn"), torch.Generator().manual_seed(0))
    delta = (x - frames.float()).abs()
    assert delta.max() <= eps * 255 + 1e-4 and x.min() >= 0 and x.max() <= 255
    if kind != "clean":
        assert delta.max() > 0.5 * eps * 255  # the budget in grey levels, not on [0, 1]


def test_rows_give_the_clean_row_once_and_shifts_against_it(tmp_path):
    net, frames = tiny_agent_and_frames(6)
    lenses = {eps: measure_agent_energies(net, frames, eps, seed=0) for eps in (1 / 255, 3 / 255)}
    rows = summary_rows(lenses, "tiny", "Pong")
    assert [(r["kind"], r["eps"]) for r in rows] == [("clean", "0")] + [
        (k, e) for e in ("1/255", "3/255") for k in KINDS[1:]
    ]
    clean, pgd3 = rows[0], rows[-2]
    assert clean["E(s) shift"] == 0 and clean["action-change rate"] == 0 and clean["observations"] == 6
    expected = (lenses[3 / 255]["pgd"].free.mean() - lenses[3 / 255]["clean"].free.mean()).item()
    assert pgd3["kind"] == "pgd" and pgd3["E(s) shift"] == pytest.approx(expected, abs=1e-5)
    assert plot_histograms(lenses, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_input_is_refused_in_one_line():
    net, frames = tiny_agent_and_frames(4)
    with pytest.raises(TypeError, match="uint8"):
        measure_agent_energies(net, frames.float() / 255, 1 / 255)  # [0, 1] frames: the budget would be wrong
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        measure_agent_energies(net, frames, 3.0)
    with pytest.raises(ValueError, match="unknown kinds"):
        measure_agent_energies(net, frames, 1 / 255, ("cw",))
    with pytest.raises(ValueError, match="stochastic"):
        check_deterministic(insert_sap(TinyAgent()), frames)


def test_observations_come_from_greedy_play_in_the_evaluation_games():
    frames = collect_observations(NeurIPSQNetwork(6).eval(), "Pong", 5, games=2, every=3, seed=0)
    assert frames.dtype == torch.uint8 and frames.shape == (5, 4, 84, 84)
    assert len(torch.unique(frames.flatten(1), dim=0)) == 5  # distinct: the same frame met twice counts once
    with pytest.raises(ValueError, match="unknown Atari game"):
        collect_observations(NeurIPSQNetwork(6), "Pongg", 5)


def test_flag_defaults_differ_by_mode_and_classifier_defaults_stay():
    classifier = parse_args(["--model", "m.pt"])
    assert (classifier.eps, classifier.pgd_steps, classifier.scale) == (8.0, 20, 255.0)
    agent = parse_args(["a.pt@Pong"])
    assert (agent.eps, agent.pgd_steps, agent.observations) == ([1 / 255], 10, 200)
    several = parse_args(["--agent", "a.pt@Pong", "--agent", "b.pt", "--eps", "3/255", "1/255", "--game", "pong"])
    assert several.agents == ["a.pt@Pong", "b.pt"] and several.eps == [1 / 255, 3 / 255] and several.game == "Pong"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["a.pt@Pong", "--eps", "3"], "looks like grey levels (write 3/255)"),
        (["a.pt@Pong", "--observations", "0"], "--observations"),
        (["a.pt", "--game", "Pongg"], "unknown Atari game 'Pongg'"),
        (["a.pt@Pong", "--model", "m.pt"], "not with --model"),
        (["--model", "m.pt", "--eps", "2", "8"], "one budget with --model"),
    ],
)
def test_command_line_errors_are_one_line(argv, message):
    assert message in fx.script_error("energy_analysis.py", *argv)


def test_an_agent_for_another_game_is_refused(tmp_path):
    torch.save(NeurIPSQNetwork(6).state_dict(), tmp_path / "pong_dqn.pt")
    error = fx.script_error("energy_analysis.py", f"{tmp_path / 'pong_dqn.pt'}@Breakout", "--out", tmp_path / "o")
    assert "scores 6 actions but Breakout has 4" in error and error.count("\n") == 1


def test_command_line_end_to_end_on_the_shared_pong_dqn(tmp_path):
    agent = shared_file(PONG_DQN)
    out = tmp_path / "out"
    argv = [f"{agent}@Pong", "--observations", "8", "--pgd-steps", "2", "--eps", "1/255", "3/255", "--threads", "1"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0  # in this process: a subprocess doubles the time
    rows = json.loads((out / "energy_shift.json").read_text())
    assert [(r["kind"], r["eps"]) for r in rows] == [("clean", "0")] + [
        (k, e) for e in ("1/255", "3/255") for k in KINDS[1:]
    ]
    assert {r["agent_sha256"] for r in rows} == {json.loads((out / "run.json").read_text())["settings"]["agent0"]
                                                 ["sha256"]}  # fmt: skip
    assert all(r["observations"] == 8 and r["game"] == "Pong" for r in rows)
    pgd = {r["eps"]: r for r in rows if r["kind"] == "pgd"}
    assert pgd["3/255"]["action-change rate"] > 0
    assert (out / "energy_checkpoint_dqn_neurips.png").read_bytes()[:4] == b"\x89PNG"
    assert any((out / "tensorboard").iterdir())
