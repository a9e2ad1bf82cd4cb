"""What a Double DQN run trains on and with, built from its :class:`~agents.training.config.TrainConfig`: the
training and evaluation games, and a fresh model with the config's hyper-parameters.

>>> from agents.training.config import TrainConfig
>>> settings = dqn_settings(TrainConfig(num_envs=8, device="cpu"))
>>> settings["train_freq"], settings["gradient_steps"], settings["device"]
(1, 2, device(type='cpu'))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.double_dqn import DoubleDQN
from agents.env import make_atari_env
from agents.loading import load_agent
from agents.optim import optimizer_settings
from agents.replay import FrameReplayBuffer
from agents.training.config import TrainConfig
from agents.vec_env import make_atari_vec_env


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA where torch sees a device, else the CPU; any other name as given.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def make_training_env(config: TrainConfig):
    """The ``num_envs`` games the agent learns on (life-loss terminals and clipped rewards as the config says)."""
    return make_atari_vec_env(
        config.game,
        config.num_envs,
        backend=config.vec_backend,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        sticky_actions=config.sticky_actions,
        terminal_on_life_loss=config.terminal_on_life_loss,
        clip_rewards=config.clip_rewards,
        max_episode_steps=config.max_episode_steps,
    )


def make_eval_env(config: TrainConfig):
    """Whole games (no life-loss terminals), the same preprocessing as ``make_atari_env`` for attacks, each ended
    after ``eval_max_steps`` agent steps: a barely trained agent may never end a game by itself."""
    return make_atari_env(
        config.game,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        sticky_actions=config.sticky_actions,
        max_episode_steps=min(config.max_episode_steps, config.eval_max_steps),
    )


def replay_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The replay buffer's settings: its frame margin and where its frames are stored (None: the model's device).

    >>> replay_kwargs(TrainConfig(replay_on_device=False))
    {'frame_margin': 0.03125, 'storage_device': 'cpu'}
    """
    return {"frame_margin": config.frame_margin, "storage_device": None if config.replay_on_device else "cpu"}


def dqn_settings(config: TrainConfig) -> dict[str, Any]:
    """The keyword arguments SB3's ``DQN`` and our ``DoubleDQN`` share, from ``config`` (the benchmark gives SB3's
    DQN exactly these): schedule, replay size, target copies, epsilon range, the optimizer, seed and device."""
    train_freq, gradient_steps = config.update_schedule()
    return {
        "learning_rate": config.learning_rate,
        "buffer_size": config.buffer_size,
        "learning_starts": config.learning_starts,
        "batch_size": config.batch_size,
        "tau": 1.0,
        "gamma": config.gamma,
        "train_freq": train_freq,
        "gradient_steps": gradient_steps,
        "target_update_interval": config.target_update,
        "exploration_initial_eps": config.epsilon_start,
        "exploration_final_eps": config.epsilon_final,
        "policy_kwargs": optimizer_settings(
            config.optimizer,
            alpha=config.rmsprop_alpha,
            eps=config.rmsprop_eps,
            centered=config.rmsprop_centered,
            batch_size=config.batch_size,
        ),
        "seed": config.seed,
        "device": resolve_device(config.device),
    }


def build_model(config: TrainConfig, env, *, model_class: type[DoubleDQN] = DoubleDQN) -> DoubleDQN:
    """A fresh DoubleDQN (or subclass) with the config's hyper-parameters on ``env``."""
    settings = dqn_settings(config)
    settings["policy_kwargs"]["network"] = config.network
    return model_class(
        "AtariQPolicy",
        env,
        replay_buffer_class=FrameReplayBuffer,
        replay_buffer_kwargs=replay_kwargs(config),
        exploration_steps=config.exploration_steps,
        compile_update=config.compiles_update(),
        max_grad_norm=config.max_grad_norm or None,
        robust=config.robust_settings(),
        **settings,
    )


def load_initial_weights(model: DoubleDQN, path: str | Path) -> None:
    """Give ``model``'s online and target networks the weights of the agent at ``path`` (``--init-from``): any
    file :func:`agents.loading.load_agent` reads that holds a Q-network of the model's architecture."""
    source = load_agent(path)
    network = model.q_net.network
    mismatch = type(source) is not type(network) or _n_actions(source) != _n_actions(network)
    if mismatch:
        raise ValueError(
            f"--init-from {path}: a {type(source).__name__} with {_n_actions(source)} actions, but this run trains a "
            f"{type(network).__name__} with {_n_actions(network)} actions"
        )
    state = {k: v.to(model.device) for k, v in source.state_dict().items()}
    network.load_state_dict(state)
    model.q_net_target.network.load_state_dict(state)


def _n_actions(network: torch.nn.Module) -> int:
    return [p for p in network.parameters() if p.ndim == 1][-1].shape[0]
