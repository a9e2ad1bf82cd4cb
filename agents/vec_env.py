"""K Atari games stepped at once, as a stable-baselines3 ``VecEnv`` for training.

Underneath is a Gymnasium vector env of single preprocessed 84x84 frames with same-step autoreset: Gymnasium's
``SyncVectorEnv``/``AsyncVectorEnv`` over :func:`agents.env.make_atari_frame_env` (the preprocessing of
``make_atari_env``, which evaluation and attacks use), or ale-py's C++ ``AtariVectorEnv`` (threaded, fastest on a
many-core GPU machine; its resize and no-op draws differ slightly from Gymnasium's wrapper). On top, this class:

- stacks the last 4 frames itself, a new episode's stack repeating its first frame (as ``FrameStackObservation``);
- clips rewards to their sign for learning, while ``info["episode"] = {"r", "l", "t"}`` of each finished game holds
  the raw score and length (SB3's ``Monitor`` convention, so SB3's ``ep_info_buffer`` sees true scores);
- optionally ends the learning episode at each life loss *without* resetting the game (Mnih et al. 2015; SB3's
  ``EpisodicLifeEnv`` does the same), the next stack starting afresh from the current frame;
- reports ``terminal_observation`` and ``TimeLimit.truncated`` as SB3's replay expects.
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from agents.env import FRAME_SIZE, STACK, make_atari_frame_env, max_episode_frames, resolve_game, rom_id

BACKENDS = ("sync", "async", "ale")


class AtariVecEnv(VecEnv):
    """SB3 ``VecEnv`` of frame stacks over a Gymnasium vector env of single frames (see the module docstring)."""

    def __init__(
        self,
        frames: gym.vector.VectorEnv,
        *,
        clip_rewards: bool = True,
        terminal_on_life_loss: bool = False,
    ) -> None:
        if frames.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("AtariVecEnv needs a vector env with autoreset_mode=AutoresetMode.SAME_STEP")
        self.frames = frames
        self.clip_rewards = clip_rewards
        self.terminal_on_life_loss = terminal_on_life_loss
        n = frames.num_envs
        observation_space = spaces.Box(0, 255, (STACK, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
        super().__init__(n, observation_space, frames.single_action_space)
        self._stacks = np.zeros((n, *observation_space.shape), dtype=np.uint8)
        self._score = np.zeros(n)
        self._length = np.zeros(n, dtype=np.int64)
        self._lives = np.zeros(n, dtype=np.int64)
        self._actions = np.zeros(n, dtype=np.int64)
        self._started = time.time()

    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else [int(s or 0) for s in self._seeds]
        if seeds is not None and not isinstance(self.frames, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv)):
            seeds = np.asarray(seeds)
        frames, info = self.frames.reset(seed=seeds)
        self._reset_seeds()
        frames = self._as_frames(frames)
        self._stacks[:] = frames[:, None]
        self._score[:] = 0
        self._length[:] = 0
        self._lives[:] = np.asarray(info.get("lives", np.zeros(self.num_envs)))
        return self._stacks.copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        frames, rewards, terminated, truncated, info = self.frames.step(self._actions)
        frames = self._as_frames(frames)
        rewards = np.asarray(rewards, dtype=np.float64)
        self._score += rewards
        self._length += 1
        game_over = np.asarray(terminated) | np.asarray(truncated)
        lives = np.asarray(info.get("lives", self._lives))
        life_lost = ~game_over & (lives < self._lives) if self.terminal_on_life_loss else np.zeros_like(game_over)
        self._lives = lives.astype(np.int64)
        shifted = np.concatenate([self._stacks[:, 1:], frames[:, None]], axis=1)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for env in np.flatnonzero(game_over | life_lost):
            if game_over[env]:  # the vector env already reset this game; `frames` is its first frame
                final = np.asarray(info["final_obs"][env]).reshape(FRAME_SIZE, FRAME_SIZE)
                infos[env]["terminal_observation"] = np.concatenate([self._stacks[env, 1:], final[None]])
                infos[env]["TimeLimit.truncated"] = bool(truncated[env] and not terminated[env])
                infos[env]["episode"] = {
                    "r": float(self._score[env]),
                    "l": int(self._length[env]),
                    "t": round(time.time() - self._started, 6),
                }
                self._score[env] = 0
                self._length[env] = 0
            else:  # a life lost: the learning episode ends here, the game goes on
                infos[env]["terminal_observation"] = shifted[env].copy()
                infos[env]["TimeLimit.truncated"] = False
            shifted[env] = frames[env]  # the next episode's stack repeats its first frame
        self._stacks = shifted
        learn_rewards = np.sign(rewards) if self.clip_rewards else rewards
        return self._stacks.copy(), learn_rewards.astype(np.float32), game_over | life_lost, infos

    def close(self) -> None:
        self.frames.close()

    @staticmethod
    def _as_frames(frames: np.ndarray) -> np.ndarray:
        return np.asarray(frames).reshape(-1, FRAME_SIZE, FRAME_SIZE)

    # SB3's VecEnv attribute plumbing: these envs have no per-env Python attributes worth forwarding.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._get_indices(indices)]
        raise AttributeError(f"AtariVecEnv does not forward attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"AtariVecEnv does not forward attribute {attr_name!r}")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list:
        raise AttributeError(f"AtariVecEnv does not forward method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_atari_vec_env(
    game: str,
    num_envs: int = 1,
    *,
    backend: str = "sync",
    noop_max: int = 30,
    frame_skip: int = 4,
    sticky_actions: float = 0.0,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = True,
    max_episode_steps: int | None = None,
    num_threads: int = 0,
) -> AtariVecEnv:
    """``num_envs`` preprocessed games of ``game`` as an SB3 ``VecEnv`` of uint8 (4, 84, 84) stacks.

    ``backend``: ``"sync"`` (one process; best on a few cores), ``"async"`` (one process per game, frames through
    shared memory), ``"ale"`` (ale-py's threaded C++ vector env, ``num_threads`` 0 = one per game up to the cores).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown vector backend {backend!r}; choose one of {BACKENDS}")
    if backend == "ale":
        from ale_py.vector_env import AtariVectorEnv

        if not 0.0 <= sticky_actions <= 1.0:
            raise ValueError(f"sticky_actions is a probability in [0, 1], got {sticky_actions}")
        frames: gym.vector.VectorEnv = AtariVectorEnv(
            rom_id(game),
            num_envs,
            num_threads=num_threads,
            max_num_frames_per_episode=max_episode_frames(max_episode_steps, frame_skip),
            repeat_action_probability=sticky_actions,
            autoreset_mode=AutoresetMode.SAME_STEP,
            img_height=FRAME_SIZE,
            img_width=FRAME_SIZE,
            stack_num=1,
            frameskip=frame_skip,
            noop_max=noop_max,
            reward_clipping=False,
            use_fire_reset=False,
        )
    else:
        settings = dict(
            game=resolve_game(game),
            noop_max=noop_max,
            frame_skip=frame_skip,
            sticky_actions=sticky_actions,
            max_episode_steps=max_episode_steps,
        )
        make_one = functools.partial(_frame_env_ignoring_sigint, settings)
        make_one()  # fail here, with a clear error, rather than inside a worker
        factories: Sequence = [make_one] * num_envs
        if backend == "sync":
            frames = gym.vector.SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            frames = gym.vector.AsyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    return AtariVecEnv(frames, clip_rewards=clip_rewards, terminal_on_life_loss=terminal_on_life_loss)


def _frame_env_ignoring_sigint(settings: dict[str, Any]) -> gym.Env:
    """Build one frame env; in a worker process Ctrl-C is left to the trainer, which then saves and stops."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return make_atari_frame_env(**settings)
