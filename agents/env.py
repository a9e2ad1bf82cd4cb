"""Atari environments with the standard DeepMind preprocessing, through Gymnasium and ale-py.

No-op starts (up to 30), frame skip 4 with max-pooling of the last two frames, grayscale 84x84, and a stack of
the last 4 frames, channel-first uint8 (4, 84, 84). Sticky actions are off unless asked for (the SAP paper's
era used none); reward clipping is for learning only and lives in the training code, not here.

``make_atari_frame_env`` is the single-frame env underneath; training stacks frames itself (see
``agents.vec_env``) so that every vector backend shares one stacking rule, the one of ``make_atari_env``.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import ale_py
import gymnasium as gym

gym.register_envs(ale_py)

FRAME_SIZE = 84
STACK = 4
ALE_MAX_EPISODE_FRAMES = 108_000  # ALE's default cap: 30 minutes of play at 60 Hz


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


def rom_id(game: str) -> str:
    """ale-py's snake_case ROM id of a game name (``SpaceInvaders`` -> ``space_invaders``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", resolve_game(game)).lower()


def max_episode_frames(max_episode_steps: int | None, frame_skip: int) -> int:
    """ALE's per-episode frame cap for a cap in agent steps (None: ALE's default of 108,000 frames)."""
    if max_episode_steps is None:
        return ALE_MAX_EPISODE_FRAMES
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    return max_episode_steps * frame_skip


def make_atari_frame_env(
    game: str,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    sticky_actions: float = 0.0,
    terminal_on_life_loss: bool = False,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """A preprocessed Atari env whose observations are single uint8 (84, 84) grayscale frames (no stacking).

    ``max_episode_steps`` counts agent steps (``frame_skip`` frames each); the episode is then truncated.
    ``terminal_on_life_loss`` here is Gymnasium's (a life loss ends the episode and the next reset starts a new
    game); training uses ``agents.vec_env`` instead, which ends the learning episode but lets the game go on.
    """
    if not 0.0 <= sticky_actions <= 1.0:
        raise ValueError(f"sticky_actions is a probability in [0, 1], got {sticky_actions}")
    env = gym.make(
        f"ALE/{resolve_game(game)}-v5",
        frameskip=1,
        repeat_action_probability=sticky_actions,
        max_num_frames_per_episode=max_episode_frames(max_episode_steps, frame_skip),
        render_mode=render_mode,
    )
    return gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=FRAME_SIZE,
        terminal_on_life_loss=terminal_on_life_loss,
        grayscale_obs=True,
    )


def make_atari_eval_vec_env(
    game: str, num_envs: int, *, noop_max: int = 30, max_frames: int = ALE_MAX_EPISODE_FRAMES
) -> gym.vector.VectorEnv:
    """``num_envs`` games for evaluation in ale-py's vector env: uint8 (4, 84, 84) stacks, raw (unclipped)
    scores, no sticky actions, up to ``noop_max`` no-ops and FIRE (where the game has it) at reset only, whole
    games (no life-loss terminals) truncated after ``max_frames`` emulator frames; ``reset(seed=s)`` replays the
    same games."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if noop_max < 0 or max_frames < 1:
        raise ValueError(f"noop_max must be >= 0 and max_frames >= 1, got {noop_max} and {max_frames}")
    return gym.make_vec(
        f"ALE/{resolve_game(game)}-v5",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        reward_clipping=False,
        repeat_action_probability=0.0,
        noop_max=noop_max,
        max_num_frames_per_episode=max_frames,
        use_fire_reset=True,
    )


def action_meanings(game: str) -> list[str]:
    """The names of the game's minimal action set (``NOOP``, ``FIRE``, ...): an agent for it scores that many."""
    env = gym.make(f"ALE/{resolve_game(game)}-v5")
    try:
        return list(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def fire_action(game: str) -> int | None:
    """The index of FIRE in the game's minimal action set; None where the game has none."""
    meanings = action_meanings(game)
    return meanings.index("FIRE") if "FIRE" in meanings else None


def make_atari_env(game: str, **settings: Any) -> gym.Env:
    """A preprocessed Atari env whose observations are uint8 (4, 84, 84) frame stacks on the 0-255 scale.

    Takes the settings of :func:`make_atari_frame_env` (``noop_max``, ``frame_skip``, ``sticky_actions``,
    ``terminal_on_life_loss``, ``max_episode_steps``, ``render_mode``). A new episode's stack repeats its first
    frame (Gymnasium's ``padding_type="reset"``).
    """
    return gym.wrappers.FrameStackObservation(make_atari_frame_env(game, **settings), STACK)


def _camel(rom_id: str) -> str:
    return "".join(part.capitalize() for part in rom_id.split("_"))
