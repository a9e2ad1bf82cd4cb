"""``agents.load_agent`` on every supported checkpoint kind, and clear errors for everything else."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import DQN

from agents import DoubleDQN, NatureQNetwork, NeurIPSQNetwork, load_agent, make_atari_vec_env, resolve_game
from tests.conftest import shared_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small batches: see conftest

PONG_DQN = "atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth"
FRAMES = torch.randint(0, 256, (4, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def pong_env():
    env = make_atari_vec_env("Pong", 1)
    yield env
    env.close()


def test_our_double_dqn_zip(tmp_path, pong_env):
    model = DoubleDQN("AtariQPolicy", pong_env, buffer_size=100, seed=0, device="cpu")
    model.save(tmp_path / "ours.zip")
    network = load_agent(tmp_path / "ours.zip")
    assert isinstance(network, NatureQNetwork) and not network.training
    torch.testing.assert_close(network(FRAMES), model.q_net(FRAMES))


def test_our_zip_with_the_neurips_network(tmp_path, pong_env):
    model = DoubleDQN("AtariQPolicy", pong_env, buffer_size=100, policy_kwargs={"network": "neurips"}, device="cpu")
    model.save(tmp_path / "small.zip")
    network = load_agent(tmp_path / "small.zip")
    assert isinstance(network, NeurIPSQNetwork)
    torch.testing.assert_close(network(FRAMES), model.q_net(FRAMES))


def test_stock_sb3_dqn_cnn_policy_zip_maps_onto_the_nature_network(tmp_path, pong_env):
    """SB3's CnnPolicy is the Nature network (NatureCNN + one linear layer, images / 255): same Q-values."""
    model = DQN("CnnPolicy", pong_env, buffer_size=100, seed=0, device="cpu")
    model.save(tmp_path / "sb3.zip")
    network = load_agent(tmp_path / "sb3.zip")
    assert isinstance(network, NatureQNetwork)
    torch.testing.assert_close(network(FRAMES), model.q_net(FRAMES))
    np.testing.assert_array_equal(
        network(FRAMES).argmax(1).numpy(), model.predict(FRAMES.numpy(), deterministic=True)[0]
    )


def test_plain_state_dicts(tmp_path):
    torch.manual_seed(0)
    nature, neurips = NatureQNetwork(18), NeurIPSQNetwork(4)
    torch.save(nature.state_dict(), tmp_path / "nature.pt")
    torch.save({"state_dict": neurips.state_dict(), "epoch": 3}, tmp_path / "neurips.pth")
    torch.testing.assert_close(load_agent(tmp_path / "nature.pt")(FRAMES), nature(FRAMES))
    torch.testing.assert_close(load_agent(tmp_path / "neurips.pth")(FRAMES), neurips(FRAMES))


def test_real_shared_neurips_pong_agent():
    path = shared_file(PONG_DQN)
    network = load_agent(path)
    assert isinstance(network, NeurIPSQNetwork)
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(network.fc[2].weight, state["fc.2.weight"])
    assert network(FRAMES).shape == (4, 6)


def test_actor_critic_state_dict_loads_as_its_policy_logits(tmp_path):
    """A PPO/A2C state dict loads as the actor-critic; its action logits are the scores attacks act on."""
    from agents import ActorCritic

    torch.manual_seed(0)
    policy = ActorCritic(6).eval()
    torch.save(policy.state_dict(), tmp_path / "ppo.pt")
    network = load_agent(tmp_path / "ppo.pt")
    assert isinstance(network, ActorCritic) and not network.training
    torch.testing.assert_close(network(FRAMES), policy(FRAMES))


def test_missing_and_corrupt_files(tmp_path, pong_env):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_agent(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match=r"without final_model\.zip"):
        load_agent(tmp_path)
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="corrupt"):
        load_agent(tmp_path / "noise.pt")
    DoubleDQN("AtariQPolicy", pong_env, buffer_size=100, device="cpu").save(tmp_path / "ours.zip")
    data = (tmp_path / "ours.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_agent(tmp_path / "cut.zip")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="no state dict"):
        load_agent(tmp_path / "list.pt")


def test_wrong_network_shapes(tmp_path):
    state = NatureQNetwork(6).state_dict()
    state["head.0.weight"] = torch.zeros(256, 3136)  # a 256-unit hidden layer is not the Nature network
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="looks like a NatureQNetwork but does not fit"):
        load_agent(tmp_path / "wrong.pt")
    torch.save({"layer.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unrecognised Q-network layout"):
        load_agent(tmp_path / "other.pt")


def sb3_like_zip(path, policy: dict[str, torch.Tensor], data: str = "{}") -> None:
    buffer = io.BytesIO()
    torch.save(policy, buffer)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", data)
        archive.writestr("policy.pth", buffer.getvalue())


def test_sb3_zips_that_are_not_the_nature_network(tmp_path, pong_env):
    model = DQN("CnnPolicy", pong_env, buffer_size=100, policy_kwargs={"net_arch": [64]}, device="cpu")
    model.save(tmp_path / "deeper.zip")
    with pytest.raises(ValueError, match="net_arch=\\[\\]"):
        load_agent(tmp_path / "deeper.zip")
    three_channel = {
        k.replace("features.", "q_net.features_extractor.cnn.")
        .replace("head.0.", "q_net.features_extractor.linear.0.")
        .replace("head.2.", "q_net.q_net.0."): v
        for k, v in NatureQNetwork(6).state_dict().items()
    }
    three_channel["q_net.features_extractor.cnn.0.weight"] = torch.zeros(32, 3, 8, 8)
    sb3_like_zip(tmp_path / "rgb.zip", three_channel)
    with pytest.raises(ValueError, match="does not fit"):
        load_agent(tmp_path / "rgb.zip")
    sb3_like_zip(tmp_path / "mlp.zip", {"q_net.q_net.0.weight": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="not a DQN with our Atari policy or SB3's CnnPolicy"):
        load_agent(tmp_path / "mlp.zip")
    sb3_like_zip(tmp_path / "raw.zip", three_channel, data='{"policy_kwargs": {"normalize_images": false}}')
    with pytest.raises(ValueError, match="normalize_images=False"):
        load_agent(tmp_path / "raw.zip")


def test_unknown_game_names_close_matches():
    with pytest.raises(ValueError, match="unknown Atari game 'Bowlnig'; did you mean Bowling"):
        resolve_game("Bowlnig")
    assert resolve_game("BowlingNoFrameskip-v4") == resolve_game("ALE/Bowling-v5") == "Bowling"


def test_policy_rejects_non_atari_observations():
    from agents.policies import AtariQNetwork

    with pytest.raises(ValueError, match=r"\(4, 84, 84\) frame stacks"):
        AtariQNetwork(spaces.Box(0, 255, (3, 64, 64), np.uint8), spaces.Discrete(4))
