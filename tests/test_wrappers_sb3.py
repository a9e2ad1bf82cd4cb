"""Stable-Baselines3: its models as victims (their networks are taken) and the VecEnv wrappers, with which
``evaluate_policy`` runs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import TransformObservation
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from tests.test_wrappers_fixtures import FrameToy, RowByRow, VectorToy, assert_same_perturbation, one_torch_thread
from wrappers import (
    EPISODE_KEY,
    STEP_KEY,
    AdversarialObservation,
    AdversarialVecEnv,
    RandomNoiseVecEnv,
)
from wrappers.victim import resolve_victim

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
IMAGE = 36  # the smallest frames SB3's NatureCNN accepts


def image_env(length: int = 6) -> FrameToy:
    return FrameToy(length=length, size=IMAGE)


def sb3_model(algo, env, policy="CnnPolicy"):
    torch.manual_seed(0)
    kwargs = {PPO: {"n_steps": 8, "batch_size": 8}, A2C: {"n_steps": 8}, DQN: {"buffer_size": 100}}[algo]
    return algo(policy, env, seed=0, device="cpu", **kwargs)


def frames(env, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(env.reset(seed=seed)[0])[None].float()


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_actor_critic_models_give_their_logits(algo):
    model = sb3_model(algo, image_env())
    victim = resolve_victim(model, (4, IMAGE, IMAGE))
    x = frames(image_env())
    with torch.no_grad():
        expected = model.policy.get_distribution(x).distribution.logits
        torch.testing.assert_close(victim(x), expected)
    env = AdversarialObservation(image_env(), model, eps=4)
    obs, info = env.reset(seed=0)
    assert model.predict(obs, deterministic=True)[0] == info[STEP_KEY]["perturbed_action"]


def test_dqn_model_gives_its_q_values():
    model = sb3_model(DQN, VectorToy(), policy="MlpPolicy")
    victim = resolve_victim(model, (3,))
    assert victim is model.q_net
    env = AdversarialObservation(VectorToy(), model, eps=0.2, attack="pgd")
    obs, info = env.reset(seed=1)
    assert model.predict(obs, deterministic=True)[0] == info[STEP_KEY]["perturbed_action"]


def test_qr_dqn_style_policy_is_reduced_to_the_mean_of_its_quantiles():
    class QuantilePolicy(BasePolicy):  # the shape of sb3-contrib's QRDQNPolicy (not installed here)
        def __init__(self):
            super().__init__(VectorToy().observation_space, spaces.Discrete(2))
            self.quantile_net = nn.Sequential(nn.Linear(3, 10), nn.Unflatten(1, (5, 2)))

        def _predict(self, observation, deterministic=True):
            return self.quantile_net(observation).mean(1).argmax(1)

    policy = QuantilePolicy()
    victim = resolve_victim(policy, (3,))
    x = torch.randn(4, 3)
    torch.testing.assert_close(victim(x), policy.quantile_net(x).mean(1))


def test_channel_last_observations_reach_a_channel_first_sb3_network():
    model = sb3_model(PPO, image_env())
    box = spaces.Box(0, 255, (IMAGE, IMAGE, 4), np.uint8)
    last = TransformObservation(image_env(), lambda o: np.ascontiguousarray(np.moveaxis(o, 0, -1)), box)
    victim = resolve_victim(model, box.shape)
    x = frames(image_env())
    with torch.no_grad():
        torch.testing.assert_close(victim(x.permute(0, 2, 3, 1)), resolve_victim(model, (4, IMAGE, IMAGE))(x))
    obs, info = AdversarialObservation(last, model, eps=2).reset(seed=0)
    assert obs.shape == (IMAGE, IMAGE, 4) and info[STEP_KEY]["linf"] == pytest.approx(2)
    with pytest.raises(ValueError, match="expects observations of shape"):
        resolve_victim(model, (4, 20, 20))


def test_evaluate_policy_runs_unchanged_on_the_vec_env_wrapper():
    model = sb3_model(PPO, image_env())

    def monitored():
        return Monitor(image_env())

    venv = AdversarialVecEnv(DummyVecEnv([monitored for _ in range(2)]), model, eps=4, attack="pgd")
    assert venv.observation_space.dtype == np.float32
    rewards, lengths = evaluate_policy(model, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert len(rewards) == 4 and lengths == [6, 6, 6, 6]
    clean, _ = evaluate_policy(model, DummyVecEnv([monitored for _ in range(2)]), n_eval_episodes=4)
    assert np.isfinite(clean)


def test_vec_env_info_and_terminal_observations():
    venv = RandomNoiseVecEnv(DummyVecEnv([lambda: FrameToy(length=3) for _ in range(2)]), eps=2, kind="uniform")
    venv.seed(0)
    obs = venv.reset()
    assert obs.dtype == np.float32 and all(STEP_KEY in info for info in venv.reset_infos)
    for _ in range(3):
        obs, _, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
    assert dones.all()
    for info in infos:
        assert info["terminal_observation"].dtype == np.float32
        assert info["terminal_attack"]["attacked"] and info[STEP_KEY]["attacked"]
        assert info[EPISODE_KEY] == {"observations": 4, "attacks": 4, "attack_rate": 1.0}
    np.testing.assert_array_equal(venv.tally.observations, [1, 1])  # the new episodes' reset observations


def test_vec_env_gives_the_single_wrappers_perturbations():
    settings = {"eps": 3.0, "attack": "pgd"}
    victim = RowByRow(resolve_victim(sb3_model(PPO, image_env()), (4, IMAGE, IMAGE)))  # same kernels per row
    venv = AdversarialVecEnv(DummyVecEnv([lambda: image_env(length=3) for _ in range(2)]), victim, **settings)
    venv.seed(7)
    vec_obs = [venv.reset()]
    terminal = None
    for _ in range(4):
        obs, _, dones, infos = venv.step(np.zeros(2, dtype=np.int64))
        vec_obs.append(obs)
        if dones.any():
            terminal = [info["terminal_observation"] for info in infos]
    for i in range(2):
        single = AdversarialObservation(image_env(length=3), victim, **settings)
        seen = [single.reset(seed=7 + i)[0]]
        for _ in range(3):
            obs, *_ = single.step(0)
            seen.append(obs)
        assert_same_perturbation(terminal[i], seen[-1], 3.0)  # the final observation, perturbed alike
        seen[-1] = single.reset()[0]  # SB3 returns the reset observation in its place
        seen.append(single.step(0)[0])
        for t, expected in enumerate(seen):
            assert_same_perturbation(vec_obs[t][i], expected, 3.0)
