"""Double DQN (van Hasselt, Guez & Silver, AAAI 2016) as a thin subclass of stable-baselines3's DQN.

SB3's DQN bootstraps from ``max_a Q_target(s', a)``; Double DQN lets the online network choose the action and
the target network value it: ``r + gamma * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``. Everything
else -- the rollout loop, VecEnv support, callbacks, ``save``/``load`` -- is SB3's. Besides the target, the
subclass changes what the paper's recipe or speed needs and says why next to each override:

- ``train``: the Double-DQN target; one replay draw per call (all of its gradient steps at once, a single gather
  when the replay lives on the GPU); no host-device sync per update (loss and mean Q are accumulated on the device
  and read when logged, which is also when a non-finite loss or weight is caught: ``training_problem``); gradient
  clipping optional (the papers have none); waits until the replay holds
  ``learning_starts`` transitions, so a resumed run refills its replay before it learns again.
- ``exploration_steps``: epsilon anneals over a fixed number of agent steps, as the papers' "first 1M steps",
  instead of SB3's fraction of the run (which would change with ``--total-steps`` and on resume).
- ``predict``: with several envs, one epsilon coin per env (SB3 draws one coin for all of them) and one batched
  forward pass for the greedy ones, straight through the network under inference mode.
- ``compile_update``: optionally runs the minibatch loss (with its backward graph) and the RMSProp step through
  ``torch.compile``. A Double-DQN update does one forward pass more than SB3's vanilla one; compiled, the
  optimizer's seven passes over the weights become one fused loop, which more than pays for it on a CPU (see
  benchmarks/RESULTS.md). On a CUDA device the compiled pieces are also captured as CUDA graphs
  (``mode="reduce-overhead"``): at batch 32 launching the update's kernels one by one costs more than running them.
  If compiling (or, on CUDA, capturing) fails in the first updates (no C++ compiler, say), it warns and trains
  eagerly.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from agents.networks import FRAME_SHAPE
from agents.policies import AtariQNetwork, AtariQPolicy
from agents.robust_loss import RobustSettings, adversarial_inputs, hinge_regulariser


def double_q_target(
    online: nn.Module,
    target: nn.Module,
    next_obs: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    discounts: torch.Tensor | float,
) -> torch.Tensor:
    """The Double-DQN TD target ``r + discount * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``, (N, 1)."""
    with torch.no_grad():
        next_actions = online(next_obs).argmax(dim=1, keepdim=True)
        next_values = target(next_obs).gather(1, next_actions)
        return rewards + (1 - dones) * discounts * next_values


def compile_options(device: torch.device) -> dict[str, str]:
    """``torch.compile``'s options for the update on ``device``: CUDA graphs on a CUDA device (one launch replays
    the whole forward, backward or optimizer step), the default elsewhere (the CPU has no launch cost to save)."""
    return {"mode": "reduce-overhead"} if device.type == "cuda" else {}


def compile_trial_updates(device: torch.device) -> int:
    """Updates during which a failure of the compiled update falls back to eager training: the first compiles; on
    CUDA the graphs are recorded at the second (the first is a warm-up), so the third is the first replay."""
    return 3 if device.type == "cuda" else 1


def linear_epsilon(step: int, start: float, final: float, steps: int) -> float:
    """Epsilon annealed linearly from ``start`` to ``final`` over the first ``steps`` agent steps, then flat."""
    if steps <= 0:
        return final
    return start + (final - start) * min(1.0, step / steps)


class _DropProfilerNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Profiler record function")


def _quiet_dynamo_profiler_notice() -> None:
    """Drop dynamo's warning that it skips the profiler hook of ``Optimizer.step`` (harmless, and printed in the
    middle of the progress bar)."""
    logger = logging.getLogger("torch._dynamo.variables.ctx_manager")
    if not any(isinstance(f, _DropProfilerNotice) for f in logger.filters):
        logger.addFilter(_DropProfilerNotice())


class DoubleDQN(DQN):
    """SB3's DQN with the Double-DQN target (see the module docstring for every difference).

    Takes every argument of ``stable_baselines3.DQN`` plus ``exploration_steps`` (anneal epsilon from
    ``exploration_initial_eps`` to ``exploration_final_eps`` over this many agent steps; ``None`` keeps SB3's
    ``exploration_fraction``) and ``compile_update`` (run each update through ``torch.compile``; worth its one-off
    compile time of 5-30 s on long runs). ``max_grad_norm=None`` turns gradient clipping off. The policy
    ``"AtariQPolicy"`` puts :class:`~agents.networks.NatureQNetwork` inside SB3's policy. ``robust`` adds
    state-adversarial training (:mod:`agents.robust_loss`): the PGD points are found eagerly before each update,
    and the compiled loss takes them as inputs.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {**DQN.policy_aliases, "AtariQPolicy": AtariQPolicy}

    def __init__(
        self,
        *args: Any,
        exploration_steps: int | None = None,
        compile_update: bool = False,
        robust: RobustSettings | None = None,
        **kwargs: Any,
    ) -> None:
        self.exploration_steps = exploration_steps
        self.compile_update = compile_update
        self.robust = robust
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ exploration
    def _on_step(self) -> None:
        super()._on_step()  # target-network update every target_update_interval agent steps
        if self.exploration_steps is not None:
            self.exploration_rate = linear_epsilon(
                self.num_timesteps, self.exploration_initial_eps, self.exploration_final_eps, self.exploration_steps
            )
            self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        atari = isinstance(self.q_net, AtariQNetwork)
        if atari:
            batched = isinstance(observation, np.ndarray) and observation.ndim == len(FRAME_SHAPE) + 1
        else:
            batched = not isinstance(observation, dict) and self.policy.is_vectorized_observation(observation)
        if deterministic or not batched:
            return super().predict(observation, state, episode_start, deterministic)
        n = len(observation)
        explore = np.random.rand(n) < self.exploration_rate
        actions = np.random.randint(self.action_space.n, size=n)
        if not explore.all():
            greedy = self._greedy_actions(observation) if atari else self.policy.predict(observation, True)[0]
            actions = np.where(explore, actions, greedy)
        return actions, state

    def _greedy_actions(self, observation: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a) for a batch of frame stacks, for acting while training: one forward pass under
        inference mode, without SB3's per-call preprocessing and train/eval switch, which cost about as much as
        the pass itself at batch 1 (our Q-networks have no layer that behaves differently in the two modes)."""
        with torch.inference_mode():
            return self.q_net(torch.as_tensor(observation, device=self.device)).argmax(dim=1).cpu().numpy()

    # ------------------------------------------------------------------ learning
    def train(self, gradient_steps: int, batch_size: int = 32) -> None:
        if self.replay_buffer.size() * self.n_envs < self.learning_starts:
            return  # a resumed run refills its (unsaved) replay first
        if not self.policy.training:  # the switch walks every module; acting while training leaves it on
            self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        batch = self.replay_buffer.sample(batch_size * gradient_steps, env=self._vec_normalize_env)
        if self.robust is not None:
            self._robust_eps = self.robust.eps_at(self.num_timesteps)
        for step in range(gradient_steps):
            part = slice(step * batch_size, (step + 1) * batch_size)
            discounts = batch.discounts[part] if batch.discounts is not None else self.gamma
            obs, *adversarial = self._robust_inputs(batch.observations[part])
            minibatch = (obs, batch.actions[part], batch.next_observations[part])
            rest = (batch.rewards[part], batch.dones[part], discounts, *adversarial)
            loss, mean_q, *reg = self._update(*minibatch, *rest)
            self._loss_sum += loss
            self._q_sum += mean_q
            if reg:
                self._reg_sum += reg[0]
                self._reg_count += 1
        self._stat_count += gradient_steps
        self._last_loss = loss.clone() if self._graphs_replayed() else loss  # a graph's output is overwritten
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def minibatch_loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        next_obs: torch.Tensor,
        rewards: torch.Tensor,
        dones: torch.Tensor,
        discounts: torch.Tensor | float,
        adv_obs: torch.Tensor | None = None,
        adv_actions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Huber loss of Q(s, a) to the TD target (the papers' error clipping to [-1, 1]), and the minibatch's mean
        max-Q for the logs. Given SA-DQN's PGD points ``adv_obs`` and clean greedy actions ``adv_actions``, the
        loss gains ``kappa`` times their hinge regulariser, which is returned third."""
        target = self.td_target(next_obs, rewards, dones, discounts)
        q_values = self.q_net(obs)
        loss = F.smooth_l1_loss(q_values.gather(1, actions.long()), target)
        mean_q = q_values.detach().max(dim=1).values.mean()
        if adv_obs is None:
            return loss, mean_q
        reg = hinge_regulariser(self.q_net(adv_obs), adv_actions)
        return loss + self.robust.kappa * reg, mean_q, reg.detach()

    def _robust_inputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The minibatch's observations for the TD loss, plus the regulariser's inputs where there are any."""
        if self.robust is None:
            return (obs,)
        obs, adv_obs, adv_actions = adversarial_inputs(self.q_net, obs, self.robust, self._robust_eps)
        return (obs,) if adv_obs is None else (obs, adv_obs, adv_actions)

    def _optimizer_step(self) -> None:
        self.policy.optimizer.step()

    def _gradient_step(self, loss_fn, step_fn, *minibatch: Any) -> tuple[torch.Tensor, ...]:
        self.policy.optimizer.zero_grad()  # before the forward: no gradient of the last update outlives its graphs
        loss, *stats = loss_fn(*minibatch)
        loss.backward()
        if self.max_grad_norm is not None and math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        step_fn()
        return (loss.detach(), *stats)

    def _update(self, *minibatch: Any) -> tuple[torch.Tensor, ...]:
        """One gradient update, compiled when ``compile_update`` is set; returns (loss, mean max-Q[, regulariser])."""
        if not self.compile_update:
            return self._gradient_step(self.minibatch_loss, self._optimizer_step, *minibatch)
        if self._compiled is None:
            _quiet_dynamo_profiler_notice()
            options = compile_options(self.device)
            self._compiled = (
                torch.compile(self.minibatch_loss, **options),
                torch.compile(self._optimizer_step, **options),
            )
        if self._graphs_replayed():
            torch.compiler.cudagraph_mark_step_begin()  # the last update's graph outputs are no longer read
        if self._compile_checked:
            return self._gradient_step(*self._compiled, *minibatch)
        try:  # compiling (and recording graphs) runs each piece before the optimizer step changes anything
            result = self._gradient_step(*self._compiled, *minibatch)
        except Exception as error:  # no C++ compiler, an unsupported platform or op: train eagerly instead
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            warnings.warn(
                f"torch.compile of the Double-DQN update failed ({type(error).__name__}: {first_line}); "
                "training without compiling",
                RuntimeWarning,
                stacklevel=2,
            )
            self.compile_update, self._compiled = False, None
            return self._update(*minibatch)
        self._compile_trials += 1
        self._compile_checked = self._compile_trials >= compile_trial_updates(self.device)
        return result

    def _graphs_replayed(self) -> bool:
        """Whether the update runs as CUDA graphs, whose outputs the next update overwrites."""
        return self.compile_update and "mode" in compile_options(self.device)

    def td_target(
        self, next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, discounts: torch.Tensor | float
    ) -> torch.Tensor:
        """The TD target of one minibatch: Double DQN's (the one algorithmic change to SB3's DQN)."""
        return double_q_target(self.q_net, self.q_net_target, next_obs, rewards, dones, discounts)

    def _reset_train_stats(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._q_sum = torch.zeros((), device=self.device)
        self._reg_sum = torch.zeros((), device=self.device)
        self._stat_count = 0
        self._reg_count = 0

    def pop_train_stats(self) -> dict[str, float] | None:
        """Mean loss and mean max-Q of the minibatches since the last call (None if there were none); a
        non-finite one is also kept as :meth:`training_problem`. Robust training adds ``robust_reg`` (the mean
        regulariser of the updates that had one, else 0) and ``robust_eps`` (the current budget, on [0, 1])."""
        if self._stat_count == 0:
            return None
        loss_sum, q_sum, reg_sum = torch.stack([self._loss_sum, self._q_sum, self._reg_sum]).tolist()  # 1 read-back
        stats = {"loss": loss_sum / self._stat_count, "mean_q": q_sum / self._stat_count}
        if self.robust is not None:
            stats["robust_reg"] = reg_sum / self._reg_count if self._reg_count else 0.0
            stats["robust_eps"] = self._robust_eps
        for name, value in stats.items():
            if not math.isfinite(value) and self._problem is None:
                self._problem = f"the mean {name} became {value} {self._since()}"
        self._reset_train_stats()
        return stats

    def training_problem(self) -> str | None:
        """None while every loss so far and every weight (online and target) is finite; else what went wrong, kept
        once found. One host-device sync: call it at log intervals and before saving, not per update (the losses
        since the last :meth:`pop_train_stats` are summed on the device, so one NaN or inf shows in the sum)."""
        if self._problem is not None:
            return self._problem
        tensors = [self._loss_sum, self._q_sum, *self.policy.parameters()]
        if bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            self._checked_step = self.num_timesteps
            return None
        if not torch.isfinite(self._loss_sum):
            self._problem = f"the loss became {self._loss_sum.item()} {self._since()}"
        elif not torch.isfinite(self._q_sum):
            self._problem = f"the mean max-Q became {self._q_sum.item()} {self._since()}"
        else:
            bad = [name for name, p in self.policy.named_parameters() if not torch.isfinite(p).all()]
            self._problem = f"{len(bad)} weight tensors became NaN or infinite ({bad[0]}, ...) {self._since()}"
        return self._problem

    def _since(self) -> str:
        return f"between agent steps {self._checked_step:,} and {self.num_timesteps:,}"

    def dump_logs(self) -> None:
        if self._last_loss is not None:  # read here, not per update, to spare a device sync each step
            self.logger.record("train/loss", self._last_loss.item())
        super().dump_logs()

    def _setup_model(self) -> None:
        super()._setup_model()
        self._reset_train_stats()
        self._last_loss: torch.Tensor | None = None
        self._compiled: tuple[Any, Any] | None = None  # (loss, optimizer step) through torch.compile, made lazily
        self._compile_checked = False  # True once the trial updates ran compiled (see compile_trial_updates)
        self._compile_trials = 0
        self._problem: str | None = None  # the first non-finite loss or weight found (see training_problem)
        self._checked_step = 0  # the last agent step at which everything was finite
        self._robust_eps = 0.0  # the adversarial budget of the last update (robust training)

    def _excluded_save_params(self) -> list[str]:
        excluded = (
            "_loss_sum",
            "_q_sum",
            "_reg_sum",
            "_stat_count",
            "_reg_count",
            "_robust_eps",
            "_last_loss",
            "_compiled",
            "_compile_checked",
            "_compile_trials",
        )
        excluded += ("_problem", "_checked_step")
        return [*super()._excluded_save_params(), *excluded]
