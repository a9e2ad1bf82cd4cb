"""WEAT's energy lens: energies of natural and attacked inputs, curves and phases read from a training run's log,
and scripts/energy_analysis.py end to end."""

from __future__ import annotations

import hashlib
import json

import pytest

from classifiers.experiments.energy_curves import RunCurves, curve_rows, phase_boundaries, read_run
from classifiers.experiments.energy_lens import LensSettings, measure_energies, summary_rows
from classifiers.training.run_log import EpochLog
from tests import _experiment_fixtures as fx
from tests._experiment_fixtures import one_thread

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def test_attacks_move_the_energies_the_way_their_losses_say():
    model = fx.TinyNet().eval()
    data = fx.labelled_by(model, 16)
    settings = LensSettings(eps=8 / 255, steps=5, apgd_steps=5, target_classes=2, batch_size=10)
    energies = measure_energies(model, data, settings=settings, progress=False)
    assert set(energies) == {"natural", "pgd", "apgd-t", "pgd-targeted"}
    natural, attacked = energies["natural"], energies["pgd"]
    assert natural.correct.all()  # labelled by the model itself
    # Untargeted PGD ascends cross-entropy = E(x, y) - E(x): that difference must grow on average.
    assert (attacked.joint - attacked.free).mean() > (natural.joint - natural.free).mean()
    assert energies["pgd"].correct.float().mean() < 1
    rows = {r["input"]: r for r in summary_rows(energies, "tiny")}
    assert rows["natural"]["E(x) shift"] == 0 and rows["natural"]["share E(x) raised"] == 0
    assert rows["pgd"]["E(x) shift"] == pytest.approx((attacked.free.mean() - natural.free.mean()).item())
    assert rows["pgd-targeted"]["images"] == 16


def test_lens_rejects_bad_settings():
    model = fx.TinyNet().eval()
    with pytest.raises(ValueError, match="8/255"):
        LensSettings(eps=8)
    with pytest.raises(ValueError, match="unknown kinds"):
        measure_energies(model, fx.labelled_by(model, 2), kinds=("cw",), progress=False)


def fake_run(folder, method: str, natural: list[float], adversarial: list[float]):
    """A run folder written by the trainer's own logger (metrics.csv) and a config.json naming the method."""
    log = EpochLog(folder)
    log.plot = lambda: None  # the CSV is what is read; redrawing curves.png each epoch only costs time here
    for epoch, (n, a) in enumerate(zip(natural, adversarial, strict=True), start=1):
        log.add({"epoch": epoch, "train.loss": 1.0, "holdout.clean_acc": 0.5, "holdout.pgd_acc": 0.3,
                 "holdout.energy_nat": n, "holdout.energy_adv": a, "holdout.energy_gap": a - n})  # fmt: skip
    log.close()
    (folder / "config.json").write_text(json.dumps({"method": method}))
    return folder


# PGD-AT-like: a large gap that closes (phase 1), stays small (phase 2), then opens again (phase 3).
PGD_AT = ([-5.0] * 12, [-1.0, -2.0, -3.5, -4.6, -4.8, -4.8, -4.7, -4.8, -4.0, -3.0, -2.0, -1.0])
# TRADES-like: the gap closes and stays closed.
TRADES = ([-5.0] * 12, [-1.0, -2.0, -3.5, -4.6, -4.8, -4.8, -4.8, -4.8, -4.8, -4.8, -4.9, -4.8])


def test_phases_are_marked_where_the_energies_align_and_diverge():
    pgd_at = RunCurves("pgd_at", list(range(1, 13)), *PGD_AT)
    phase2, phase3 = phase_boundaries(pgd_at)
    assert phase2 in (4, 5) and phase3 in (9, 10, 11)
    trades = RunCurves("trades", list(range(1, 13)), *TRADES)
    assert phase_boundaries(trades)[1] is None
    rows = {r["run"]: r for r in curve_rows([pgd_at, trades])}
    assert rows["trades"]["mean |gap| last third"] < rows["pgd_at"]["mean |gap| last third"]


def test_run_logs_are_read_as_the_trainer_writes_them(tmp_path):
    run = read_run(fake_run(tmp_path / "a", "pgd_at", *PGD_AT))
    assert run.label == "pgd_at (a)" and run.epochs == list(range(1, 13))
    assert run.gap[0] == pytest.approx(4.0)
    with pytest.raises(FileNotFoundError, match=r"metrics\.csv"):
        read_run(tmp_path / "nowhere")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metrics.csv").write_text("epoch,train.loss\n1,0.5\n")
    with pytest.raises(ValueError, match="no per-epoch energies"):
        read_run(tmp_path / "b")


def test_command_line_end_to_end(tmp_path):
    model = fx.write_checkpoint(tmp_path / "tiny.pt")
    runs = [fake_run(tmp_path / "pgd_at", "pgd_at", *PGD_AT), fake_run(tmp_path / "trades", "trades", *TRADES)]
    out = tmp_path / "out"
    result = fx.run_script(
        "energy_analysis.py", "--model", model, "--dataset", "synthetic", "--images", "4", "--pgd-steps", "2",
        "--apgd-steps", "2", "--target-classes", "2", "--training-runs", *runs, "--threads", "1", "--out", out,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("energy_shift.csv", "energy_shift.json", "energy_shift.md", "energy_curves.md"):
        assert (out / name).stat().st_size > 0
    for png in ("energy_tiny.png", "energy_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "energy_shift.json").read_text())
    assert [r["input"] for r in rows] == ["natural", "pgd", "apgd-t", "pgd-targeted"]
    assert {r["model_sha256"] for r in rows} == {hashlib.sha256(model.read_bytes()).hexdigest()}
    assert json.loads((out / "run.json").read_text())["job"] == "energy_analysis"
    curves = json.loads((out / "energy_curves.json").read_text())
    assert [r["run"] for r in curves] == ["pgd_at (pgd_at)", "trades (trades)"]


def test_command_line_errors_are_clear(tmp_path):
    result = fx.run_script("energy_analysis.py", "--training-runs", tmp_path, cwd=tmp_path)
    fx.assert_clean_error(result, "error:", "no metrics.csv")
    assert "give --model" in fx.script_error("energy_analysis.py")
    assert "--eps: must lie in (0, 255]" in fx.script_error("energy_analysis.py", "--model", "x.pt", "--eps", "0")
