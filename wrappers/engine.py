"""The batch path every wrapper shares: check the observations, score them, choose the rows to attack,
perturb those rows in one call, clip, score again, and report.

A single-env wrapper calls it with a batch of one; a vector wrapper with the whole batch, so the victim runs
one forward (and, for gradient attacks, the backward passes) for all environments at once. Each environment
row has its own random streams (``seed + row``, as Gymnasium seeds the sub-environments of a vector env), so a
vector of environments and the same environments wrapped one by one make the same random choices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from rlrobust.attacks.losses import LossFn
from rlrobust.checks import check_count
from rlrobust.stochastic import mean_scores
from wrappers.actions import ActionHead, CriticLoss, DiscreteHead, lowest_value
from wrappers.frames import PERTURB_CHOICES, WithOlderFrames, split_newest, stack_axis
from wrappers.perturbations import GradientAttack, Perturbation, RandomNoise
from wrappers.scaling import Rescaled, observation_scale
from wrappers.schedules import AttackSchedule, resolve_schedule
from wrappers.spaces import ObservationBox
from wrappers.victim import PreparedVictim, prepare_victim, resolve_victim, victim_device

# Salts that keep the wrapper's random streams apart from the environment's own, seeded with the same number.
_ROW_SALT = 0x5EED_0B5
_VICTIM_SALT = 0x5EED_F1C
_LABELS = ("actions", "outputs", "observations")


@dataclass
class Perturbed:
    """One batch of perturbed observations and what happened to each row."""

    observations: np.ndarray
    attacked: np.ndarray  # bool (N,)
    linf: np.ndarray  # float (N,): L-inf norm of the perturbation, in the budget's units
    l2: np.ndarray  # float (N,)
    clean_action: np.ndarray | None  # int (N,) or float (N, A): the victim's action on the clean observation
    perturbed_action: np.ndarray | None  # ... on the perturbed one (equal where not attacked)

    @property
    def continuous(self) -> bool:
        return self.clean_action is not None and self.clean_action.ndim == 2

    @property
    def action_changed(self) -> np.ndarray | None:
        """Discrete actions: whether the action changed; continuous ones: whether it moved at all."""
        if self.clean_action is None:
            return None
        if self.continuous:
            return self.action_distance > 0
        return self.clean_action != self.perturbed_action

    @property
    def action_distance(self) -> np.ndarray | None:
        """Continuous actions: the L2 distance between the clean and the perturbed action (environment units)."""
        if not self.continuous:
            return None
        return np.linalg.norm(self.perturbed_action - self.clean_action, axis=1)

    def fields(self) -> dict[str, np.ndarray]:
        """Per-row arrays for the step ``info``: attacked, linf, l2 and, with a victim, the actions."""
        out = {"attacked": self.attacked, "linf": self.linf, "l2": self.l2}
        if self.clean_action is not None:
            out |= {
                "action_changed": self.action_changed,
                "clean_action": self.clean_action,
                "perturbed_action": self.perturbed_action,
            }
        if self.continuous:
            out["action_distance"] = self.action_distance
        return out


class _RowRandom:
    """One environment row's random streams: numpy for schedules, torch for attack starts and noise."""

    def __init__(self, seed: int | None, device: torch.device) -> None:
        sequence = np.random.SeedSequence(None if seed is None else [seed, _ROW_SALT])
        self.numpy = np.random.default_rng(sequence.spawn(1)[0])
        self.torch = torch.Generator(device=device)
        self.torch.manual_seed(int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1)))


class ObservationPerturber:
    """Perturbs batches of observations; build it with :func:`adversarial_perturber` or :func:`noise_perturber`.

    Called with a batch, the environment row of each observation and each one's step in its episode:

    >>> import gymnasium as gym
    >>> env = gym.make("CartPole-v1")
    >>> perturber = noise_perturber(env.observation_space, env.action_space, eps=0.1, num_rows=2, seed=0)
    >>> result = perturber(np.zeros((2, 4), dtype=np.float32), [0, 1], np.zeros(2, dtype=np.int64))
    >>> np.abs(result.observations).astype(float).round(3).tolist()  # sign noise: each value moved by exactly eps
    [[0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]]
    """

    def __init__(
        self,
        box: ObservationBox,
        perturbation: Perturbation,
        *,
        victim: Callable[[torch.Tensor], torch.Tensor] | None = None,
        head: ActionHead | None = None,
        labels: str = "actions",
        attacked_network: Callable[[torch.Tensor], torch.Tensor] | None = None,
        scale: np.ndarray | None = None,
        eot_samples: int = 1,
        perturb: str = "stack",
        frame_axis: int = 0,
        schedule: AttackSchedule | str | None = None,
        keep_dtype: bool = False,
        seed: int | None = None,
        num_rows: int = 1,
    ) -> None:
        """Where, when and how often to perturb; the keywords are documented on :class:`AdversarialObservation`.

        ``head`` reads the victim's output (default: action scores); ``labels`` is what the attack's loss compares
        with: ``"actions"`` (the clean greedy action, or the worst for a targeted attack), ``"outputs"`` (the
        victim's clean output: the MAD losses) or ``"observations"`` (the clean observation: the critic attack).
        ``scale`` (``box.shape``): the perturbation is made on ``x / scale``, its budget in those units.
        ``attacked_network``: what the attack differentiates, where it is not the victim's policy (the value
        network of a PPO victim under SA-PPO's critic attack).
        """
        schedule = resolve_schedule(schedule)
        head = head if head is not None else DiscreteHead()
        if labels not in _LABELS:
            raise ValueError(f"labels must be one of {_LABELS}, got {labels!r}")
        if schedule.needs_victim and head.continuous:
            raise ValueError(f"{schedule!r} reads action preferences, which only a discrete victim has")
        if scale is not None and keep_dtype:
            raise ValueError("keep_dtype=True keeps whole numbers, which a per-dimension scale does not; drop one")
        if perturb not in PERTURB_CHOICES:
            raise ValueError(f"perturb must be one of {PERTURB_CHOICES}, got {perturb!r}")
        if schedule.needs_victim and victim is None:
            raise ValueError(f"{schedule!r} reads the victim's action scores: pass a victim")
        if keep_dtype and box.integer and not perturbation.integral():
            raise ValueError(
                f"keep_dtype=True keeps {box.space.dtype} observations, which needs a perturbation of whole "
                f"numbers: FGSM, the iterative attack with a whole step, or sign noise, all L-inf with a whole "
                f"eps; this one ({type(perturbation).__name__}, eps={perturbation.eps}, norm={perturbation.norm}) "
                f"is not. Use the float32 output (the default)"
            )
        self.box = box
        self.perturbation = perturbation
        self.victim = victim
        self.attacked_network = attacked_network if attacked_network is not None else victim
        self.head = head
        self.labels = labels
        self.scale = None if scale is None else torch.as_tensor(scale, device=box.device)
        self.schedule = schedule
        self.eot_samples = check_count(eot_samples, "eot_samples")
        self.newest_only = perturb == "newest"
        self.frame_axis = stack_axis(frame_axis, box.shape) if self.newest_only else None
        self.keep_dtype = keep_dtype
        self.num_rows = check_count(num_rows, "num_rows")
        self.observation_space = box.output_space(keep_dtype)
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Row ``i`` draws from streams seeded with ``seed + i``; ``None`` draws fresh entropy."""
        if seed is not None:
            seed = check_count(seed, "seed", minimum=0)
        self._rows = [_RowRandom(None if seed is None else seed + i, self.box.device) for i in range(self.num_rows)]
        self._victim_rng = None if seed is None else np.random.default_rng([seed, _VICTIM_SALT])

    def __call__(self, observations: Any, rows: Sequence[int], episode_steps: np.ndarray) -> Perturbed:
        """Perturb a batch (N, *shape); ``rows`` are the environment rows, ``episode_steps`` each one's index."""
        x = self.box.to_tensor(observations)
        randoms = [self._rows[r] for r in rows]
        n = x.shape[0]
        linf, l2 = np.zeros(n), np.zeros(n)
        with self._victim_randomness():
            clean = self._scores(x)
            attacked = np.asarray(self.schedule.select(episode_steps, clean, [r.numpy for r in randoms]), bool)
            clean_action = None if clean is None else self.head.actions(clean).cpu().numpy()
            perturbed_action = None if clean_action is None else clean_action.copy()
            out = x
            picked = np.flatnonzero(attacked)
            if picked.size:
                index = None if picked.size == n else torch.as_tensor(picked, device=x.device)
                part = x if index is None else x.index_select(0, index)
                labels = None if clean is None else self._labels(clean if index is None else clean[index], part)
                adv = self.box.clip(self._perturb(part, labels, [randoms[i].torch for i in picked]))
                delta = (adv - part) if self.scale is None else (adv - part) / self.scale
                delta = delta.flatten(1)
                linf[picked] = delta.abs().amax(1).cpu().numpy()
                l2[picked] = delta.norm(dim=1).cpu().numpy()
                out = adv if index is None else x.index_copy(0, index, adv)
                if perturbed_action is not None:
                    perturbed_action[picked] = self.head.actions(self._scores(adv)).cpu().numpy()
        return Perturbed(self.box.from_tensor(out, self.keep_dtype), attacked, linf, l2, clean_action, perturbed_action)

    def _scores(self, x: torch.Tensor) -> torch.Tensor | None:
        """The victim's mean scores over ``eot_samples`` passes (its action for a stochastic victim)."""
        return None if self.victim is None else mean_scores(self.victim, x, self.eot_samples)

    def _labels(self, scores: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.labels == "outputs":
            return scores.detach()
        if self.labels == "observations":
            return x
        # Huang et al.: the clean greedy action; a targeted attack aims at the worst one instead.
        targeted = isinstance(self.perturbation, GradientAttack) and self.perturbation.common["targeted"]
        return scores.argmin(1) if targeted else scores.argmax(1)

    def _perturb(self, x: torch.Tensor, labels: torch.Tensor | None, generators: list[torch.Generator]) -> torch.Tensor:
        """The perturbed batch, made in scaled units when there is a scale, then held to ``eps * scale`` exactly."""
        victim, original = self.attacked_network, x
        if self.scale is not None:
            victim = None if victim is None else Rescaled(victim, self.scale)
            x = x / self.scale
        if not self.newest_only:
            adv = self.perturbation(victim, x, labels, generators).detach()
        else:
            older, newest = split_newest(x, self.frame_axis)
            view = None if victim is None else WithOlderFrames(victim, older, self.frame_axis + 1)
            adv_newest = self.perturbation(view, newest, labels, generators).detach()
            adv = torch.cat([older, adv_newest], dim=self.frame_axis + 1)
        if self.scale is None:
            return adv
        adv = adv * self.scale
        if self.perturbation.norm == "linf":  # float rounding of the division must not widen the budget
            radius = self.perturbation.eps * self.scale
            adv = original + torch.maximum(torch.minimum(adv - original, radius), -radius)
        return adv

    @contextlib.contextmanager
    def _victim_randomness(self) -> Iterator[None]:
        """With a seed, the victim's own randomness (SAP, dropout) is drawn from a seeded fork of torch's RNG."""
        if self._victim_rng is None or self.victim is None:
            yield
            return
        device = self.box.device
        seed = int(self._victim_rng.integers(2**63))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.default_generator.manual_seed(seed)  # torch.manual_seed also visits every backend: ~100x slower
            if device.type == "cuda":
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            yield

    def check_ready(self) -> None:
        """Run the whole path once on a valid observation, so bad settings fail at construction."""
        sample = self.box.clip(torch.zeros((1, *self.box.shape), device=self.box.device))
        spare = _RowRandom(0, self.box.device)
        scores = self._scores(sample)
        labels = None if scores is None else self._labels(scores, sample)
        self._perturb(sample, labels, [spare.torch])


def adversarial_perturber(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    victim: object,
    *,
    eps: float,
    attack: str | Callable[..., torch.Tensor] | None = None,
    norm: str = "linf",
    loss: str | LossFn | None = None,
    targeted: bool = False,
    eot_samples: int = 1,
    attack_options: dict[str, Any] | None = None,
    scale: object = None,
    scale_from: object = None,
    critic: Callable | None = None,
    device: str | torch.device | None = None,
    **placement: Any,
) -> ObservationPerturber:
    """A perturber that attacks ``victim``.

    ``placement``: ``perturb``, ``frame_axis``, ``schedule``, ``keep_dtype``, ``seed`` and ``num_rows``, as
    :class:`ObservationPerturber` takes them; all keywords are documented on :class:`wrappers.AdversarialObservation`.

    >>> import gymnasium as gym
    >>> _ = torch.manual_seed(0)
    >>> env = gym.make("CartPole-v1")
    >>> perturber = adversarial_perturber(env.observation_space, env.action_space, torch.nn.Linear(4, 2), eps=0.1)
    >>> result = perturber(np.zeros((1, 4), dtype=np.float32), [0], np.zeros(1, dtype=np.int64))
    >>> sorted(result.fields())
    ['action_changed', 'attacked', 'clean_action', 'l2', 'linf', 'perturbed_action']
    >>> result.linf.round(3).tolist()
    [0.1]
    """
    box, prepared = _box_and_victim(observation_space, action_space, victim, device, critic)
    head = prepared.head
    attack = attack if attack is not None else ("pgd" if head.continuous else "fgsm")
    loss_fn, labels = _victim_loss(loss, prepared, attack, targeted)
    value_attack = loss_fn is lowest_value
    scale = observation_scale(scale, box.shape, scale_from)
    perturbation = GradientAttack(
        attack,
        eps=eps,
        norm=norm,
        bounds=box.bounds if scale is None else box.scaled_bounds(scale),
        loss=loss_fn,
        targeted=targeted,
        eot_samples=eot_samples,
        grey_level=box.grey_level if scale is None else None,
        options=attack_options,
    )
    perturber = ObservationPerturber(
        box,
        perturbation,
        victim=prepared.network,
        head=head,
        labels=labels,
        attacked_network=prepared.value if value_attack else None,
        scale=scale,
        eot_samples=eot_samples,
        **placement,
    )
    return _checked(perturber)


def noise_perturber(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    *,
    eps: float,
    kind: str = "sign",
    norm: str = "linf",
    sigma: float | None = None,
    victim: object = None,
    scale: object = None,
    scale_from: object = None,
    device: str | torch.device | None = None,
    **placement: Any,
) -> ObservationPerturber:
    """A perturber adding random noise; the keywords are those of :class:`wrappers.RandomNoiseObservation`.

    >>> import gymnasium as gym
    >>> env = gym.make("CartPole-v1")
    >>> perturber = noise_perturber(env.observation_space, env.action_space, eps=0.1, kind="gaussian", sigma=0.05)
    >>> result = perturber(np.zeros((1, 4), dtype=np.float32), [0], np.zeros(1, dtype=np.int64))
    >>> bool(result.linf[0] <= 0.1 + 1e-6), result.clean_action is None  # projected onto the ball; no victim
    (True, True)
    """
    if victim is None:
        box, prepared = ObservationBox(observation_space, torch.device(device or "cpu")), None
    else:
        box, prepared = _box_and_victim(observation_space, action_space, victim, device, None)
    scale = observation_scale(scale, box.shape, scale_from)
    bounds = box.bounds if scale is None else box.scaled_bounds(scale)
    perturbation = RandomNoise(kind, eps=eps, norm=norm, bounds=bounds, sigma=sigma)
    network, head = (None, None) if prepared is None else (prepared.network, prepared.head)
    return _checked(ObservationPerturber(box, perturbation, victim=network, head=head, scale=scale, **placement))


#: The losses for continuous-action victims, by name.
CONTINUOUS_LOSSES = ("mad", "critic")


def _victim_loss(
    loss: str | LossFn | None, prepared: PreparedVictim, attack: object, targeted: bool
) -> tuple[str | LossFn, str]:
    """The attack's loss and what its labels are, for this victim; one clear error for a mismatch."""
    head = prepared.head
    if not head.continuous:
        if loss in CONTINUOUS_LOSSES:
            raise ValueError(f"loss {loss!r} is for continuous-action victims; this one scores discrete actions")
        return ("ce" if loss is None else loss), "actions"
    if targeted:
        raise ValueError("a continuous-action victim has no worst action to aim at: targeted=True needs discrete ones")
    loss = "mad" if loss is None else loss
    if callable(loss):
        return loss, "outputs"
    if loss not in CONTINUOUS_LOSSES:
        raise ValueError(
            f"loss {loss!r} compares discrete action scores; for a continuous-action victim use one of "
            f"{CONTINUOUS_LOSSES}"
        )
    if loss == "critic":
        if prepared.critic is not None:
            return CriticLoss(prepared.critic, head), "observations"
        if prepared.value is not None:
            return lowest_value, "outputs"
        raise ValueError(
            "the critic attack needs the victim's critic: SB3 SAC, TD3 and DDPG bring their Q-function, PPO and A2C "
            "their value function; for a plain actor pass critic=callable(observations, actions) -> Q"
        )
    if attack in ("fgsm", "iterative"):
        raise ValueError(
            f"the MAD loss is zero, with a zero gradient, at the clean observation, so {attack!r} (which starts "
            f"there) cannot move; use attack='pgd' (random start), or loss='critic'"
        )
    return head.mad_loss(), "outputs"


def _box_and_victim(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    victim: object,
    device: str | torch.device | None,
    critic: Callable | None,
) -> tuple[ObservationBox, PreparedVictim]:
    on_cpu = ObservationBox(observation_space, torch.device("cpu"))  # a non-Box space is the first error to report
    where = victim_device(resolve_victim(victim, on_cpu.shape), device)
    box = on_cpu if where == on_cpu.device else ObservationBox(observation_space, where)
    return box, prepare_victim(victim, box, action_space, critic)


def _checked(perturber: ObservationPerturber) -> ObservationPerturber:
    perturber.check_ready()
    return perturber
