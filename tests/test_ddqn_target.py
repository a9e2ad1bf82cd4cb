"""Double DQN's target (online argmax, target value) in isolation and inside DoubleDQN.train, and the schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from agents import DoubleDQN, NatureQNetwork, double_q_target, make_atari_vec_env
from agents.double_dqn import linear_epsilon
from agents.replay import FrameReplayBuffer
from agents.training import TrainConfig


class FixedQ(nn.Module):
    """Returns the same Q-values for every input row."""

    def __init__(self, q: list[float]) -> None:
        super().__init__()
        self.q = torch.tensor([q])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q.expand(len(obs), -1)


def test_target_takes_the_online_argmax_and_the_target_networks_value():
    online = FixedQ([3.0, 1.0, 0.0])  # prefers action 0
    target = FixedQ([2.0, 9.0, 4.0])  # would prefer action 1; it values action 0 at 2
    next_obs = torch.zeros(3, 4, 84, 84)
    rewards = torch.tensor([[1.0], [0.0], [-1.0]])
    dones = torch.tensor([[0.0], [0.0], [1.0]])
    y = double_q_target(online, target, next_obs, rewards, dones, 0.5)
    torch.testing.assert_close(y, torch.tensor([[1.0 + 0.5 * 2.0], [0.5 * 2.0], [-1.0]]))
    vanilla = rewards + (1 - dones) * 0.5 * target(next_obs).max(dim=1, keepdim=True).values
    assert not torch.allclose(y, vanilla)  # SB3's DQN target would be 1 + 0.5 * 9 for the first row


def tiny_model(**kwargs) -> DoubleDQN:
    env = make_atari_vec_env("Pong", 1, max_episode_steps=50)
    settings = dict(buffer_size=64, learning_starts=0, batch_size=8, seed=0, device="cpu") | kwargs
    model = DoubleDQN("AtariQPolicy", env, replay_buffer_class=FrameReplayBuffer, **settings)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def test_train_step_regresses_q_onto_the_double_target():
    """One DoubleDQN.train step on a fixed minibatch: the loss is the Huber loss to the Double-DQN target, not
    to SB3's max-target, and the optimizer step moves the online network only."""
    torch.manual_seed(0)
    model = tiny_model(learning_rate=1e-3)
    with torch.no_grad():  # make the target network different from the online one
        for p in model.q_net_target.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    generator = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=generator)
    next_obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=generator)
    batch = ReplayBufferSamples(
        observations=obs,
        actions=torch.randint(0, 6, (8, 1), generator=generator),
        next_observations=next_obs,
        dones=torch.tensor([[0.0]] * 7 + [[1.0]]),
        rewards=torch.tensor([[1.0], [0.0], [-1.0], [0.0], [1.0], [0.0], [0.0], [1.0]]),
    )
    with torch.no_grad():
        online_next, target_next = model.q_net(next_obs), model.q_net_target(next_obs)
        assert (online_next.argmax(1) != target_next.argmax(1)).any()  # the networks disagree somewhere
        chosen = model.q_net(obs).gather(1, batch.actions)
        double = batch.rewards + (1 - batch.dones) * 0.99 * target_next.gather(1, online_next.argmax(1, keepdim=True))
        vanilla = batch.rewards + (1 - batch.dones) * 0.99 * target_next.max(1, keepdim=True).values
    model.replay_buffer.sample = lambda *args, **kwargs: batch
    model.replay_buffer.size = lambda: 64  # the replay counts as full
    target_before = [p.clone() for p in model.q_net_target.parameters()]
    online_before = [p.clone() for p in model.q_net.parameters()]
    model.train(gradient_steps=1, batch_size=8)
    stats = model.pop_train_stats()
    assert stats["loss"] == pytest.approx(F.smooth_l1_loss(chosen, double).item(), rel=1e-5)
    assert abs(stats["loss"] - F.smooth_l1_loss(chosen, vanilla).item()) > 1e-4
    assert all(torch.equal(a, b) for a, b in zip(target_before, model.q_net_target.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(online_before, model.q_net.parameters(), strict=True))
    assert isinstance(model.q_net.network, NatureQNetwork)
    model.env.close()


def test_train_waits_until_the_replay_holds_learning_starts_transitions():
    """After a resume the replay is empty: no update happens until it is refilled."""
    model = tiny_model(learning_starts=32)
    model.replay_buffer.sample = lambda *args, **kwargs: pytest.fail("sampled before the refill")
    model.train(gradient_steps=1, batch_size=8)
    assert model._n_updates == 0
    model.env.close()


def test_per_env_epsilon_greedy():
    model = tiny_model()
    frames = np.random.default_rng(0).integers(0, 256, (256, 4, 84, 84), dtype=np.uint8)
    greedy = model.q_net(torch.as_tensor(frames)).argmax(1).numpy()
    model.exploration_rate = 0.0
    np.testing.assert_array_equal(model.predict(frames)[0], greedy)
    model.exploration_rate = 0.5
    explored = model.predict(frames)[0] != greedy
    assert 0.2 < explored.mean() < 0.6  # each env draws its own coin (5/6 of random actions differ)
    model.env.close()


def test_linear_epsilon_schedule():
    assert linear_epsilon(0, 1.0, 0.1, 1_000_000) == 1.0
    assert linear_epsilon(500_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.55)
    assert linear_epsilon(1_000_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.1)
    assert linear_epsilon(50_000_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.1)


@pytest.mark.parametrize("num_envs", [1, 2, 3, 4, 6, 8, 16])
def test_update_schedule_keeps_one_update_per_four_agent_steps(num_envs):
    train_freq, gradient_steps = TrainConfig(num_envs=num_envs).update_schedule()
    assert train_freq * num_envs / gradient_steps == 4  # agent steps per gradient update


# ------------------------------------------------------------------------------------------- compiled update
def fixed_minibatch(model: DoubleDQN, size: int = 8) -> ReplayBufferSamples:
    """Feed ``model.train`` one fixed minibatch of random frames, as if from a full replay."""
    generator = torch.Generator().manual_seed(3)
    batch = ReplayBufferSamples(
        observations=torch.randint(0, 256, (size, 4, 84, 84), dtype=torch.uint8, generator=generator),
        actions=torch.randint(0, 6, (size, 1), generator=generator),
        next_observations=torch.randint(0, 256, (size, 4, 84, 84), dtype=torch.uint8, generator=generator),
        dones=(torch.rand(size, 1, generator=generator) < 0.2).float(),
        rewards=torch.randint(-1, 2, (size, 1), generator=generator).float(),
    )
    model.replay_buffer.sample = lambda *args, **kwargs: batch
    model.replay_buffer.size = lambda: 64
    return batch


def twin_models(**kwargs) -> tuple[DoubleDQN, DoubleDQN]:
    """An eager model and a second one with the same weights and ``kwargs`` (e.g. ``compile_update=True``)."""
    torch.manual_seed(0)
    # the paper's RMSProp: its eps of 0.01 keeps each step a smooth function of the gradient (torch's default 1e-8
    # makes the first steps sign(g)-like, where a rounding difference in a near-zero gradient flips a weight's step)
    paper_rmsprop = {"optimizer_kwargs": {"alpha": 0.95, "eps": 0.01, "centered": True}}
    eager = tiny_model(learning_rate=1e-3, policy_kwargs=paper_rmsprop)
    with torch.no_grad():  # a target network that disagrees with the online one
        for p in eager.q_net_target.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    other = tiny_model(learning_rate=1e-3, policy_kwargs=paper_rmsprop, **kwargs)
    other.policy.load_state_dict(eager.policy.state_dict())
    for model in (eager, other):
        fixed_minibatch(model)
    return eager, other


def assert_same_training(eager: DoubleDQN, other: DoubleDQN, updates: int = 3) -> None:
    for _ in range(updates):
        eager.train(gradient_steps=1, batch_size=8)
        other.train(gradient_steps=1, batch_size=8)
    for a, b in zip(eager.policy.parameters(), other.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert eager.pop_train_stats() == pytest.approx(other.pop_train_stats(), rel=1e-5)
    assert eager.policy.optimizer.state_dict()["state"].keys() == other.policy.optimizer.state_dict()["state"].keys()


def test_compiled_update_trains_exactly_like_the_eager_one():
    """torch.compile of the loss (with its backward) and of the RMSProp step changes speed, not the result."""
    eager, compiled = twin_models(compile_update=True)
    assert_same_training(eager, compiled)
    assert compiled.compile_update and compiled._compile_checked  # it really ran compiled
    for model in (eager, compiled):
        model.env.close()


def test_a_failed_compile_warns_and_trains_eagerly(monkeypatch):
    """Where torch.compile cannot work (no C++ compiler, say), training goes on eagerly after one warning."""

    def broken_compile(fn):
        def call(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager, fallback = twin_models(compile_update=True)
    with pytest.warns(RuntimeWarning, match="torch.compile of the Double-DQN update failed .*no working C"):
        fallback.train(gradient_steps=1, batch_size=8)
    eager.train(gradient_steps=1, batch_size=8)
    assert not fallback.compile_update
    assert_same_training(eager, fallback, updates=2)
    for model in (eager, fallback):
        model.env.close()


def test_compile_setting_auto_compiles_long_runs_only():
    short = TrainConfig(total_steps=20_000, learning_starts=1_000)
    assert not short.compiles_update()  # 4,750 updates: the compile would not pay for itself
    long = TrainConfig(total_steps=1_000_000, learning_starts=50_000)
    assert long.compiles_update()
    assert not long.compiles_update(from_step=990_000)  # a resume with 2,500 updates left
    assert TrainConfig(total_steps=20_000, compile="on").compiles_update()
    assert not TrainConfig(compile="off").compiles_update()
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="yes").validate()


# ------------------------------------------------------------------------------------------- non-finite training
def test_a_nan_loss_is_caught_at_the_next_check_without_a_sync_per_update(monkeypatch):
    """The losses are summed on the device; ``training_problem`` reads them (and the weights) in one sync, so one
    NaN minibatch is reported at the next check, and ``train`` itself never reads a value back to the host."""
    model = tiny_model(learning_rate=1e-3)
    batch = fixed_minibatch(model)
    assert model.training_problem() is None
    reads = []
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(self) or float("nan"))
    bad = batch._replace(rewards=batch.rewards.clone().fill_(float("nan")))
    model.replay_buffer.sample = lambda *args, **kwargs: bad
    model.train(gradient_steps=2, batch_size=8)
    assert reads == []  # no host-device sync inside the update
    monkeypatch.undo()
    problem = model.training_problem()
    assert problem is not None and problem.startswith("the loss became nan between agent steps 0 and 0")
    assert model.training_problem() == problem  # kept once found
    model.env.close()


def test_pop_train_stats_reports_a_non_finite_mean():
    model = tiny_model()
    model._loss_sum = torch.tensor(float("inf"))
    model._stat_count = 1
    assert model.pop_train_stats()["loss"] == float("inf")
    assert model.training_problem().startswith("the mean loss became inf")
    model.env.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number, got nan"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm must be a finite number, got inf"),
        ({"frame_margin": float("-inf")}, "frame_margin must be a finite number"),
        ({"learning_rate": 0.0}, r"learning_rate must lie in \(0, inf\), got 0.0"),
        ({"batch_size": 0}, r"batch_size must lie in \[1, inf\), got 0"),
        ({"total_steps": "100"}, "total_steps must be of type int, got '100'"),
        ({"batch_size": 32.0}, "batch_size must be of type int, got 32.0"),
        ({"clip_rewards": 1}, "clip_rewards must be of type bool, got 1"),
        ({"gamma": True}, "gamma must be of type float, got True"),
        ({"seed": 2**31}, r"seed must lie in \[0, 2147483647\]"),
    ],
)
def test_train_config_refuses_non_finite_and_mistyped_settings(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change).validate()
