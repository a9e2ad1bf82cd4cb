"""The shared PPO/A2C actor-critics load into ``agents.actor_critic.ActorCritic`` and behave like policies."""

from __future__ import annotations

import pytest
import torch

from agents.actor_critic import ActorCritic, load_actor_critic
from rlrobust.sap import has_sap, insert_sap
from tests.conftest import shared_file
from tests.test_wrappers_fixtures import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

POLICIES = "atari/rl-policies-attacks-defenses"
FILES = [
    ("pong_ppo_state_dict.pt", 6),
    ("pong_a2c_state_dict.pt", 6),
    ("pong_ppo_advtrained_state_dict.pt", 6),
    ("breakout_ppo_state_dict.pt", 4),
]


@pytest.mark.parametrize(("name", "n_actions"), FILES)
def test_shared_policies_load_with_every_key(name, n_actions):
    path = shared_file(f"{POLICIES}/{name}")
    model = load_actor_critic(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(state)
    assert not model.training
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        logits, value = model.logits_and_value(frames)
        torch.testing.assert_close(model(frames), logits)
        torch.testing.assert_close(model.value(frames.float()), value)
    assert logits.shape == (3, n_actions) and value.shape == (3, 1)


def test_forward_scales_frames_inside():
    model = ActorCritic(6).eval()
    frames = torch.rand(2, 4, 84, 84) * 255
    with torch.no_grad():
        h = model.base.main(frames / 255.0)
        torch.testing.assert_close(model(frames), model.dist.linear(h))
    with pytest.raises(ValueError, match=r"expected frame stacks of shape \(N, 4, 84, 84\)"):
        model(torch.zeros(2, 84, 84, 4))


def test_sap_can_be_inserted_after_every_relu():
    model = insert_sap(ActorCritic(4).eval(), 1.0)
    assert has_sap(model)
    assert model(torch.rand(2, 4, 84, 84) * 255).shape == (2, 4)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="actor-critic checkpoint not found"):
        load_actor_critic(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read agent checkpoint"):
        load_actor_critic(garbage)
    q_net = tmp_path / "q.pt"
    torch.save({"conv.0.weight": torch.zeros(16, 4, 8, 8), "fc.2.weight": torch.zeros(6, 256)}, q_net)
    with pytest.raises(ValueError, match=r"agents\.load_agent"):
        load_actor_critic(q_net)
    wrong = tmp_path / "wrong.pt"
    state = ActorCritic(6).state_dict()
    state["base.main.7.weight"] = torch.zeros(512, 100)
    torch.save({"state_dict": state}, wrong)
    with pytest.raises(ValueError, match="does not fit the CNNBase layout"):
        load_actor_critic(wrong)
