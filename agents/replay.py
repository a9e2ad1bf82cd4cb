"""A replay memory that stores each Atari frame once and rebuilds the frame stacks when it samples.

Stable-baselines3's ``ReplayBuffer`` keeps two whole (4, 84, 84) stacks per transition (56 KB; 28 KB with
``optimize_memory_usage``), so the DQN papers' 1M transitions need 28-56 GB. Consecutive stacks share three of
their four frames, so this buffer keeps one 84x84 frame per transition (7 KB) in a ring per environment, and each
transition only points at the newest frame of its observation and of its next observation.

Exact by construction, not by assumption about the wrappers: on every ``add`` the buffer checks that the
observation is the stack it already holds and that the next observation continues it (same frames shifted by
one). Where either check fails -- a new episode, a stack padded with zeros, any wrapper that does not stack --
the whole stack is stored again; a stack that repeats one frame (the padding of a new episode in Gymnasium's
``FrameStackObservation`` and in ``agents.vec_env``) is stored as that single frame plus a "history" count, so a
new episode costs one extra frame and no stack ever borrows a frame from the previous episode.

The frame ring holds ``(1 + frame_margin)`` times as many frames as transitions; if episodes are so short that
their extra first frames overrun the margin, the oldest transitions whose frames were overwritten are never
sampled (the buffer then holds slightly fewer than ``buffer_size`` usable transitions). Frames may live on the
GPU (``storage_device``), so sampling is one gather on the device and no image crosses the bus.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples


class FrameReplayBuffer(ReplayBuffer):
    """SB3 replay buffer for uint8 frame-stack observations (S, H, W) that stores each frame once.

    A drop-in ``replay_buffer_class`` for SB3's off-policy algorithms (``DQN``, :class:`agents.DoubleDQN`).
    Sampling returns exactly what SB3's ``ReplayBuffer`` would return for the same transitions.

    :param frame_margin: extra frame slots, as a fraction of ``buffer_size``, for the first frames of episodes.
    :param storage_device: where the frames live (default: the training device).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        frame_margin: float = 1 / 32,
        storage_device: torch.device | str | None = None,
    ) -> None:
        if not (isinstance(observation_space, spaces.Box) and observation_space.dtype == np.uint8):
            raise ValueError(f"FrameReplayBuffer needs uint8 Box observations, got {observation_space}")
        if len(observation_space.shape) != 3:
            raise ValueError(f"FrameReplayBuffer needs (stack, height, width) observations, got {observation_space}")
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"FrameReplayBuffer needs a Discrete action space, got {action_space}")
        if optimize_memory_usage:
            raise ValueError("FrameReplayBuffer already stores every frame once; leave optimize_memory_usage off")
        if frame_margin < 0:
            raise ValueError(f"frame_margin must be >= 0, got {frame_margin}")
        # ReplayBuffer.__init__ would allocate SB3's full stacks; only the base bookkeeping is wanted.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.stack = observation_space.shape[0]
        frame_shape = observation_space.shape[1:]
        self.frame_capacity = self.buffer_size + max(2 * self.stack, math.ceil(frame_margin * self.buffer_size))
        self.storage_device = torch.device(storage_device) if storage_device is not None else self.device
        self.frames = _frame_store((n_envs, self.frame_capacity, *frame_shape), self.storage_device)
        rows = (self.buffer_size, n_envs)
        self.obs_end = np.zeros(rows, dtype=np.int64)  # frame counter of the newest frame of obs
        self.next_end = np.zeros(rows, dtype=np.int64)
        self.obs_history = np.zeros(rows, dtype=np.uint8)  # older frames of the same stack in the ring (<= S-1)
        self.next_history = np.zeros(rows, dtype=np.uint8)
        self.actions = np.zeros(rows, dtype=np.uint8 if action_space.n <= 256 else np.int64)
        self.rewards = np.zeros(rows, dtype=np.float32)
        self.dones = np.zeros(rows, dtype=np.float32)
        self.timeouts = np.zeros(rows, dtype=np.float32)
        self._reset_streams()

    # ------------------------------------------------------------------ memory
    @property
    def nbytes(self) -> int:
        """Bytes held by frames and per-transition records (not Python overhead)."""
        records = (self.obs_end, self.next_end, self.obs_history, self.next_history)
        records += (self.actions, self.rewards, self.dones, self.timeouts)
        return self.frames.nbytes + sum(a.nbytes for a in records)

    @property
    def bytes_per_transition(self) -> float:
        return self.nbytes / (self.buffer_size * self.n_envs)

    def transitions_stored(self) -> int:
        return self.size() * self.n_envs

    # ------------------------------------------------------------------ writing
    def reset(self) -> None:
        super().reset()
        self._reset_streams()

    def _reset_streams(self) -> None:
        n, shape = self.n_envs, self.obs_shape
        self.frame_count = np.zeros(n, dtype=np.int64)  # frames ever written, per environment
        self._held = np.zeros((n, *shape), dtype=np.uint8)  # the stack each environment's stream ends with
        self._has_held = np.zeros(n, dtype=bool)
        self._held_end = np.zeros(n, dtype=np.int64)
        self._held_history = np.zeros(n, dtype=np.int64)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        n = self.n_envs
        obs = np.asarray(obs).reshape(n, *self.obs_shape)
        next_obs = np.asarray(next_obs).reshape(n, *self.obs_shape)
        held = self._has_held & np.all(obs == self._held, axis=(1, 2, 3))
        for env in np.flatnonzero(~held):
            self._held_end[env], self._held_history[env] = self._store_stack(env, obs[env])
        obs_end, obs_history = self._held_end.copy(), self._held_history.copy()

        continues = np.all(next_obs[:, :-1] == obs[:, 1:], axis=(1, 2, 3))
        next_end = np.empty(n, dtype=np.int64)
        next_history = np.empty(n, dtype=np.int64)
        shift = np.flatnonzero(continues)
        if len(shift):
            next_end[shift] = self._push(shift, next_obs[shift, -1])
            next_history[shift] = np.minimum(obs_history[shift] + 1, self.stack - 1)
        for env in np.flatnonzero(~continues):
            next_end[env], next_history[env] = self._store_stack(env, next_obs[env])

        row = self.pos
        self.obs_end[row], self.obs_history[row] = obs_end, obs_history
        self.next_end[row], self.next_history[row] = next_end, next_history
        self.actions[row] = np.asarray(action).reshape(n)
        self.rewards[row] = np.asarray(reward).reshape(n)
        self.dones[row] = np.asarray(done).reshape(n)
        if self.handle_timeout_termination:
            self.timeouts[row] = [info.get("TimeLimit.truncated", False) for info in infos]
        self._held[:] = next_obs
        self._has_held[:] = True
        self._held_end[:], self._held_history[:] = next_end, next_history
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _store_stack(self, env: int, stack: np.ndarray) -> tuple[int, int]:
        """Write a stack that does not continue the stream: one frame if it repeats one frame, else all."""
        if np.all(stack == stack[-1]):
            return int(self._push(np.array([env]), stack[-1:])[0]), 0
        envs = np.full(self.stack, env)
        return int(self._push(envs, stack)[-1]), self.stack - 1

    def _push(self, envs: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Append one frame per entry of ``envs`` (an env may repeat, in order); returns their counters."""
        counters = np.empty(len(envs), dtype=np.int64)
        for i, env in enumerate(envs):  # a handful of entries per call
            counters[i] = self.frame_count[env]
            self.frame_count[env] += 1
        self.frames.write(envs, counters % self.frame_capacity, frames)
        return counters

    # ------------------------------------------------------------------ reading
    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        """``batch_size`` transitions drawn uniformly (with replacement) from those stored, as SB3 does."""
        if env is not None:
            raise NotImplementedError("FrameReplayBuffer does not support VecNormalize")
        return self.transitions(*self.sample_indices(batch_size))

    def sample_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (row, env) draws among stored transitions whose frames are all still in the ring."""
        upper = self.buffer_size if self.full else self.pos
        if upper == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = np.random.randint(0, upper, size=batch_size)
        envs = np.random.randint(0, self.n_envs, size=batch_size)
        stale = ~self.frames_present(rows, envs)
        while stale.any():  # only when short episodes overran the frame margin
            rows[stale] = np.random.randint(0, upper, size=int(stale.sum()))
            envs[stale] = np.random.randint(0, self.n_envs, size=int(stale.sum()))
            stale = ~self.frames_present(rows, envs)
        return rows, envs

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> ReplayBufferSamples:
        if env is not None:
            raise NotImplementedError("FrameReplayBuffer does not support VecNormalize")
        return self.transitions(batch_inds, np.random.randint(0, self.n_envs, size=len(batch_inds)))

    def frames_present(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Whether every frame of each transition is still in the ring (not overwritten)."""
        oldest = self.obs_end[rows, envs] - self.obs_history[rows, envs]
        return oldest >= self.frame_count[envs] - self.frame_capacity

    def transitions(self, rows: np.ndarray, envs: np.ndarray) -> ReplayBufferSamples:
        """The stored transitions at ``(rows, envs)``, stacks rebuilt, as tensors on the training device."""
        rows, envs = np.asarray(rows), np.asarray(envs)
        back = np.arange(self.stack - 1, -1, -1)  # frames before the newest, oldest first
        obs_idx = self.obs_end[rows, envs, None] - np.minimum(back, self.obs_history[rows, envs, None])
        next_idx = self.next_end[rows, envs, None] - np.minimum(back, self.next_history[rows, envs, None])
        slots = np.concatenate([obs_idx, next_idx], axis=1) % self.frame_capacity
        stacks = self.frames.gather(envs, slots, self.device)
        dones = self.dones[rows, envs] * (1 - self.timeouts[rows, envs])
        return ReplayBufferSamples(
            observations=stacks[:, : self.stack],
            actions=self.to_torch(self.actions[rows, envs].astype(np.int64).reshape(-1, 1)),
            next_observations=stacks[:, self.stack :],
            dones=self.to_torch(dones.reshape(-1, 1)),
            rewards=self.to_torch(self.rewards[rows, envs].reshape(-1, 1)),
        )


class _NumpyFrames:
    """Frames in host memory. numpy's fancy indexing is single-threaded and fast (about 0.2 ms for a minibatch),
    unlike torch's multi-threaded indexing on a busy CPU."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.array = np.empty(shape, dtype=np.uint8)  # pages are only committed as frames are written
        self.nbytes = self.array.nbytes

    def write(self, envs: np.ndarray, slots: np.ndarray, frames: np.ndarray) -> None:
        self.array[envs, slots] = frames

    def gather(self, envs: np.ndarray, slots: np.ndarray, device: torch.device) -> torch.Tensor:
        stacks = torch.from_numpy(self.array[envs[:, None], slots])
        return stacks.to(device, non_blocking=True) if device.type != "cpu" else stacks


class _DeviceFrames:
    """Frames in accelerator memory: only indices cross the bus, the gather runs on the device."""

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.tensor = torch.empty(shape, dtype=torch.uint8, device=device)
        self.nbytes = self.tensor.numel()

    def write(self, envs: np.ndarray, slots: np.ndarray, frames: np.ndarray) -> None:
        device = self.tensor.device
        index = (torch.as_tensor(envs, device=device), torch.as_tensor(slots, device=device))
        self.tensor[index] = torch.as_tensor(frames).to(device, non_blocking=True)

    def gather(self, envs: np.ndarray, slots: np.ndarray, device: torch.device) -> torch.Tensor:
        store = self.tensor.device
        stacks = self.tensor[torch.as_tensor(envs, device=store)[:, None], torch.as_tensor(slots, device=store)]
        return stacks.to(device)


def _frame_store(shape: tuple[int, ...], device: torch.device) -> _NumpyFrames | _DeviceFrames:
    return _NumpyFrames(shape) if device.type == "cpu" else _DeviceFrames(shape, device)
