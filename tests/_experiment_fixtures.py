"""Helpers for the experiment-script tests: a tiny ReLU net on 8x8 images with labelled data it classifies, a
random-init ResNet-20 checkpoint the scripts can load, and running a script as a user would."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from classifiers.data import ImageDataset
from classifiers.models import CHECKPOINT_FORMAT, build_model
from rlrobust.cli import run_main

REPO = Path(__file__).resolve().parents[1]
#: The scripts' subprocesses run on one thread: small models on a shared CPU run fastest that way.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class TinyNet(nn.Module):
    """Flatten -> Linear(192, 32) -> ReLU -> Linear(32, 10), with weights large enough that budgets of a few /255
    change predictions."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10))
        with torch.no_grad():
            self.net[1].weight.mul_(4)
            self.net[3].weight.mul_(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def labelled_by(model: nn.Module, n: int = 24, seed: int = 0) -> ImageDataset:
    """``n`` random 8x8 images labelled with ``model``'s own predictions (so it is right on all of them)."""
    images = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        labels = model(images.permute(0, 3, 1, 2).float() / 255).argmax(1)
    return ImageDataset(images, labels, [f"c{i}" for i in range(10)], "tiny")


def write_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised ResNet-20 in the training checkpoint format, loadable by every script."""
    torch.manual_seed(seed)
    model = build_model("resnet20", num_classes=10)
    state = {"format": CHECKPOINT_FORMAT, "arch": "resnet20", "num_classes": 10, "normalization": None}
    torch.save({**state, "model": model.state_dict()}, path)
    return path


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "scripts" / script), *map(str, args), "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=SUBPROCESS_ENV, timeout=300)


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The script failed with a one-line ``error:`` message holding ``fragments``, and no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


def script_error(script: str, *args: object) -> str:
    """Run ``scripts/<script>``'s job (``classifiers.jobs.<stem>.main``) in this process as its command line would,
    expecting it to stop with an error; returns the message (``error: ...`` of a user error, or argparse's usage
    error). Faster than a subprocess, which the end-to-end tests use."""
    module = importlib.import_module(f"classifiers.jobs.{Path(script).stem}")
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as stop, contextlib.redirect_stderr(stderr):
        run_main(lambda: module.main([*map(str, args), "--quiet"]))
    assert stop.value.code != 0
    return stop.value.code if isinstance(stop.value.code, str) else stderr.getvalue()
