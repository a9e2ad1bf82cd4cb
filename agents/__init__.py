"""Atari agents: Q-networks on 4x84x84 frame stacks, environments with DeepMind preprocessing, loading, and
Double DQN training on stable-baselines3.

The training names (``DoubleDQN``, ``FrameReplayBuffer``, ``AtariQPolicy``, ``make_atari_vec_env``, ``TrainConfig``)
are imported on first use, so ``import agents`` for evaluation and attacks does not pull in stable-baselines3.
"""

from __future__ import annotations

import importlib
from typing import Any

from agents.actor_critic import ActorCritic, load_actor_critic
from agents.env import atari_games, make_atari_env, make_atari_frame_env, resolve_game
from agents.loading import load_agent
from agents.networks import NatureQNetwork, NeurIPSQNetwork, build_q_network

_LAZY = {
    "DoubleDQN": "agents.double_dqn",
    "double_q_target": "agents.double_dqn",
    "FrameReplayBuffer": "agents.replay",
    "AtariQPolicy": "agents.policies",
    "AtariQNetwork": "agents.policies",
    "AtariVecEnv": "agents.vec_env",
    "make_atari_vec_env": "agents.vec_env",
    "TrainConfig": "agents.training",
    "start_run": "agents.training",
    "resume_run": "agents.training",
}

__all__ = [
    "ActorCritic",
    "NatureQNetwork",
    "NeurIPSQNetwork",
    "atari_games",
    "build_q_network",
    "load_actor_critic",
    "load_agent",
    "make_atari_env",
    "make_atari_frame_env",
    "resolve_game",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
