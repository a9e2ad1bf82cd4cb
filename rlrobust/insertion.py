"""Apply a transform to the output of every ReLU of a trained model, post hoc.

Models call ReLU in two ways: as modules (``nn.ReLU`` in an ``nn.Sequential``, e.g. the Nature DQN stack) or
as functions (``F.relu(self.bn1(self.conv1(x)))``, e.g. most CIFAR ResNets). One mechanism covers both:
while the host model runs its forward, a :class:`torch.overrides.TorchFunctionMode` sees every call of
``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms (``nn.ReLU`` calls ``F.relu``), and
replaces the result ``h`` by ``transform(h)``. Nothing in the model is rewritten: two forward hooks on the
host module enter and leave the mode, so removal restores the original behaviour exactly, the state dict is
untouched, and models with data-dependent control flow (which ``torch.fx`` cannot trace) work too.

Limits: TorchScript modules run outside Python and are not intercepted; ReLU-like activations other than
ReLU (ReLU6, LeakyReLU, GELU) are left alone, as in the SAP paper.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu}
_IN_PLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}
_STATE_ATTR = "_rlrobust_post_relu"


class _PostReLUMode(TorchFunctionMode):
    """Replaces the result of every ReLU call by the composition of ``transforms`` applied to it."""

    def __init__(self, state: _PostReLUState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        in_place = func in _IN_PLACE or (
            func is F.relu and (kwargs.get("inplace", False) or (len(args) > 1 and args[1]))
        )
        if not in_place and func not in _OUT_OF_PLACE:
            return func(*args, **kwargs)
        self.state.calls_this_forward += 1
        h = torch.relu(args[0])
        for transform in self.state.transforms:
            h = transform(h)
        if in_place:
            # The caller may rely on the mutation; write the transformed map back into the input.
            return args[0].copy_(h)
        return h


@dataclass
class _PostReLUState:
    """Per-host bookkeeping, kept in the host's ``__dict__`` so that deep copies and pickles carry it."""

    transforms: list[nn.Module] = field(default_factory=list)
    hook_ids: tuple[int, int] = (-1, -1)
    depth: int = 0
    mode: _PostReLUMode | None = None
    calls_this_forward: int = 0
    relu_calls_last_forward: int = -1
    warned_no_relu: bool = False


def _enter(module: nn.Module, args: tuple) -> None:
    state: _PostReLUState = module.__dict__[_STATE_ATTR]
    if state.depth == 0:
        state.calls_this_forward = 0
        state.mode = _PostReLUMode(state)
        state.mode.__enter__()
    state.depth += 1


def _leave(module: nn.Module, args: tuple, output: object) -> None:
    state: _PostReLUState = module.__dict__[_STATE_ATTR]
    state.depth -= 1
    if state.depth > 0:
        return
    state.mode.__exit__(None, None, None)
    state.mode = None
    state.relu_calls_last_forward = state.calls_this_forward
    # torch passes output=None when the forward raised; only a forward that finished says anything.
    if state.calls_this_forward == 0 and output is not None and not state.warned_no_relu:
        state.warned_no_relu = True
        warnings.warn(
            f"{type(module).__name__}.forward called no ReLU, so the inserted "
            f"{', '.join(type(t).__name__ for t in state.transforms)} changed nothing",
            stacklevel=2,
        )


def add_post_relu_transform(model: nn.Module, transform: nn.Module) -> nn.Module:
    """Apply ``transform`` after every ReLU that ``model``'s forward calls; returns ``model`` (modified).

    Several transforms compose in the order they were added.

    >>> class Double(nn.Module):
    ...     def forward(self, h):
    ...         return 2 * h
    >>> net = nn.Sequential(nn.ReLU())
    >>> add_post_relu_transform(net, Double())(torch.tensor([[-1.0, 3.0]]))
    tensor([[0., 6.]])
    >>> remove_post_relu_transforms(net, lambda t: isinstance(t, Double))
    [Double()]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"post-hoc insertion needs an nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("TorchScript modules run outside Python; insert defences into the eager model")
    state = model.__dict__.get(_STATE_ATTR)
    if state is None:
        state = _PostReLUState()
        pre = model.register_forward_pre_hook(_enter)
        post = model.register_forward_hook(_leave, always_call=True)
        state.hook_ids = (pre.id, post.id)
        model.__dict__[_STATE_ATTR] = state
    state.transforms.append(transform)
    return model


def post_relu_transforms(model: nn.Module) -> list[nn.Module]:
    """The transforms currently applied after the ReLUs of ``model``, in order.

    >>> from rlrobust.sap import insert_sap
    >>> post_relu_transforms(insert_sap(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))
    [StochasticActivationPruning(frac=1.0, sampling='exact')]
    """
    state = model.__dict__.get(_STATE_ATTR)
    return list(state.transforms) if state else []


def relu_calls_last_forward(model: nn.Module) -> int:
    """How many ReLU calls the last forward of ``model`` intercepted (-1 before the first forward).

    >>> from rlrobust.sap import insert_sap
    >>> net = insert_sap(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU()))
    >>> before = relu_calls_last_forward(net)
    >>> _ = net(torch.randn(1, 2))
    >>> before, relu_calls_last_forward(net)
    (-1, 2)
    """
    state = model.__dict__.get(_STATE_ATTR)
    return state.relu_calls_last_forward if state else -1


def remove_post_relu_transforms(model: nn.Module, which: Callable[[nn.Module], bool]) -> list[nn.Module]:
    """Remove the transforms for which ``which(transform)`` is true; returns them.

    When none is left, the hooks are removed too and the model is exactly as before insertion.

    >>> from rlrobust.sap import StochasticActivationPruning, insert_sap
    >>> net = insert_sap(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    >>> removed = remove_post_relu_transforms(net, lambda t: isinstance(t, StochasticActivationPruning))
    >>> len(removed), post_relu_transforms(net), net._forward_hooks
    (1, [], OrderedDict())
    """
    state = model.__dict__.get(_STATE_ATTR)
    if state is None:
        return []
    if state.depth:
        raise RuntimeError("cannot remove a defence while the model is running its forward")
    removed = [t for t in state.transforms if which(t)]
    state.transforms = [t for t in state.transforms if not which(t)]
    if not state.transforms:
        pre_id, post_id = state.hook_ids
        model._forward_pre_hooks.pop(pre_id, None)
        model._forward_hooks.pop(post_id, None)
        model._forward_hooks_always_called.pop(post_id, None)
        del model.__dict__[_STATE_ATTR]
    return removed


def count_relu_calls(model: nn.Module, x: torch.Tensor) -> int:
    """Run one forward on ``x`` and return how many ReLU calls it makes (module and functional alike).

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    ...     def forward(self, x):
    ...         return F.relu(self.body(x)).relu()  # a module, a function and a method
    >>> count_relu_calls(Net(), torch.randn(1, 2))
    3
    """
    counter = _Counter()
    add_post_relu_transform(model, counter)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(x)
    finally:
        remove_post_relu_transforms(model, lambda t: t is counter)
    return counter.calls


class _Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return h
