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
from wrappers.frames import PERTURB_CHOICES, WithOlderFrames, split_newest, stack_axis
from wrappers.perturbations import GradientAttack, Perturbation, RandomNoise
from wrappers.schedules import AttackSchedule, resolve_schedule
from wrappers.spaces import ObservationBox
from wrappers.victim import check_victim, resolve_victim, victim_device

# Salts that keep the wrapper's random streams apart from the environment's own, seeded with the same number.
_ROW_SALT = 0x5EED_0B5
_VICTIM_SALT = 0x5EED_F1C


@dataclass
class Perturbed:
    """One batch of perturbed observations and what happened to each row."""

    observations: np.ndarray
    attacked: np.ndarray  # bool (N,)
    linf: np.ndarray  # float (N,): L-inf norm of the perturbation, observation units
    l2: np.ndarray  # float (N,)
    clean_action: np.ndarray | None  # int (N,): the victim's greedy action on the clean observation
    perturbed_action: np.ndarray | None  # int (N,): ... on the perturbed one (equal where not attacked)

    @property
    def action_changed(self) -> np.ndarray | None:
        return None if self.clean_action is None else self.clean_action != self.perturbed_action

    def fields(self) -> dict[str, np.ndarray]:
        """Per-row arrays for the step ``info``: attacked, linf, l2 and, with a victim, the actions."""
        out = {"attacked": self.attacked, "linf": self.linf, "l2": self.l2}
        if self.clean_action is not None:
            out |= {
                "action_changed": self.action_changed,
                "clean_action": self.clean_action,
                "perturbed_action": self.perturbed_action,
            }
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
        eot_samples: int = 1,
        perturb: str = "stack",
        frame_axis: int = 0,
        schedule: AttackSchedule | str | None = None,
        keep_dtype: bool = False,
        seed: int | None = None,
        num_rows: int = 1,
    ) -> None:
        """Where, when and how often to perturb; the keywords are documented on :class:`AdversarialObservation`."""
        schedule = resolve_schedule(schedule)
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
            clean_action = None if clean is None else clean.argmax(1).cpu().numpy()
            perturbed_action = None if clean_action is None else clean_action.copy()
            out = x
            picked = np.flatnonzero(attacked)
            if picked.size:
                index = None if picked.size == n else torch.as_tensor(picked, device=x.device)
                part = x if index is None else x.index_select(0, index)
                labels = None if clean is None else self._labels(clean if index is None else clean[index])
                adv = self.box.clip(self._perturb(part, labels, [randoms[i].torch for i in picked]))
                delta = (adv - part).flatten(1)
                linf[picked] = delta.abs().amax(1).cpu().numpy()
                l2[picked] = delta.norm(dim=1).cpu().numpy()
                out = adv if index is None else x.index_copy(0, index, adv)
                if perturbed_action is not None:
                    perturbed_action[picked] = self._scores(adv).argmax(1).cpu().numpy()
        return Perturbed(self.box.from_tensor(out, self.keep_dtype), attacked, linf, l2, clean_action, perturbed_action)

    def _scores(self, x: torch.Tensor) -> torch.Tensor | None:
        """The victim's mean scores over ``eot_samples`` passes (its action for a stochastic victim)."""
        return None if self.victim is None else mean_scores(self.victim, x, self.eot_samples)

    def _labels(self, scores: torch.Tensor) -> torch.Tensor:
        # Huang et al.: the clean greedy action; a targeted attack aims at the worst one instead.
        targeted = isinstance(self.perturbation, GradientAttack) and self.perturbation.common["targeted"]
        return scores.argmin(1) if targeted else scores.argmax(1)

    def _perturb(self, x: torch.Tensor, labels: torch.Tensor | None, generators: list[torch.Generator]) -> torch.Tensor:
        if not self.newest_only:
            return self.perturbation(self.victim, x, labels, generators).detach()
        older, newest = split_newest(x, self.frame_axis)
        view = None if self.victim is None else WithOlderFrames(self.victim, older, self.frame_axis + 1)
        adv_newest = self.perturbation(view, newest, labels, generators).detach()
        return torch.cat([older, adv_newest], dim=self.frame_axis + 1)

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
        labels = None if scores is None else self._labels(scores)
        self._perturb(sample, labels, [spare.torch])


def adversarial_perturber(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    victim: object,
    *,
    eps: float,
    attack: str | Callable[..., torch.Tensor] = "fgsm",
    norm: str = "linf",
    loss: str | LossFn = "ce",
    targeted: bool = False,
    eot_samples: int = 1,
    attack_options: dict[str, Any] | None = None,
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
    box, model = _box_and_victim(observation_space, action_space, victim, device)
    perturbation = GradientAttack(
        attack,
        eps=eps,
        norm=norm,
        bounds=box.bounds,
        loss=loss,
        targeted=targeted,
        eot_samples=eot_samples,
        grey_level=box.grey_level,
        options=attack_options,
    )
    return _checked(ObservationPerturber(box, perturbation, victim=model, eot_samples=eot_samples, **placement))


def noise_perturber(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    *,
    eps: float,
    kind: str = "sign",
    norm: str = "linf",
    sigma: float | None = None,
    victim: object = None,
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
        box, model = ObservationBox(observation_space, torch.device(device or "cpu")), None
    else:
        box, model = _box_and_victim(observation_space, action_space, victim, device)
    perturbation = RandomNoise(kind, eps=eps, norm=norm, bounds=box.bounds, sigma=sigma)
    return _checked(ObservationPerturber(box, perturbation, victim=model, **placement))


def _box_and_victim(
    observation_space: spaces.Space, action_space: spaces.Space, victim: object, device: str | torch.device | None
) -> tuple[ObservationBox, Callable[[torch.Tensor], torch.Tensor]]:
    on_cpu = ObservationBox(observation_space, torch.device("cpu"))  # a non-Box space is the first error to report
    model = resolve_victim(victim, on_cpu.shape)
    where = victim_device(model, device)
    box = on_cpu if where == on_cpu.device else ObservationBox(observation_space, where)
    check_victim(model, box, action_space)
    return box, model


def _checked(perturber: ObservationPerturber) -> ObservationPerturber:
    perturber.check_ready()
    return perturber
