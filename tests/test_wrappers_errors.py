"""Bad input to the wrappers fails early, with a message that names the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.test_wrappers_fixtures import DiscreteToy, FrameToy, LyingToy, frame_net, one_torch_thread
from wrappers import (
    AdversarialObservation,
    EveryKthStep,
    RandomNoiseObservation,
    StrategicallyTimed,
    VectorAdversarialObservation,
    WithProbability,
)

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)


def attack(**settings):
    settings = {"eps": 2.0, **settings}
    return AdversarialObservation(FrameToy(), settings.pop("victim", frame_net()), **settings)


def test_observation_space_must_be_a_box():
    with pytest.raises(TypeError, match="must be a gymnasium Box, got Discrete"):
        AdversarialObservation(DiscreteToy(), frame_net(), eps=1)
    with pytest.raises(TypeError, match="must be a gymnasium Box"):
        RandomNoiseObservation(DiscreteToy(), eps=1)


@pytest.mark.parametrize(
    ("victim", "error", "message"),
    [
        (frame_net(n_actions=5), ValueError, "returns 5 scores per observation but the action space has 3"),
        (
            lambda x: frame_net()(x)[:, 0],
            ValueError,
            r"scores of shape \(1, n_actions\) \(or actions \(1, A\)\), got shape \(1,\)",
        ),
        (lambda x: (frame_net()(x), None), TypeError, "must return a tensor of action scores"),
        (nn.Linear(10, 3), ValueError, r"victim failed on a batch of observations of shape \(1, 4, 12, 12\)"),
        ("not a model", TypeError, "victim must be a torch module or callable"),
        (None, TypeError, "victim is required"),
    ],
)
def test_victim_with_the_wrong_output_is_refused(victim, error, message):
    with pytest.raises(error, match=message):
        AdversarialObservation(FrameToy(), victim, eps=1)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"eps": -1.0}, "eps must be >= 0"),
        ({"eps": float("nan")}, "eps must be a number"),
        ({"eps": 300.0}, "larger than the value range"),
        ({"attack": "cw"}, "unknown attack 'cw'"),
        ({"norm": "l1"}, "norm must be one of"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"eot_samples": 0}, "eot_samples must be an integer >= 1"),
        ({"perturb": "oldest"}, "perturb must be one of"),
        ({"perturb": "newest", "frame_axis": 3}, "frame_axis=3 is out of range"),
        ({"schedule": "sometimes"}, "schedule must be an AttackSchedule"),
        ({"attack": "pgd", "attack_options": {"steps": 0}}, "steps must be an integer >= 1"),
        ({"attack": "pgd", "attack_options": {"stepz": 3}}, "unexpected options"),
        ({"attack": "iterative", "attack_options": {"step": -1.0}}, "step must be a finite number > 0"),
    ],
)
def test_bad_settings_are_refused_at_construction(settings, message):
    with pytest.raises((ValueError, TypeError), match=message):
        attack(**settings)


def test_a_generator_cannot_be_passed_in():
    with pytest.raises(ValueError, match="seeds one per environment"):
        attack(attack="pgd", attack_options={"generator": torch.Generator()})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EveryKthStep(0), "k must be an integer >= 1"),
        (lambda: WithProbability(1.5), r"must lie in \[0, 1\]"),
        (lambda: StrategicallyTimed(2.0), r"must lie in \[0, 1\]"),
        (lambda: StrategicallyTimed(0.5, temperature=0), "temperature must be a finite number > 0"),
    ],
)
def test_bad_schedules(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_noise_settings():
    with pytest.raises(ValueError, match="unknown noise kind 'salt'"):
        RandomNoiseObservation(FrameToy(), eps=1, kind="salt")
    with pytest.raises(ValueError, match="sigma applies to gaussian noise only"):
        RandomNoiseObservation(FrameToy(), eps=1, kind="sign", sigma=0.5)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        RandomNoiseObservation(FrameToy(), eps=-2)


def test_observation_outside_the_declared_space_is_reported():
    env = AdversarialObservation(LyingToy(), frame_net(scale=1.0), eps=0.01)
    with pytest.raises(ValueError, match=r"observation outside the declared observation space: value 2 .* \[0, 1\]"):
        env.reset(seed=0)
    noisy = RandomNoiseObservation(FrameToy(dtype=np.float32, high=1.0), eps=0.01)
    with pytest.raises(ValueError, match="observation outside the declared observation space: value nan"):
        noisy.observation(np.full((4, 12, 12), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="does not match the declared observation space shape"):
        noisy.observation(np.zeros((4, 12, 11), dtype=np.float32))


def test_vector_wrapper_checks_its_victim_against_the_single_spaces():
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv([FrameToy, FrameToy])
    with pytest.raises(ValueError, match="action space has 3 actions"):
        VectorAdversarialObservation(envs, frame_net(n_actions=4), eps=1)
