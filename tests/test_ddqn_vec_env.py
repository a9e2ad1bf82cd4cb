"""The training VecEnv: same frames as ``make_atari_env``, unclipped scores, clipped learning rewards, life-loss
terminals that do not reset the game, and K games at once on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from agents import make_atari_env, make_atari_vec_env


def test_frames_equal_make_atari_env_for_the_same_seed_and_actions():
    vec = make_atari_vec_env("Pong", 1)
    vec.seed(3)
    single = make_atari_env("Pong")
    stack, _ = single.reset(seed=3)
    np.testing.assert_array_equal(vec.reset()[0], stack)
    for action in [0, 2, 3, 1, 1, 0, 5, 4]:
        obs, *_ = vec.step(np.array([action]))
        stack, *_ = single.step(action)
        np.testing.assert_array_equal(obs[0], stack)
    vec.close()
    single.close()


def test_learning_rewards_are_clipped_and_scores_are_not():
    vec = make_atari_vec_env("SpaceInvaders", 1, max_episode_steps=200)  # aliens are worth 5-30 points
    vec.seed(0)
    vec.reset()
    rng = np.random.default_rng(0)
    clipped, episode = 0.0, None
    while episode is None:
        _, reward, done, infos = vec.step(rng.integers(0, vec.action_space.n, size=1))
        assert reward[0] in (-1.0, 0.0, 1.0)
        clipped += reward[0]
        episode = infos[0].get("episode")
    assert infos[0]["TimeLimit.truncated"] and done[0]
    assert episode["r"] > clipped > 0 and episode["l"] <= 200
    vec.close()


def test_life_loss_ends_the_learning_episode_but_not_the_game():
    vec = make_atari_vec_env("Breakout", 1, terminal_on_life_loss=True)
    vec.seed(0)
    previous = vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(500):
        obs, _, done, infos = vec.step(rng.integers(0, 4, size=1))
        if done[0]:
            break
        previous = obs
    assert done[0], "no life lost in 500 random steps"
    assert "episode" not in infos[0] and not infos[0]["TimeLimit.truncated"]  # the game goes on
    assert vec._lives[0] == 4
    np.testing.assert_array_equal(infos[0]["terminal_observation"][:3], previous[0, 1:])
    assert (obs[0] == obs[0, -1]).all()  # the next learning episode starts a fresh stack
    vec.close()


@pytest.mark.parametrize("backend", ["sync", "async", "ale"])
def test_backends_step_k_games_and_report_whole_games(backend):
    vec = make_atari_vec_env("Breakout", 3, backend=backend, max_episode_steps=40)
    vec.seed(0)
    obs = vec.reset()
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    finished, rng = [], np.random.default_rng(1)
    for _ in range(45):
        obs, _, done, infos = vec.step(rng.integers(0, 4, size=3))
        finished += [info["episode"] for info in infos if "episode" in info]
        for env in np.flatnonzero(done):
            assert infos[env]["terminal_observation"].shape == (4, 84, 84)
    assert len(finished) >= 3 and all(0 < e["l"] <= 40 for e in finished)
    vec.close()


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="num_envs"):
        make_atari_vec_env("Pong", 0)
    with pytest.raises(ValueError, match="vector backend"):
        make_atari_vec_env("Pong", 1, backend="threads")
    with pytest.raises(ValueError, match="sticky_actions"):
        make_atari_vec_env("Pong", 1, sticky_actions=1.5)
