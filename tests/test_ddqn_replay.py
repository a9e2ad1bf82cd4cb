"""The frame replay returns exactly what a naive replay of whole stacks returns (SB3's own ReplayBuffer), across
episode ends, life losses, truncations and the wrap-around of both rings, and fits 1M transitions in < 8 GB."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from agents.replay import FrameReplayBuffer
from agents.vec_env import make_atari_vec_env

ATARI_OBS = spaces.Box(0, 255, (4, 84, 84), dtype=np.uint8)


def both_buffers(capacity: int, n_envs: int, obs_space: spaces.Box, n_actions: int, frame_margin: float = 1 / 32):
    action_space = spaces.Discrete(n_actions)
    ours = FrameReplayBuffer(capacity, obs_space, action_space, "cpu", n_envs=n_envs, frame_margin=frame_margin)
    naive = ReplayBuffer(capacity, obs_space, action_space, "cpu", n_envs=n_envs)
    return ours, naive


def assert_same_transitions(ours: FrameReplayBuffer, naive: ReplayBuffer, rows: np.ndarray, envs: np.ndarray):
    got = ours.transitions(rows, envs)
    np.testing.assert_array_equal(got.observations.numpy(), naive.observations[rows, envs])
    np.testing.assert_array_equal(got.next_observations.numpy(), naive.next_observations[rows, envs])
    np.testing.assert_array_equal(got.actions.numpy(), naive.actions[rows, envs].astype(np.int64))
    np.testing.assert_array_equal(got.rewards.numpy().ravel(), naive.rewards[rows, envs])
    naive_dones = naive.dones[rows, envs] * (1 - naive.timeouts[rows, envs])  # what SB3's _get_samples returns
    np.testing.assert_array_equal(got.dones.numpy().ravel(), naive_dones)


def all_stored(buffer: ReplayBuffer) -> tuple[np.ndarray, np.ndarray]:
    rows, envs = np.meshgrid(np.arange(buffer.size()), np.arange(buffer.n_envs), indexing="ij")
    return rows.ravel(), envs.ravel()


def store(buffers, obs, next_obs, actions, rewards, dones, infos):
    """Add one vector step the way SB3's off-policy loop does: terminal observations replace reset ones."""
    next_for_replay = next_obs.copy()
    for env, info in enumerate(infos):
        if dones[env]:
            next_for_replay[env] = info["terminal_observation"]
    for buffer in buffers:
        buffer.add(obs, next_for_replay, actions, rewards, dones, infos)


def test_matches_naive_replay_on_real_atari_frames():
    """Breakout, 2 games, a life loss ends the learning episode, games truncated at 60 steps; the replay
    (capacity 2 x 40) wraps around several times; the newest transitions are compared after every step and all
    stored ones every 5 steps."""
    env = make_atari_vec_env("Breakout", 2, terminal_on_life_loss=True, max_episode_steps=60)
    env.seed(1)
    ours, naive = both_buffers(80, 2, env.observation_space, env.action_space.n)
    rng = np.random.default_rng(0)
    obs = env.reset()
    seen = {"life_loss": 0, "game_over": 0, "truncated": 0}
    wraps = 0
    for step in range(300):
        actions = rng.integers(0, env.action_space.n, size=2)
        next_obs, rewards, dones, infos = env.step(actions)
        store((ours, naive), obs, next_obs, actions, rewards, dones, infos)
        for done, info in zip(dones, infos, strict=True):
            if done:
                seen["game_over" if "episode" in info else "life_loss"] += 1
                seen["truncated"] += info["TimeLimit.truncated"]
        wraps += ours.pos == 0
        newest = np.full(2, (ours.pos - 1) % ours.buffer_size)
        assert_same_transitions(ours, naive, newest, np.arange(2))
        if step % 5 == 0:
            assert_same_transitions(ours, naive, *all_stored(naive))
        obs = next_obs
    env.close()
    assert seen["life_loss"] > 0 and seen["game_over"] > 0 and seen["truncated"] > 0, seen
    assert wraps >= 5
    assert ours.frame_count.min() > 2 * ours.frame_capacity  # the frame ring wrapped too


def synthetic_stream(rng, steps: int, n_envs: int, stack: int = 4, side: int = 3):
    """Stacks with episodes of 1-6 steps whose first stack is padded by repeating (like FrameStackObservation),
    with zeros, or not at all (a stack that continues nothing); yields (obs, next_obs, dones, infos)."""

    def first_stack():
        frame = rng.integers(1, 255, size=(side, side), dtype=np.uint8)
        kind = rng.integers(3)
        if kind == 0:
            return np.repeat(frame[None], stack, axis=0)
        if kind == 1:
            return np.concatenate([np.zeros((stack - 1, side, side), np.uint8), frame[None]])
        return rng.integers(0, 255, size=(stack, side, side), dtype=np.uint8)

    current = np.stack([first_stack() for _ in range(n_envs)])
    left = rng.integers(1, 7, size=n_envs)
    for _ in range(steps):
        new = rng.integers(0, 255, size=(n_envs, side, side), dtype=np.uint8)
        next_obs = np.concatenate([current[:, 1:], new[:, None]], axis=1)
        left -= 1
        dones = left == 0
        infos = [
            {"TimeLimit.truncated": bool(d and rng.random() < 0.3), "terminal_observation": next_obs[env]}
            for env, d in enumerate(dones)
        ]
        yield current, next_obs, dones, infos
        current = next_obs.copy()
        for env in np.flatnonzero(dones):
            current[env] = first_stack()
            left[env] = rng.integers(1, 7)


@pytest.mark.parametrize("frame_margin", [4.0, 0.0])
def test_matches_naive_replay_on_short_episodes_and_any_padding(frame_margin):
    """Episodes of 1-6 steps spend up to 4 extra frames on their first stacks: with a margin of 4x the capacity
    every transition keeps its frames; with none the oldest lose frames to the ring and must never be sampled.
    Either way every transition still in reach is exact."""
    obs_space = spaces.Box(0, 255, (4, 3, 3), dtype=np.uint8)
    ours, naive = both_buffers(60, 3, obs_space, n_actions=5, frame_margin=frame_margin)
    rng = np.random.default_rng(1)
    for obs, next_obs, dones, infos in synthetic_stream(rng, 200, 3):
        store((ours, naive), obs, next_obs, rng.integers(0, 5, 3), rng.normal(size=3), dones.astype(float), infos)
        rows, envs = all_stored(naive)
        present = ours.frames_present(rows, envs)
        newest = np.full(3, (ours.pos - 1) % ours.buffer_size)
        assert ours.frames_present(newest, np.arange(3)).all()  # the newest transitions are always complete
        assert_same_transitions(ours, naive, rows[present], envs[present])
        sampled_rows, sampled_envs = ours.sample_indices(64)
        assert ours.frames_present(sampled_rows, sampled_envs).all()
    if frame_margin == 0.0:
        assert not ours.frames_present(*all_stored(naive)).all()  # the case the rule above guards
    else:
        assert ours.frames_present(*all_stored(naive)).all()


def test_sample_returns_stacks_of_the_right_type_and_range():
    ours, naive = both_buffers(16, 1, ATARI_OBS, n_actions=6)
    rng = np.random.default_rng(2)
    obs = rng.integers(0, 255, size=(1, 4, 84, 84), dtype=np.uint8)
    for _ in range(20):
        nxt = np.concatenate([obs[:, 1:], rng.integers(0, 255, size=(1, 1, 84, 84), dtype=np.uint8)], axis=1)
        store((ours, naive), obs, nxt, np.array([3]), np.array([1.0]), np.array([0.0]), [{}])
        obs = nxt
    batch = ours.sample(8)
    assert batch.observations.dtype == torch.uint8 and batch.observations.shape == (8, 4, 84, 84)
    assert batch.actions.dtype == torch.int64 and batch.actions.shape == (8, 1)
    assert batch.rewards.shape == batch.dones.shape == (8, 1)


def test_one_million_transitions_fit_in_under_8_gb():
    """Allocated bytes per transition (frames are allocated lazily, so nothing big is touched here)."""
    ours = FrameReplayBuffer(100_000, ATARI_OBS, spaces.Discrete(18), "cpu")
    per_transition = ours.bytes_per_transition
    assert 84 * 84 <= per_transition < 7_400  # 7,056 B a frame + 1/32 margin + 31 B of records
    assert per_transition * 1_000_000 < 8e9
    sb3_per_transition = 2 * 4 * 84 * 84 + 8 + 3 * 4  # obs + next_obs + int64 action + reward, done, timeout
    assert sb3_per_transition / per_transition > 7.5


def test_rejects_what_it_cannot_store():
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        FrameReplayBuffer(10, ATARI_OBS, spaces.Discrete(4), "cpu", optimize_memory_usage=True)
    with pytest.raises(ValueError, match="uint8"):
        FrameReplayBuffer(10, spaces.Box(0, 1, (4, 84, 84), dtype=np.float32), spaces.Discrete(4), "cpu")
    with pytest.raises(ValueError, match="empty"):
        FrameReplayBuffer(10, ATARI_OBS, spaces.Discrete(4), "cpu").sample(4)


def test_device_frame_store_gathers_like_the_host_store():
    """The GPU path's indexing, run on the CPU: the same frames as the numpy store for the same writes."""
    from agents.replay import _DeviceFrames, _NumpyFrames

    rng = np.random.default_rng(3)
    host, device = _NumpyFrames((2, 10, 3, 3)), _DeviceFrames((2, 10, 3, 3), torch.device("cpu"))
    for _ in range(25):
        envs, slots = rng.integers(0, 2, 3), rng.permutation(10)[:3]
        frames = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
        host.write(envs, slots, frames)
        device.write(envs, slots, frames)
    envs, slots = rng.integers(0, 2, 5), rng.integers(0, 10, (5, 8))
    expected = host.gather(envs, slots, torch.device("cpu"))
    assert torch.equal(device.gather(envs, slots, torch.device("cpu")), expected)
    assert expected.shape == (5, 8, 3, 3) and host.nbytes == device.nbytes == 2 * 10 * 9
