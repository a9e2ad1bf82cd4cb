"""DeepMind's RMSProp against the Lua formula, SA-DQN's regulariser and PGD adversarial training, their settings,
robust runs that resume bit-exact, old runs that resume with the optimizer they had, and ``--init-from``."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch
from stable_baselines3.common.logger import Logger
from torch import nn

from agents import DoubleDQN, NatureQNetwork
from agents.networks import NeurIPSQNetwork
from agents.optim import DeepMindRMSprop
from agents.robust_loss import (
    RobustSettings,
    adversarial_inputs,
    hinge_regulariser,
    margin_pgd,
    scheduled_eps,
)
from agents.training import (
    TrainConfig,
    create_run,
    load_for_resume,
    load_initial_weights,
    make_training_env,
    prepare_resume,
    read_config,
    start_run,
)
from rlrobust.files import sha256_of
from tests.test_ddqn_target import fixed_minibatch, tiny_model
from tests.test_ddqn_training import SHORT, sb3_load, scalars


# ------------------------------------------------------------------------------------------- DeepMind's RMSProp
def test_one_deepmind_rmsprop_update_is_the_lua_formula():
    """Two updates of a tiny network on its minibatch-mean loss with ``grad_scale`` = batch size equal DeepMind's
    g = .95 g + .05 dw, g2 = .95 g2 + .05 dw^2, w -= lr dw / sqrt(g2 - g^2 + .01) on the minibatch-sum gradient."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    lr = 0.1
    optimizer = DeepMindRMSprop(net.parameters(), lr=lr, alpha=0.95, eps=0.01, centered=True, grad_scale=5.0)
    weights = [p.detach().clone() for p in net.parameters()]
    g = [torch.zeros_like(w) for w in weights]
    g2 = [torch.zeros_like(w) for w in weights]
    for _ in range(2):
        # by hand: the gradient of the summed loss at the current weights, then the Lua update
        probe = nn.Linear(3, 2)
        with torch.no_grad():
            probe.weight.copy_(weights[0])
            probe.bias.copy_(weights[1])
        ((probe(x) - y) ** 2).sum(dim=1).sum().backward()
        for i, p in enumerate(probe.parameters()):
            dw = p.grad
            g[i] = 0.95 * g[i] + 0.05 * dw
            g2[i] = 0.95 * g2[i] + 0.05 * dw * dw
            weights[i] = weights[i] - lr * dw / torch.sqrt(g2[i] - g[i] * g[i] + 0.01)
        # the optimizer: the minibatch mean, as SB3's loss is
        optimizer.zero_grad()
        ((net(x) - y) ** 2).sum(dim=1).mean().backward()
        optimizer.step()
    for expected, p in zip(weights, net.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    assert optimizer.state_dict()["state"][0]["step"].item() == 2


def test_deepmind_rmsprop_is_the_default_and_torch_rmsprop_the_former_one():
    model = build_tiny(TrainConfig(game="Pong", batch_size=8, buffer_size=64, learning_starts=0, total_steps=10))
    assert isinstance(model.policy.optimizer, DeepMindRMSprop)
    assert model.policy.optimizer.defaults["grad_scale"] == 8.0 and model.policy.optimizer.defaults["eps"] == 0.01
    model.env.close()
    config = TrainConfig(game="Pong", optimizer="torch-rmsprop", batch_size=8, buffer_size=64, total_steps=10)
    model = build_tiny(dataclasses.replace(config, learning_starts=0))
    assert type(model.policy.optimizer) is torch.optim.RMSprop
    model.env.close()


def build_tiny(config: TrainConfig) -> DoubleDQN:
    from agents.training import build_model

    model = build_model(dataclasses.replace(config, device="cpu"), make_training_env(config))
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def robust_twins(**kwargs) -> tuple[DoubleDQN, DoubleDQN]:
    """Two identical tiny models with DeepMind's RMSProp and SA-PGD at eps 2/255 from the first step."""
    torch.manual_seed(0)
    settings = RobustSettings("sa-pgd", kappa=0.5, eps=2 / 255, eps_start=0, eps_steps=0, pgd_steps=2)
    optimizer = {"optimizer_class": DeepMindRMSprop, "optimizer_kwargs": {"grad_scale": 8.0}}
    eager = tiny_model(learning_rate=1e-4, policy_kwargs=optimizer, robust=settings)
    other = tiny_model(learning_rate=1e-4, policy_kwargs=optimizer, robust=settings, **kwargs)
    other.policy.load_state_dict(eager.policy.state_dict())
    for model in (eager, other):
        fixed_minibatch(model)
        model.num_timesteps = 1  # past the ramp's start (eps is 0 up to and at step eps_start)
    return eager, other


def test_compiled_robust_update_with_deepmind_rmsprop_trains_like_the_eager_one():
    eager, compiled = robust_twins(compile_update=True)
    for model in (eager, compiled):  # the same PGD random starts in both
        torch.manual_seed(5)
        model.train(gradient_steps=1, batch_size=8)
    for a, b in zip(eager.policy.parameters(), compiled.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    stats = eager.pop_train_stats(), compiled.pop_train_stats()
    assert stats[0] == pytest.approx(stats[1], rel=1e-4)
    assert stats[0]["robust_eps"] == pytest.approx(2 / 255) and stats[0]["robust_reg"] != 0
    assert compiled.compile_update and compiled._compile_checked  # it really ran compiled
    for model in (eager, compiled):
        model.env.close()


def test_a_robust_model_at_eps_zero_trains_exactly_as_a_plain_one():
    """No PGD and no regulariser while eps is 0: the same weights as plain training, bit for bit."""
    torch.manual_seed(0)
    robust = RobustSettings("sa-pgd", eps=1 / 255, eps_start=10**9, eps_steps=10)
    plain, other = tiny_model(learning_rate=1e-3), tiny_model(learning_rate=1e-3, robust=robust)
    other.policy.load_state_dict(plain.policy.state_dict())
    for model in (plain, other):
        fixed_minibatch(model)
    for _ in range(2):
        plain.train(gradient_steps=1, batch_size=8)
        other.train(gradient_steps=1, batch_size=8)
    for a, b in zip(plain.policy.parameters(), other.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    stats = other.pop_train_stats()
    assert stats["robust_reg"] == 0.0 and stats["robust_eps"] == 0.0
    for model in (plain, other):
        model.env.close()


# ------------------------------------------------------------------------------------------- the regulariser
class MeanQ(nn.Module):
    """Q(s) = [100 (mean(s / 255) - 0.5) + 0.2, 0]: at grey 127.5 action 0 leads by 0.2, and lowering every pixel
    by eps (on [0, 1]) lowers that lead by 100 eps, flipping the greedy action once eps > 0.002."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        lead = self.scale * (frames.float().div(255).mean(dim=(1, 2, 3)) - 0.5) + 0.2
        return torch.stack([lead, torch.zeros_like(lead)], dim=1)


def grey_frames(n: int = 4) -> torch.Tensor:
    return torch.full((n, 4, 84, 84), 127.5)


def test_the_regulariser_is_zero_at_eps_zero():
    settings = RobustSettings("sa-pgd", eps=1 / 255, eps_start=100, eps_steps=100)
    obs = grey_frames()
    assert adversarial_inputs(MeanQ(), obs, settings, 0.0) == (obs, None, None)
    assert settings.eps_at(0) == settings.eps_at(100) == 0.0
    assert settings.eps_at(200) == pytest.approx(1 / 255)


def test_the_regulariser_is_positive_where_pgd_can_flip_the_greedy_action():
    q_net, obs = MeanQ(), grey_frames()
    actions = q_net(obs).argmax(dim=1)
    assert (actions == 0).all()
    flipped = margin_pgd(q_net, obs, actions, 2 / 255, steps=5)  # the lead can fall by 100 * 2/255 = 0.78
    assert (flipped - obs).abs().max() <= 2 + 1e-4
    assert hinge_regulariser(q_net(flipped), actions).item() > 0.5
    kept = margin_pgd(q_net, obs, actions, 0.5 / 255, steps=5)  # the lead falls by at most 0.196 < 0.2
    assert -0.2 < hinge_regulariser(q_net(kept), actions).item() < 0


def test_the_regulariser_is_hinged_at_minus_one():
    q = torch.tensor([[5.0, 0.0], [0.0, 0.5]])
    assert hinge_regulariser(q, torch.tensor([0, 0])).item() == pytest.approx((-1.0 + 0.5) / 2)


def test_the_regulariser_gradient_reaches_the_weights():
    robust = RobustSettings("sa-pgd", kappa=0.5, eps=2 / 255, eps_start=0, eps_steps=0, pgd_steps=2)
    model = tiny_model(robust=robust)
    batch = fixed_minibatch(model)
    obs, adv_obs, adv_actions = adversarial_inputs(model.q_net, batch.observations, robust, 2 / 255)
    assert adv_obs is not None and (adv_obs - obs.float()).abs().max() <= 2 + 1e-4
    grads = []
    for extra in ((), (adv_obs, adv_actions)):
        model.policy.optimizer.zero_grad()
        args = (obs, batch.actions, batch.next_observations, batch.rewards, batch.dones, 0.99, *extra)
        model.minibatch_loss(*args)[0].backward()
        grads.append([p.grad.clone() for p in model.q_net.parameters()])
    model.policy.optimizer.zero_grad()
    hinge_regulariser(model.q_net(adv_obs), adv_actions).backward()
    for plain, robust_grad, p in zip(*grads, model.q_net.parameters(), strict=True):
        torch.testing.assert_close(robust_grad - plain, 0.5 * p.grad, rtol=1e-4, atol=1e-7)
    assert any(p.grad.abs().sum() > 0 for p in model.q_net.parameters())
    model.env.close()


def test_pgd_at_replaces_its_share_of_the_minibatch():
    settings = RobustSettings("pgd-at", eps=2 / 255, share=0.25)
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mixed, adv_obs, _ = adversarial_inputs(MeanQ(), obs, settings, 2 / 255)
    assert adv_obs is None and mixed.shape == obs.shape
    assert torch.equal(mixed[2:], obs[2:].float())
    assert (mixed[:2] != obs[:2].float()).any() and (mixed[:2] - obs[:2].float()).abs().max() <= 2 + 1e-4


def test_the_smoothed_schedule_is_continuous_and_ends_at_its_value():
    values = [scheduled_eps(t, 1.0, 1000, 4000) for t in range(900, 5200, 50)]
    assert values == sorted(values) and values[-1] == 1.0 and values[0] == 0.0
    assert max(b - a for a, b in itertools.pairwise(values)) < 0.02  # no jump
    assert scheduled_eps(2000, 1.0, 1000, 4000) == pytest.approx(scheduled_eps(1999.999, 1.0, 1000, 4000), abs=1e-6)


# ------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"robust_kappa": -0.1}, "robust_kappa must lie in [0, inf), got -0.1"),
        ({"robust_kappa": math.inf}, "robust_kappa must be a finite number, got inf"),
        ({"robust_eps": 1.5}, "robust_eps must lie in [0, 1], got 1.5"),
        ({"robust_eps": math.nan}, "robust_eps must be a finite number, got nan"),
        ({"robust_pgd_steps": 0}, "robust_pgd_steps must lie in [1, inf), got 0"),
        ({"robust_share": 0.0}, "robust_share must lie in (0, 1], got 0.0"),
        ({"robust_share": 1.5}, "robust_share must lie in (0, 1], got 1.5"),
        ({"robust": "trades"}, "robust must be one of ('none', 'sa-pgd', 'pgd-at'), got 'trades'"),
        ({"robust_schedule": "cosine"}, "robust_schedule must be one of ('smoothed', 'linear'), got 'cosine'"),
        ({"optimizer": "adam"}, "optimizer must be one of ('deepmind-rmsprop', 'torch-rmsprop'), got 'adam'"),
    ],
)
def test_bad_robust_and_optimizer_settings_are_refused_in_one_line(change, message):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(TrainConfig(), **change).validate()
    assert str(err.value) == message and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------- runs and resumes
ROBUST = dataclasses.replace(
    SHORT,
    num_envs=2,  # vector envs: two updates' worth of PGD per call
    robust="sa-pgd",
    robust_eps=2 / 255,
    robust_eps_start=100,
    robust_eps_steps=200,
    robust_pgd_steps=2,
    eval_every=0,
)


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    return start_run(dataclasses.replace(ROBUST), tmp_path_factory.mktemp("robust"), progress=False)


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A run as written before the optimizer setting existed: torch's RMSProp, and no 'optimizer' in config.json."""
    config = dataclasses.replace(SHORT, optimizer="torch-rmsprop", eval_every=0, total_steps=200, checkpoint_every=0)
    result = start_run(config, tmp_path_factory.mktemp("old"), progress=False)
    path = result.run_dir / "config.json"
    record = json.loads(path.read_text())
    del record["config"]["optimizer"]
    path.write_text(json.dumps(record))
    return result


def assert_resume_matches_sb3_load(run_dir) -> DoubleDQN:
    """The resumed model (config.json + checkpoint tensors) and SB3's unpickling load train on bit for bit."""
    config, checkpoint = prepare_resume(run_dir, {"total_steps": 2_000, "learning_starts": 20})
    reference = sb3_load(checkpoint, config)
    rebuilt = load_for_resume(config, checkpoint, make_training_env(config))
    assert type(rebuilt.policy.optimizer) is type(reference.policy.optimizer)
    assert rebuilt.robust == reference.robust
    for model in (reference, rebuilt):
        model.set_logger(Logger(folder=None, output_formats=[]))
        model.set_random_seed(config.seed + model.num_timesteps)
        model.learn(config.learning_starts + 12, reset_num_timesteps=False)  # refill, then 3 updates
    assert rebuilt._n_updates == reference._n_updates
    for (name, a), b in zip(reference.policy.state_dict().items(), rebuilt.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for model in (reference, rebuilt):
        model.env.close()
    return rebuilt


def test_a_robust_run_logs_its_regulariser_and_resumes_bit_exact(robust_run):
    record = json.loads((robust_run.run_dir / "config.json").read_text())
    assert record["config"]["robust"] == "sa-pgd" and record["config"]["robust_pgd_steps"] == 2
    assert record["config"]["optimizer"] == "deepmind-rmsprop"
    logged = scalars(robust_run.run_dir)
    eps = dict(logged["train/robust_eps"])
    assert min(eps.values()) < 2 / 255 and eps[max(eps)] == pytest.approx(2 / 255)
    assert any(value != 0 for _, value in logged["train/robust_reg"])
    rebuilt = assert_resume_matches_sb3_load(robust_run.run_dir)
    assert rebuilt.robust.method == "sa-pgd" and isinstance(rebuilt.policy.optimizer, DeepMindRMSprop)


def test_a_run_written_before_the_optimizer_setting_resumes_with_torch_rmsprop(old_run):
    config, _ = read_config(old_run.run_dir)
    assert config.optimizer == "torch-rmsprop"
    rebuilt = assert_resume_matches_sb3_load(old_run.run_dir)
    assert type(rebuilt.policy.optimizer) is torch.optim.RMSprop


def test_robust_settings_cannot_change_on_resume(robust_run):
    with pytest.raises(ValueError, match="cannot change robust_kappa"):
        prepare_resume(robust_run.run_dir, {"robust_kappa": 1.0})


# ------------------------------------------------------------------------------------------- --init-from
def test_init_from_loads_the_agent_into_both_networks_and_records_it(tmp_path):
    torch.manual_seed(1)
    source = NatureQNetwork(n_actions=6)
    path = tmp_path / "agent.pt"
    torch.save(source.state_dict(), path)
    model = tiny_model()
    load_initial_weights(model, path)
    for network in (model.q_net.network, model.q_net_target.network):
        for a, b in zip(source.state_dict().values(), network.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    config = dataclasses.replace(SHORT, game="Pong", init_from=str(path))
    record = json.loads((create_run(config, out=tmp_path / "run") / "config.json").read_text())
    assert record["init_from"] == {"path": str(path.resolve()), "sha256": sha256_of(path)}
    assert record["config"]["init_from"] == str(path)
    model.env.close()


@pytest.mark.parametrize("network", [NeurIPSQNetwork(6), NatureQNetwork(4)])
def test_init_from_refuses_another_architecture_in_one_line(tmp_path, network):
    path = tmp_path / "agent.pt"
    torch.save(network.state_dict(), path)
    model = tiny_model()
    with pytest.raises(ValueError) as err:
        load_initial_weights(model, path)
    assert "this run trains a NatureQNetwork with 6 actions" in str(err.value) and "\n" not in str(err.value)
    model.env.close()


def test_init_from_a_missing_file_is_refused_before_the_run_folder_is_made(tmp_path):
    config = dataclasses.replace(SHORT, init_from=str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="agent checkpoint not found"):
        create_run(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
