"""The single-environment wrappers on small environments: budgets, ranges, dtypes, what and when to perturb,
info, seeding, attack options, and both environment checkers."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rlrobust.sap import insert_sap
from tests.test_wrappers_fixtures import FrameToy, VectorToy, frame_net, linear_net, one_torch_thread, vector_net
from wrappers import (
    EPISODE_KEY,
    STEP_KEY,
    AdversarialObservation,
    EveryKthStep,
    RandomNoiseObservation,
    StrategicallyTimed,
    WithProbability,
)

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

ATTACKS = [
    ("fgsm", "linf", {}),
    ("iterative", "linf", {}),
    ("pgd", "linf", {}),
    ("pgd", "linf", {"restarts": 2}),
    ("fgsm", "l2", {}),
    ("pgd", "l2", {}),
]
NOISES = [("sign", "linf"), ("uniform", "linf"), ("gaussian", "linf"), ("sign", "l2"), ("uniform", "l2")]


def play(env, steps: int, seed: int = 0):
    """Reset with ``seed`` and take ``steps`` steps of action 0; the (observation, info) pairs seen."""
    obs, info = env.reset(seed=seed)
    seen = [(obs, info)]
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(0)
        seen.append((obs, info))
        if terminated or truncated:
            break
    return seen


def clean_frames(steps: int, seed: int = 0, length: int = 20) -> list[np.ndarray]:
    return [obs for obs, _ in play(FrameToy(length=length), steps, seed)]


def check_budget(perturbed: np.ndarray, clean: np.ndarray, eps: float, norm: str, space) -> None:
    delta = perturbed.astype(np.float64) - clean.astype(np.float64)
    size = np.abs(delta).max() if norm == "linf" else np.linalg.norm(delta.ravel())
    assert size <= eps * (1 + 1e-5) + 1e-4
    assert space.contains(perturbed)
    assert (perturbed >= 0).all() and (perturbed <= 255).all()


@pytest.mark.parametrize(("attack", "norm", "options"), ATTACKS)
def test_attack_budget_and_range(attack, norm, options):
    eps = 2.0 if norm == "linf" else 40.0
    env = AdversarialObservation(FrameToy(), frame_net(), eps=eps, attack=attack, norm=norm, attack_options=options)
    assert env.observation_space.dtype == np.float32
    assert env.observation_space.shape == (4, 12, 12)
    seen = play(env, 5)
    for (obs, info), clean in zip(seen, clean_frames(5), strict=True):
        check_budget(obs, clean, eps, norm, env.observation_space)
        assert info[STEP_KEY]["attacked"]
        assert info[STEP_KEY][norm] == pytest.approx(
            np.abs(obs - clean).max() if norm == "linf" else np.linalg.norm((obs - clean).ravel()), rel=1e-5
        )
    assert any(not np.array_equal(obs, clean) for (obs, _), clean in zip(seen, clean_frames(5), strict=True))


@pytest.mark.parametrize(("kind", "norm"), NOISES)
def test_noise_budget_and_range(kind, norm):
    eps = 2.0 if norm == "linf" else 40.0
    env = RandomNoiseObservation(FrameToy(), eps=eps, kind=kind, norm=norm, seed=1)
    for (obs, info), clean in zip(play(env, 5), clean_frames(5), strict=True):
        check_budget(obs, clean, eps, norm, env.observation_space)
        assert "action_changed" not in info[STEP_KEY]  # no victim, no actions to report


def test_sign_noise_moves_every_unclipped_value_by_exactly_eps():
    env = RandomNoiseObservation(FrameToy(), eps=3.0, kind="sign", seed=0)
    obs, _ = env.reset(seed=0)
    clean = clean_frames(0)[0].astype(np.float64)
    inside = (clean >= 3) & (clean <= 252)
    assert np.allclose(np.abs(obs - clean)[inside], 3.0)
    signs = np.sign(obs - clean)[inside]
    assert 0.4 < (signs > 0).mean() < 0.6


def test_per_element_and_infinite_bounds_are_respected():
    env = AdversarialObservation(VectorToy(), vector_net(), eps=0.5, attack="pgd")
    raw = VectorToy()
    raw_obs, _ = raw.reset(seed=4)
    obs, _ = env.reset(seed=4)
    assert env.observation_space.contains(obs)
    assert np.abs(obs - raw_obs).max() <= 0.5 + 1e-6
    for _ in range(8):
        obs, *_ = env.step(0)
        assert env.observation_space.contains(obs)


def test_sub_grey_level_budget_gives_float_frames():
    env = AdversarialObservation(FrameToy(), frame_net(), eps=0.5)
    obs, _ = env.reset(seed=0)
    delta = obs - clean_frames(0)[0]
    assert np.abs(delta).max() == pytest.approx(0.5)
    assert not np.allclose(obs, np.round(obs))


def test_normalised_observations_take_budgets_on_their_own_scale():
    env = AdversarialObservation(FrameToy(dtype=np.float32, high=1.0), frame_net(scale=1.0), eps=8 / 255, attack="pgd")
    raw = FrameToy(dtype=np.float32, high=1.0)
    clean, _ = raw.reset(seed=0)
    obs, _ = env.reset(seed=0)
    assert np.abs(obs - clean).max() <= 8 / 255 + 1e-6
    assert obs.min() >= 0 and obs.max() <= 1
    with pytest.raises(ValueError, match="larger than the value range"):
        AdversarialObservation(FrameToy(dtype=np.float32, high=1.0), frame_net(scale=1.0), eps=8)


def test_keep_dtype_returns_uint8_for_integral_perturbations():
    for attack in ("fgsm", "iterative"):
        env = AdversarialObservation(FrameToy(), frame_net(), eps=2, attack=attack, keep_dtype=True)
        assert env.observation_space.dtype == np.uint8
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.uint8
        check_budget(obs, clean_frames(0)[0], 2, "linf", env.observation_space)
    noisy = RandomNoiseObservation(FrameToy(), eps=1, kind="sign", keep_dtype=True)
    assert noisy.reset(seed=0)[0].dtype == np.uint8


@pytest.mark.parametrize(
    "settings",
    [
        {"attack": "pgd"},
        {"eps": 0.5},
        {"norm": "l2", "eps": 20.0},
        {"attack": "iterative", "attack_options": {"step": 0.5}},
    ],
)
def test_keep_dtype_refuses_non_integral_perturbations(settings):
    settings = {"eps": 2.0, **settings}
    with pytest.raises(ValueError, match="whole numbers"):
        AdversarialObservation(FrameToy(), frame_net(), keep_dtype=True, **settings)
    with pytest.raises(ValueError, match="whole numbers"):
        RandomNoiseObservation(FrameToy(), eps=2, kind="uniform", keep_dtype=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda e: AdversarialObservation(e, frame_net(), eps=4, attack="pgd", perturb="newest"),
        lambda e: RandomNoiseObservation(e, eps=4, perturb="newest", seed=0),
    ],
)
def test_newest_frame_only_leaves_older_frames_clean(make):
    env = make(FrameToy())
    for (obs, _), clean in zip(play(env, 4), clean_frames(4), strict=True):
        np.testing.assert_array_equal(obs[:-1], clean[:-1])
        assert 0 < np.abs(obs[-1] - clean[-1]).max() <= 4 + 1e-5


def test_newest_frame_on_channel_last_stacks():
    from gymnasium.wrappers import TransformObservation

    def channel_last(env):
        space = env.observation_space
        box = type(space)(0, 255, (12, 12, 4), np.uint8)
        return TransformObservation(env, lambda o: np.ascontiguousarray(np.moveaxis(o, 0, -1)), box)

    victim = frame_net()

    def last_victim(x):
        return victim(x.permute(0, 3, 1, 2))

    env = AdversarialObservation(channel_last(FrameToy()), last_victim, eps=3, perturb="newest", frame_axis=-1)
    obs, _ = env.reset(seed=0)
    clean = np.moveaxis(clean_frames(0)[0], 0, -1)
    np.testing.assert_array_equal(obs[..., :-1], clean[..., :-1])
    assert np.abs(obs[..., -1] - clean[..., -1]).max() == pytest.approx(3)


def test_every_kth_step_schedule_and_counts():
    env = AdversarialObservation(FrameToy(length=10), frame_net(), eps=2, schedule=EveryKthStep(3))
    seen = play(env, 20)
    attacked = [info[STEP_KEY]["attacked"] for _, info in seen]
    assert attacked == [t % 3 == 0 for t in range(11)]
    for (obs, info), clean in zip(seen, clean_frames(10), strict=True):
        assert np.array_equal(obs, clean) != info[STEP_KEY]["attacked"]
    episode = seen[-1][1][EPISODE_KEY]
    assert episode["observations"] == 11 and episode["attacks"] == 4
    assert episode["attack_rate"] == pytest.approx(4 / 11)
    changed = sum(info[STEP_KEY]["action_changed"] for _, info in seen)
    assert episode["action_changes"] == changed
    assert episode["action_change_rate"] == pytest.approx(changed / 11)


def test_probability_schedule_rate():
    env = RandomNoiseObservation(FrameToy(length=400), eps=1, schedule=WithProbability(0.25), seed=3)
    seen = play(env, 400)
    rate = seen[-1][1][EPISODE_KEY]["attack_rate"]
    assert 0.18 < rate < 0.32
    never = RandomNoiseObservation(FrameToy(length=5), eps=1, schedule=WithProbability(0.0))
    assert play(never, 5)[-1][1][EPISODE_KEY]["attacks"] == 0


def test_strategically_timed_attacks_exactly_where_the_preference_gap_is_large():
    victim = frame_net(seed=2)
    schedule = StrategicallyTimed(threshold=0.0)
    frames = torch.as_tensor(np.stack(clean_frames(30, length=30))).float()
    gaps = schedule.preference(victim(frames).detach()).numpy()
    # Halfway across the widest space between neighbouring gaps of the middle half: the wrapper scores one frame
    # at a time, the line above all 30 at once, so each gap may round differently; the margin dwarfs that.
    ordered = np.sort(gaps)
    middle = ordered[len(gaps) // 4 : 3 * len(gaps) // 4]
    widest = int(np.argmax(np.diff(middle)))
    threshold = float(middle[widest : widest + 2].mean())
    assert middle[widest + 1] - middle[widest] > 1e-4 * np.abs(gaps).max()
    env = AdversarialObservation(FrameToy(length=30), victim, eps=2, schedule=StrategicallyTimed(threshold))
    attacked = np.array([info[STEP_KEY]["attacked"] for _, info in play(env, 30)])
    np.testing.assert_array_equal(attacked, gaps >= threshold)
    assert 0 < attacked.sum() < len(attacked)
    with pytest.raises(ValueError, match="reads the victim's action scores"):
        RandomNoiseObservation(FrameToy(), eps=1, schedule=StrategicallyTimed(0.5))


def test_step_info_agrees_with_the_victim_on_the_returned_observations():
    victim = frame_net()
    env = AdversarialObservation(FrameToy(), victim, eps=8)
    for obs, info in play(env, 6):
        step = info[STEP_KEY]
        with torch.no_grad():
            assert victim(torch.as_tensor(obs)[None]).argmax().item() == step["perturbed_action"]
        assert step["action_changed"] == (step["clean_action"] != step["perturbed_action"])


def test_targeted_attack_reaches_the_worst_action_more_often():
    victim = linear_net(seed=0)
    frames = torch.as_tensor(np.stack(clean_frames(40, length=40))).float()
    worst = victim(frames).argmin(1).detach().numpy()

    def hits(targeted: bool) -> int:
        env = AdversarialObservation(FrameToy(length=40), victim, eps=8, attack="iterative", targeted=targeted)
        actions = np.array([info[STEP_KEY]["perturbed_action"] for _, info in play(env, 40)])
        return int((actions == worst).sum())

    untargeted, targeted = hits(False), hits(True)
    assert targeted >= 30 > 5 >= untargeted  # measured: 37 of 41 against 1


def test_custom_loss_is_called_with_the_greedy_actions():
    victim = frame_net()
    calls = []

    def loss(scores, actions):
        calls.append(actions.clone())
        return -scores.gather(1, actions[:, None]).squeeze(1)  # lower the greedy action's score

    env = AdversarialObservation(FrameToy(), victim, eps=4, loss=loss)
    obs, info = env.reset(seed=0)
    assert calls and calls[-1].tolist() == [info[STEP_KEY]["clean_action"]]
    clean = torch.as_tensor(clean_frames(0)[0])[None].float()
    with torch.no_grad():
        a = info[STEP_KEY]["clean_action"]
        assert victim(torch.as_tensor(obs)[None])[0, a] < victim(clean)[0, a]


def test_custom_attack_callable_and_bad_loss_output():
    def shift(model, x, y, *, eps, bounds, norm, loss, targeted, eot_samples):
        return (x + eps).clamp(*bounds)

    env = AdversarialObservation(FrameToy(), frame_net(), eps=1, attack=shift)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, np.minimum(clean_frames(0)[0] + 1.0, 255))
    with pytest.raises(ValueError, match="one value per input"):
        AdversarialObservation(FrameToy(), frame_net(), eps=1, loss=lambda s, y: s.sum())


def test_eot_attack_on_a_sap_victim_is_reproducible_with_a_seed():
    sap_victim = insert_sap(copy.deepcopy(frame_net()), 1.0)

    def run(seed):
        env = AdversarialObservation(FrameToy(), sap_victim, eps=2, attack="pgd", eot_samples=4)
        return play(env, 4, seed=seed)

    first, again, other = run(5), run(5), run(6)
    for (a, ia), (b, ib) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert ia[STEP_KEY] == ib[STEP_KEY]
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(first, other, strict=True))
    for (obs, _), clean in zip(first, clean_frames(4, seed=5), strict=True):
        check_budget(obs, clean, 2, "linf", AdversarialObservation(FrameToy(), sap_victim, eps=2).observation_space)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: AdversarialObservation(
            FrameToy(), frame_net(), eps=2, attack="pgd", schedule=WithProbability(0.5), seed=s
        ),
        lambda s: RandomNoiseObservation(FrameToy(), eps=2, kind="gaussian", seed=s),
    ],
)
def test_seeding_makes_runs_reproducible(make):
    a, b = play(make(None), 6, seed=11), play(make(None), 6, seed=11)
    for (x, ix), (y, iy) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
        assert ix[STEP_KEY] == iy[STEP_KEY]
    # The constructor's seed alone also fixes the wrapper's draws.
    frame = clean_frames(0)[0]
    np.testing.assert_array_equal(make(3).observation(frame), make(3).observation(frame))
    e = play(make(None), 6, seed=12)
    assert any(not np.array_equal(x, y) for (x, _), (y, _) in zip(a, e, strict=True))


@pytest.mark.parametrize(
    "make",
    [
        lambda: AdversarialObservation(FrameToy(), frame_net(), eps=2),
        lambda: AdversarialObservation(FrameToy(), frame_net(), eps=2, attack="pgd", schedule=WithProbability(0.5)),
        lambda: AdversarialObservation(FrameToy(), frame_net(), eps=2, keep_dtype=True),
        lambda: RandomNoiseObservation(FrameToy(), eps=2, kind="uniform"),
        lambda: AdversarialObservation(VectorToy(), vector_net(), eps=0.1, attack="iterative"),
    ],
)
def test_environment_checkers_pass(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both checkers warn about wrapped envs and float "images"
        gym_check_env(make(), skip_render_check=True)
        sb3_check_env(make(), warn=False)


def test_constructor_arguments_are_recorded():
    victim = frame_net()
    env = AdversarialObservation(FrameToy(), victim, eps=2, attack="pgd", schedule=EveryKthStep(2))
    assert env._saved_kwargs["victim"] is victim
    assert env._saved_kwargs["attack"] == "pgd" and env._saved_kwargs["eps"] == 2
