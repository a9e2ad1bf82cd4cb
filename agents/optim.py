"""DeepMind's RMSProp (the Nature DQN and its Lua ``NeuralQLearner``), step for step.

DeepMind's update keeps running averages of the gradient and of its square and divides by the root of their
variance plus a floor *inside* the root::

    g  = 0.95 g  + 0.05 dw
    g2 = 0.95 g2 + 0.05 dw^2
    w -= lr * dw / sqrt(g2 - g^2 + 0.01)

where ``dw`` is the gradient of the minibatch's *summed* (error-clipped) loss. ``torch.optim.RMSprop`` differs in
two ways that shrink steps on weights with small gradients (by up to ~3x at batch 32): it adds ``eps`` outside the
root, and SB3's loss is the minibatch *mean*. :class:`DeepMindRMSprop` adds ``eps`` inside the root and multiplies
the gradient by ``grad_scale`` (the batch size turns the mean's gradient into the sum's).

>>> w = torch.nn.Parameter(torch.tensor([1.0]))
>>> opt = DeepMindRMSprop([w], lr=0.1, grad_scale=2.0)
>>> w.grad = torch.tensor([0.5])
>>> opt.step()
>>> round(w.item(), 4)  # dw = 1: g = 0.05, g2 = 0.05, w = 1 - 0.1 / sqrt(0.05 - 0.0025 + 0.01)
0.583
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

#: The optimizers a Double DQN run can learn with: DeepMind's step (:class:`DeepMindRMSprop`) or torch's
#: ``RMSprop`` with the same decay and epsilon (the default before DeepMind's; a run folder whose config.json
#: names no optimizer resumes with it).
OPTIMIZERS = ("deepmind-rmsprop", "torch-rmsprop")


class DeepMindRMSprop(torch.optim.Optimizer):
    """RMSProp as DeepMind's DQN: ``w -= lr * s dw / sqrt(g2 - g^2 + eps)`` with ``s = grad_scale``, ``g`` and
    ``g2`` decaying averages (``alpha``) of ``s dw`` and ``(s dw)^2``. ``centered=False`` drops ``g``.

    Its state per weight (``step``, ``grad_avg``, ``square_avg``) is made when the optimizer is, as tensors on the
    weight's device, so a compiled step (``torch.compile``, CUDA graphs) never creates state. ``step`` multiplies
    each gradient by ``grad_scale`` in place.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 2.5e-4,
        alpha: float = 0.95,
        eps: float = 0.01,
        centered: bool = True,
        grad_scale: float = 1.0,
    ) -> None:
        for name, value, low in (("lr", lr, 0.0), ("eps", eps, 0.0), ("grad_scale", grad_scale, 0.0)):
            if not math.isfinite(value) or value < low or (name != "eps" and value == low):
                raise ValueError(f"{name} must be a finite number > {low:g}, got {value}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "centered": bool(centered), "grad_scale": grad_scale}
        super().__init__(params, defaults)
        self._denominators: dict[torch.Tensor, torch.Tensor] = {}  # scratch for the root (not state: not saved)
        for group in self.param_groups:
            for p in group["params"]:
                self._denominators[p] = torch.empty_like(p, memory_format=torch.preserve_format)
                self.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "grad_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "square_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(params, group)
        return loss

    def _update(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        """One step of the weights ``params`` (each with a gradient), in place and without allocating: the
        gradients are scaled in place (to DeepMind's summed gradient) and the root is formed in a scratch buffer."""
        states = [self.state[p] for p in params]
        decay = group["alpha"]
        grads = [p.grad for p in params]
        if group["grad_scale"] != 1:
            torch._foreach_mul_(grads, group["grad_scale"])
        torch._foreach_add_([s["step"] for s in states], 1)
        square_avgs = [s["square_avg"] for s in states]
        torch._foreach_mul_(square_avgs, decay)  # g2 = a g2 + (1 - a) dw^2
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - decay)
        denom = [self._denominators[p] for p in params]
        torch._foreach_copy_(denom, square_avgs)
        if group["centered"]:
            grad_avgs = [s["grad_avg"] for s in states]
            torch._foreach_mul_(grad_avgs, decay)  # g = a g + (1 - a) dw
            torch._foreach_add_(grad_avgs, grads, alpha=1 - decay)
            torch._foreach_addcmul_(denom, grad_avgs, grad_avgs, value=-1)
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(params, grads, denom, value=-group["lr"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Torch's loading, then each ``step`` back on its weight's device (torch leaves ``step`` on the CPU)."""
        super().load_state_dict(state_dict)
        for p, state in self.state.items():
            if "step" in state:
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(p.device)


def optimizer_settings(name: str, *, alpha: float, eps: float, centered: bool, batch_size: int) -> dict[str, Any]:
    """SB3's ``optimizer_class`` and ``optimizer_kwargs`` for the optimizer called ``name`` (see :data:`OPTIMIZERS`).

    >>> optimizer_settings("torch-rmsprop", alpha=0.95, eps=0.01, centered=True, batch_size=32)["optimizer_kwargs"]
    {'alpha': 0.95, 'eps': 0.01, 'momentum': 0.0, 'centered': True}
    """
    if name == "deepmind-rmsprop":
        kwargs = {"alpha": alpha, "eps": eps, "centered": centered, "grad_scale": float(batch_size)}
        return {"optimizer_class": DeepMindRMSprop, "optimizer_kwargs": kwargs}
    if name == "torch-rmsprop":
        kwargs = {"alpha": alpha, "eps": eps, "momentum": 0.0, "centered": centered}
        return {"optimizer_class": torch.optim.RMSprop, "optimizer_kwargs": kwargs}
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
