"""Load a trained Q-network from a file into a module ready for evaluation and attacks.

``load_agent(path)`` accepts:

- our training checkpoints and final models (stable-baselines3 zips of :class:`agents.DoubleDQN`, online network
  under ``q_net.network.*``), or a run directory (its ``final_model.zip``, else its newest checkpoint);
- stable-baselines3 zips with the stock ``CnnPolicy`` (NatureCNN, ``net_arch=[]``, images scaled by 1/255): that
  is exactly the Nature network, so a DQN's weights, or a PPO/A2C policy's action logits, are mapped onto
  :class:`NatureQNetwork` (:mod:`agents.sb3_policies`);
- plain state dicts (or ``{"state_dict": ...}``) of :class:`NatureQNetwork` and of the NeurIPS-2013 network
  (``conv.*``/``fc.*`` keys, as the DQN agent in ``shared/data/atari`` uses);
- plain state dicts of the PPO/A2C actor-critic (:class:`agents.actor_critic.ActorCritic`), whose action logits
  then stand in for Q-values: the network that scores actions, which is what attacks and wrappers need.

Only tensors are read (``weights_only`` loading; zips through :func:`agents.sb3_zip.read_sb3_zip`, which never
unpickles), so loading runs no code from the file and needs neither SB3 nor the training code. Anything else fails
with a ``ValueError`` saying what was found.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from agents.actor_critic import ActorCritic
from agents.checkpoints import FINAL_MODEL, latest_checkpoint, read_state_dict
from agents.networks import NatureQNetwork, NeurIPSQNetwork
from agents.sb3_policies import check_finite_state, sb3_network
from agents.sb3_zip import SB3Zip, is_sb3_zip, read_sb3_zip

OUR_PREFIX = "q_net.network."


def load_agent(path: str | Path) -> nn.Module:
    """Return the network stored at ``path``, in eval mode: frames (N, 4, 84, 84) in, one score per action out
    (Q-values, or policy logits for an actor-critic)."""
    path = model_file(Path(path))
    if is_sb3_zip(path):
        return network_from_sb3_zip(read_sb3_zip(path))
    return _network_from_state(read_state_dict(path), path)


def model_file(path: Path) -> Path:
    """The file to load: ``path`` itself, or for a run directory its newest model by agent steps -- its
    ``final_model.zip``, unless a checkpoint is newer (a resume interrupted after the first session finished),
    which is then taken with a warning naming the older final model it skipped."""
    if path.is_dir():
        final = path / FINAL_MODEL if (path / FINAL_MODEL).is_file() else None
        newest = latest_checkpoint(path)
        if final is None and newest is None:
            raise FileNotFoundError(f"{path} is a directory without {FINAL_MODEL} or checkpoints/step_*.zip")
        if final is None or newest is None:
            return final or newest
        final_steps, newest_steps = _agent_steps(final), _agent_steps(newest)
        if final_steps is not None and newest_steps is not None and newest_steps > final_steps:
            import warnings

            warnings.warn(
                f"{path}: loading {newest.relative_to(path)} ({newest_steps:,} agent steps), newer than "
                f"{FINAL_MODEL} ({final_steps:,} steps; the run was resumed and stopped before finishing)",
                stacklevel=3,
            )
            return newest
        return final
    if not path.is_file():
        raise FileNotFoundError(f"agent checkpoint not found: {path}")
    return path


def _agent_steps(path: Path) -> int | None:
    """The agent steps an SB3 zip was saved at (its ``num_timesteps``), or None if unreadable."""
    try:
        steps = read_sb3_zip(path).scalar("num_timesteps")
    except ValueError:
        return None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def network_from_sb3_zip(model: SB3Zip) -> nn.Module:
    """The scoring network of an SB3 zip read with :func:`read_sb3_zip`: our Double-DQN's online Q-network, or a
    stock SB3 CnnPolicy's (DQN Q-values, PPO/A2C action logits)."""
    ours = {k[len(OUR_PREFIX) :]: v for k, v in model.policy.items() if k.startswith(OUR_PREFIX)}
    if ours:
        return _network_from_state(ours, model.path)
    return sb3_network(model)


def _network_from_state(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    layouts = ((NatureQNetwork, "head.2.weight"), (NeurIPSQNetwork, "fc.2.weight"), (ActorCritic, "dist.linear.weight"))
    for cls, head in layouts:
        if head in state:
            model = cls(n_actions=state[head].shape[0])
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                detail = str(err).strip().splitlines()[-1].strip()  # torch lists every mismatch; the last suffices
                raise ValueError(f"{path} looks like a {cls.__name__} but does not fit it: {detail}") from None
            check_finite_state(state, path)
            return model.eval()
    raise ValueError(f"{path}: unrecognised Q-network layout (first keys: {list(state)[:4]})")
