"""The bad-input corpus of the public Python API: the core's attacks, energies, stochastic predictions, SAP and the
other defences, generation and calibration, and the observation wrappers.

Each case is one real bad input. The contract: one ``ValueError`` or ``TypeError`` (of the kind given), raised
before any result is returned, whose one-line message names the offending argument. A wrong number returned
silently is the defect this corpus guards against: NaN or infinite budgets, inverted bounds, labels outside the
classes, zero steps, a string where a flag belongs ("no" is truthy), images on the wrong scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from rlrobust import calibration, defences, energy, generation, sap, stochastic
from rlrobust.attacks import apgd, apgd_targeted, fgsm, get_attack, iterative, pgd
from tests.conftest import ModuleStyleNet
from tests.test_wrappers_fixtures import DiscreteToy, FrameToy, frame_net
from wrappers import (
    AdversarialObservation,
    EveryKthStep,
    RandomNoiseObservation,
    StrategicallyTimed,
    VectorAdversarialObservation,
    WithProbability,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAN, INF = float("nan"), float("inf")
torch.manual_seed(0)
NET = ModuleStyleNet().eval()  # 5 classes
X = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])
TWO_CLASSES = nn.Sequential(nn.Flatten(), nn.Linear(192, 2)).eval()


@dataclass(frozen=True)
class ApiCase:
    """One bad call: ``call()`` must raise ``error`` with a message containing ``names`` (the argument)."""

    id: str
    call: Callable[[], object]
    error: type[Exception]
    names: str


def with_nan(x: torch.Tensor, value: float = NAN) -> torch.Tensor:
    bad = x.clone()
    bad[0, 0, 0, 0] = value
    return bad


class BrokenScores(nn.Module):
    """NET whose scores turn NaN (or ``value``) from its ``after``-th call on: a broken model mid-attack."""

    def __init__(self, after: int = 0, value: float = NAN) -> None:
        super().__init__()
        self.net, self.after, self.value, self.calls = NET, after, value, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        scores = self.net(x)
        return scores if self.calls <= self.after else scores + self.value


def noisy_frames(**settings) -> RandomNoiseObservation:
    return RandomNoiseObservation(FrameToy(), **{"eps": 2.0, **settings})


def attacked_frames(**settings) -> AdversarialObservation:
    settings = {"eps": 2.0, **settings}
    return AdversarialObservation(FrameToy(), settings.pop("victim", frame_net()), **settings)


ATTACK_CASES = [
    ApiCase("fgsm eps NaN", lambda: fgsm(NET, X, Y, eps=NAN), ValueError, "eps must be a number"),
    ApiCase("fgsm eps inf", lambda: fgsm(NET, X, Y, eps=INF), ValueError, "eps must be finite"),
    ApiCase("fgsm eps negative", lambda: fgsm(NET, X, Y, eps=-0.1), ValueError, "eps must be >= 0"),
    ApiCase("fgsm eps wider than bounds", lambda: fgsm(NET, X, Y, eps=8.0), ValueError, "eps=8.0 is larger"),
    ApiCase("pgd eps a 2-tensor", lambda: pgd(NET, X, Y, eps=torch.tensor([0.1, 0.2])), ValueError, "eps must be"),
    ApiCase("iterative eps a string", lambda: iterative(NET, X, Y, eps="0.1", step=0.01), TypeError, "eps must be"),
    ApiCase("pgd l2 eps NaN", lambda: pgd(NET, X, Y, eps=NAN, norm="l2"), ValueError, "eps must be a number"),
    ApiCase("fgsm bounds inverted", lambda: fgsm(NET, X, Y, eps=0.1, bounds=(1, 0)), ValueError, "bounds must"),
    ApiCase("fgsm bounds empty range", lambda: fgsm(NET, X, Y, eps=0.1, bounds=(0, 0)), ValueError, "bounds must"),
    ApiCase("fgsm bounds infinite", lambda: fgsm(NET, X, Y, eps=0.1, bounds=(0, INF)), ValueError, "bounds must"),
    ApiCase("fgsm bounds NaN", lambda: fgsm(NET, X, Y, eps=0.1, bounds=(NAN, 1)), ValueError, "bounds must"),
    ApiCase("fgsm bounds a string", lambda: fgsm(NET, X, Y, eps=0.1, bounds="01"), ValueError, "bounds must"),
    ApiCase("fgsm bounds one number", lambda: fgsm(NET, X, Y, eps=0.1, bounds=(0.0,)), ValueError, "bounds must"),
    ApiCase("pgd x with NaN", lambda: pgd(NET, with_nan(X), Y, eps=0.1), ValueError, "x contains NaN"),
    ApiCase("pgd x with inf", lambda: pgd(NET, with_nan(X, INF), Y, eps=0.1), ValueError, "x contains NaN"),
    ApiCase("fgsm x outside bounds", lambda: fgsm(NET, X * 255, Y, eps=0.1), ValueError, "x has values in"),
    ApiCase("fgsm x uint8", lambda: fgsm(NET, (X * 255).byte(), Y, eps=2, bounds=(0, 255)), TypeError, "x must be"),
    ApiCase("fgsm x numpy", lambda: fgsm(NET, X.numpy(), Y, eps=0.1), TypeError, "x must be a torch.Tensor"),
    ApiCase("fgsm x unbatched", lambda: fgsm(NET, torch.rand(5), eps=0.1), ValueError, "x must be a batch"),
    ApiCase("fgsm x empty batch", lambda: fgsm(NET, X[:0], Y[:0], eps=0.1), ValueError, "x is an empty batch"),
    ApiCase("fgsm y beyond the classes", lambda: fgsm(NET, X, Y + 2, eps=0.1), ValueError, "y has labels in"),
    ApiCase("fgsm y negative", lambda: fgsm(NET, X, Y - 1, eps=0.1), ValueError, "y has negative labels"),
    ApiCase("fgsm y shape (N, 1)", lambda: fgsm(NET, X, Y[:, None], eps=0.1), ValueError, "y must have shape"),
    ApiCase("fgsm y too short", lambda: fgsm(NET, X, Y[:3], eps=0.1), ValueError, "y must have one entry"),
    ApiCase("fgsm y float", lambda: fgsm(NET, X, Y.float(), eps=0.1), TypeError, "y must hold integer"),
    ApiCase("pgd y a list", lambda: pgd(NET, X, [0, 1, 2, 3], eps=0.1), TypeError, "y must be a tensor"),
    ApiCase("pgd targeted without y", lambda: pgd(NET, X, eps=0.1, targeted=True), ValueError, "target labels y"),
    ApiCase("fgsm targeted a string", lambda: fgsm(NET, X, Y, eps=0.1, targeted="no"), TypeError, "targeted must"),
    ApiCase("iterative step 0", lambda: iterative(NET, X, Y, eps=0.1, step=0), ValueError, "step must be"),
    ApiCase(
        "iterative steps 0", lambda: iterative(NET, X, Y, eps=0.1, step=0.01, steps=0), ValueError, "steps must be"
    ),
    ApiCase("pgd steps 0", lambda: pgd(NET, X, Y, eps=0.1, steps=0), ValueError, "steps must be an integer"),
    ApiCase("pgd steps 2.5", lambda: pgd(NET, X, Y, eps=0.1, steps=2.5), ValueError, "steps must be an integer"),
    ApiCase("pgd restarts 0", lambda: pgd(NET, X, Y, eps=0.1, restarts=0), ValueError, "restarts must be"),
    ApiCase("pgd step NaN", lambda: pgd(NET, X, Y, eps=0.1, step=NAN), ValueError, "step must be a number"),
    ApiCase(
        "pgd random_start a string", lambda: pgd(NET, X, Y, eps=0.1, random_start="no"), TypeError, "random_start must"
    ),
    ApiCase("pgd generator an int", lambda: pgd(NET, X, Y, eps=0.1, generator=3), TypeError, "generator must"),
    ApiCase("fgsm unknown norm", lambda: fgsm(NET, X, Y, eps=0.1, norm="l1"), ValueError, "norm must be one of"),
    ApiCase("pgd unknown loss", lambda: pgd(NET, X, Y, eps=0.1, loss="hinge"), ValueError, "unknown loss"),
    ApiCase("fgsm loss a number", lambda: fgsm(NET, X, Y, eps=0.1, loss=3), TypeError, "loss must be"),
    ApiCase("fgsm eot_samples 0", lambda: fgsm(NET, X, Y, eps=0.1, eot_samples=0), ValueError, "eot_samples must"),
    ApiCase(
        "fgsm eot_batch_size 0", lambda: fgsm(NET, X, Y, eps=0.1, eot_batch_size=0), ValueError, "eot_batch_size must"
    ),
    ApiCase("fgsm model None", lambda: fgsm(None, X, Y, eps=0.1), TypeError, "model must be a callable"),
    ApiCase("apgd rho above 1", lambda: apgd(NET, X, Y, eps=0.1, rho=1.5), ValueError, "rho must"),
    ApiCase("apgd momentum NaN", lambda: apgd(NET, X, Y, eps=0.1, momentum=NAN), ValueError, "momentum must"),
    ApiCase("apgd steps 0", lambda: apgd(NET, X, Y, eps=0.1, steps=0), ValueError, "steps must be"),
    ApiCase(
        "apgd dlr on 2 classes",
        lambda: apgd(TWO_CLASSES, X, Y % 2, eps=0.1, loss="dlr"),
        ValueError,
        "the dlr loss needs",
    ),
    ApiCase(
        "apgd_t 0 targets",
        lambda: apgd_targeted(NET, X, Y, eps=0.1, target_classes=0),
        ValueError,
        "target_classes must",
    ),
    ApiCase("apgd_t y beyond the classes", lambda: apgd_targeted(NET, X, Y + 2, eps=0.1), ValueError, "y has labels"),
    ApiCase("unknown attack name", lambda: get_attack("deepfool"), ValueError, "unknown attack 'deepfool'"),
]

# Issue 13's silent wrong results: each of these once returned a batch (a non-attack, or a random start) and no error.
NONFINITE = "NaN or infinite scores"
SILENT_CASES = [
    ApiCase("pgd step -1", lambda: pgd(NET, X, Y, eps=0.1, step=-1), ValueError, "step must be a finite number > 0"),
    ApiCase("pgd step 0", lambda: pgd(NET, X, Y, eps=0.1, step=0), ValueError, "step must be a finite number > 0"),
    ApiCase("pgd step inf", lambda: pgd(NET, X, Y, eps=0.1, step=INF), ValueError, "step must be a finite number"),
    ApiCase("pgd step a string", lambda: pgd(NET, X, Y, eps=0.1, step="0.01"), TypeError, "step must be a number"),
    ApiCase("pgd steps -3", lambda: pgd(NET, X, Y, eps=0.1, steps=-3), ValueError, "steps must be an integer >= 1"),
    ApiCase("pgd steps True", lambda: pgd(NET, X, Y, eps=0.1, steps=True), ValueError, "steps must be an integer"),
    ApiCase("iterative step -1", lambda: iterative(NET, X, Y, eps=0.1, step=-1), ValueError, "step must be"),
    ApiCase("iterative step NaN", lambda: iterative(NET, X, Y, eps=0.1, step=NAN), ValueError, "step must be"),
    ApiCase("iterative step inf", lambda: iterative(NET, X, Y, eps=0.1, step=INF), ValueError, "step must be"),
    ApiCase("apgd steps -1", lambda: apgd(NET, X, Y, eps=0.1, steps=-1), ValueError, "steps must be"),
    ApiCase("apgd restarts 0", lambda: apgd(NET, X, Y, eps=0.1, restarts=0), ValueError, "restarts must be"),
    ApiCase("apgd rho 0", lambda: apgd(NET, X, Y, eps=0.1, rho=0), ValueError, "rho must be a finite number > 0"),
    ApiCase("apgd rho -0.75", lambda: apgd(NET, X, Y, eps=0.1, rho=-0.75), ValueError, "rho must be"),
    ApiCase("apgd momentum inf", lambda: apgd(NET, X, Y, eps=0.1, momentum=INF), ValueError, "momentum must be"),
    ApiCase("apgd momentum 0", lambda: apgd(NET, X, Y, eps=0.1, momentum=0), ValueError, "momentum must be"),
    ApiCase("apgd_t steps 0", lambda: apgd_targeted(NET, X, Y, eps=0.1, steps=0), ValueError, "steps must be"),
    ApiCase("apgd_t rho NaN", lambda: apgd_targeted(NET, X, Y, eps=0.1, rho=NAN), ValueError, "rho must be"),
    ApiCase("apgd y beyond the classes", lambda: apgd(NET, X, Y + 2, eps=0.1), ValueError, "y has labels in [2, 5]"),
    ApiCase("apgd y negative", lambda: apgd(NET, X, Y - 1, eps=0.1), ValueError, "y has negative labels"),
    ApiCase("apgd dlr y beyond", lambda: apgd(NET, X, Y + 5, eps=0.1, loss="dlr"), ValueError, "outside [0, 5)"),
    ApiCase(
        "apgd targeted y beyond", lambda: apgd(NET, X, Y + 9, eps=0.1, targeted=True), ValueError, "outside [0, 5)"
    ),
    ApiCase("pgd y beyond the classes", lambda: pgd(NET, X, Y + 2, eps=0.1), ValueError, "outside [0, 5)"),
    ApiCase("iterative y beyond", lambda: iterative(NET, X, Y + 2, eps=0.1, step=0.01), ValueError, "outside [0, 5)"),
    ApiCase("fgsm NaN scores", lambda: fgsm(BrokenScores(), X, Y, eps=0.1), ValueError, NONFINITE),
    ApiCase("fgsm inf scores, y=None", lambda: fgsm(BrokenScores(value=INF), X, eps=0.1), ValueError, NONFINITE),
    ApiCase("iterative NaN scores", lambda: iterative(BrokenScores(), X, Y, eps=0.1, step=0.01), ValueError, NONFINITE),
    ApiCase("pgd NaN scores", lambda: pgd(BrokenScores(), X, Y, eps=0.1), ValueError, NONFINITE),
    ApiCase("pgd -inf scores", lambda: pgd(BrokenScores(value=-INF), X, Y, eps=0.1), ValueError, NONFINITE),
    ApiCase("pgd NaN scores, y=None", lambda: pgd(BrokenScores(), X, eps=0.1), ValueError, NONFINITE),
    ApiCase("pgd NaN mid-attack", lambda: pgd(BrokenScores(after=3), X, Y, eps=0.1), ValueError, "during the attack"),
    ApiCase("pgd NaN mid-restarts", lambda: pgd(BrokenScores(12), X, Y, eps=0.1, restarts=3), ValueError, "during the"),
    ApiCase(
        "iterative NaN mid-attack",
        lambda: iterative(BrokenScores(after=2), X, Y, eps=0.1, step=0.01),
        ValueError,
        "during the attack",
    ),
    ApiCase("apgd NaN scores", lambda: apgd(BrokenScores(), X, Y, eps=0.1, steps=5), ValueError, NONFINITE),
    ApiCase("apgd -inf scores", lambda: apgd(BrokenScores(value=-INF), X, Y, eps=0.1), ValueError, NONFINITE),
    ApiCase("apgd NaN scores, y=None", lambda: apgd(BrokenScores(), X, eps=0.1, steps=5), ValueError, NONFINITE),
    ApiCase(
        "apgd NaN mid-attack", lambda: apgd(BrokenScores(after=4), X, Y, eps=0.1, steps=5), ValueError, "during the"
    ),
    ApiCase(
        "apgd eot NaN scores",
        lambda: apgd(BrokenScores(), X, Y, eps=0.1, steps=5, eot_samples=3),
        ValueError,
        NONFINITE,
    ),
    ApiCase("apgd_t NaN scores", lambda: apgd_targeted(BrokenScores(), X, Y, eps=0.1, steps=5), ValueError, NONFINITE),
    ApiCase(
        "apgd_t NaN mid-attack",
        lambda: apgd_targeted(BrokenScores(after=3), X, Y, eps=0.1, steps=5, target_classes=2),
        ValueError,
        "during the attack",
    ),
]

CORE_CASES = [
    ApiCase("energy temperature 0", lambda: energy.energy(torch.randn(3, 4), 0.0), ValueError, "temperature must"),
    ApiCase(
        "energy integer logits", lambda: energy.energy(torch.ones(3, 4, dtype=torch.long)), TypeError, "logits must be"
    ),
    ApiCase("energy logits 1-D", lambda: energy.weat_weights(torch.randn(4)), ValueError, "logits must have shape"),
    ApiCase(
        "joint energy y beyond the classes",
        lambda: energy.joint_energy(torch.randn(3, 4), torch.tensor([0, 1, 4])),
        ValueError,
        "y has labels",
    ),
    ApiCase("predict_proba samples 0", lambda: stochastic.predict_proba(NET, X, 0), ValueError, "samples must"),
    ApiCase("predict samples 2.0", lambda: stochastic.predict(NET, X, 2.0), ValueError, "samples must"),
    ApiCase(
        "mean_scores max_rows 0", lambda: stochastic.mean_scores(NET, X, 2, max_rows=0), ValueError, "max_rows must"
    ),
    ApiCase("predict_proba x a list", lambda: stochastic.predict_proba(NET, [0.5], 2), TypeError, "x must be"),
    ApiCase(
        "calibration bins 0",
        lambda: calibration.reliability_bins(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), bins=0),
        ValueError,
        "bins must",
    ),
    ApiCase(
        "calibration logits for probabilities",
        lambda: calibration.expected_calibration_error(torch.tensor([[2.0, 0.5]]), torch.tensor([0])),
        ValueError,
        "probs must be probabilities",
    ),
    ApiCase(
        "sgld noise_std NaN", lambda: generation.sgld_sample(NET, X, Y, noise_std=NAN), ValueError, "noise_std must"
    ),
    ApiCase(
        "sgld noise_scale -1",
        lambda: generation.sgld_sample(NET, X, Y, noise_scale=-1.0),
        ValueError,
        "noise_scale must",
    ),
    ApiCase("sgld x0 on 0-255", lambda: generation.sgld_sample(NET, X * 255, Y), ValueError, "x0 has values"),
    ApiCase("sgld momentum 1", lambda: generation.sgld_sample(NET, X, Y, momentum=1.0), ValueError, "momentum must"),
    ApiCase("pca images with NaN", lambda: generation.fit_class_pca(with_nan(X)), ValueError, "images contains NaN"),
    ApiCase(
        "pca sample count 0",
        lambda: generation.sample_class_pca(generation.fit_class_pca(X), 0),
        ValueError,
        "count must",
    ),
    ApiCase("sap frac 0", lambda: sap.insert_sap(ModuleStyleNet(), 0.0), ValueError, "frac must"),
    ApiCase("sap frac NaN", lambda: sap.insert_sap(ModuleStyleNet(), NAN), ValueError, "frac must"),
    ApiCase("sap frac 1e9", lambda: sap.insert_sap(ModuleStyleNet(), 1e9), ValueError, "frac must be at most"),
    ApiCase(
        "sap unknown sampling",
        lambda: sap.insert_sap(ModuleStyleNet(), 1.0, sampling="fast"),
        ValueError,
        "sampling must",
    ),
    ApiCase(
        "unknown defence", lambda: defences.apply_defence(ModuleStyleNet(), "XYZ", 0.1), ValueError, "unknown defence"
    ),
    ApiCase(
        "defence name a number",
        lambda: defences.apply_defence(ModuleStyleNet(), 3, 0.1),
        TypeError,
        "defence name must",
    ),
    ApiCase("DRO rate 1", lambda: defences.apply_defence(ModuleStyleNet(), "DRO", 1.0), ValueError, "dropout rate"),
    ApiCase(
        "DRO rate a string",
        lambda: defences.apply_defence(ModuleStyleNet(), "DRO", "0.1"),
        TypeError,
        "dropout rate p must be a number",
    ),
    ApiCase("RNW std negative", lambda: defences.apply_defence(ModuleStyleNet(), "RNW", -0.1), ValueError, "std must"),
    ApiCase("DWP keep 1.5", lambda: defences.apply_defence(ModuleStyleNet(), "DWP", 1.5), ValueError, "keep must"),
    ApiCase("SWP frac 1e9", lambda: defences.apply_defence(ModuleStyleNet(), "SWP", 1e9), ValueError, "frac must"),
]

WRAPPER_CASES = [
    ApiCase("wrapper eps NaN", lambda: attacked_frames(eps=NAN), ValueError, "eps must be a number"),
    ApiCase("wrapper eps 300 on 0-255", lambda: attacked_frames(eps=300.0), ValueError, "eps=300.0 is larger"),
    ApiCase("wrapper eps a string", lambda: attacked_frames(eps="2"), TypeError, "eps must be a number"),
    ApiCase("wrapper unknown attack", lambda: attacked_frames(attack="cw"), ValueError, "unknown attack"),
    ApiCase("wrapper victim a string", lambda: attacked_frames(victim="dqn"), TypeError, "victim must be"),
    ApiCase(
        "wrapper victim of 5 actions",
        lambda: attacked_frames(victim=frame_net(n_actions=5)),
        ValueError,
        "the victim returns 5 scores",
    ),
    ApiCase(
        "wrapper keep_dtype with l2", lambda: attacked_frames(norm="l2", keep_dtype=True), ValueError, "keep_dtype=True"
    ),
    ApiCase("wrapper seed negative", lambda: attacked_frames(seed=-1), ValueError, "seed must be"),
    ApiCase("wrapper seed a float", lambda: attacked_frames(seed=1.5), ValueError, "seed must be"),
    ApiCase(
        "wrapper iterative step NaN",
        lambda: attacked_frames(attack="iterative", attack_options={"step": NAN}),
        ValueError,
        "step must be",
    ),
    ApiCase(
        "wrapper non-Box space", lambda: AdversarialObservation(DiscreteToy(), frame_net(), eps=1), TypeError, "Box"
    ),
    ApiCase("noise sigma negative", lambda: noisy_frames(kind="gaussian", sigma=-1.0), ValueError, "sigma must"),
    ApiCase("noise eps negative", lambda: noisy_frames(eps=-2.0), ValueError, "eps must be >= 0"),
    ApiCase("schedule p a string", lambda: WithProbability("0.5"), TypeError, "probability p must be a number"),
    ApiCase("schedule p None", lambda: WithProbability(None), TypeError, "probability p must be a number"),
    ApiCase("schedule p 1.5", lambda: WithProbability(1.5), ValueError, "probability p must lie"),
    ApiCase("schedule k 1.5", lambda: EveryKthStep(1.5), ValueError, "k must be an integer"),
    ApiCase("schedule offset -1", lambda: EveryKthStep(2, offset=-1), ValueError, "offset must be"),
    ApiCase("schedule threshold NaN", lambda: StrategicallyTimed(NAN), ValueError, "threshold must be a number"),
    ApiCase("schedule threshold a string", lambda: StrategicallyTimed("0.5"), TypeError, "threshold must be"),
    ApiCase(
        "strategic schedule without victim",
        lambda: noisy_frames(schedule=StrategicallyTimed(0.5)),
        ValueError,
        "pass a victim",
    ),
    ApiCase(
        "vector env with same-step autoreset",
        lambda: VectorAdversarialObservation(
            gym.vector.SyncVectorEnv([FrameToy], autoreset_mode=AutoresetMode.SAME_STEP), frame_net(), eps=2
        ),
        ValueError,
        "NEXT_STEP or DISABLED",
    ),
]

CASES = ATTACK_CASES + SILENT_CASES + CORE_CASES + WRAPPER_CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused_with_one_clear_error(case: ApiCase):
    with pytest.raises((ValueError, TypeError)) as raised:
        case.call()
    message = str(raised.value)
    assert isinstance(raised.value, case.error), f"{type(raised.value).__name__}: {message}"
    assert case.names.lower() in message.lower(), message
    assert "\n" not in message.strip(), message


def test_the_corpus_is_large_and_its_ids_unique():
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


def test_numpy_numbers_and_tensors_are_numbers_not_errors():
    """The stricter checks still take what a caller naturally passes: numpy scalars and one-element tensors."""
    one = fgsm(NET, X, Y, eps=np.float32(0.1), bounds=(np.float64(0), torch.tensor(1.0)))
    two = pgd(NET, X, Y, eps=torch.tensor(0.1), steps=np.int64(2), random_start=np.bool_(False))
    assert (one - X).abs().max() <= 0.1 + 1e-6 and (two - X).abs().max() <= 0.1 + 1e-6
    assert WithProbability(np.float64(0.5)).p == 0.5 and EveryKthStep(np.int64(3)).k == 3
    attacked_frames(seed=np.int64(4))
