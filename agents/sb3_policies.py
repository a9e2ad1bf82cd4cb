"""Rebuild the network of a stable-baselines3 Atari model from its zip, without SB3's ``load`` (which unpickles).

SB3's stock ``CnnPolicy`` is the Nature network: NatureCNN (conv 32 8x8/4, conv 64 4x4/2, conv 64 3x3/1, linear 512,
ReLU after each, images scaled by 1/255) and one linear layer, ``net_arch=[]``. For DQN that layer gives the
Q-values; for PPO and A2C (``ActorCriticCnnPolicy``) it is ``action_net``, the logits of the categorical policy
(unnormalised: the same argmax and the same softmax as SB3's distribution). Either maps onto
:class:`agents.networks.NatureQNetwork`, so the victim takes (N, 4, 84, 84) frames on the 0-255 scale and acts as
SB3's ``predict(deterministic=True)`` would.

Everything is decided from what the zip shows in readable form (:func:`agents.sb3_zip.read_sb3_zip`): the
policy's state-dict keys and shapes, and the JSON fields SB3 writes beside its pickles (policy class name, spaces,
``policy_kwargs``). Anything other than the stock CnnPolicy on 4x84x84 uint8 frames with discrete actions is
refused with one ``ValueError`` line naming what was found, rather than rebuilt into a network that would differ.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from agents.networks import FRAME_SHAPE, NatureQNetwork
from agents.sb3_zip import SB3Zip, read_sb3_zip

ALGORITHMS = ("ppo", "a2c", "dqn")
STOCK_POLICIES = {  # (module, class) of the policies rebuilt here -> "dqn" or "actor-critic"
    ("stable_baselines3.dqn.policies", "CnnPolicy"): "dqn",
    ("stable_baselines3.common.policies", "ActorCriticCnnPolicy"): "actor-critic",
}
NATURE_CNN = ("cnn.0.", "cnn.2.", "cnn.4.", "linear.0.")  # NatureCNN's parameter groups, in order
NATURE_TARGETS = ("features.0.", "features.2.", "features.4.", "head.0.")  # the same in NatureQNetwork
HEADS = {"dqn": "q_net.q_net.0.", "actor-critic": "action_net."}
EXTRACTORS = {"dqn": "q_net.features_extractor.", "actor-critic": "features_extractor."}
# Parameters that do not affect the chosen action: the DQN target network, the actor-critic's value branch and the
# copies of the shared extractor SB3 >= 1.8 saves under two more names (checked equal below).
IGNORED = {
    "dqn": ("q_net_target.",),
    "actor-critic": ("pi_features_extractor.", "vf_features_extractor.", "value_net.", "mlp_extractor.value_net."),
}


def load_sb3_policy(path: str | Path, algo: str | None = None) -> NatureQNetwork:
    """The network of the SB3 model at ``path`` (Q-values for DQN, action logits for PPO/A2C), in eval mode.

    ``algo`` ("ppo", "a2c" or "dqn"), when given, must agree with what the zip holds."""
    return sb3_network(read_sb3_zip(path), algo)


def sb3_network(model: SB3Zip, algo: str | None = None) -> NatureQNetwork:
    """Rebuild ``model``'s action-scoring network; see :func:`load_sb3_policy`."""
    kind = policy_kind(model)
    _check_algorithm(model, kind, algo)
    _check_images(model)
    _check_action_space(model)
    state = nature_state(model.policy, kind, model.path)
    head = state["head.2.weight"]
    if head.ndim != 2:
        raise ValueError(
            f"{model.path}: SB3 CnnPolicy that does not fit the Nature network: a {head.ndim}-d action head"
        )
    _check_action_count(model, head.shape[0])
    network = NatureQNetwork(head.shape[0])
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"{model.path}: SB3 CnnPolicy that does not fit the Nature network: {detail}") from None
    return network.eval()


def check_finite_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged run): every score and action would be meaningless."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: {name} holds NaN or infinite values (a diverged model?)")


def policy_class(model: SB3Zip) -> tuple[str | None, str | None]:
    """(module, class name) of the zip's policy class as SB3's JSON shows them; None where not shown."""
    entry = model.data.get("policy_class")
    if not isinstance(entry, dict):
        return None, None
    module = entry.get("__module__") if isinstance(entry.get("__module__"), str) else None
    init = entry.get("__init__")
    match = re.match(r"<function (\w+)\.__init__ ", init) if isinstance(init, str) else None
    return module, match.group(1) if match else None


def policy_kind(model: SB3Zip) -> str:
    """Which stock CnnPolicy the zip holds, "dqn" or "actor-critic"; anything else raises ``ValueError``."""
    module, name = policy_class(model)
    if module is not None and (module, name) not in STOCK_POLICIES:
        ours = module.startswith("agents.")
        hint = " (an rlrobust model: load it with agents.load_agent, or --agent)" if ours else ""
        raise ValueError(
            f"{model.path} uses the policy class {module}.{name or '?'}{hint}; only SB3's stock CnnPolicy (DQN, or "
            "ActorCriticCnnPolicy for PPO/A2C) is rebuilt without running the file's code"
        )
    kinds = [kind for kind, head in HEADS.items() if f"{head}weight" in model.policy]
    if len(kinds) != 1 or not any(k.startswith(EXTRACTORS[kinds[0]] + "cnn.") for k in model.policy):
        raise ValueError(
            f"{model.path} is a stable-baselines3 zip but not a DQN with our Atari policy or SB3's CnnPolicy, nor "
            f"a PPO/A2C with SB3's CnnPolicy (policy keys: {sorted(model.policy)[:4]}...)"
        )
    if module is not None and STOCK_POLICIES[(module, name)] != kinds[0]:
        raise ValueError(f"{model.path}: policy class {name} but {kinds[0]} weights; the file is inconsistent")
    return kinds[0]


def saved_algorithm(model: SB3Zip, kind: str) -> str | None:
    """The algorithm the hyper-parameters SB3 saved beside the policy show ("ppo", "a2c", "dqn"); None if unclear."""
    if kind == "dqn":
        return "dqn"
    if "clip_range" in model.data and "n_epochs" in model.data:
        return "ppo"
    if "n_steps" in model.data and "clip_range" not in model.data and "n_epochs" not in model.data:
        return "a2c"
    return None


def nature_state(policy: dict[str, torch.Tensor], kind: str, path: Path) -> dict[str, torch.Tensor]:
    """The policy's action-scoring weights renamed to :class:`NatureQNetwork`'s keys; extra layers are refused."""
    extractor, head = EXTRACTORS[kind], HEADS[kind]
    renames = {extractor + src: dst for src, dst in zip(NATURE_CNN, NATURE_TARGETS, strict=True)} | {head: "head.2."}
    state, unused = {}, []
    for key, value in policy.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is not None:
            check_finite_state({key: value}, path)  # named as in the file
            state[renames[prefix] + key[len(prefix) :]] = value
        elif not key.startswith(IGNORED[kind]):
            unused.append(key)
    if unused:
        raise ValueError(
            f"{path}: SB3 CnnPolicy with layers the Nature network does not have ({unused[:3]}); only the stock "
            "CnnPolicy (NatureCNN, net_arch=[], discrete actions) is supported"
        )
    if kind == "actor-critic":
        _check_same_extractor(policy, path)
    return state


def _check_same_extractor(policy: dict[str, torch.Tensor], path: Path) -> None:
    """SB3 acts through ``pi_features_extractor``, saved as a copy of ``features_extractor``: they must agree."""
    for key, value in policy.items():
        if key.startswith("pi_features_extractor."):
            twin = policy.get(key[len("pi_") :])
            if twin is None or twin.shape != value.shape or not torch.equal(twin, value):
                raise ValueError(f"{path}: {key} differs from its features_extractor copy; not a stock CnnPolicy")


def _check_algorithm(model: SB3Zip, kind: str, algo: str | None) -> None:
    if algo is None:
        return
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    found = saved_algorithm(model, kind)
    if (algo == "dqn") != (kind == "dqn") or (found is not None and found != algo):
        what = found.upper() if found else "PPO/A2C"
        raise ValueError(f"{model.path} holds a {what} model, not {algo.upper()}: pass --sb3-algo {found or 'ppo'}")


def _check_images(model: SB3Zip) -> None:
    """Frames as our networks take them: uint8 4x84x84 (channel-first, as SB3 stores them), scaled by 1/255."""
    kwargs = model.data.get("policy_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    if kwargs.get("normalize_images") is False:
        raise ValueError(
            f"{model.path}: SB3 policy trained with normalize_images=False; the Nature network scales by 1/255"
        )
    extractor = kwargs.get("features_extractor_class")
    if extractor is not None and "NatureCNN" not in str(extractor):
        raise ValueError(f"{model.path}: features extractor {extractor}, not SB3's NatureCNN")
    space = model.data.get("observation_space")
    if not isinstance(space, dict):
        return
    shape, dtype = space.get("_shape"), space.get("dtype")
    if shape is not None and (not isinstance(shape, list) or tuple(shape) != FRAME_SHAPE):
        raise ValueError(
            f"{model.path}: the model takes observations of shape {tuple(shape)}; the Atari victims here take "
            f"{FRAME_SHAPE} frame stacks (4 grayscale 84x84 frames)"
        )
    if dtype is not None and dtype != "uint8":
        raise ValueError(f"{model.path}: the model takes {dtype} observations, not uint8 frames")
    for bound, pixel in (("low", "0"), ("high", "255")):
        shown = space.get(bound)  # numpy's printout, elided in the middle: every number it shows must be the pixel
        numbers = set(re.findall(r"-?\d+(?:\.\d*)?(?:e[-+]?\d+)?", shown)) if isinstance(shown, str) else set()
        if numbers - {pixel}:
            raise ValueError(
                f"{model.path}: observation bounds {bound}={shown[:40]!r} are not pixels ({pixel}); SB3 would not "
                "have scaled these frames by 1/255"
            )


def _check_action_space(model: SB3Zip) -> None:
    """Discrete actions numbered from 0: the only kind with one score per action to attack and argmax."""
    space = model.data.get("action_space")
    kind = str(space.get(":type:", "")) if isinstance(space, dict) else ""
    if (kind and "Discrete" not in kind) or "MultiDiscrete" in kind:
        raise ValueError(f"{model.path}: action space {kind}; only discrete actions have scores to attack")
    start = space.get("start", 0) if isinstance(space, dict) else 0
    if str(start) not in ("0", "None"):
        raise ValueError(f"{model.path}: discrete actions start at {start}, not 0")


def _check_action_count(model: SB3Zip, n_actions: int) -> None:
    space = model.data.get("action_space")
    saved_n = space.get("n") if isinstance(space, dict) else None
    if saved_n is not None and str(saved_n) != str(n_actions):
        raise ValueError(f"{model.path}: the action space has {saved_n} actions but the policy scores {n_actions}")
