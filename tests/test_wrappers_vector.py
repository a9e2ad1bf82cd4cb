"""The vector wrappers: the same perturbations as single wrappers, batched; episode info; autoreset modes;
ale-py's own vector env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from agents.actor_critic import ActorCritic
from tests.test_wrappers_fixtures import FrameToy, RowByRow, assert_same_perturbation, frame_net, one_torch_thread
from wrappers import (
    EPISODE_KEY,
    STEP_KEY,
    AdversarialObservation,
    EveryKthStep,
    RandomNoiseObservation,
    VectorAdversarialObservation,
    VectorRandomNoiseObservation,
    WithProbability,
)

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
N_ENVS = 3
VICTIM = frame_net()
SAME_KERNELS = RowByRow(VICTIM)  # batch and single rows decide signs and argmaxes from bit-identical numbers
SETTINGS = {
    "pgd + probability schedule": (
        AdversarialObservation,
        VectorAdversarialObservation,
        {"victim": SAME_KERNELS, "eps": 3.0, "attack": "pgd", "schedule": WithProbability(0.6)},
    ),
    "fgsm, newest frame": (
        AdversarialObservation,
        VectorAdversarialObservation,
        {"victim": SAME_KERNELS, "eps": 2.0, "perturb": "newest"},
    ),
    "iterative, l2": (
        AdversarialObservation,
        VectorAdversarialObservation,
        {"victim": SAME_KERNELS, "eps": 30.0, "attack": "iterative", "norm": "l2", "attack_options": {"step": 6.0}},
    ),
    "uniform noise": (RandomNoiseObservation, VectorRandomNoiseObservation, {"eps": 4.0, "kind": "uniform"}),
}


def toy_vector(length: int = 8, **kwargs) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([lambda: FrameToy(length=length) for _ in range(N_ENVS)], **kwargs)


def make(cls, env, settings: dict):
    settings = dict(settings)
    victim = settings.pop("victim", None)
    return cls(env, victim, **settings) if victim is not None else cls(env, **settings)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_vector_gives_the_single_wrappers_perturbations(name):
    single_cls, vector_cls, settings = SETTINGS[name]
    seed, steps = 20, 19  # episodes of 8 steps: two autoresets on the way
    vector = make(vector_cls, toy_vector(), settings)
    obs, info = vector.reset(seed=seed)
    vector_obs, vector_attacked = [obs], [info[STEP_KEY]["attacked"]]
    vector_episodes = []
    for _ in range(steps):
        obs, _, terminated, truncated, info = vector.step(np.zeros(N_ENVS, dtype=np.int64))
        vector_obs.append(obs)
        vector_attacked.append(info[STEP_KEY]["attacked"])
        if EPISODE_KEY in info:
            vector_episodes.append((info[f"_{EPISODE_KEY}"], info[EPISODE_KEY]))

    for i in range(N_ENVS):
        single = make(single_cls, FrameToy(length=8), settings)
        obs, info = single.reset(seed=seed + i)
        seen, attacked, episodes = [obs], [info[STEP_KEY]["attacked"]], []
        while len(seen) < steps + 1:
            obs, _, terminated, truncated, info = single.step(0)
            seen.append(obs)
            attacked.append(info[STEP_KEY]["attacked"])
            if terminated or truncated:
                episodes.append(info[EPISODE_KEY])
                obs, info = single.reset()  # what the vector env's next step does (NEXT_STEP autoreset)
                seen.append(obs)
                attacked.append(info[STEP_KEY]["attacked"])
        for t in range(steps + 1):
            assert_same_perturbation(vector_obs[t][i], seen[t], settings["eps"])
            assert vector_attacked[t][i] == attacked[t]
        ended = [{k: v[i].item() for k, v in summary.items()} for mask, summary in vector_episodes if mask[i]]
        assert ended == episodes and len(episodes) == 2


def test_the_comparison_allows_rounding_and_nothing_more():
    """The tolerance of the comparison above absorbs float32 rounding of 0-255 frames, not one wrong value."""
    frames = np.random.default_rng(0).uniform(0, 255, (4, 12, 12)).astype(np.float32)
    rounded = np.nextafter(frames, np.float32(np.inf)) + np.float32(1e-4)  # an ulp and a little more
    assert_same_perturbation(rounded, frames, eps=2.0)
    one_step_off = frames.copy()
    one_step_off[0, 3, 5] += 0.01  # a small part of any step, in one value of 576
    with pytest.raises(AssertionError, match="1 of 576 values differ"):
        assert_same_perturbation(one_step_off, frames, eps=2.0)


def test_vector_episode_info_counts_and_mask():
    env = VectorAdversarialObservation(toy_vector(length=5), VICTIM, eps=2, schedule=EveryKthStep(2))
    env.reset(seed=0)
    for _ in range(5):
        _, _, terminated, _, info = env.step(np.zeros(N_ENVS, dtype=np.int64))
    assert terminated.all() and info[f"_{EPISODE_KEY}"].all()
    episode = info[EPISODE_KEY]
    np.testing.assert_array_equal(episode["observations"], [6] * N_ENVS)  # reset + 5 steps
    np.testing.assert_array_equal(episode["attacks"], [3] * N_ENVS)  # steps 0, 2, 4
    assert set(info[STEP_KEY]) >= {"attacked", "linf", "l2", "action_changed", "clean_action", "perturbed_action"}
    # the next step autoresets every env: a new episode, counted from its reset observation
    _, _, _, _, info = env.step(np.zeros(N_ENVS, dtype=np.int64))
    assert EPISODE_KEY not in info and info[STEP_KEY]["attacked"].all()
    np.testing.assert_array_equal(env.tally.observations, [1] * N_ENVS)


def test_vector_spaces_and_budget():
    env = VectorAdversarialObservation(toy_vector(), VICTIM, eps=2, attack="pgd")
    assert env.single_observation_space.dtype == np.float32
    assert env.observation_space.shape == (N_ENVS, 4, 12, 12)
    raw, _ = toy_vector().reset(seed=1)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert np.abs(obs - raw).max() <= 2 + 1e-5


def test_same_step_autoreset_is_refused():
    env = toy_vector(autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="NEXT_STEP or DISABLED"):
        VectorAdversarialObservation(env, VICTIM, eps=2)


def test_disabled_autoreset_with_a_partial_reset():
    env = VectorRandomNoiseObservation(toy_vector(length=3, autoreset_mode=AutoresetMode.DISABLED), eps=1)
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros(N_ENVS, dtype=np.int64))
    mask = np.array([True, False, True])
    obs, _ = env.reset(options={"reset_mask": mask})
    assert obs.shape == (N_ENVS, 4, 12, 12)
    np.testing.assert_array_equal(env.tally.observations, [1, 3, 1])  # the kept env is not counted twice


def test_ale_vector_env_batch_and_async_rows():
    victim = ActorCritic(6).eval()
    env = gym.make_vec(
        "ALE/Pong-v5", num_envs=4, vectorization_mode="vector_entry_point", repeat_action_probability=0.0
    )
    wrapped = VectorAdversarialObservation(env, victim, eps=2, attack="pgd")
    raw, _ = env.reset(seed=5)
    obs, info = wrapped.reset(seed=5)
    assert obs.shape == (4, 4, 84, 84) and obs.dtype == np.float32
    assert 0 < np.abs(obs - raw).max() <= 2 + 1e-4
    for _ in range(3):
        obs, _, _, _, info = wrapped.step(info[STEP_KEY]["perturbed_action"])
    assert info[STEP_KEY]["attacked"].all()
    wrapped.close()

    async_env = gym.make_vec(
        "ALE/Pong-v5", num_envs=4, vectorization_mode="vector_entry_point", batch_size=2, repeat_action_probability=0.0
    )
    wrapped = VectorAdversarialObservation(async_env, victim, eps=2)
    obs, info = wrapped.reset(seed=0)
    ids = [info["env_id"].tolist()]
    for _ in range(4):
        obs, _, _, _, info = wrapped.step(np.zeros(2, dtype=np.int64))
        assert obs.shape[0] == 2 == len(info["env_id"])
        ids.append(info["env_id"].tolist())
    counts = np.bincount(np.concatenate(ids), minlength=4)
    np.testing.assert_array_equal(wrapped.tally.observations, counts)  # rows follow info["env_id"]
    assert counts.sum() == 10
    wrapped.close()


def test_first_episodes_counts_each_envs_first_episode_and_caps_long_ones():
    from wrappers.evaluation import first_episodes, summarise

    envs = gym.vector.SyncVectorEnv([lambda: FrameToy(length=3), lambda: FrameToy(length=9)])
    wrapped = VectorAdversarialObservation(envs, VICTIM, eps=2, schedule=EveryKthStep(2))

    def policy(observations, infos):
        return np.zeros(len(observations), dtype=np.int64)

    records = first_episodes(wrapped, policy, seed=0, max_steps=5, progress=False)
    assert [(r.length, r.truncated, r.observations, r.attacks) for r in records] == [(3, False, 4, 2), (5, True, 6, 3)]
    summary = summarise(records)
    assert summary["episodes"] == 2 and summary["capped"] == 1
    assert summary["attack_rate"] == pytest.approx(5 / 10) and summary["mean_linf"] == pytest.approx(2.0)


def test_first_episodes_progress_counts_agent_steps_and_fills_exactly(monkeypatch):
    """The bar advances per step (not per finished episode) and ends full although one game ended early."""
    import wrappers.evaluation as evaluation

    bars = []

    class RecordingBar:
        def __init__(self, total=None, **kwargs):
            self.total, self.updates = total, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.updates.append(n)

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

    monkeypatch.setattr(evaluation, "tqdm", RecordingBar)
    envs = gym.vector.SyncVectorEnv([lambda: FrameToy(length=3), lambda: FrameToy(length=9)])
    evaluation.first_episodes(envs, lambda obs, infos: np.zeros(len(obs), dtype=np.int64), seed=0, max_steps=5)
    (bar,) = bars
    assert bar.total == 10 and sum(bar.updates) == 10
    assert bar.updates[:2] == [2, 2]  # both games step, one update per step
    assert bar.postfix == "2/2 episodes done"
    envs.close()
