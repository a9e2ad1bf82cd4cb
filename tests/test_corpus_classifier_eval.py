"""The bad-input corpus of the classifier evaluation scripts (eval_classifier, sap_experiments, energy_analysis,
generate): each bad number, name, model file or output folder ends with one ``error:`` line naming the problem,
exit status 2, and nothing written (see :mod:`tests.corpus`).

``{in}`` names a folder of prepared inputs shared by the cases: a small real checkpoint, broken model files, a file
where a folder belongs, and folders holding another run's results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests import _experiment_fixtures as fx
from tests._experiment_fixtures import one_thread
from tests.conftest import SHARED_DATA
from tests.corpus import Case, run_case

SYN = ("--dataset", "synthetic", "--images", "4")
AKAMASTER = SHARED_DATA / "cifar10_models/akamaster_pytorch_resnet_cifar10/resnet20-12fca82f.th"
TRUNCATED_PICKLE = SHARED_DATA / "cifar10/test_batch.truncated"


def ev(*argv: str, message: str, data: tuple[str, ...] = SYN, model: str = "{in}/model.pt") -> Case:
    return Case("eval_classifier", ("--model", model, *data, *argv, "--out", "{out}", "--quiet"), message)


def sap(*argv: str, message: str, model: str = "{in}/model.pt") -> Case:
    return Case("sap_experiments", ("--model", model, *SYN, *argv, "--out", "{out}", "--quiet"), message)


def energy(*argv: str, message: str) -> Case:
    return Case("energy_analysis", (*argv, "--out", "{out}", "--quiet"), message)


def gen(*argv: str, message: str, model: str = "{in}/model.pt") -> Case:
    return Case("generate", ("--model", model, *SYN, *argv, "--out", "{out}", "--quiet"), message)


CASES = [
    # eval_classifier: numbers
    ev("--eps", "nan", message="--eps: must be a finite number"),
    ev("--eps", "0", "inf", message="--eps: must be a finite number"),
    ev("--eps", "-1", message="--eps: must lie in [0, 255]"),
    ev("--eps", "300", message="--eps: must lie in [0, 255]"),
    ev("--scale", "1", "--eps", "2", message="--eps must lie in [0, 1]"),
    ev("--scale", "10", message="--scale: invalid choice"),
    ev("--iterative-step", "0", message="--iterative-step: must lie in (0, 255]"),
    ev("--scale", "1", "--eps", "0.1", "--iterative-step", "4", message="--iterative-step must lie in (0, 1]"),
    ev("--pgd-steps", "0", message="--pgd-steps: must be an integer >= 1"),
    ev("--pgd-step-frac", "0", message="--pgd-step-frac: must lie in (0, 2]"),
    ev("--pgd-step-frac", "NaN", message="--pgd-step-frac: must be a finite number"),
    ev("--restarts", "-2", message="--restarts: must be an integer >= 1"),
    ev("--apgd-steps", "1e3", message="--apgd-steps: not an integer"),
    ev("--batch-size", "0", message="--batch-size: must be an integer >= 1"),
    ev("--samples", "1.5", message="--samples: not an integer"),
    ev("--eot-samples", "0", message="--eot-samples: must be an integer >= 1"),
    ev("--eot", "0", message="--eot: must be an integer >= 1"),  # the hidden old name checks the same
    ev("--sap", "0", message="--sap: must lie in (0, 10]"),
    ev("--sap", "inf", message="--sap: must be a finite number"),
    ev("--images", "0", message="--images: must be an integer >= 1"),
    ev("--images", "100000", message="--images 100000 but synthetic-test holds only 512 images"),
    ev("--seed", "-1", message="--seed: must be an integer in [0, "),
    ev("--threads", "-1", message="--threads: must be an integer in [0, 4096]"),
    ev("--attacks", "apgd-t", "--apgd-targets", "10", message="only 9 wrong classes"),
    # eval_classifier: AutoAttack, Square and FAB-T settings
    ev("--attacks", "autoattack", "--version", "fast", message="--version: invalid choice: 'fast'"),
    ev("--attacks", "squares", message="--attacks: invalid choice: 'squares'"),
    ev("--attacks", "square", "--square-queries", "0", message="--square-queries: must be an integer >= 1"),
    ev("--square-queries", "5e3", message="--square-queries: not an integer"),
    ev("--square-queries", "nan", message="--square-queries: not an integer"),
    ev("--square-restarts", "-1", message="--square-restarts: must be an integer >= 1"),
    ev("--fab-steps", "0", message="--fab-steps: must be an integer >= 1"),
    ev("--fab-restarts", "1.5", message="--fab-restarts: not an integer"),
    ev("--rand-eot-samples", "0", message="--rand-eot-samples: must be an integer >= 1"),
    ev("--attacks", "fab-t", "--apgd-targets", "10", message="only 9 wrong classes"),
    ev("--attacks", "autoattack", "--apgd-targets", "12", message="only 9 wrong classes"),
    # eval_classifier: names
    ev("--attacks", "deepfool", message="--attacks: invalid choice: 'deepfool'"),
    ev(message="--dataset: invalid choice: 'imagenet'", data=("--dataset", "imagenet")),
    ev(message="has no 'train' split", data=("--dataset", "cifar10-shared", "--split", "train")),
    ev("--device", "tpu", message="--device: not a torch device: 'tpu'"),
    ev("--device", "cuda:0", message="CUDA is not available on this machine"),
    ev("--sap-sampling", "approx", message="--sap-sampling: invalid choice"),
    # eval_classifier: model files
    ev(message="checkpoint not found", model="{in}/missing.pt"),
    ev(message="checkpoint not found", model="{in}"),
    ev(message="cannot read checkpoint", model="{in}/text.pt"),
    ev(message="cannot read checkpoint", model="{in}/empty.pt"),
    ev(message="cannot read checkpoint", model="{in}/truncated.pt"),
    ev(message="not a model file this loader knows", model="{in}/tensors.pt"),
    ev(message="non-finite (NaN or inf) values in", model="{in}/diverged.pt"),
    ev("--transfer-from", "{in}/missing.pt", message="checkpoint not found"),
    # eval_classifier: output folders and run flags
    Case("eval_classifier", ("--model", "{in}/model.pt", *SYN, "--out", "{in}/afile"), "is not a folder"),
    Case("eval_classifier", ("--model", "{in}/model.pt", *SYN, "--out", "{in}/taken"), "holds results of another run"),
    Case("eval_classifier", ("--model", "{in}/model.pt", *SYN, "--resume", "--out", "{in}/taken"), "other settings"),
    Case("eval_classifier", ("--model", "{in}/model.pt", *SYN, "--resume", "--out", "{in}/foreign"), "no run.json"),
    Case("eval_classifier", ("--model", "{in}/model.pt", *SYN, "--resume"), "--resume needs --out"),
    ev("--resume", "--overwrite", message="--overwrite: not allowed with argument --resume"),
    # sap_experiments
    sap("--models", "FOO:1", message="cannot read model variant 'FOO:1'"),
    sap("--models", "SAP:inf", message="must be a finite number"),
    sap("--models", "SAP:nan", message="must be a finite number"),
    sap("--models", "SAP:0", message="must be > 0"),
    sap("--models", "DRO:1", message="must lie in (0, 1) for DRO"),
    sap("--models", "SAP:50", message="must lie in (0, 10] for SAP"),
    sap("--models", "foo+SAP:1", message="unknown base model 'foo'"),
    sap("--models", "adv", message="--adv-model"),
    sap("--eps", "nan", message="--eps: must be a finite number"),
    sap("--lambdas", "nan", message="--lambdas: must be a finite number"),  # the hidden old name
    sap("--iterative-eps", "256", message="--iterative-eps: must lie in [0, 255]"),
    sap("--adaptive-eps", "-1", message="--adaptive-eps: must lie in [0, 255]"),
    sap("--iterative-step", "0", message="--iterative-step: must lie in (0, 255]"),
    sap("--fgsm-eot-samples", "10", "0", message="--fgsm-eot-samples: must be an integer >= 1"),
    sap("--samples", "0", message="--samples: must be an integer >= 1"),
    sap("--bins", "0", message="--bins: must be an integer in [1, 1000]"),
    sap("--pgd-steps", "-1", message="--pgd-steps: must be an integer >= 1"),
    sap("--eot-samples", "0", message="--eot-samples: must be an integer >= 1"),
    sap("--apgd-steps", "0", message="--apgd-steps: must be an integer >= 1"),
    sap(message="cannot read checkpoint", model="{in}/empty.pt"),
    sap("--adv-model", "{in}/text.pt", message="cannot read checkpoint"),
    Case("sap_experiments", ("--model", "{in}/model.pt", *SYN, "--out", "{in}/taken"), "holds results of another run"),
    # energy_analysis
    energy(message="give --model"),
    energy("--model", "{in}/model.pt", *SYN, "--eps", "0", message="--eps: must lie in (0, 255]"),
    energy("--model", "{in}/model.pt", *SYN, "--eps", "nan", message="--eps: must be a finite number"),
    energy("--model", "{in}/model.pt", *SYN, "--pgd-steps", "0", message="--pgd-steps: must be an integer >= 1"),
    energy("--model", "{in}/model.pt", *SYN, "--scale", "1", "--eps", "8", message="--eps must lie in (0, 1]"),
    energy("--model", "{in}/model.pt", *SYN, "--target-classes", "10", message="only 9 wrong classes"),
    energy("--model", "{in}/model.pt", *SYN, "--kinds", "fgsm", message="--kinds: invalid choice"),
    energy("--model", "{in}/truncated.pt", *SYN, message="cannot read checkpoint"),
    energy("--training-runs", "{in}/foreign", message="no metrics.csv"),
    energy("--training-runs", "{in}/diverged", message="non-finite energies at epoch(s) [2]"),
    Case("energy_analysis", ("--training-runs", "{in}/diverged", "--out", "{in}/afile"), "non-finite energies"),
    Case("energy_analysis", ("--model", "{in}/model.pt", *SYN, "--out", "{in}/afile"), "is not a folder"),
    # generate
    gen("--momentum", "1", message="--momentum: must lie in [0, 1)"),
    gen("--step-size", "0", message="--step-size: must lie in (0, 1000]"),
    gen("--noise-std", "-0.1", message="--noise-std: must lie in [0, 1]"),
    gen("--retained-variance", "0", message="--retained-variance: must lie in (0, 1]"),
    gen("--pca-sigma", "inf", message="--pca-sigma: must be a finite number"),
    gen("--classes", "12", message="--classes [12] outside [0, 10)"),
    gen("--classes", "-1", message="--classes: must be an integer >= 0"),
    gen("--per-class", "0", message="--per-class: must be an integer in [1, 100000]"),
    gen("--max-fit-images", "1", message="--max-fit-images: must be an integer >= 2"),
    gen("--reference-images", "0", message="--reference-images: must be an integer >= 1"),
    gen("--inception-weights", "{in}/missing.pth", message="Inception weights not found"),
    gen("--inception-weights", "{in}/text.pt", message="too small to be"),
    gen(message="cannot read checkpoint", model="{in}/text.pt"),
    gen("--split", "validation", message="has no 'validation' split"),
    Case("generate", ("--model", "{in}/model.pt", *SYN, "--out", "{in}/taken"), "holds results of another run"),
]

#: Cases with the real models and data of the shared folder (skipped where it is absent).
SHARED_CASES = [
    Case(
        "eval_classifier",
        ("--model", str(AKAMASTER), "--dataset", "tiny-imagenet-shared", "--images", "2", "--out", "{out}"),
        "10 output classes but the data has 200",
    ),
    Case("eval_classifier", ("--model", str(TRUNCATED_PICKLE), "--out", "{out}"), "cannot read checkpoint"),
    Case("eval_classifier", ("--model", str(AKAMASTER), "--images", "2000", "--out", "{out}"), "holds only 1017"),
    Case(
        "sap_experiments",
        ("--model", str(AKAMASTER), "--models", "dense", "SAP:1.0", "--images", "5000", "--out", "{out}"),
        "holds only 1017",
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The prepared inputs ``{in}`` names (read only by the cases)."""
    folder = tmp_path_factory.mktemp("inputs")
    model = fx.write_checkpoint(folder / "model.pt")
    (folder / "text.pt").write_text("this is not a model\n")
    state = torch.load(model, weights_only=True)
    state["model"]["linear.bias"][3] = float("nan")  # a run that diverged
    torch.save(state, folder / "diverged.pt")
    (folder / "empty.pt").write_bytes(b"")
    (folder / "truncated.pt").write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    torch.save({"weight": torch.zeros(2, 2)}, folder / "tensors.pt")  # a torch file, but no model
    (folder / "afile").write_text("a file where the output folder belongs\n")
    taken = folder / "taken"  # another job's finished run
    taken.mkdir()
    (taken / "results.csv").write_text("attack,accuracy\nclean,0.9\n")
    (taken / "run.json").write_text(json.dumps({"job": "eval_classifier", "settings": {"pgd_steps": 7}}))
    foreign = folder / "foreign"  # results this project did not write
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's files\n")
    diverged = folder / "diverged"  # a training run whose energies blew up at epoch 2
    diverged.mkdir()
    (diverged / "metrics.csv").write_text("epoch,holdout.energy_nat,holdout.energy_adv\n1,-5.0,-4.0\n2,nan,-3.0\n")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def substituted(case: Case, inputs: Path) -> Case:
    return Case(case.script, tuple(a.replace("{in}", str(inputs)) for a in case.argv), case.message, case.errors)


@pytest.mark.usefixtures(one_thread.__name__)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_clear_line(case: Case, inputs: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    if "cuda" in case.argv and torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    monkeypatch.chdir(tmp_path)  # a default run folder would land here
    before = snapshot(inputs)
    run_case(substituted(case, inputs), tmp_path, capsys)
    assert snapshot(inputs) == before  # no prepared folder (another run's results) was touched
    assert not (tmp_path / "runs").exists()


@pytest.mark.usefixtures(one_thread.__name__)
@pytest.mark.parametrize("case", SHARED_CASES, ids=lambda c: c.id)
def test_bad_input_with_the_shared_models(case: Case, tmp_path: Path, capsys) -> None:
    for path in (AKAMASTER, TRUNCATED_PICKLE):
        if str(path) in case.argv and not path.is_file():
            pytest.skip(f"shared data file not present: {path}")
    if not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip("shared CIFAR-10 data not present")
    run_case(case, tmp_path, capsys)
