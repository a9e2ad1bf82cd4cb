"""Bad input fails early with an error that names the problem."""

from __future__ import annotations

import pytest
import torch

from rlrobust import energy, sap
from rlrobust.attacks import fgsm, iterative, pgd


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"eps": -0.1}, ValueError, "eps must be >= 0"),
        ({"eps": float("nan")}, ValueError, "NaN"),
        ({"eps": float("inf")}, ValueError, "finite"),
        ({"eps": 8.0}, ValueError, "8/255"),
        ({"eps": "0.1"}, TypeError, "eps must be a number"),
        ({"eps": 0.1, "bounds": (1.0, 0.0)}, ValueError, "inverted"),
        ({"eps": 0.1, "bounds": (0.0, float("inf"))}, ValueError, "finite"),
        ({"eps": 0.1, "bounds": (0.0,)}, ValueError, "pair"),
        ({"eps": 0.1, "norm": "l1"}, ValueError, "norm must be one of"),
        ({"eps": 0.1, "loss": "hinge"}, ValueError, "unknown loss"),
        ({"eps": 0.1, "eot_samples": 0}, ValueError, "eot_samples"),
        ({"eps": 0.1, "targeted": True}, ValueError, "targeted attack needs the target labels"),
    ],
)
def test_bad_attack_arguments(kwargs, error, match, module_net, images):
    with pytest.raises(error, match=match):
        fgsm(module_net, images, **kwargs)


def test_input_outside_the_range_names_the_range(module_net, images):
    with pytest.raises(ValueError, match=r"outside bounds \(0, 1\).*bounds=\(0, 255\)"):
        fgsm(module_net, images * 255, eps=2.0 / 255)


def test_integer_input_is_rejected_with_a_hint(module_net):
    frames = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"floating-point.*\.float\(\)"):
        fgsm(module_net, frames, eps=2.0, bounds=(0, 255))


def test_nan_input_and_unbatched_input(module_net, images):
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pgd(module_net, bad, eps=0.1)
    with pytest.raises(ValueError, match=r"batch with shape \(N, \.\.\.\)"):
        fgsm(module_net, torch.rand(5), eps=0.1)


def test_scores_of_the_wrong_shape(images):
    with pytest.raises(ValueError, match=r"scores of shape \(16, C\)"):
        fgsm(lambda x: x.flatten(1).sum(1), images, eps=0.1)
    with pytest.raises(TypeError, match="return a tensor of scores"):
        fgsm(lambda x: (x.flatten(1), None), images, eps=0.1)


def test_bad_labels(module_net, images):
    with pytest.raises(ValueError, match=r"one entry per input \(16\), got shape \(15,\)"):
        fgsm(module_net, images, torch.zeros(15, dtype=torch.long), eps=0.1)
    with pytest.raises(ValueError, match="outside"):
        fgsm(module_net, images, torch.full((16,), 9), eps=0.1)
    with pytest.raises(TypeError, match="integer class indices"):
        fgsm(module_net, images, torch.zeros(16), eps=0.1)


def test_bad_steps(module_net, images):
    with pytest.raises(ValueError, match="step must be"):
        iterative(module_net, images, eps=0.1, step=0.0)
    with pytest.raises(ValueError, match="steps must be"):
        pgd(module_net, images, eps=0.1, steps=0)
    with pytest.raises(ValueError, match="restarts must be"):
        pgd(module_net, images, eps=0.1, restarts=0)


@pytest.mark.parametrize("frac", [0.0, -1.0, float("nan"), float("inf")])
def test_sap_frac_outside_zero_infinity(frac, module_net):
    with pytest.raises(ValueError, match="frac"):
        sap.insert_sap(module_net, frac)
    with pytest.raises(ValueError, match="frac"):
        sap.sap_mask(torch.rand(2, 5), frac)


def test_sap_bad_sampling_and_generator_device():
    with pytest.raises(ValueError, match="sampling must be one of"):
        sap.StochasticActivationPruning(1.0, sampling="fast")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="generator"):
            sap.sap_mask(torch.rand(2, 5), generator=torch.Generator(device="cuda"))


def test_energy_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        energy.energy(torch.rand(3))
    with pytest.raises(TypeError, match="floating-point"):
        energy.energy(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        energy.energy(torch.rand(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="outside"):
        energy.joint_energy(torch.rand(2, 3), torch.tensor([0, 3]))
