"""Shared test helpers: small models of both ReLU styles, and access to ../shared/data when present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlrobust.cli import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = shared_data_dir()


def shared_file(relative: str) -> Path:
    """Path of a file in the shared data folder; skips the test cleanly where it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared data file not present: {path}")
    return path


class ModuleStyleNet(nn.Module):
    """A small conv net whose ReLUs are nn.ReLU modules (one of them in-place): 3 ReLU calls."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 4 * 4, 16),
            nn.ReLU(),
            nn.Linear(16, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FunctionalStyleNet(nn.Module):
    """ReLU called four functional ways (F.relu, torch.relu, Tensor.relu_, F.relu inplace) plus a reused
    nn.ReLU module called twice: 6 ReLU calls. The in-place call relies on mutation, not on its result."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.shared_relu = nn.ReLU()
        self.fc1 = nn.Linear(8 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        h = h.flatten(1)
        h = self.fc1(h)
        h.relu_()  # result unused on purpose: the caller relies on the mutation
        h = F.relu(self.fc2(h), inplace=True)
        h = self.shared_relu(self.shared_relu(h))
        return self.fc3(h)


@pytest.fixture
def module_net() -> nn.Module:
    torch.manual_seed(0)
    return ModuleStyleNet().eval()


@pytest.fixture
def functional_net() -> nn.Module:
    torch.manual_seed(0)
    return FunctionalStyleNet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    """A batch of 16 random 3x8x8 images in [0, 1]."""
    return torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread, then restore the count.

    Small batches gain little from a second thread on an idle machine and lose up to 10x when other processes
    share the two cores (OpenMP threads then spin waiting for each other), so tests of small models use one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
