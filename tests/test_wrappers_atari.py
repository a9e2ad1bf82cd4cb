"""The wrappers against the real trained Pong agents in ../shared/data: the NeurIPS DQN and the PPO / A2C
actor-critics. FGSM at lambda = 2 must change the greedy action far more often than random-sign noise that moves
every pixel by the same 2 grey levels, and must lower the score."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from agents import load_agent, make_atari_env
from agents.actor_critic import load_actor_critic
from tests.conftest import shared_file
from tests.test_wrappers_fixtures import RowByRow, assert_same_perturbation, one_torch_thread
from wrappers import STEP_KEY, AdversarialObservation, RandomNoiseObservation, VectorAdversarialObservation

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
DQN = "atari/KaleabTessera_DQN-Atari/checkpoint_dqn_neurips.pth"
PPO = "atari/rl-policies-attacks-defenses/pong_ppo_state_dict.pt"
A2C = "atari/rl-policies-attacks-defenses/pong_a2c_state_dict.pt"
STEPS = 300  # about 10 points of Pong: enough to see the score move, bounded to keep the suite fast


def load(kind: str) -> torch.nn.Module:
    return load_agent(shared_file(DQN)) if kind == "dqn" else load_actor_critic(shared_file(kind))


def play(env: gym.Env, victim: torch.nn.Module, steps: int | None, seed: int = 0) -> tuple[float, float, int]:
    """Greedy play on what the env shows: (score, share of steps whose action the perturbation changed, steps)."""
    obs, _ = env.reset(seed=seed)
    score, changed, t = 0.0, 0, 0
    while steps is None or t < steps:
        with torch.no_grad():
            action = int(victim(torch.as_tensor(np.asarray(obs))[None].float()).argmax())
        obs, reward, terminated, truncated, info = env.step(action)
        score += reward
        changed += bool(info.get(STEP_KEY, {}).get("action_changed", False))
        t += 1
        if terminated or truncated:
            break
    return score, changed / t, t


# The PPO agent's run is in the slow suite: the fast one still attacks PPO (newest-frame PGD below), and the
# comparison with noise, the same code path, runs on the DQN (3 x 300 Pong steps, ~6 s on one core each).
@pytest.mark.parametrize("kind", ["dqn", pytest.param(PPO, marks=pytest.mark.slow)], ids=["dqn", "ppo"])
def test_fgsm_beats_random_sign_noise_of_the_same_size(kind):
    victim = load(kind)
    clean, _, _ = play(make_atari_env("Pong"), victim, STEPS)
    noise, noise_changes, _ = play(
        RandomNoiseObservation(make_atari_env("Pong"), eps=2, kind="sign", victim=victim, seed=0), victim, STEPS
    )
    fgsm, fgsm_changes, _ = play(AdversarialObservation(make_atari_env("Pong"), victim, eps=2), victim, STEPS)
    # measured (seed 0, 300 steps): DQN clean 2, noise -4 (27 % changed), FGSM -7 (94 %);
    # PPO clean 3, noise 3 (16 %), FGSM -7 (100 %)
    assert fgsm_changes >= 0.85
    assert noise_changes <= 0.4
    assert fgsm_changes >= 2.5 * noise_changes
    assert fgsm <= clean - 5
    assert fgsm < noise


def test_pgd_on_the_newest_frame_only_still_fools_the_ppo_agent():
    victim = load(PPO)
    env = AdversarialObservation(make_atari_env("Pong"), victim, eps=2, attack="pgd", perturb="newest", seed=0)
    _, changes, _ = play(env, victim, 40)
    assert changes >= 0.7


def test_checkers_pass_on_real_pong_with_a_real_agent():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(
            AdversarialObservation(make_atari_env("Pong"), load(PPO), eps=2, attack="pgd"), skip_render_check=True
        )


def test_ale_vector_env_matches_single_wrappers_on_real_frames():
    victim = RowByRow(load("dqn"))  # the batch and the single rows run the same kernels
    env = gym.make_vec(
        "ALE/Pong-v5", num_envs=4, vectorization_mode="vector_entry_point", repeat_action_probability=0.0
    )
    raw, _ = env.reset(seed=3)
    wrapped = VectorAdversarialObservation(env, victim, eps=2, attack="pgd")
    obs, _ = wrapped.reset(seed=3)
    for i in range(4):
        single = AdversarialObservation(make_atari_env("Pong"), victim, eps=2, attack="pgd", seed=3 + i)
        assert_same_perturbation(single.observation(raw[i]), obs[i], 2.0)
    wrapped.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dqn", PPO, A2C], ids=["dqn", "ppo", "a2c"])
def test_fgsm_lambda_1_loses_whole_episodes(kind):
    victim = load(kind)
    clean, _, _ = play(make_atari_env("Pong"), victim, None)
    attacked, changes, _ = play(AdversarialObservation(make_atari_env("Pong"), victim, eps=1), victim, None)
    assert clean >= 15 and attacked <= -15 and changes >= 0.8
