"""Load a trained Q-network from a file into a module ready for evaluation and attacks.

``load_agent(path)`` accepts:

- our training checkpoints and final models (stable-baselines3 zips of :class:`agents.DoubleDQN`, online network
  under ``q_net.network.*``), or a run directory (its ``final_model.zip``, else its newest checkpoint);
- stable-baselines3 DQN zips with the stock ``CnnPolicy`` (NatureCNN, ``net_arch=[]``, images scaled by 1/255):
  that is exactly the Nature network, so its weights are mapped onto :class:`NatureQNetwork`;
- plain state dicts (or ``{"state_dict": ...}``) of :class:`NatureQNetwork` and of the NeurIPS-2013 network
  (``conv.*``/``fc.*`` keys, as the DQN agent in ``shared/data/atari`` uses);
- plain state dicts of the PPO/A2C actor-critic (:class:`agents.actor_critic.ActorCritic`), whose action logits
  then stand in for Q-values: the network that scores actions, which is what attacks and wrappers need.

Only tensors are read (``weights_only`` loading, no unpickling of code), so loading needs neither SB3 nor the
training code. Anything else fails with a ``ValueError`` saying what was found.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from agents.actor_critic import ActorCritic
from agents.checkpoints import FINAL_MODEL, latest_checkpoint, read_state_dict
from agents.networks import NatureQNetwork, NeurIPSQNetwork

OUR_PREFIX = "q_net.network."
SB3_NATURE_KEYS = {  # SB3 CnnPolicy (NatureCNN, net_arch=[]) -> NatureQNetwork
    "q_net.features_extractor.cnn.0.": "features.0.",
    "q_net.features_extractor.cnn.2.": "features.2.",
    "q_net.features_extractor.cnn.4.": "features.4.",
    "q_net.features_extractor.linear.0.": "head.0.",
    "q_net.q_net.0.": "head.2.",
}


def load_agent(path: str | Path) -> nn.Module:
    """Return the network stored at ``path``, in eval mode: frames (N, 4, 84, 84) in, one score per action out
    (Q-values, or policy logits for an actor-critic)."""
    path = _resolve(Path(path))
    if zipfile.is_zipfile(path) and "policy.pth" in _members(path):
        state = _q_network_state_from_sb3_zip(path)
    else:
        state = read_state_dict(path)
    return _network_from_state(state, path)


def _resolve(path: Path) -> Path:
    if path.is_dir():
        final = path / FINAL_MODEL
        found = final if final.is_file() else latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path} is a directory without {FINAL_MODEL} or checkpoints/step_*.zip")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"agent checkpoint not found: {path}")
    return path


def _members(path: Path) -> set[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist())
    except zipfile.BadZipFile:
        return set()


def _q_network_state_from_sb3_zip(path: Path) -> dict[str, torch.Tensor]:
    try:
        with zipfile.ZipFile(path) as archive:
            policy_bytes = archive.read("policy.pth")
            data = json.loads(archive.read("data")) if "data" in archive.namelist() else {}
        policy = torch.load(io.BytesIO(policy_bytes), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read stable-baselines3 zip {path} (corrupt?): {err}") from err
    ours = {k[len(OUR_PREFIX) :]: v for k, v in policy.items() if k.startswith(OUR_PREFIX)}
    if ours:
        return ours
    if any(k.startswith("q_net.features_extractor.cnn.") for k in policy):
        return _sb3_cnn_policy_state(policy, data, path)
    raise ValueError(
        f"{path} is a stable-baselines3 zip but not a DQN with our Atari policy or SB3's CnnPolicy "
        f"(policy keys: {sorted(policy)[:4]}...)"
    )


def _sb3_cnn_policy_state(policy: dict[str, torch.Tensor], data: dict, path: Path) -> dict[str, torch.Tensor]:
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else {}
    if kwargs.get("normalize_images") is False:
        raise ValueError(f"{path}: SB3 policy trained with normalize_images=False; the Nature network scales by 1/255")
    online = {k: v for k, v in policy.items() if k.startswith("q_net.")}
    mapped, unused = {}, []
    for key, value in online.items():
        prefix = next((p for p in SB3_NATURE_KEYS if key.startswith(p)), None)
        if prefix is None:
            unused.append(key)
        else:
            mapped[SB3_NATURE_KEYS[prefix] + key[len(prefix) :]] = value
    if unused:
        raise ValueError(
            f"{path}: SB3 CnnPolicy with layers the Nature network does not have ({unused[:3]}); "
            "only the stock CnnPolicy (NatureCNN, net_arch=[]) maps onto NatureQNetwork"
        )
    return mapped


def _network_from_state(state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    layouts = ((NatureQNetwork, "head.2.weight"), (NeurIPSQNetwork, "fc.2.weight"), (ActorCritic, "dist.linear.weight"))
    for cls, head in layouts:
        if head in state:
            model = cls(n_actions=state[head].shape[0])
            try:
                model.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(f"{path} looks like a {cls.__name__} but does not fit it: {err}") from err
            return model.eval()
    raise ValueError(f"{path}: unrecognised Q-network layout (first keys: {list(state)[:4]})")
