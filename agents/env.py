"""Atari environments with the standard DeepMind preprocessing, through Gymnasium and ale-py.

No-op starts (up to 30), frame skip 4 with max-pooling of the last two frames, grayscale 84x84, and a stack of
the last 4 frames, channel-first uint8 (4, 84, 84). Sticky actions are off unless asked for (the SAP paper's
era used none); reward clipping is for learning only and lives in the training code, not here.
"""

from __future__ import annotations

import difflib
import re

import ale_py
import gymnasium as gym

gym.register_envs(ale_py)


def atari_games() -> list[str]:
    """The games ale-py ships ROMs for, as CamelCase names (``Pong``, ``SpaceInvaders``, ...)."""
    return sorted(_camel(rom) for rom in ale_py.roms.get_all_rom_ids())


def resolve_game(game: str) -> str:
    """Map ``Pong``, ``pong``, ``PongNoFrameskip-v4``, ``ALE/Pong-v5`` or ``space_invaders`` to a CamelCase
    name, or raise ``ValueError`` naming the closest known games."""
    name = re.sub(r"^ALE/|-v\d+$|NoFrameskip|Deterministic", "", game.strip())
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("-", "_")
    roms = ale_py.roms.get_all_rom_ids()
    if snake in roms:
        return _camel(snake)
    close = difflib.get_close_matches(snake, roms, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(_camel(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown Atari game {game!r}{hint} (ale-py ships {len(roms)} games)")


def make_atari_env(
    game: str,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    sticky_actions: float = 0.0,
    terminal_on_life_loss: bool = False,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """A preprocessed Atari env whose observations are uint8 (4, 84, 84) frame stacks on the 0-255 scale."""
    env = gym.make(
        f"ALE/{resolve_game(game)}-v5",
        frameskip=1,
        repeat_action_probability=sticky_actions,
        max_episode_steps=max_episode_steps,
        render_mode=render_mode,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=84,
        terminal_on_life_loss=terminal_on_life_loss,
        grayscale_obs=True,
    )
    return gym.wrappers.FrameStackObservation(env, 4)


def _camel(rom_id: str) -> str:
    return "".join(part.capitalize() for part in rom_id.split("_"))
