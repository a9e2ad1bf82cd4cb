"""Generation from a classifier's energy: SGLD from class-wise PCA starts lowers E(x, y), samples are saved and
drawn, IS/FID ask for their weights file, and scripts/generate.py end to end."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from classifiers.data import ImageDataset
from classifiers.experiments.fidelity import INCEPTION_WEIGHTS, check_inception_weights, inception_metrics
from classifiers.experiments.sampling import SamplerSettings, generate, sample_rows, save_samples
from tests import _experiment_fixtures as fx
from tests._experiment_fixtures import one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

FAST = SamplerSettings(steps=20, step_size=0.05, per_class=12, pca_sigma=0.01)


@pytest.fixture
def model_and_data():
    model = fx.TinyNet().eval()
    return model, fx.labelled_by(model, 200)


def test_sgld_from_the_pca_start_lowers_the_joint_energy(model_and_data):
    model, data = model_and_data
    classes = torch.bincount(data.labels).topk(2).indices.tolist()  # the two most frequent classes
    results = generate(model, data, classes, FAST, progress=False)
    assert [r.label for r in results] == classes
    for r in results:
        assert r.samples.shape == (12, 3, 8, 8) and r.samples.min() >= 0 and r.samples.max() <= 1
        assert len(r.energy_trace) == FAST.steps
    for row in sample_rows(model, results):
        assert row["E(x,y) end"] < row["E(x,y) start"]
        assert row["share lowered"] >= 0.9


def test_samples_are_saved_as_uint8_and_load_safely(model_and_data, tmp_path):
    model, data = model_and_data
    results = generate(model, data, [data.labels[0].item()], SamplerSettings(steps=2, per_class=3), progress=False)
    saved = torch.load(save_samples(results, tmp_path / "s.pt"), weights_only=True)
    assert saved["images"].dtype == torch.uint8 and saved["images"].shape == (3, 8, 8, 3)
    assert saved["labels"].tolist() == [data.labels[0].item()] * 3


def test_generation_refuses_bad_classes(model_and_data):
    model, data = model_and_data
    with pytest.raises(ValueError, match="outside"):
        generate(model, data, [10], FAST, progress=False)
    one_image = ImageDataset(data.images[:1], data.labels[:1], data.classes, "one")
    with pytest.raises(ValueError, match="needs 2 or more"):
        generate(model, one_image, [one_image.labels[0].item()], FAST, progress=False)


def test_missing_inception_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS):
        check_inception_weights(tmp_path / INCEPTION_WEIGHTS)
    (tmp_path / "small.pth").write_bytes(b"0" * 10)
    with pytest.raises(ValueError, match="truncated"):
        check_inception_weights(tmp_path / "small.pth")


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_missing_metrics_library_says_what_to_install(tmp_path):
    weights = tmp_path / INCEPTION_WEIGHTS
    weights.write_bytes(b"0" * 2_000_000)
    images = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    with pytest.raises(ImportError, match="pip install torch-fidelity"):
        inception_metrics(images, images, weights)


@pytest.mark.skipif(not os.environ.get("RLROBUST_INCEPTION_WEIGHTS"), reason="set RLROBUST_INCEPTION_WEIGHTS")
def test_inception_metrics_with_real_weights():
    pytest.importorskip("torch_fidelity")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8, generator=g)
    scores = inception_metrics(a, b, Path(os.environ["RLROBUST_INCEPTION_WEIGHTS"]))
    assert scores["inception_score"] >= 1 and scores["fid"] >= 0


def test_command_line_end_to_end(tmp_path):
    model = fx.write_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    result = fx.run_script(
        "generate.py", "--model", model, "--dataset", "synthetic", "--images", "100", "--classes", "0", "3",
        "--per-class", "3", "--steps", "3", "--threads", "1", "--out", out, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IS/FID not computed" in result.stdout
    for png in ("class_0.png", "class_3.png", "energy_trace.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "generation.json").read_text())
    assert [r["class"] for r in rows] == [0, 3] and all(r["E(x,y) end"] < r["E(x,y) start"] for r in rows)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert {(r["model_file"], r["model_sha256"]) for r in rows} == {("tiny.pt", digest)}
    record = json.loads((out / "run.json").read_text())
    assert record["inputs"]["model"]["sha256"] == digest and record["settings"]["per_class"] == 3
    saved = torch.load(out / "samples.pt", weights_only=True)
    assert saved["images"].shape == (6, 32, 32, 3) and saved["labels"].tolist() == [0, 0, 0, 3, 3, 3]
    assert any((out / "tensorboard").iterdir())


def test_command_line_errors_are_clear(tmp_path):
    model = fx.write_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    common = ("--model", model, "--dataset", "synthetic", "--images", "100", "--out", out)
    result = fx.run_script("generate.py", *common, "--inception-weights", tmp_path / "none.pth", cwd=tmp_path)
    fx.assert_clean_error(result, "error:", INCEPTION_WEIGHTS)
    assert not out.exists()  # it failed before sampling anything
    assert "outside [0, 10)" in fx.script_error("generate.py", *common, "--classes", "12")
    assert "momentum" in fx.script_error("generate.py", *common, "--momentum", "1.5")
