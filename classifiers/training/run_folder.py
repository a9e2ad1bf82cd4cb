"""A classifier training run's folder: claiming it, what the run records there, and the checks before a resume.

The folder is claimed before any work (another run's folder is refused unless ``resume`` or ``overwrite``);
``config.json`` holds every setting, ``run.json`` what produced the run (:func:`rlrobust.runs.write_run_record`:
settings, the data files' sha256, versions, git commit) and ``environment.json`` how it computes (device,
processes, precision). A resume must keep every setting but those of :data:`RESUMABLE_CHANGES` and the data files.

>>> from classifiers.training.config import make_config
>>> settings = run_settings(make_config("pgd_at", dataset="synthetic"))
>>> settings["eps"] == 8 / 255, "device" in settings  # what is computed, not where
(True, False)
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import torch

from classifiers.data.registry import dataset_files
from classifiers.training.checkpoint import BEST, LAST
from classifiers.training.config import TrainConfig
from rlrobust.distributed import Runtime
from rlrobust.files import atomic_write_json, atomic_write_text
from rlrobust.runs import (
    RUN_FILE,
    claim_output_dir,
    describe_input,
    read_run_record,
    remove_outputs,
    settings_changes,
    write_run_record,
)

# Config fields that may change between a run and its resumption (they do not change what is computed).
RESUMABLE_CHANGES = {"data_dir", "device", "amp", "channels_last", "compile", "out_dir"}
#: What a run writes into its folder; ``overwrite`` removes exactly these, so nothing of the old run stays mixed in.
RUN_OUTPUTS = ("config.json", "environment.json", RUN_FILE, "metrics.csv", "curves.png", LAST, BEST, "tensorboard")
JOB = "train_classifier"


def run_settings(config: TrainConfig) -> dict:
    """The settings that define what a run computes (all but where and how fast): a resumed run must match them."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_CHANGES}


def remove_run_outputs(out: Path) -> None:
    """Delete what an earlier run wrote into ``out`` (:data:`RUN_OUTPUTS`); other files stay."""
    remove_outputs(out, RUN_OUTPUTS)


def claim_run_folder(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Take ``out`` for this run or refuse it (see :func:`rlrobust.runs.claim_output_dir`). A run written before
    ``run.json`` existed is resumed on its checkpoint's own settings check (:func:`check_same_run`)."""
    legacy = resume and read_run_record(out) is None and (out / "config.json").is_file() and (out / LAST).is_file()
    if legacy:
        claim_output_dir(out, {}, overwrite=True)  # the checks of a writable folder; nothing is removed
        return
    claim_output_dir(out, run_settings(config), resume=resume, overwrite=overwrite)


def data_inputs(config: TrainConfig) -> dict:
    """The data's identity for ``run.json``: the dataset's name and each file it is read from with its sha256.

    >>> from classifiers.training.config import make_config
    >>> data_inputs(make_config("standard", dataset="synthetic"))
    {'dataset': 'synthetic', 'data': 'generated in code (classifiers.data.synthetic)'}
    """
    files = dataset_files(config.dataset, config.data_dir)
    inputs: dict = {"dataset": config.dataset}
    if not files:
        inputs["data"] = "generated in code (classifiers.data.synthetic)" if "synthetic" in config.dataset else None
    inputs.update({f"data:{name}": describe_input(path) for name, path in files.items()})
    return inputs


def write_run_files(out: Path, config: TrainConfig, runtime: Runtime, inputs: dict) -> None:
    """``config.json``, ``environment.json`` and ``run.json`` (rewritten at each start, a resume's included)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", config.to_json())
    atomic_write_json(out / "environment.json", runtime_record(runtime))
    write_run_record(out, JOB, run_settings(config), inputs)


def check_same_data(out: Path, inputs: dict) -> None:
    """Refuse to resume on data files other than the run's own (as recorded in its ``run.json``)."""
    recorded = (read_run_record(out) or {}).get("inputs", {})
    changed = [
        key
        for key, value in inputs.items()
        if isinstance(value, dict) and isinstance(recorded.get(key), dict)
        and value.get("sha256") != recorded[key].get("sha256")
    ]  # fmt: skip
    changed += [key for key in recorded if key.startswith("data:") and key not in inputs]
    if changed:
        raise ValueError(
            f"cannot resume in {out}: the data differ from the run's ({', '.join(changed)}); use a new --out"
        )


def check_same_run(saved: dict, config: TrainConfig) -> None:
    """Refuse to resume a checkpoint trained with other settings (those outside :data:`RESUMABLE_CHANGES`).

    >>> from classifiers.training.config import make_config
    >>> check_same_run(dataclasses.asdict(make_config("trades", epochs=10)), make_config("trades", epochs=20))
    Traceback (most recent call last):
    ValueError: cannot resume: the checkpoint was trained with different settings (epochs: 10 -> 20)
    """
    current = run_settings(config)
    changed = settings_changes({k: saved[k] for k in current if k in saved}, current)
    if changed:
        raise ValueError(f"cannot resume: the checkpoint was trained with different settings ({changed})")


def runtime_record(runtime: Runtime) -> dict:
    """How this run computes (``environment.json``); what produced it (versions, git commit) is in ``run.json``."""
    return {
        "device": str(runtime.device),
        "device_name": torch.cuda.get_device_name(runtime.device)
        if runtime.device.type == "cuda"
        else platform.processor(),
        "world_size": runtime.world_size,
        "amp": str(runtime.amp_dtype),
        "channels_last": runtime.channels_last,
    }
