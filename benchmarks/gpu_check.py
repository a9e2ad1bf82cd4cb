"""One prepared GPU measurement: every GPU goal of the project measured in one run of at most 8 minutes.

The parts, each the repository's own test, benchmark or training script run as a subprocess with its own time box:

1. the ``gpu``-marked tests;
2. ``bench_core``: our attacks against torchattacks, SAP-100 against the dense forward; then, as a part of its own,
   AutoAttack-standard on 1,000 CIFAR-10 images, ours against torchattacks';
3. ``bench_ddqn``: our Double DQN with 16 ale-py envs and the replay on the device against SB3's DQN;
4. ``bench_classifier``: PGD-10 AT of ResNet-18 at batch 128 (images/s, the extrapolated CIFAR-10 epoch), bf16
   autocast on and off;
5. a 3-minute Double-DQN run on Pong (stopped by SIGTERM at its time limit: score and agent steps/s);
6. PGD-AT and WEAT (TRADES weighted by energy) of ResNet-18 for a few epochs on the shared CIFAR-10 test images
   (train on the JPEG images 1,017-9,999, evaluate on the lossless first 1,017): a demonstration of the training
   dynamics and energy curves, not a benchmark claim.

A part that fails or overruns its box is recorded as such (status, seconds, the last lines of its output) and the
rest still runs. The report, ``<out>/<YYYY-MM-DD>-<device>.md`` and ``.json``, is rewritten atomically before and
after every part, so what finished is there even if the whole run is cut off. Each part's own files (benchmark
tables, run folders, its output log) stay in the work folder, ``runs/gpu-check/<device>-<stamp>/``.

    python benchmarks/gpu_check.py                  # on a GPU machine: writes benchmarks/gpu/<date>-<device>.md
    python benchmarks/gpu_check.py --smoke          # the same parts at toy sizes on the CPU (about 2 minutes)
    python benchmarks/gpu_check.py --parts pong-ddqn at-weat --out /tmp/gpu   # some parts only
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rlrobust import cli
from rlrobust.reporting import atomic_write_text, markdown_table
from rlrobust.runs import INTERRUPTED_STATUS, fresh_run_dir, git_state

REPO = Path(__file__).resolve().parents[1]
TAIL_LINES = 25  # output lines kept for each part
GRACE_S = 10.0  # a time-limited part gets this long between SIGTERM and its box (to checkpoint and exit)
DONE = ("ok", "time-limited")  # the statuses of a part that did what it was asked
PYTEST_NOTHING_COLLECTED = 5  # pytest's status when no test matched: not a failure of the check
DEMO_NOTE = (
    "A demonstration of the training dynamics and energy curves, not a benchmark claim: a few epochs on the shared "
    "JPEG (lossy) CIFAR-10 test images from index 1,017 on, evaluated on lossless test images below index 1,017."
)


class PartInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM of the check while a part ran; ``result`` records the part as interrupted."""

    def __init__(self, result: PartResult) -> None:
        super().__init__(f"interrupted during {result.name}")
        self.result = result


@dataclass(frozen=True)
class Collected:
    """What a part's outputs say: ``figures`` (name -> value, the first few are the summary's key figures),
    ``tables`` (title, Markdown table) and ``missing``, the results a finished part should have written but did not
    (a part cut short keeps what it wrote before)."""

    figures: dict[str, object] = field(default_factory=dict)
    tables: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Part:
    """One measurement: ``command`` (argv) runs in the repository root with ``work`` (its own folder) at hand.

    ``time_box_s`` is the hard limit (the process group is killed there: "overran"); ``stop_after_s`` makes it a
    time-limited run, sent SIGTERM then so that it saves and reports what it did (exit 130: "time-limited").
    ``collect(work, output)`` reads its results; ``skip_reason()`` says why it cannot run here, or None.
    """

    name: str
    title: str
    command: tuple[str, ...]
    time_box_s: float
    work: Path
    collect: Callable[[Path, str], Collected] | None = None
    stop_after_s: float | None = None
    ok_codes: tuple[int, ...] = (0,)
    note: str = ""
    skip_reason: Callable[[], str | None] | None = None


@dataclass
class PartResult:
    """A part's outcome as the report shows it; ``status`` is one of not run yet, running, ok, time-limited,
    failed, overran, skipped, interrupted."""

    name: str
    title: str
    command: str
    time_box_s: float
    status: str = "not run yet"
    seconds: float | None = None
    returncode: int | None = None
    figures: dict[str, object] = field(default_factory=dict)
    tables: list[tuple[str, str]] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    note: str = ""
    problem: str = ""


# --- running parts ------------------------------------------------------------------------------------------------


def shown_command(command: Sequence[str]) -> str:
    """The command as a person would type it in the repository root (``python`` for this interpreter, paths
    inside the repository relative to it)."""
    inside = f"{REPO}{os.sep}"
    return shlex.join(["python" if arg == sys.executable else arg.replace(inside, "") for arg in command])


def run_part(part: Part, env: dict[str, str] | None = None) -> PartResult:
    """Run ``part`` within its time box and collect its results; never raises for the part's own failures."""
    result = PartResult(part.name, part.title, shown_command(part.command), part.time_box_s, note=part.note)
    reason = part.skip_reason() if part.skip_reason else None
    if reason:
        result.status, result.problem = "skipped", reason
        return result
    part.work.mkdir(parents=True, exist_ok=True)
    log_path = part.work / "output.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(part.command), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            stopped, overran = wait_within_box(process, part.time_box_s, part.stop_after_s, started)
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM of the check itself: end the part, then report it
            kill_group(process)
            result.status, result.seconds = "interrupted", round(time.monotonic() - started, 1)
            result.tail = read_tail(log_path)
            raise PartInterrupted(result) from err
    result.seconds = round(time.monotonic() - started, 1)
    result.returncode = process.returncode
    output = log_path.read_text(errors="replace")
    result.tail = output.splitlines()[-TAIL_LINES:]
    if overran:
        result.status, result.problem = "overran", f"killed at its {part.time_box_s:g} s time box"
    elif stopped and process.returncode == INTERRUPTED_STATUS:
        result.status = "time-limited"
    elif process.returncode in part.ok_codes:
        result.status = "ok"
    else:
        result.status, result.problem = "failed", f"exit status {process.returncode}"
    if part.collect is not None:
        try:
            collected = part.collect(part.work, output)
            result.figures, result.tables = collected.figures, collected.tables
            if collected.missing:
                raise FileNotFoundError(f"not written: {', '.join(collected.missing)}")
        except Exception as err:  # a part's unreadable results are reported, not fatal
            if result.status in DONE:
                result.status = "failed"
                result.problem = f"finished, but its results could not be read: {type(err).__name__}: {err}"
    return result


def wait_within_box(
    process: subprocess.Popen, box_s: float, stop_after_s: float | None, started: float
) -> tuple[bool, bool]:
    """Wait for ``process``; SIGTERM it at ``stop_after_s`` (a time-limited run), kill its group at ``box_s``.
    Returns (stopped by SIGTERM, killed at the box)."""
    stopped = False
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= box_s:
            kill_group(process)
            return stopped, True
        if stop_after_s is not None and not stopped and elapsed >= stop_after_s:
            process.send_signal(signal.SIGTERM)  # the main process only: it saves, then ends its own workers
            stopped = True
        try:
            process.wait(timeout=min(0.2, max(box_s - elapsed, 0.01)))
            return stopped, False
        except subprocess.TimeoutExpired:
            continue


def kill_group(process: subprocess.Popen) -> None:
    """Kill the part and every process it started (DataLoader workers, env workers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def read_tail(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return []


# --- collecting results -------------------------------------------------------------------------------------------


def collect_pytest(work: Path, output: str) -> Collected:
    """Counts from pytest's last summary line ("3 passed, 1 skipped in 2.1s")."""
    summary = next((line for line in reversed(output.splitlines()) if re.search(r"\bin [\d.]+s\b", line)), "")
    counts = {
        kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed)", summary)
    }
    if not summary:
        raise ValueError("no pytest summary line in the output")
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    tables = [("Skipped", "\n".join(f"- {line}" for line in skipped) + "\n")] if skipped else []
    return Collected({kind: counts.get(kind, 0) for kind in ("passed", "failed", "skipped")} | counts, tables)


def collect_bench_core(work: Path, output: str) -> Collected:
    record = json.loads((work / "bench_core.json").read_text())
    figures: dict[str, object] = {}
    for row in record["rows"]:
        figures[f"{row['model']}, {row['work']}: ours/{row['peer']}"] = row["ours/peer"]
    for row in record["autoattack_rows"]:
        key = f"AutoAttack {row['eps']}, {row['steps']} steps, {row['images']} images"
        figures[f"{key}: ours s"] = row.get("ours_s")
        figures[f"{key}: torchattacks s"] = row.get("peer_s")
        figures[f"{key}: robust acc ours / torchattacks"] = f"{row.get('ours_robust')} / {row.get('peer_robust')}"
    sap = {k: v for k, v in figures.items() if "SAP-100 forward" in k}
    figures = sap | {k: v for k, v in figures.items() if k not in sap}  # the goal's figure first
    tables = []
    if record["rows"]:
        tables.append(
            (f"Attacks and SAP ({record['device']}, torch {record['torch']})", markdown_table(record["rows"]))
        )
    if record["autoattack_rows"]:
        source = record["autoattack"]
        title = f"AutoAttack-standard: model {source['model']} (sha256 {source['model_sha256']}), data {source['data']}"
        tables.append((title, markdown_table(record["autoattack_rows"])))
    return Collected(figures, tables)


def collect_bench_ddqn(work: Path, output: str) -> Collected:
    figures: dict[str, object] = {}
    tables = []
    for stem in ("training", "updates", "replay"):
        path = work / f"{stem}.json"
        if not path.is_file():
            continue
        rows = json.loads(path.read_text())
        tables.append(titled_table((work / f"{stem}.md").read_text(), stem))
        for row in rows:
            if stem == "training":
                figures[f"{row['trainer']}: agent steps/s learning"] = row["steps/s learning"]
                figures[f"{row['trainer']}: learning vs SB3"] = row["learning vs SB3"]
            elif stem == "updates":
                figures[f"{row['trainer']}: ms per update"] = row["ms per update (median)"]
    missing = [] if (work / "training.json").is_file() else ["training.json"]  # the replay tables come first
    return Collected(figures, tables, missing)


def collect_bench_classifier(work: Path, output: str) -> Collected:
    rows = json.loads((work / "bench_classifier.json").read_text())
    ours, reference = rows
    figures = {
        "ours images/s": ours["images_per_s"],
        "ours s per CIFAR-10 epoch (extrapolated)": ours["s_per_cifar10_epoch"],
        "reference images/s": reference["images_per_s"],
        "speed-up": round(ours["images_per_s"] / reference["images_per_s"], 2),
        "ours setting": ours["setting"],
    }
    return Collected(figures, [titled_table((work / "bench_classifier.md").read_text(), "PGD-10 AT throughput")])


def titled_table(markdown: str, default_title: str) -> tuple[str, str]:
    """(title, body) of a benchmark's Markdown file: its own ``# heading`` becomes the title (the report's
    sections are the headings)."""
    first, _, rest = markdown.partition("\n")
    return (first[2:].strip(), rest.lstrip("\n")) if first.startswith("# ") else (default_title, markdown)


def single_run_dir(work: Path, marker: str) -> Path:
    """The one folder under ``work`` holding ``marker`` (the run folder a training script made there)."""
    found = sorted(path.parent for path in work.rglob(marker))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one {marker} under {work}, found {len(found)}")
    return found[0]


def collect_ddqn_run(work: Path, output: str) -> Collected:
    run_dir = single_run_dir(work, "summary.json")
    summary = json.loads((run_dir / "summary.json").read_text())
    session, scores = summary["this_session"], summary["recent_training_scores"]
    figures: dict[str, object] = {
        "agent steps/s (whole run: start-up, replay fill, compile included)": session["steps_per_sec"],
        "agent steps": summary["steps"],
        "mean score of recent training games (epsilon-greedy)": round(sum(scores) / len(scores), 2) if scores else None,
        "training games scored": len(scores),
        "seconds": session["seconds"],
        "stopped at the time limit": summary["interrupted"],
    }
    if summary["last_evaluation"]:
        figures["last greedy evaluation"] = summary["last_evaluation"]
    table = markdown_table([{"game": i + 1, "score": s} for i, s in enumerate(scores)]) if scores else ""
    return Collected(figures, [("Recent training games", table)] if table else [])


CURVE_COLUMNS = (
    "epoch",
    "lr",
    "train.loss",
    "train.acc_nat",
    "train.acc_adv",
    "holdout.clean_acc",
    "holdout.pgd_acc",
    "holdout.energy_nat",
    "holdout.energy_adv",
    "holdout.energy_gap",
    "time.train_s",
    "time.images_per_s",
)


def collect_classifier_run(work: Path, output: str) -> Collected:
    """Per-epoch curves (accuracies and energies on the evaluation images) from the run's metrics.csv."""
    run_dir = single_run_dir(work, "metrics.csv")
    with open(run_dir / "metrics.csv", newline="") as handle:
        epochs = [{k: _number(row[k]) for k in CURVE_COLUMNS if k in row} for row in csv.DictReader(handle)]
    if not epochs:
        raise ValueError(f"{run_dir / 'metrics.csv'} holds no finished epoch")
    last = epochs[-1]
    figures = {
        "epochs finished": len(epochs),
        "clean accuracy (last epoch)": last.get("holdout.clean_acc"),
        "PGD accuracy (last epoch)": last.get("holdout.pgd_acc"),
        "E(x) / E(x*) (last epoch)": f"{last.get('holdout.energy_nat'):.3f} / {last.get('holdout.energy_adv'):.3f}",
        "training images/s (last epoch)": round(float(last.get("time.images_per_s", "nan")), 1),
    }
    tables = [("Per-epoch curves (holdout = the evaluation images)", markdown_table(epochs))]
    if (run_dir / "curves.png").is_file():
        tables.append(("Curves", f"plotted in `{run_dir / 'curves.png'}`\n"))
    return Collected(figures, tables)


def _number(text: str) -> object:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


# --- the plan -----------------------------------------------------------------------------------------------------

#: Each part's sizes: (on a GPU, the issue's settings; toy sizes for the smoke run on a CPU).
SIZES: dict[str, tuple[str, str]] = {
    "bench-core": (
        "--sections attacks sap --resnet-batch 512 --dqn-batch 256 --min-repeats 3 --seconds 1",
        "--sections attacks sap --resnet-batch 1 --dqn-batch 1 --min-repeats 1 --seconds 0.01 --threads 1 "
        "--eot-samples 1",
    ),
    "bench-core-autoattack": (  # its own part: an overrun here keeps the attack and SAP tables
        "--sections autoattack --autoattack-images 1000 --autoattack-steps 100",
        "--sections autoattack --autoattack-images 2 --autoattack-steps 1 --autoattack-queries 5 --threads 1",
    ),
    "bench-ddqn": (
        "--ours-envs 16 --steps 4000 --learning-starts 1000 --update-repeats 20 --replay-fill 5000",
        "--ours-envs 2 --steps 120 --learning-starts 100 --buffer-size 500 --exploration-steps 100 "
        "--update-repeats 1 --replay-fill 20",
    ),
    "bench-classifier": (  # (5 + 11) x 128 = 2,048 images: the small generated set, made in a moment
        "--batches 11 --warmup 5",
        "--arch resnet20 --batch-size 2 --batches 1 --warmup 1",
    ),
    "pong-ddqn": (
        "--total-steps 50000000 --learning-starts 20000 --buffer-size 200000 --exploration-steps 250000 "
        "--num-envs 16 --compile on --log-every 10000",
        "--total-steps 200 --learning-starts 100 --buffer-size 500 --exploration-steps 200 --num-envs 2 "
        "--compile off --log-every 100 --max-episode-steps 60 --threads 1",
    ),
    "at": (
        "--arch resnet18 --epochs 6 --batch-size 128 --holdout-size 1017",
        "--arch resnet20 --epochs 1 --max-batches 1 --batch-size 4 --holdout-size 4 --attack-steps 1 "
        "--eval-steps 1 --train-size 16 --schedule constant",
    ),
}
#: Time boxes in seconds (GPU, toy). On a GPU they sum to 450 s (7.5 minutes), inside the issue's 8; the toy
#: boxes only catch a hang. A time-limited part (the Pong and AT runs) is sent SIGTERM GRACE_S before its box.
BOXES: dict[str, tuple[float, float]] = {
    "gpu-tests": (25, 60),
    "bench-core": (35, 90),
    "bench-core-autoattack": (45, 90),
    "bench-ddqn": (55, 90),
    "bench-classifier-bf16": (25, 60),
    "bench-classifier-fp32": (25, 60),
    "pong-ddqn": (170, 90),
    "at-pgd": (35, 90),
    "at-weat": (35, 90),
}
PART_NAMES = tuple(BOXES)


def shared_cifar_missing() -> str | None:
    """Why the AT demonstrations cannot run here (the shared CIFAR-10 files are absent), or None."""
    from classifiers.data.registry import dataset_files

    found = dataset_files("cifar10-shared-split")
    return None if len(found) == 2 else "the shared CIFAR-10 files are absent (../shared/data or $RLROBUST_SHARED_DATA)"


def gpu_test_files() -> list[str]:
    """Test files that mark a test ``gpu`` (the smoke run collects only these, not the whole suite)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def plan(smoke: bool, device: str, work: Path) -> list[Part]:
    """The parts, at the issue's sizes on ``device`` (a GPU: about 7.5 minutes) or at toy sizes (``smoke``)."""
    py, pick = sys.executable, int(smoke)
    w = {name: work / name for name in PART_NAMES}

    def sizes(key: str) -> list[str]:
        return shlex.split(SIZES[key][pick])

    def box(name: str, time_limited: bool = False) -> dict[str, object]:
        limit = BOXES[name][pick]
        return {"time_box_s": limit, "work": w[name], "stop_after_s": limit - GRACE_S if time_limited else None}

    marked = gpu_test_files()
    tests = [py, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", *(marked if smoke else ["tests"])]
    no_tests = (lambda: "no test file marks a test gpu") if smoke and not marked else None
    core = [py, "benchmarks/bench_core.py", "--device", device]
    ddqn = [py, "benchmarks/bench_ddqn.py", "--device", device, "--ours-backend", "ale", "--repeats", "1"]
    classifier = [py, "benchmarks/bench_classifier.py", "--device", device, *sizes("bench-classifier")]
    pong = [py, "scripts/train_ddqn.py", "--game", "Pong", "--device", device, "--vec-backend", "ale"]
    pong += ["--eval-every", "0", "--checkpoint-every", "0", "--quiet", *sizes("pong-ddqn")]
    at = [py, "scripts/train_classifier.py", "--dataset", "cifar10-shared-split", "--holdout-source", "test"]
    at += ["--select-from-epoch", "1", "--device", device, "--quiet", *sizes("at")]
    demo = {"note": DEMO_NOTE, "skip_reason": shared_cifar_missing}
    return [
        Part("gpu-tests", "The gpu-marked tests (pytest -m gpu)", tuple(tests), collect=collect_pytest,
             skip_reason=no_tests, ok_codes=(0, PYTEST_NOTHING_COLLECTED), **box("gpu-tests")),
        Part("bench-core", "bench_core: attacks against torchattacks, SAP-100 forward against the dense forward",
             (*core, *sizes("bench-core"), "--json", str(w["bench-core"] / "bench_core.json")),
             collect=collect_bench_core, **box("bench-core")),
        Part("bench-core-autoattack", "bench_core: AutoAttack-standard, ours against torchattacks'",
             (*core, *sizes("bench-core-autoattack"), "--json", str(w["bench-core-autoattack"] / "bench_core.json")),
             collect=collect_bench_core, **box("bench-core-autoattack")),
        Part("bench-ddqn", "bench_ddqn: Double DQN (ale-py envs, replay on the device) against SB3's DQN",
             (*ddqn, *sizes("bench-ddqn"), "--out", str(w["bench-ddqn"])), collect=collect_bench_ddqn,
             **box("bench-ddqn")),
        Part("bench-classifier-bf16", "bench_classifier: PGD-10 AT throughput, bf16 autocast",
             (*classifier, "--amp", "bf16", "--out", str(w["bench-classifier-bf16"])),
             collect=collect_bench_classifier, **box("bench-classifier-bf16")),
        Part("bench-classifier-fp32", "bench_classifier: PGD-10 AT throughput, fp32 (bf16 off)",
             (*classifier, "--amp", "off", "--out", str(w["bench-classifier-fp32"])),
             collect=collect_bench_classifier, **box("bench-classifier-fp32")),
        Part("pong-ddqn", "A time-limited Double-DQN run on Pong (3 minutes on a GPU): score and agent steps/s",
             (*pong, "--runs", str(w["pong-ddqn"])), collect=collect_ddqn_run, **box("pong-ddqn", True)),
        Part("at-pgd", "PGD-AT on the shared CIFAR-10 images (demonstration)",
             (*at, "--method", "pgd_at", "--out", str(w["at-pgd"] / "run")), collect=collect_classifier_run,
             **demo, **box("at-pgd", True)),
        Part("at-weat", "WEAT (TRADES weighted by energy) on the shared CIFAR-10 images (demonstration)",
             (*at, "--method", "weat_adv", "--out", str(w["at-weat"] / "run")), collect=collect_classifier_run,
             **demo, **box("at-weat", True)),
    ]  # fmt: skip


# --- the report ---------------------------------------------------------------------------------------------------


def device_label(device: str) -> str:
    """The GPU's name, or "cpu"."""
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def slug(text: str) -> str:
    """A file-name-safe form: "NVIDIA H200" -> "nvidia-h200"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def report_paths(out: Path, stem: str) -> tuple[Path, Path]:
    """``out/stem.md`` and ``.json``, with ``-2``, ``-3``, ... added when an earlier run of the day has them."""
    path, n = out / stem, 1
    while path.with_suffix(".md").exists() or path.with_suffix(".json").exists():
        n += 1
        path = out / f"{stem}-{n}"
    return path.with_suffix(".md"), path.with_suffix(".json")


def header(command: Sequence[str], device: str, label: str, smoke: bool, work: Path) -> dict[str, object]:
    import torch

    git = git_state(REPO)
    return {
        "command": shown_command(command),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "device_name": label,
        "smoke": smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "work_dir": str(work.relative_to(REPO) if work.is_relative_to(REPO) else work),
    }


def write_report(head: dict[str, object], results: Sequence[PartResult], md: Path, js: Path, state: str) -> None:
    """Both report files, atomically: ``state`` is "incomplete" (running, or cut off), "finished" or
    "interrupted"."""
    record = head | {"state": state, "parts": [asdict(r) for r in results]}
    atomic_write_text(js, json.dumps(record, indent=2, default=str) + "\n")
    atomic_write_text(md, render_markdown(head, results, state))


def render_markdown(head: dict[str, object], results: Sequence[PartResult], state: str) -> str:
    title = f"# GPU check: {head['device_name']}, {str(head['date'])[:10]}\n\n"
    lines = [title]
    if head["smoke"]:
        lines.append(
            "**SMOKE run**: the parts at toy sizes, to show the script works; its figures measure nothing.\n\n"
        )
    boxes = sum(r.time_box_s for r in results)
    lines += [
        f"- command: `{head['command']}`\n",
        f"- date: {head['date']}\n",
        f"- device: {head['device']} ({head['device_name']}); torch {head['torch']}, CUDA {head['cuda']}\n",
        f"- git commit: {head['git_commit']}{' (with uncommitted changes)' if head['git_dirty'] else ''}\n",
        f"- state: {state}; time boxes sum to {boxes:g} s; parts' own files under `{head['work_dir']}`\n\n",
        "## Summary\n\n",
    ]
    rows = [
        {
            "part": r.name,
            "status": r.status,
            "seconds": r.seconds if r.seconds is not None else "",
            "box s": r.time_box_s,
            "key figures": "; ".join(f"{k}: {v}" for k, v in list(r.figures.items())[:3]) or r.problem,
        }
        for r in results
    ]
    lines.append(markdown_table(rows) + "\n")
    for r in results:
        lines.append(f"## {r.name}: {r.title}\n\n`{r.command}`\n\n")
        seconds = f" after {r.seconds:g} s" if r.seconds is not None else ""
        lines.append(
            f"Status: **{r.status}**{seconds} (box {r.time_box_s:g} s){'; ' + r.problem if r.problem else ''}\n\n"
        )
        if r.note:
            lines.append(f"*{r.note}*\n\n")
        if r.figures:
            lines.append("".join(f"- {k}: {v}\n" for k, v in r.figures.items()) + "\n")
        for table_title, table in r.tables:
            lines.append(f"### {table_title}\n\n{table}\n")
        if r.status not in (*DONE, "not run yet", "skipped") and r.tail:
            lines.append("Last lines of its output:\n\n```\n" + "\n".join(r.tail) + "\n```\n\n")
    return "".join(lines)


def run_check(parts: Sequence[Part], head: dict[str, object], md: Path, js: Path, env=None) -> list[PartResult]:
    """Run ``parts`` in order, rewriting the report before and after each; Ctrl-C or SIGTERM ends the running part,
    records it as interrupted and re-raises as ``KeyboardInterrupt``."""
    results = [PartResult(p.name, p.title, shown_command(p.command), p.time_box_s, note=p.note) for p in parts]
    write_report(head, results, md, js, "incomplete")
    for i, part in enumerate(parts):
        results[i].status = "running"
        write_report(head, results, md, js, "incomplete")
        print(f"[{part.name}] {results[i].command} (box {part.time_box_s:g} s)", flush=True)
        try:
            results[i] = run_part(part, env)
        except KeyboardInterrupt as err:
            results[i] = err.result if isinstance(err, PartInterrupted) else results[i]
            results[i].status = "interrupted"
            write_report(head, results, md, js, "interrupted")
            raise
        r = results[i]
        print(f"[{part.name}] {r.status}" + (f" after {r.seconds:g} s" if r.seconds is not None else "")
              + (f": {r.problem}" if r.problem else ""), flush=True)  # fmt: skip
        write_report(head, results, md, js, "incomplete")
    write_report(head, results, md, js, "finished")
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU, to check the script (~2 minutes)")
    parser.add_argument("--device", type=gpu_device, help="where the parts run (default: cuda; cpu with --smoke)")
    parser.add_argument("--parts", nargs="+", choices=PART_NAMES, help="run only these parts (default: all)")
    parser.add_argument("--out", type=Path, help="report folder (default: benchmarks/gpu; runs/gpu-check with --smoke)")
    parser.add_argument("--work", type=Path, help="the parts' own files (default: a fresh runs/gpu-check/<device>-*)")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cpu" if args.smoke else device_or_exit(parser)
    return args


def gpu_device(text: str) -> str:
    """``rlrobust.cli.device``, with the smoke run named where a GPU was asked for and none is here."""
    try:
        return cli.device(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (or --smoke / make gpu-check SMOKE=1 for the CPU toy run)") from None


def device_or_exit(parser: argparse.ArgumentParser) -> str:
    try:
        return gpu_device("cuda")
    except argparse.ArgumentTypeError as err:
        parser.error(f"argument --device: {err}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    label = device_label(args.device)
    name = f"{slug(label)}-smoke" if args.smoke else slug(label)
    out = args.out or (REPO / ("runs/gpu-check" if args.smoke else "benchmarks/gpu"))
    work = args.work or fresh_run_dir(REPO / "runs" / "gpu-check", name)
    parts = [p for p in plan(args.smoke, args.device, work) if not args.parts or p.name in args.parts]
    md, js = report_paths(out, f"{datetime.now(timezone.utc):%Y-%m-%d}-{name}")
    env = dict(os.environ)
    if args.smoke:  # one thread each: the toy parts are latency-bound, and the machine may be shared
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"GPU check on {label}: {len(parts)} parts, boxes summing to {sum(p.time_box_s for p in parts):g} s")
    print(f"Report: {md} (rewritten after every part)")
    head = header([sys.executable, *sys.argv] if argv is None else ["benchmarks/gpu_check.py", *argv], args.device,
                  label, args.smoke, work)  # fmt: skip
    try:
        results = run_check(parts, head, md, js, env)
    except KeyboardInterrupt:
        print(f"interrupted: the report {md} holds the parts that finished", file=sys.stderr)
        return INTERRUPTED_STATUS
    bad = [r.name for r in results if r.status not in (*DONE, "skipped")]
    print(f"Report: {md} and {js.name}" + (f"; not ok: {', '.join(bad)}" if bad else "; every part ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM as Ctrl-C: the running part ends, report kept
    cli.run_main(main)
