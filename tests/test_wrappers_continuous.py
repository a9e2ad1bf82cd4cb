"""The wrappers on continuous-action victims and with per-dimension budgets (issue 16)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from torch import nn

from rlrobust.attacks import gaussian_kl, squared_distance
from wrappers import (
    AdversarialObservation,
    AdversarialVecEnv,
    RandomNoiseObservation,
    StrategicallyTimed,
    VectorAdversarialObservation,
)
from wrappers.scaling import observation_scale

PENDULUM = "Pendulum-v1"


def actor(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))


class NormalActor(nn.Module):
    """A plain stochastic actor: obs -> Normal over Pendulum's one action dimension."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.mean = nn.Linear(3, 1)
        self.log_std = nn.Parameter(torch.full((1,), -0.5))

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mean(obs), self.log_std.exp())


def sb3_model(algo: type, env_id: str = PENDULUM):
    settings = {"n_steps": 8, "batch_size": 8} if algo is PPO else {"n_steps": 8} if algo is A2C else {}
    return algo("MlpPolicy", gym.make(env_id), device="cpu", seed=0, **settings)


def test_mad_losses_are_the_kl_and_the_squared_distance():
    mean0, mean1 = torch.randn(4, 3), torch.randn(4, 3)
    log0, log1 = torch.randn(4, 3) * 0.3, torch.randn(4, 3) * 0.3
    ours = gaussian_kl(torch.cat([mean1, log1], 1), torch.cat([mean0, log0], 1))
    p = torch.distributions.Normal(mean0, log0.exp())
    q = torch.distributions.Normal(mean1, log1.exp())
    torch.testing.assert_close(ours, torch.distributions.kl_divergence(p, q).sum(1))
    assert squared_distance(mean1, mean0).tolist() == pytest.approx(((mean1 - mean0) ** 2).sum(1).tolist())


@pytest.mark.parametrize("algo", [PPO, A2C, SAC, TD3, DDPG])
@pytest.mark.parametrize("loss", ["mad", "critic"])
def test_sb3_continuous_victims_are_attacked(algo, loss, one_torch_thread):
    env = AdversarialObservation(gym.make(PENDULUM), sb3_model(algo), eps=0.1, loss=loss, seed=0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    step = info["attack"]
    assert step["linf"] == pytest.approx(0.1, rel=1e-5) and len(step["clean_action"]) == 1
    assert step["action_distance"] == pytest.approx(abs(step["perturbed_action"][0] - step["clean_action"][0]))
    assert env.action_space.contains(np.asarray(step["perturbed_action"], dtype=np.float32))


@pytest.mark.parametrize("victim", [actor(), NormalActor()], ids=["deterministic", "normal"])
def test_plain_actors_in_the_single_vector_and_sb3_wrappers_agree(victim, one_torch_thread):
    single = AdversarialObservation(gym.make(PENDULUM), victim, eps=0.05, seed=3)
    _, info = single.reset(seed=3)
    vector = VectorAdversarialObservation(gym.make_vec(PENDULUM, num_envs=1), victim, eps=0.05, seed=3)
    _, vinfo = vector.reset(seed=3)
    np.testing.assert_allclose(vinfo["attack"]["perturbed_action"][0], info["attack"]["perturbed_action"], rtol=1e-5)
    venv = DummyVecEnv([lambda: gym.make(PENDULUM)] * 2)
    wrapped = AdversarialVecEnv(venv, victim, eps=0.05, seed=0)
    wrapped.reset()
    for _ in range(3):
        _, _, _, infos = wrapped.step(np.zeros((2, 1), dtype=np.float32))
    assert infos[1]["attack"]["action_distance"] >= 0 and len(infos[1]["attack"]["clean_action"]) == 1


def test_episode_summary_reports_the_mean_action_distance():
    env = AdversarialObservation(gym.make(PENDULUM, max_episode_steps=5), actor(), eps=0.1, seed=0)
    env.reset(seed=0)
    distances, done = [], False
    while not done:
        _, _, terminated, truncated, info = env.step(np.zeros(1, dtype=np.float32))
        distances.append(info["attack"]["action_distance"])
        done = terminated or truncated
    summary = info["attack_episode"]
    assert summary["observations"] == 6  # the reset observation and five steps
    assert summary["mean_action_distance"] > 0 and summary["action_changes"] <= 6


@pytest.mark.filterwarnings("ignore")  # the checkers warn about wrapped envs and infinite bounds
def test_wrapped_continuous_envs_pass_gymnasium_and_sb3_checks():
    for env in (
        AdversarialObservation(gym.make(PENDULUM), actor(), eps=0.1, seed=0),
        RandomNoiseObservation(gym.make(PENDULUM), eps=0.1, scale=[0.5, 0.5, 2.0], seed=0),
    ):
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)


@pytest.mark.filterwarnings("ignore")  # the checkers warn about wrapped envs and infinite bounds
def test_wrapped_hopper_passes_the_checks():
    pytest.importorskip("mujoco")
    hopper = gym.make("Hopper-v5")
    victim = nn.Sequential(nn.Linear(11, 16), nn.Tanh(), nn.Linear(16, 3))
    env = AdversarialObservation(hopper, victim, eps=0.075, scale="std", scale_from=_observations("Hopper-v5"))
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)


def _observations(env_id: str, count: int = 64) -> np.ndarray:
    env = gym.make(env_id)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    batch = []
    for _ in range(count):
        batch.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(batch)


def test_per_dimension_budgets_hold_exactly():
    scale = np.array([4.8, 1.0, 0.42, 2.0], dtype=np.float32)
    eps = 0.1
    noise = RandomNoiseObservation(gym.make("CartPole-v1"), eps=eps, scale=scale, seed=0)
    clean, _ = gym.make("CartPole-v1").reset(seed=0)
    obs, info = noise.reset(seed=0)
    np.testing.assert_allclose(np.abs(obs - clean), eps * scale, rtol=1e-5)  # sign noise: exactly eps * scale
    assert info["attack"]["linf"] == pytest.approx(eps, rel=1e-5)  # reported in the budget's (scaled) units
    torch.manual_seed(0)
    env = AdversarialObservation(gym.make("CartPole-v1"), nn.Linear(4, 2), attack="pgd", eps=eps, scale=scale, seed=0)
    base = gym.make("CartPole-v1")
    clean, _ = base.reset(seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        slack = 1e-6 * np.maximum(np.abs(clean), 1.0)  # one float32 rounding of x + delta
        assert (np.abs(obs - clean) <= eps * scale + slack).all()
        obs, _, terminated, _, _ = env.step(0)
        clean, _, _, _, _ = base.step(0)
        if terminated:
            break


def test_finite_space_bounds_hold_under_a_scale():
    env = RandomNoiseObservation(gym.make(PENDULUM), eps=1.0, scale=[1.0, 1.0, 8.0], seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(np.zeros(1, dtype=np.float32))


def test_std_scale_from_a_batch_and_from_vecnormalize():
    batch = _observations(PENDULUM)
    np.testing.assert_allclose(observation_scale("std", (3,), batch), batch.std(0), rtol=1e-6)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(PENDULUM)]))
    venv.reset()
    for _ in range(20):
        venv.step(np.zeros((1, 1), dtype=np.float32))
    expected = np.sqrt(venv.obs_rms.var + venv.epsilon)
    np.testing.assert_allclose(observation_scale("std", (3,), venv), expected, rtol=1e-6)


def test_mad_moves_a_trained_policy_more_than_random_noise(one_torch_thread):
    victim = _trained_pendulum_actor()
    eps = 0.05
    mad = AdversarialObservation(gym.make(PENDULUM), victim, eps=eps, loss="mad", seed=0)
    noise = RandomNoiseObservation(gym.make(PENDULUM), eps=eps, kind="uniform", victim=victim, seed=0)
    assert _mean_distance(mad) > 2 * _mean_distance(noise)


def _trained_pendulum_actor() -> nn.Module:
    """An actor fitted (a few hundred Adam steps) to a PD controller that holds Pendulum upright."""
    torch.manual_seed(0)
    theta = torch.rand(4096) * 2 * torch.pi - torch.pi
    speed = torch.rand(4096) * 16 - 8
    obs = torch.stack([theta.cos(), theta.sin(), speed], 1)
    target = (-(10 * theta + 2 * speed)).clamp(-2, 2)[:, None]
    net = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(400):
        optimiser.zero_grad()
        loss = (net(obs) - target).pow(2).mean()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5  # it learned the controller
    return net


def _mean_distance(env: gym.Env, steps: int = 40) -> float:
    env.reset(seed=0)
    total = 0.0
    for _ in range(steps):
        _, _, _, _, info = env.step(np.zeros(1, dtype=np.float32))
        total += np.linalg.norm(np.subtract(info["attack"]["perturbed_action"], info["attack"]["clean_action"]))
    return total / steps


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"scale": [1.0, 2.0]}, ValueError, r"scale has 2 values .* but the observation has 3"),
        ({"scale": [1.0, 0.0, 1.0]}, ValueError, r"finite and > 0 in every dimension; scale\[1\] = 0"),
        ({"scale": [1.0, -2.0, 1.0]}, ValueError, r"scale\[1\] = -2"),
        ({"scale": "std"}, ValueError, "needs scale_from"),
        ({"scale": "mad"}, ValueError, "scale must be None, a vector"),
        ({"loss": "ce"}, ValueError, "for a continuous-action victim use one of"),
        ({"loss": "critic"}, ValueError, "the critic attack needs the victim's critic"),
        ({"attack": "fgsm"}, ValueError, "the MAD loss is zero, with a zero gradient"),
        ({"targeted": True}, ValueError, "no worst action to aim at"),
        ({"schedule": StrategicallyTimed(0.5)}, ValueError, "only a discrete victim has"),
    ],
)
def test_bad_continuous_settings_fail_with_one_line(settings, error, message):
    with pytest.raises(error, match=message):
        AdversarialObservation(gym.make(PENDULUM), actor(), eps=0.1, **settings)


def test_a_victim_matching_neither_the_actions_nor_a_distribution_is_refused():
    with pytest.raises(ValueError, match=r"matches neither the action space .* nor a distribution over it"):
        AdversarialObservation(gym.make(PENDULUM), nn.Linear(3, 2), eps=0.1)
    uniform = lambda obs: torch.distributions.Uniform(torch.zeros(len(obs), 1), torch.ones(len(obs), 1))  # noqa: E731
    with pytest.raises(TypeError, match="must return a \\(diagonal\\) Normal"):
        AdversarialObservation(gym.make(PENDULUM), uniform, eps=0.1)


def test_a_plain_actor_takes_the_users_critic(one_torch_thread):
    calls = []

    def critic(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        calls.append(obs.shape)
        return -(actions**2).sum(1)  # the critic prefers no torque: the attack pushes the torque away from 0

    env = AdversarialObservation(gym.make(PENDULUM), actor(), eps=0.1, loss="critic", critic=critic, seed=0)
    _, info = env.reset(seed=0)
    assert calls and abs(info["attack"]["perturbed_action"][0]) > abs(info["attack"]["clean_action"][0])


class NoisyActor(nn.Module):
    """A stochastic deterministic-output actor (dropout left on): the victim EOT is for."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.net = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def test_eot_and_seeds_work_for_a_stochastic_continuous_victim():
    def play(seed: int) -> list[np.ndarray]:
        env = AdversarialObservation(gym.make(PENDULUM), NoisyActor(), eps=0.1, eot_samples=4, seed=seed)
        obs, _ = env.reset(seed=seed)
        seen = [obs]
        for _ in range(3):
            obs, *_ = env.step(np.zeros(1, dtype=np.float32))
            seen.append(obs)
        return seen

    first, again, other = play(0), play(0), play(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed: the same starts, passes and perturbations
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_the_direct_gaussian_path_matches_sb3s_distribution():
    from wrappers.victim import resolve_victim

    model = sb3_model(PPO)
    obs = torch.randn(5, 3)
    with torch.no_grad():
        distribution = model.policy.get_distribution(obs).distribution
        expected = torch.cat([distribution.mean, distribution.stddev.log()], dim=1)
        torch.testing.assert_close(resolve_victim(model, (3,))(obs), expected)
