"""Load a trained Q-network from a file into a module ready for evaluation and attacks.

Supported now: plain state dicts (or ``{"state_dict": ...}``) of :class:`NatureQNetwork` and of the
NeurIPS-2013 network (``conv.*``/``fc.*`` keys, as the DQN agent in ``shared/data/atari`` uses).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from agents.networks import NatureQNetwork, NeurIPSQNetwork


def load_agent(path: str | Path) -> nn.Module:
    """Return the Q-network stored at ``path``, in eval mode (frames (N, 4, 84, 84) in, Q-values out)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"agent checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"cannot read agent checkpoint {path} (corrupt or not a torch file): {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    for cls, head in ((NatureQNetwork, "head.2.weight"), (NeurIPSQNetwork, "fc.2.weight")):
        if head in state:
            model = cls(n_actions=state[head].shape[0])
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"{path} looks like a {cls.__name__} but does not fit it: {err}") from err
            return model.eval()
    raise ValueError(f"{path}: unrecognised Q-network layout (first keys: {list(state)[:4]})")
