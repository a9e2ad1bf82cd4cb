"""Atari agents: Q-networks on 4x84x84 frame stacks, environments with DeepMind preprocessing, loading."""

from agents.env import atari_games, make_atari_env, resolve_game
from agents.loading import load_agent
from agents.networks import NatureQNetwork, NeurIPSQNetwork

__all__ = ["NatureQNetwork", "NeurIPSQNetwork", "atari_games", "load_agent", "make_atari_env", "resolve_game"]
