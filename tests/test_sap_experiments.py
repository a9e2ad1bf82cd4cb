"""The SAP paper's image grid: variants by name, which attacks run on which model, accuracy and calibration tables
from the same predictions, the comparison with the paper, and scripts/sap_experiments.py end to end."""

from __future__ import annotations

import json

import pytest
import torch

from classifiers.experiments.calibration_report import reliability_rows, result_rows
from classifiers.experiments.paper import comparison_rows
from classifiers.experiments.sap_grid import Case, GridResult, GridSettings, attack_cases, run_grid
from classifiers.experiments.variants import Variant, parse_variant
from classifiers.jobs import sap_experiments
from tests import _experiment_fixtures as fx
from tests._experiment_fixtures import one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def test_variants_read_and_name_like_the_paper():
    assert parse_variant("dense") == Variant("dense")
    assert parse_variant("adv").name == "ADV"
    assert parse_variant("SAP:1.0").name == "SAP-100"
    assert parse_variant("sap:0.5").name == "SAP-50"
    assert parse_variant("adv+SAP:1.0").name == "ADV+SAP-100"
    assert parse_variant("RNW:0.01").name == "RNW-0.01"
    assert parse_variant("DWP:0.5").stochastic is False
    assert parse_variant("DRO:0.1").stochastic is True
    for bad, message in (("SAP", "cannot read"), ("XYZ:1", "cannot read"), ("SAP:abc", "not a number"),
                         ("SAP:0", "must be > 0"), ("foo+SAP:1", "unknown base")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_each_variant_gets_the_papers_attacks_and_an_adaptive_one():
    settings = GridSettings(mc_samples=(10, 100))
    dense = {c.attack for c in attack_cases(Variant("dense"), settings)}
    assert dense == {"FGSM", "iterative", "PGD-10"}
    sap = {c.attack: c for c in attack_cases(parse_variant("SAP:1.0"), settings)}
    assert set(sap) == {
        "FGSM MC n=10", "FGSM MC n=100", "FGSM transfer from dense", "iterative MC n=10",
        "iterative transfer from dense", "EOT-PGD-10 n=10 (adaptive)", "Square-5000 n=10 (adaptive)",
        "AutoAttack-rand n=20 (adaptive)",
    }  # fmt: skip
    assert sap["FGSM MC n=10"].paper_attack and not sap["FGSM MC n=100"].paper_attack
    assert sap["FGSM transfer from dense"].source == "dense"
    dro = {c.attack for c in attack_cases(parse_variant("DRO:0.1"), settings)}
    assert "iterative MC n=10" not in dro and "EOT-PGD-10 n=10 (adaptive)" in dro
    assert not any(a.startswith(("Square", "AutoAttack")) for a in dro)  # those two: against SAP only
    only_pgd = GridSettings(adaptive_attacks=("eot-pgd",))
    assert not any("Square" in c.attack for c in attack_cases(parse_variant("SAP:1.0"), only_pgd))
    with pytest.raises(ValueError, match="adaptive_attacks"):
        GridSettings(adaptive_attacks=("cw",))


def test_square_and_autoattack_rand_break_sap_within_budget():
    dense = fx.TinyNet().eval()
    data = fx.labelled_by(dense)
    settings = GridSettings(
        lambdas=(0,), samples=2, mc_samples=(2,), iterative_lambdas=(0,), adaptive_lambdas=(64,), adaptive_steps=2,
        adaptive_eot=2, adaptive_attacks=("square", "autoattack-rand"), square_queries=30, rand_steps=5, rand_eot=2,
        batch_size=16,
    )  # fmt: skip
    result = run_grid({"dense": dense}, [parse_variant("SAP:1.0")], data, settings, progress=False)
    labels = result.labels
    accuracy = {k[1]: (p.argmax(1) == labels).float().mean().item() for k, p in result.probs.items() if k[2] == 64}
    assert set(accuracy) == {"Square-30 n=2 (adaptive)", "AutoAttack-rand n=2 (adaptive)"}
    clean = next((p.argmax(1) == labels).float().mean().item() for k, p in result.probs.items() if k[2] == 0)
    assert all(acc < clean for acc in accuracy.values()), (clean, accuracy)  # the budget check ran inside run_grid


def test_grid_accuracy_and_calibration_come_from_the_same_predictions():
    dense = fx.TinyNet().eval()
    data = fx.labelled_by(dense)
    settings = GridSettings(
        lambdas=(0, 2, 16), samples=4, mc_samples=(2,), iterative_lambdas=(0, 2), iterative_mc=2,
        adaptive_lambdas=(16,), adaptive_steps=3, adaptive_eot=2, square_queries=10, rand_steps=2, rand_eot=2,
        batch_size=10,
    )  # fmt: skip
    variants = [parse_variant(t) for t in ("dense", "SAP:1.0", "DWP:0.5", "adv", "adv+SAP:1.0")]
    result = run_grid({"dense": dense, "adv": fx.TinyNet(seed=1).eval()}, variants, data, settings, progress=False)
    rows = result_rows(result, bins=5)
    by = {(r["model"], r["attack"], r["lambda"]): r for r in rows}
    assert by[("dense", "FGSM", 0)]["accuracy"] == 1.0  # the labels are the dense model's predictions
    assert by[("dense", "FGSM", 16)]["accuracy"] < 0.5
    assert by[("dense", "PGD-3", 16)]["accuracy"] < 0.5
    for model in ("dense", "SAP-100", "DWP-0.5", "ADV", "ADV+SAP-100"):  # lambda 0 is the clean prediction
        clean = {r["accuracy"] for r in rows if r["model"] == model and r["lambda"] == 0}
        assert len(clean) == 1
    # The transferred FGSM on SAP-100 is the dense model's FGSM: one computation, reused.
    assert ("SAP-100", "FGSM transfer from dense", 16) in by
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["ece"] <= 1 and r["images"] == len(data)
    bins = reliability_rows(result, bins=5)
    assert {(r["model"], r["attack"]) for r in bins} == {
        ("dense", "FGSM"), ("SAP-100", "FGSM MC n=2"), ("DWP-0.5", "FGSM"), ("ADV", "FGSM"),
        ("ADV+SAP-100", "FGSM MC n=2"),
    }  # fmt: skip
    for (model, attack, lam), row in by.items():
        if attack in ("FGSM", "FGSM MC n=2"):
            mine = [b for b in bins if (b["model"], b["attack"], b["lambda"]) == (model, attack, lam)]
            assert sum(b["count"] for b in mine) == len(data)
            ece = sum(b["count"] / len(data) * abs(b["accuracy"] - b["confidence"]) for b in mine)
            assert ece == pytest.approx(row["ece"])


def test_ece_of_the_grid_on_a_hand_made_case():
    # Bins (0, .5] and (.5, 1]: confidences .4 (right), .8 (right), .8 (wrong), .6 (right).
    probs = torch.tensor([[0.4, 0.3, 0.3], [0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2]])
    labels = torch.tensor([0, 0, 2, 1])
    case = Case("dense", "FGSM", (0.0,), run=None, source="self", paper_attack=True)
    result = GridResult(labels=labels, probs={("dense", "FGSM", 0.0): probs}, cases=[case])
    (row,) = result_rows(result, bins=2)
    assert row["accuracy"] == pytest.approx(0.75)
    # ECE = 1/4 |1 - .4| + 3/4 |2/3 - 2.2/3| = 0.15 + 0.05
    assert row["ece"] == pytest.approx(0.2)
    low, high = reliability_rows(result, bins=2)
    assert (low["count"], high["count"]) == (1, 3)
    assert high["accuracy"] == pytest.approx(2 / 3) and high["confidence"] == pytest.approx(2.2 / 3)


def test_paper_comparison_matches_our_labels_to_the_papers():
    rows = [
        {"model": "dense", "attack": "FGSM", "lambda": 1.0, "accuracy": 0.5},
        {"model": "SAP-100", "attack": "iterative MC n=10", "lambda": 2.0, "accuracy": 0.7},
        {"model": "SAP-100", "attack": "FGSM MC n=10", "lambda": 2.0, "accuracy": 0.7},  # not reported
    ]
    out = comparison_rows(rows)
    assert [(r["model"], r["paper_%"], r["ours_%"]) for r in out] == [("dense", 66.3, 50.0), ("SAP-100", 80.2, 70.0)]
    assert out[0]["difference"] == pytest.approx(-16.3)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="pixel units"):
        GridSettings(lambdas=(0, 300))
    with pytest.raises(ValueError, match=">= 1"):
        GridSettings(samples=0)
    dense = fx.TinyNet().eval()
    with pytest.raises(ValueError, match="--adv-model"):
        run_grid({"dense": dense}, [parse_variant("adv")], fx.labelled_by(dense, 4), GridSettings(), progress=False)
    with pytest.raises(ValueError, match="repeat"):
        run_grid({"dense": dense}, [Variant("dense")] * 2, fx.labelled_by(dense, 4), GridSettings(), progress=False)


def test_command_line_end_to_end(tmp_path):
    model = fx.write_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    result = fx.run_script(
        "sap_experiments.py", "--model", model, "--models", "dense", "SAP:1.0", "--dataset", "synthetic",
        "--images", "4", "--samples", "2", "--fgsm-eot-samples", "2", "--eps", "0", "2", "--iterative-eps", "0",
        "1", "--iterative-eot-samples", "2", "--adaptive-eps", "8", "--pgd-steps", "1", "--eot-samples", "2",
        "--square-queries", "20", "--apgd-steps", "2", "--rand-eot-samples", "2", "--bins", "4",
        "--threads", "1", "--out", out, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for stem in ("results", "calibration", "reliability_bins", "paper_comparison"):
        for suffix in ("csv", "json", "md"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0
    for png in ("accuracy_vs_lambda.png", "calibration.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert any((out / "tensorboard").iterdir())
    rows = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in rows} == {"dense", "SAP-100"}
    assert {r["lambda"] for r in rows if r["attack"] == "EOT-PGD-1 n=2 (adaptive)"} == {8.0}
    adaptive_on_sap = {r["attack"] for r in rows if r["model"] == "SAP-100" and "adaptive" in r["attack"]}
    assert adaptive_on_sap == {"EOT-PGD-1 n=2 (adaptive)", "Square-20 n=2 (adaptive)", "AutoAttack-rand n=2 (adaptive)"}
    comparison = json.loads((out / "paper_comparison.json").read_text())
    assert {("dense", "FGSM", 0.0, 89.8), ("SAP-100", "iterative transfer from dense", 1.0, 75.2)} <= {
        (r["model"], r["attack"], r["lambda"], r["paper_%"]) for r in comparison
    }


def test_command_line_errors_are_one_clear_line(tmp_path):
    model = fx.write_checkpoint(tmp_path / "tiny.pt")
    common = ("--dataset", "synthetic", "--images", "2")
    result = fx.run_script("sap_experiments.py", "--model", model, "--models", "SAP:x", *common, cwd=tmp_path)
    fx.assert_clean_error(result, "error:", "not a number")
    for args, message in (
        (("--model", model, "--models", "adv"), "--adv-model"),
        (("--model", tmp_path / "missing.pt"), "checkpoint not found"),
        (("--model", model, "--samples", "0"), "--samples: must be an integer >= 1"),
        (("--model", model, "--eps", "300"), "--eps: must lie in [0, 255]"),
    ):
        assert message in fx.script_error("sap_experiments.py", *args, *common)


def test_an_interrupted_grid_keeps_its_cells_and_resumes_to_the_same_table(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the first PGD cell: 3 of 7 cells kept, partial tables written, status 130; --resume runs only the
    missing cells and gives the uninterrupted table (SAP's randomness included)."""
    import classifiers.experiments.sap_grid as grid

    script = sap_experiments
    for figure in ("plot_accuracy", "plot_reliability", "write_scalars"):  # not what this test is about; slow
        monkeypatch.setattr(script, figure, lambda *args, **kwargs: None)
    model = fx.write_checkpoint(tmp_path / "tiny.pt")
    argv = [
        "--model", str(model), "--models", "dense", "SAP:1.0", "--dataset", "synthetic", "--images", "2",
        "--samples", "2", "--fgsm-eot-samples", "2", "--eps", "0", "2", "--iterative-eps", "0",
        "--adaptive-eps", "8", "--pgd-steps", "1", "--eot-samples", "2", "--adaptive-attacks", "eot-pgd",
        "--bins", "4", "--quiet", "--device", "cpu",
    ]  # fmt: skip
    assert script.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    real_pgd = grid.pgd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(grid, "pgd", interrupted)
    out = tmp_path / "cut"
    assert script.main([*argv, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "3 of 7 cells" in err and f"--resume --out {out}" in err
    partial = json.loads((out / "results.json").read_text())
    attacked = {(r["model"], r["attack"]) for r in partial if r["lambda"] != 0}
    assert attacked == {("dense", "FGSM")}
    monkeypatch.setattr(grid, "pgd", real_pgd)
    assert script.main([*argv, "--out", str(out), "--resume"]) == 0

    def table(folder):
        rows = json.loads((folder / "results.json").read_text())
        return {(r["model"], r["attack"], r["lambda"]): (r["accuracy"], r["ece"], r["base_model_sha256"]) for r in rows}

    resumed, whole = table(out), table(tmp_path / "whole")
    assert resumed.keys() == whole.keys()
    for key, (accuracy, ece, digest) in whole.items():
        assert resumed[key] == (pytest.approx(accuracy, abs=1e-6), pytest.approx(ece, abs=1e-6), digest)
    assert json.loads((out / "run.json").read_text())["settings"]["dense_model_sha256"] == digest
