"""Robustness evaluation: the table's rows and their meaning, budgets enforced, EOT and transfer, the command line
with its outputs, and clear errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

from classifiers.data import ImageDataset
from classifiers.evaluation import WORST_CASE, AttackSpec, EvaluationSettings, build_attacks, evaluate_robustness
from classifiers.evaluation.cells import TensorCells, cell_seed
from classifiers.jobs import eval_classifier
from classifiers.models import CHECKPOINT_FORMAT, build_model
from rlrobust.sap import insert_sap
from tests.test_classifiers_data import SUBPROCESS_ENV, one_torch_thread, random_images, write_cifar

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

REPO = Path(__file__).resolve().parents[1]


class SensitiveNet(nn.Module):
    """A small ReLU net with enlarged weights: budgets of a few /255 change many of its predictions."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))
        with torch.no_grad():
            self.net[1].weight.mul_(3)
            self.net[3].weight.mul_(3)

    def forward(self, x):
        return self.net(x - 0.5)


@pytest.fixture
def setup():
    model = SensitiveNet().eval()
    images = torch.from_numpy(random_images(48, size=8))
    with torch.no_grad():
        labels = model(images.permute(0, 3, 1, 2).float() / 255).argmax(1)
    labels[:6] = (labels[:6] + 1) % 10  # a few images the model gets wrong
    return model, ImageDataset(images, labels, [str(i) for i in range(10)], "toy")


FAST = EvaluationSettings(pgd_steps=5, apgd_steps=10, apgd_targets=3)


def test_rows_mean_what_they_say(setup):
    model, data = setup
    attacks = build_attacks(["fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t"], [0.0, 1 / 255, 4 / 255], FAST)
    rows = evaluate_robustness(model, data, attacks, batch_size=20, progress=False)
    by = {(r["attack"], r["eps_255"]): r for r in rows}
    clean = by[("clean", 0.0)]["accuracy"]
    assert clean == pytest.approx(42 / 48)
    for name in ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t"):
        assert by[(name, 0.0)]["robust_accuracy"] == pytest.approx(clean)
        assert by[(name, 4.0)]["robust_accuracy"] <= by[(name, 1.0)]["robust_accuracy"] <= clean
        assert by[(name, 4.0)]["robust_accuracy"] <= by[(name, 4.0)]["accuracy"]
    worst = by[(WORST_CASE, 4.0)]["robust_accuracy"]
    assert worst <= min(by[(n, 4.0)]["robust_accuracy"] for n in ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t"))
    assert by[("pgd", 4.0)]["robust_accuracy"] < clean - 0.2  # the attacks do bite on this model
    assert by[("apgd-ce", 4.0)]["robust_accuracy"] <= by[("fgsm", 4.0)]["robust_accuracy"]


def test_an_attack_that_leaves_its_budget_is_caught(setup):
    model, data = setup
    cheat = AttackSpec("cheat", 1 / 255, lambda m, x, y, g: (x + 2 / 255).clamp(0, 1))
    with pytest.raises(RuntimeError, match="left its budget"):
        evaluate_robustness(model, data, [cheat], progress=False)


def test_eot_on_a_sap_model_and_transfer_from_the_dense_one(setup):
    model, data = setup
    sap_model = insert_sap(SensitiveNet().eval(), 1.0, generator=torch.Generator().manual_seed(0))
    settings = EvaluationSettings(pgd_steps=3, eot=4)
    rows = evaluate_robustness(sap_model, data, build_attacks(["pgd"], [4 / 255], settings), samples=8, progress=False)
    assert [r["attack"] for r in rows] == ["clean", "pgd"]
    transfer = evaluate_robustness(
        sap_model, data, build_attacks(["pgd"], [4 / 255], FAST), samples=8, source=model, progress=False
    )
    assert transfer[1]["attack"] == "pgd (transfer)"
    assert transfer[1]["robust_accuracy"] < transfer[0]["accuracy"]


def test_reference_apgd_runs_on_the_same_images(setup):
    pytest.importorskip("torchattacks")
    model, data = setup
    rows = evaluate_robustness(
        model, data, build_attacks(["apgd-ce", "apgd-ce-torchattacks"], [2 / 255], FAST), progress=False
    )
    ours, theirs = rows[1]["robust_accuracy"], rows[2]["robust_accuracy"]
    assert abs(ours - theirs) <= 3 / 48


AA_FAST = EvaluationSettings(apgd_steps=3, apgd_targets=2, fab_steps=3, square_queries=30, rand_eot=2)


def test_autoattack_square_and_fab_t_rows_and_their_settings(setup):
    model, data = setup
    names = ["apgd-ce", "autoattack", "square", "fab-t"]
    rows = evaluate_robustness(model, data, build_attacks(names, [0.0, 4 / 255], AA_FAST), batch_size=24,
                               progress=False)  # fmt: skip
    by = {(r["attack"], r["eps_255"]): r for r in rows}
    clean = by[("clean", 0.0)]["robust_accuracy"]
    for name in names:
        assert by[(name, 0.0)]["robust_accuracy"] == pytest.approx(clean)
        assert by[(name, 4.0)]["robust_accuracy"] <= clean
    worst = by[(WORST_CASE, 4.0)]
    assert worst["robust_accuracy"] <= min(by[(n, 4.0)]["robust_accuracy"] for n in names)
    assert worst["settings"] == "attacks=apgd-ce,autoattack,square,fab-t"
    assert by[("autoattack", 4.0)]["robust_accuracy"] < clean - 0.2  # AutoAttack does bite on this model
    assert by[("autoattack", 4.0)]["settings"] == (
        "version=standard steps=3 queries=30 targets=2 attacks=apgd-ce,apgd-t,fab-t,square"
    )
    assert by[("square", 4.0)]["settings"] == "queries=30 restarts=1 p_init=0.8 samples=1"
    assert by[("fab-t", 4.0)]["settings"] == "steps=3 restarts=1 targets=2"
    rand = EvaluationSettings(apgd_steps=3, version="rand", rand_eot=2)
    (_, row) = evaluate_robustness(model, data, build_attacks(["autoattack"], [4 / 255], rand), progress=False)
    assert row["settings"] == "version=rand steps=3 eot=2 attacks=apgd-ce,apgd-dlr"
    assert row["robust_accuracy"] < clean - 0.2


def test_bad_attack_names_and_budgets():
    with pytest.raises(ValueError, match="unknown attacks"):
        build_attacks(["deepfool"], [0.1], FAST)
    with pytest.raises(ValueError, match="--scale 255"):
        build_attacks(["pgd"], [8.0], FAST)


@pytest.fixture(scope="module")
def checkpoint_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_cifar(root, classes=10, train=10, test=8)
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10)
    path = root / "model.pt"
    state = {"format": CHECKPOINT_FORMAT, "arch": "resnet20", "num_classes": 10, "normalization": None}
    torch.save({**state, "model": model.state_dict()}, path)
    return path, root


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "scripts/eval_classifier.py"), *args, "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=SUBPROCESS_ENV, timeout=300)


def test_command_line_writes_tables_and_plot(checkpoint_and_data, tmp_path, capsys):
    """The job's ``main`` in this process (a subprocess would spend seconds importing torch again)."""
    path, root = checkpoint_and_data
    eval_classifier.main([
        "--model", str(path), "--dataset", "cifar10", "--data-dir", str(root), "--attacks", "fgsm", "iterative", "pgd",
        "--eps", "0", "2", "8", "--iterative-step", "4", "--pgd-steps", "2", "--out", str(tmp_path / "out"), "--quiet",
        "--device", "cpu",
    ])  # fmt: skip
    assert "| pgd |" in capsys.readouterr().out
    out = tmp_path / "out"
    for name in ("results.csv", "results.json", "results.md", "accuracy_vs_budget.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = json.loads((out / "results.json").read_text())
    assert {r["attack"] for r in rows} == {"clean", "fgsm", "iterative", "pgd", WORST_CASE}
    assert {r["eps_255"] for r in rows if r["attack"] == "pgd"} == {0.0, 2.0, 8.0}
    assert "eps_255=8" in (out / "results.md").read_text()


def test_command_line_autoattack_square_and_fab_t_record_every_setting(checkpoint_and_data, tmp_path):
    path, root = checkpoint_and_data
    out = tmp_path / "out"
    eval_classifier.main([
        "--model", str(path), "--dataset", "cifar10", "--data-dir", str(root), "--attacks", "autoattack", "square",
        "fab-t", "--eps", "0", "8", "--apgd-steps", "2", "--apgd-targets", "2", "--fab-steps", "2", "--square-queries",
        "10", "--square-restarts", "2", "--out", str(out), "--quiet", "--device", "cpu",
    ])  # fmt: skip
    rows = json.loads((out / "results.json").read_text())
    assert {r["attack"] for r in rows} == {"clean", "autoattack", "square", "fab-t", WORST_CASE}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for row in rows:
        assert (row["model_file"], row["model_sha256"], row["images"]) == (path.name, digest, 8)
        assert (row["dataset"], row["split"]) == ("cifar10", "test")
    settings = {r["attack"]: r["settings"] for r in rows if r["eps_255"] == 8}
    assert settings["autoattack"] == "version=standard steps=2 queries=10 targets=2 attacks=apgd-ce,apgd-t,fab-t,square"
    assert settings["square"] == "queries=10 restarts=2 p_init=0.8 samples=1"
    assert settings[WORST_CASE] == "attacks=autoattack,square,fab-t"
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"model_file", "model_sha256", "dataset", "split", "images", "settings"} <= set(header)
    worst = next(r for r in rows if r["attack"] == WORST_CASE and r["eps_255"] == 8)
    assert worst["robust_accuracy"] <= min(r["robust_accuracy"] for r in rows if r["eps_255"] == 8)
    record = json.loads((out / "run.json").read_text())["settings"]
    assert (record["version"], record["square_queries"], record["square_restarts"]) == ("standard", 10, 2)
    assert (record["fab_steps"], record["fab_restarts"], record["rand_eot_samples"]) == (2, 1, 20)


def test_command_line_rejects_a_class_count_mismatch(checkpoint_and_data, tmp_path):
    path, _ = checkpoint_and_data
    write_cifar(tmp_path, classes=100, train=10, test=10)
    result = run_script("--model", str(path), "--dataset", "cifar100", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and "10 output classes but the data has 100" in result.stderr
    assert "Traceback" not in result.stderr


def eval_argv(path: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model", str(path), "--dataset", "cifar10", "--data-dir", str(root), "--attacks", "fgsm", "pgd",
        "--eps", "0", "2", "8", "--pgd-steps", "2", "--out", str(out), "--quiet", "--device", "cpu", *extra,
    ]  # fmt: skip


def comparable(out: Path) -> list[dict]:
    """The result rows without the timings (which differ between runs)."""
    return [
        {k: v for k, v in r.items() if k != "attack_seconds"} for r in json.loads((out / "results.json").read_text())
    ]


def test_sigterm_keeps_finished_cells_and_resume_gives_the_uninterrupted_table(
    checkpoint_and_data, tmp_path, monkeypatch, capsys
):
    """SIGTERM during the first PGD cell: the FGSM cells are kept, partial tables written, status 130; --resume runs
    only the missing cells and its table equals an uninterrupted run's."""
    import os
    import signal

    import classifiers.evaluation.attacks as attacks_module

    path, root = checkpoint_and_data
    monkeypatch.setattr(eval_classifier, "plot_accuracy_vs_budget", lambda *args, **kwargs: None)  # slow, not tested
    monkeypatch.setattr(eval_classifier, "SummaryWriter", lambda folder: contextlib.nullcontext(mock.Mock()))
    assert eval_classifier.main(eval_argv(path, root, tmp_path / "whole")) == 0
    real_pgd, real_fgsm = attacks_module.pgd, attacks_module.fgsm

    def terminated_pgd(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # what a cluster's pre-emption sends
        return real_pgd(*args, **kwargs)

    monkeypatch.setattr(attacks_module, "pgd", terminated_pgd)
    out = tmp_path / "cut"
    assert eval_classifier.main(eval_argv(path, root, out)) == 130
    err = capsys.readouterr().err
    assert "3 of 5 cells" in err and f"--resume --out {out}" in err
    partial = json.loads((out / "results.json").read_text())
    assert {(r["attack"], r["eps_255"]) for r in partial} == {
        ("clean", 0.0),
        ("fgsm", 0.0),
        ("fgsm", 2.0),
        ("fgsm", 8.0),
        ("pgd", 0.0),
        (WORST_CASE, 0.0),
    }
    assert "partial" in (out / "results.md").read_text()
    assert not (out / ".lock").exists()

    fgsm_calls = []
    monkeypatch.setattr(attacks_module, "pgd", real_pgd)
    monkeypatch.setattr(attacks_module, "fgsm", lambda *a, **k: fgsm_calls.append(1) or real_fgsm(*a, **k))
    assert eval_classifier.main(eval_argv(path, root, out, "--resume")) == 0
    assert fgsm_calls == []  # the finished cells were not run again
    assert comparable(out) == comparable(tmp_path / "whole")


def test_every_run_gets_its_own_folder_and_names_its_model(checkpoint_and_data, tmp_path, monkeypatch):
    path, root = checkpoint_and_data
    monkeypatch.chdir(tmp_path)
    argv = eval_argv(path, root, tmp_path)
    argv = [*argv[: argv.index("--out")], "--quiet", "--device", "cpu"]  # no --out: a fresh folder under runs/
    eval_classifier.main(argv)
    (out,) = (tmp_path / "runs" / "eval_classifier").iterdir()
    assert out.name.startswith(f"{path.stem}-")
    record = json.loads((out / "run.json").read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["inputs"]["model"] == {"path": str(path), "sha256": digest}
    assert record["settings"]["pgd_steps"] == 2 and record["settings"]["image_count"] == 8
    for row in json.loads((out / "results.json").read_text()):
        assert (row["model_file"], row["model_sha256"]) == (path.name, digest)
    assert "model_sha256" in (out / "results.csv").read_text().splitlines()[0]
    # The same --out again: refused (another run's results), unless --overwrite; --resume with other settings too.
    again = [*argv, "--out", str(out)]
    with pytest.raises(ValueError, match="already holds results of another run"):
        eval_classifier.main(again)
    with pytest.raises(ValueError, match="other settings"):
        eval_classifier.main([*again, "--resume", "--pgd-steps", "3"])
    assert eval_classifier.main([*again, "--overwrite"]) == 0


def test_settings_and_saved_cells_refuse_what_would_give_wrong_numbers(tmp_path):
    for bad in ({"iterative_step": float("nan")}, {"pgd_step_frac": 0.0}, {"eot": 0}, {"apgd_targets": 0}):
        with pytest.raises(ValueError, match="must"):
            EvaluationSettings(**bad)
    cells = TensorCells(tmp_path, {"model_sha256": "ab", "eps": [8]})
    cells.add("clean", {"correct": torch.tensor([True, False])}, {"seconds": 0.0})
    tensors, facts = TensorCells(tmp_path, {"model_sha256": "ab", "eps": [8]}).get("clean")
    assert tensors["correct"].tolist() == [True, False] and facts == {"seconds": 0.0}
    with pytest.raises(ValueError, match="other settings"):
        TensorCells(tmp_path, {"model_sha256": "cd", "eps": [8]})
    (saved,) = (tmp_path / "cells").iterdir()
    saved.write_bytes(saved.read_bytes()[:20])  # a damaged cell file
    with pytest.raises(ValueError, match="cannot read the saved cell 'clean'"):
        TensorCells(tmp_path, {"model_sha256": "ab", "eps": [8]}).get("clean")
    assert cell_seed(0, "pgd eps=0.1") == cell_seed(0, "pgd eps=0.1") != cell_seed(1, "pgd eps=0.1")
