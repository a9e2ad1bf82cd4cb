"""Host read-backs in the hot paths (issue 17), counted on the CPU.

On a GPU, reading a value back to the host (``.item()``, ``bool(t)``, ``int(t)``, ``float(t)``, ``if t:``: the op
``aten::_local_scalar_dense``; ``.cpu()``, ``.numpy()``, ``.tolist()``: a device-to-host copy; a boolean-mask index
or ``nonzero``: an output size only the device knows) makes the host wait until the device has finished everything
queued before it. :class:`ReadBacks` records those ops while the code runs on CPU tensors, where the same calls
happen, so the counts below hold on any machine and on a GPU alike:

- one call of fgsm, PGD (10 or 20 steps, restarts, EOT) and the iterative attack: at most one read-back, whatever
  the number of steps (every argument check kept, with its own message);
- one Double-DQN update (replay draw, loss, backward, clipping, RMSProp): none; acting: one (the actions);
- a forward through a model with SAP (exact or independent sampling), or a prediction from many passes, with the
  sampler used off the CPU: none.
"""

from __future__ import annotations

import collections
import contextlib
import weakref

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import rlrobust.sap as sap
from rlrobust.attacks import fgsm, iterative, pgd
from rlrobust.stochastic import predict
from tests import test_sap as sap_tests


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second thread only waits for the first (on a busy machine, 100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ the counter
_SCALAR_OR_SIZE_READS = {"_local_scalar_dense", "nonzero", "masked_select", "equal", "_unique2", "unique_consecutive"}
_BOOL_INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}
_COPIES_OUT = {torch.Tensor.cpu: "cpu", torch.Tensor.numpy: "numpy", torch.Tensor.tolist: "tolist"}
_COPIES_OUT[torch.Tensor.__array__] = "numpy"


class _HostTensors:
    """The tensors copied out to the host so far (held weakly): reading them again costs no transfer."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref] = {}

    def add(self, t: torch.Tensor) -> None:
        self._refs[id(t)] = weakref.ref(t)

    def __contains__(self, t: object) -> bool:
        ref = self._refs.get(id(t))
        return ref is not None and ref() is t


class _CopiesOut(TorchFunctionMode):
    """Counts copies to the host (a no-op on CPU tensors, a device-to-host transfer on a GPU), once per value: a
    tensor already copied out (``t.cpu().numpy()``) is host memory. (``t.to(device)`` is not counted: on the CPU the
    device it names, often another tensor's, cannot be told from a GPU.)"""

    def __init__(self, calls: collections.Counter, on_host: _HostTensors) -> None:
        super().__init__()
        self.calls, self.on_host = calls, on_host

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _COPIES_OUT.get(func)
        if name is not None and not (args and args[0] in self.on_host):
            self.calls[name] += 1
        result = func(*args, **(kwargs or {}))
        if name == "cpu" and isinstance(result, torch.Tensor):
            self.on_host.add(result)
        return result


class _DeviceReads(TorchDispatchMode):
    """Counts ops that hand a value, or an output size, from the device to the host."""

    def __init__(self, calls: collections.Counter, on_host: _HostTensors) -> None:
        super().__init__()
        self.calls, self.on_host = calls, on_host

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in _SCALAR_OR_SIZE_READS and not (args and args[0] in self.on_host):
            self.calls[name] += 1
        elif name in _BOOL_INDEXING and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())
        ):
            self.calls[f"{name} with a boolean mask"] += 1
        return func(*args, **kwargs)


class ReadBacks(contextlib.AbstractContextManager):
    """``with ReadBacks() as reads: ...`` then ``reads.total``: the host read-backs of the block (see the module)."""

    def __init__(self) -> None:
        self.calls: collections.Counter = collections.Counter()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ReadBacks:
        on_host = _HostTensors()
        self._stack.enter_context(_CopiesOut(self.calls, on_host))
        self._stack.enter_context(_DeviceReads(self.calls, on_host))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def test_the_counter_sees_every_kind_of_read_back():
    t = torch.tensor([0.25, 0.75])
    reads = []
    for read in (
        lambda: t.sum().item(),
        lambda: bool(t.sum() > 0),
        lambda: int(t[0] > 0),
        lambda: float(t.sum()),
        lambda: t.tolist(),
        lambda: t.numpy(),
        lambda: np.asarray(t),
        lambda: t.cpu(),
        lambda: t[t > 0.5],
        lambda: t.nonzero(),
        lambda: 1 if t.all() else 0,
    ):
        with ReadBacks() as counted:
            read()
        reads.append(counted.total)
    assert reads == [1] * len(reads)
    with ReadBacks() as counted:
        t.cpu().numpy()  # one copy: the array is made from host memory
        (t * 2).max(dim=0).values.to(torch.float64).mean()  # device work only
    assert counted.total == 1


# ------------------------------------------------------------------------------------------------ the attacks
def _victim() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 6))


BATCH = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
LABELS = torch.randint(0, 6, (8,), generator=torch.Generator().manual_seed(2))
ATTACK_CALLS = {
    "fgsm": lambda model, y: fgsm(model, BATCH, y, eps=8 / 255),
    "pgd, 10 steps": lambda model, y: pgd(model, BATCH, y, eps=8 / 255, steps=10),
    "pgd, 20 steps": lambda model, y: pgd(model, BATCH, y, eps=8 / 255, steps=20),
    "pgd, 2 restarts, EOT 3": lambda model, y: pgd(model, BATCH, y, eps=8 / 255, steps=5, restarts=2, eot_samples=3),
    "iterative, 8 steps": lambda model, y: iterative(model, BATCH, y, eps=8 / 255, step=1 / 255),
    "iterative, 16 steps": lambda model, y: iterative(model, BATCH, y, eps=16 / 255, step=1 / 255),
}


@pytest.mark.parametrize("given_labels", [False, True], ids=["y=None", "y given"])
@pytest.mark.parametrize("name", ATTACK_CALLS)
def test_an_attack_call_reads_back_once_whatever_its_steps(name, given_labels):
    """The checks of x (finite, inside the bounds), of y (class indices of the model) and of every pass's scores
    (finite) are judged together, in one read-back at the end of the call."""
    with ReadBacks() as reads:
        ATTACK_CALLS[name](_victim(), LABELS if given_labels else None)
    assert reads.total == 1, dict(reads.calls)


class _NaNAfter(nn.Module):
    """The victim, returning NaN scores from the forward call number ``calls`` on (1: the first)."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.victim, self.calls, self.seen = _victim(), calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        scores = self.victim(x)
        return scores * float("nan") if self.seen >= self.calls else scores


class _RefusesNaN(nn.Module):
    """A model with its own check of its input, which the attack's check of x must precede."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.isnan(x).any():
            raise RuntimeError("this model got NaN")
        return _victim()(x)


NAN_X = BATCH.clone().index_put_((torch.tensor([3]),), torch.tensor(float("nan")))
MISTAKES = {
    "x with NaN": (_victim, NAN_X, None, {}, r"^x contains NaN or infinite values$"),
    "x outside the bounds": (_victim, BATCH * 2, None, {}, r"^x has values in \[.*\], outside bounds \(0, 1\); pass"),
    "negative label": (_victim, BATCH, LABELS - 6, {}, r"^y has negative labels \(min -6\); class indices start"),
    "label of no class": (_victim, BATCH, LABELS + 3, {}, r"^y has labels in \[\d, \d\], outside \[0, 6\) for scores"),
    "NaN scores at once": (lambda: _NaNAfter(1), BATCH, None, {}, r"^the model returned NaN or infinite scores;"),
    "NaN scores and a label of no class": (
        lambda: _NaNAfter(1),
        BATCH,
        LABELS + 3,
        {},
        r"^the model returned NaN or infinite scores;",
    ),
    "a model raising on the NaN in x": (_RefusesNaN, NAN_X, None, {}, r"^x contains NaN or infinite values$"),
    "a zero budget and NaN in x": (_victim, NAN_X, None, {"eps": 0.0}, r"^x contains NaN or infinite values$"),
}


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "iterative"])
@pytest.mark.parametrize("mistake", MISTAKES)
def test_checks_judged_at_the_end_raise_what_checks_made_at_once_raised(attack, mistake):
    """Deferred to the call's one read-back, every check keeps its error, and the order among them: the input's
    first, then the labels', then the scores' (a model fed NaN, or a loss fed a label of no class, fails later)."""
    make_model, x, y, change, message = MISTAKES[mistake]
    settings = {"eps": 8 / 255} | change
    calls = {
        "fgsm": lambda: fgsm(make_model(), x, y, **settings),
        "pgd": lambda: pgd(make_model(), x, y, steps=3, **settings),
        "iterative": lambda: iterative(make_model(), x, y, step=1 / 255, **settings),
    }
    with pytest.raises(ValueError, match=message) as raised:
        calls[attack]()
    assert raised.value.__suppress_context__ or raised.value.__context__ is None  # no second traceback


@pytest.mark.parametrize("attack", ["pgd", "iterative"])
def test_nan_scores_after_the_first_pass_are_still_caught(attack):
    call = {
        "pgd": lambda m: pgd(m, BATCH, eps=8 / 255, steps=4),
        "iterative": lambda m: iterative(m, BATCH, eps=4 / 255, step=1 / 255),
    }
    with pytest.raises(ValueError, match="NaN or infinite scores during the attack"):
        call[attack](_NaNAfter(3))


def test_a_wrong_step_with_nan_in_x_names_x_first():
    """As when x was judged before anything else: the input's error, not the later argument's."""
    with pytest.raises(ValueError, match=r"^x contains NaN"):
        iterative(_victim(), NAN_X, eps=8 / 255, step=-1.0)
    with pytest.raises(ValueError, match=r"^step must be a finite number > 0"):
        iterative(_victim(), BATCH, eps=8 / 255, step=-1.0)


# ------------------------------------------------------------------------------------------------ SAP
@pytest.fixture
def device_sampler(monkeypatch):
    """SAP's exact sampler as used off the CPU (the CPU's reads back how many draws each row needs, for free)."""
    monkeypatch.setattr(sap, "_reads_back_freely", lambda device: False)


@pytest.mark.parametrize("sampling", sap.SAMPLINGS)
def test_a_forward_through_sap_reads_nothing_back(monkeypatch, sampling):
    """Off the CPU nothing is read back; the CPU's exact sampler reads back how many draws each row needs (free
    there), which also shows that the counter sees through SAP's insertion."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU())
    model = sap.insert_sap(nn.Sequential(model, nn.Linear(32, 6)), sampling=sampling)
    x = torch.rand(40, 3, 8, 8)
    with ReadBacks() as cpu_reads:
        model(x)
    monkeypatch.setattr(sap, "_reads_back_freely", lambda device: False)
    with ReadBacks() as reads:
        model(x)
        predict(model, x[:4], samples=10)  # the mean softmax of 10 passes, as repeated rows
    assert reads.total == 0, dict(reads.calls)
    assert (cpu_reads.total > 0) == (sampling == "exact")  # per SAP layer: 2 sizes read, 2 boolean-mask writes


def test_the_device_sampler_draws_with_replacement_exactly(device_sampler):
    """test_sap.py's laws of exact SAP, for the sampler used off the CPU: keep frequencies 1 - (1 - p)^r, the
    variance of the number kept (which separates exact draws from independent keeps), at most r kept, unbiased,
    all-zero maps, half precision, seeding."""
    for frac in (0.1, 1.0):
        sap_tests.test_keep_frequency_matches_one_minus_one_minus_p_to_the_r("exact", frac)
    sap_tests.test_exact_sampling_has_the_joint_law_of_draws_with_replacement()
    sap_tests.test_exact_sampling_never_keeps_more_than_r_entries()
    sap_tests.test_sap_output_is_an_unbiased_estimate_of_the_activation("exact")
    sap_tests.test_all_zero_maps_give_zeros_not_nan()
    sap_tests.test_half_precision_activations()
    sap_tests.test_seeding_through_a_generator()


def test_the_device_sampler_works_in_chunks_of_rows(device_sampler, monkeypatch):
    """Rows split over several chunks draw as many entries as one chunk would (a chunk never sees another's)."""
    monkeypatch.setattr(sap, "_MAX_DRAWS_PER_CHUNK", 3 * 65)  # 3 rows of 64 draws (+1) per chunk
    kept = (sap.sap_mask(torch.rand(20, 64) + 0.1, 1.0, generator=torch.Generator().manual_seed(0)) > 0).sum(1)
    assert kept.min() >= 30 and kept.max() <= 64  # ~ 64 * (1 - 1/e) = 40 kept of 64 per row


# ------------------------------------------------------------------------------------------------ Double DQN
@pytest.fixture(scope="module")
def ddqn():
    from tests.test_ddqn_target import tiny_model

    torch.manual_seed(0)
    model = tiny_model(learning_rate=1e-3, batch_size=32, buffer_size=256, max_grad_norm=10.0)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for step in range(64):
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8)], axis=1)
        done = np.array([step % 20 == 19])
        model.replay_buffer.add(obs, next_obs, np.array([step % 6]), np.array([1.0]), done, [{}])
        obs = next_obs
    yield model
    model.env.close()


def test_a_double_dqn_update_reads_nothing_back(ddqn):
    """Replay draw, Double-DQN target, Huber loss, backward, gradient clipping, RMSProp, and the loss kept on the
    device for the logs: no read-back, however many updates."""
    ddqn.train(gradient_steps=1, batch_size=32)
    with ReadBacks() as reads:
        ddqn.train(gradient_steps=1, batch_size=32)
        ddqn.train(gradient_steps=4, batch_size=32)
    assert reads.total == 0, dict(reads.calls)


def test_the_logs_read_back_once_per_question_and_acting_once_per_step(ddqn):
    """NaN detection and the logged means cost one read-back each, when asked (at log intervals); acting reads
    back the actions, once per vector step."""
    ddqn.train(gradient_steps=2, batch_size=32)
    for ask in (ddqn.training_problem, ddqn.pop_train_stats):
        with ReadBacks() as reads:
            ask()
        assert reads.total == 1, (ask.__name__, dict(reads.calls))
    ddqn.exploration_rate = 0.0
    frames = np.random.default_rng(1).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    with ReadBacks() as reads:
        ddqn.predict(frames)
    assert reads.total == 1, dict(reads.calls)


def test_the_update_is_captured_in_cuda_graphs_on_cuda_only():
    from agents.double_dqn import compile_options, compile_trial_updates

    assert compile_options(torch.device("cuda", 0)) == {"mode": "reduce-overhead"}
    assert compile_options(torch.device("cpu")) == {}  # the CPU path as it was
    assert compile_trial_updates(torch.device("cuda")) == 3 and compile_trial_updates(torch.device("cpu")) == 1
