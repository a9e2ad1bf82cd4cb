"""The bookkeeping every job shares, written once: its own output folder (never silently another job's), a lock
while it runs, Ctrl-C and SIGTERM as one polite stop, what produced the results, and finished cells kept so that
an interrupted evaluation resumes where it stopped.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "eval"
>>> claim_output_dir(out, {"model_sha256": "ab12", "eps": 8}).name
'eval'
>>> with RunLock(out):
...     store = CellStore(out, {"model_sha256": "ab12", "eps": 8})
...     store.add("clean", {"accuracy": 0.9})
>>> CellStore(out, {"model_sha256": "ab12", "eps": 8}).get("clean")
{'accuracy': 0.9}
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlrobust.files import atomic_write_json, check_writable, sha256_of

RUN_FILE = "run.json"  # what produced a folder's results: job, settings, inputs' hashes, versions
CELLS_FILE = "cells.json"  # finished cells of an evaluation, for resuming
LOCK_FILE = ".lock"
INTERRUPTED_STATUS = 130  # the shell's status for a job stopped by Ctrl-C (SIGINT); SIGTERM ends with it too
DIVERGED_STATUS = 1  # a training run stopped because its loss or weights became NaN or infinite


def claim_output_dir(
    out: str | Path,
    settings: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    resumable: bool = True,
) -> Path:
    """Make ``out`` this job's output folder, or refuse with one clear line.

    - an absent or empty folder is created and taken;
    - a folder holding another job's files is refused, unless ``resume`` (continue the job recorded in its
      :data:`RUN_FILE`, which must have been run with the same ``settings``) or ``overwrite`` (its files are
      replaced; other files in it are left as they are);
    - an unwritable place is refused before any work.

    ``resumable=False`` (a job without ``--resume``) leaves the resume hint out of the refusal.

    Nothing is written here: the job writes :data:`RUN_FILE` with :func:`write_run_record` once its inputs load.
    """
    out = Path(out)
    check_writable(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {out} exists and is not a folder")
    held = [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []
    if not held or overwrite:
        out.mkdir(parents=True, exist_ok=True)
        return out
    if not resume:
        hint = "pass --resume to continue that run or --overwrite" if resumable else "pass --overwrite"
        raise ValueError(
            f"output folder {out} already holds results of another run ({len(held)} entries); choose a new --out, "
            f"or {hint} to replace its results"
        )
    recorded = read_run_record(out)
    if recorded is None:
        raise ValueError(f"cannot resume in {out}: it has no {RUN_FILE} (not a folder this project wrote)")
    changed = settings_changes(recorded.get("settings", {}), settings)
    if changed:
        raise ValueError(f"cannot resume in {out}: it was run with other settings ({changed}); use a new --out")
    return out


def fresh_run_dir(root: str | Path, stem: str) -> Path:
    """A folder name no job has used yet: ``<root>/<stem>-<YYYYmmdd-HHMMSS>[-n]`` (not created here).

    The default ``--out`` of a job, so that two jobs never write into the same folder unless told to.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stem}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def remove_outputs(out: Path, names: Sequence[str]) -> None:
    """Remove the files and folders ``names`` a job writes from ``out`` (``--overwrite``), so that no file of the
    run being replaced passes for one of the new run; anything else in ``out`` is left alone."""
    for name in names:
        path = Path(out) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def resume_command(job: str, argv: Sequence[str], out: Path, *, first: Sequence[str] = ()) -> str:
    """The command that continues an interrupted run: ``rlrobust <job>`` (the console command every install has),
    ``first`` (e.g. the agent files, which also leave ``argv``), the rest of ``argv`` without
    ``--out``/``--resume``/``--overwrite``, then ``--out <out> --resume``.

    >>> resume_command("eval-sap", ["--eps", "0", "2", "--out", "runs/x"], Path("runs/x"))
    'rlrobust eval-sap --eps 0 2 --out runs/x --resume'
    """
    rest, skip = [], False
    moved = {str(Path(arg)) for arg in first}
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not (arg.startswith("--out=") or arg in ("--resume", "--overwrite") or str(Path(arg)) in moved):
            rest.append(arg)
    return shlex.join(["rlrobust", job, *first, *rest, "--out", str(out), "--resume"])


def settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any], *, ignore: Collection[str] = ()) -> str:
    """A readable list of the settings that differ (``name: old -> new``), empty when none do. The one check of
    "same settings" before a resume; ``ignore`` names the settings a resume may change (where, how fast).

    >>> settings_changes({"eps": 8, "device": "cpu"}, {"eps": 4, "device": "cuda"}, ignore=("device",))
    'eps: 8 -> 4'
    """
    normal = json.loads(json.dumps(dict(current), default=str))
    names = sorted((set(saved) | set(normal)) - set(ignore))
    return ", ".join(f"{k}: {saved.get(k)!r} -> {normal.get(k)!r}" for k in names if saved.get(k) != normal.get(k))


def write_run_record(out: str | Path, job: str, settings: Mapping[str, Any], inputs: Mapping[str, Any]) -> Path:
    """Write :data:`RUN_FILE`: the job, every setting, the input files with their sha256, versions and git state.

    ``inputs`` maps a role (``model``, ``data``) to a path (hashed here) or to a description (kept as is).
    """
    record = {
        "job": job,
        "settings": json.loads(json.dumps(dict(settings), default=str)),
        "inputs": {role: describe_input(value) for role, value in inputs.items()},
        **provenance(),
    }
    return atomic_write_json(Path(out) / RUN_FILE, record)


def provenance(packages: tuple[str, ...] = ("torch", "numpy")) -> dict[str, Any]:
    """What produced a run's results, in one record every job writes: the command (``sys.argv``), the time (UTC),
    the versions of Python and ``packages``, the machine and the git commit (:func:`environment`).

    >>> sorted(provenance())
    ['command', 'created', 'git', 'machine', 'versions']
    """
    return {
        "command": list(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **environment(packages),
    }


def read_run_record(out: str | Path) -> dict[str, Any] | None:
    """The folder's :data:`RUN_FILE`, or None where there is none (or it is unreadable)."""
    path = Path(out) / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_input(value: Any) -> Any:
    """A path as ``{"path", "sha256"}`` (a folder: the hash of all its files); anything else unchanged."""
    if isinstance(value, Path) and value.exists():
        return {"path": str(value), "sha256": sha256_of(value)}
    return value if isinstance(value, int | float | str | bool | type(None) | list | dict) else str(value)


def environment(packages: tuple[str, ...] = ("torch", "numpy")) -> dict[str, Any]:
    """Python and package versions, the machine and the git commit of this checkout (dirty or not)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", "unknown")
    return {
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "cpu_count": os.cpu_count(),
            "cuda": _cuda_device_name(),
        },
        "git": git_state(Path(__file__).resolve().parents[1]),
    }


def _cuda_device_name() -> str | None:
    torch = sys.modules.get("torch")
    return torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None


def git_state(repo: Path) -> dict[str, Any]:
    """The commit and whether tracked files differ from it; None values outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


class RunLock:
    """An exclusive lock on an output folder while a job writes to it; a second job on the same folder is refused
    with one clear line. The operating system releases it when the process dies, however it dies."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._handle = None

    def __enter__(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise ValueError(
                f"{self.folder} is in use by another running job ({owner}); wait for it or use another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
            (self.folder / LOCK_FILE).unlink(missing_ok=True)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM (a cluster's pre-emption, ``kill``) raises ``KeyboardInterrupt`` like Ctrl-C, so
    the job's Ctrl-C handling (save, keep finished work, exit 130) covers both. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CellStore:
    """Finished cells of an evaluation in ``out/cells.json``, rewritten atomically after each one, so Ctrl-C,
    SIGTERM or a crash loses at most the cell that was running. Keyed by ``settings`` (which should hold the
    model's sha256): cells saved under other settings are never reused."""

    def __init__(self, out: str | Path, settings: Mapping[str, Any], name: str = CELLS_FILE) -> None:
        """``name``: the file under ``out`` this store writes (one per process when several share a run); it
        reads every ``cells*.json`` there, so a run resumes whatever the number of processes that began it."""
        self.path = Path(out) / name
        self.settings = json.loads(json.dumps(dict(settings), default=str))
        self._mine: dict[str, Any] = self._read(self.path) if self.path.is_file() else {}
        self.cells: dict[str, Any] = {}
        for path in sorted(Path(out).glob("cells*.json")):
            self.cells |= self._mine if path == self.path else self._read(path)

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            saved = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} is not readable JSON ({err}); remove it or use a new --out") from None
        if saved.get("settings") != self.settings:
            changes = settings_changes(saved.get("settings", {}), self.settings)
            raise ValueError(f"{path} holds cells of other settings ({changes}); use a new --out")
        return dict(saved.get("cells", {}))

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def __len__(self) -> int:
        return len(self.cells)

    def get(self, key: str) -> Any:
        return self.cells.get(key)

    def add(self, key: str, value: Any) -> None:
        """Record a finished cell (JSON-serialisable) and rewrite the file."""
        self.cells[key] = json.loads(json.dumps(value, default=str))
        self._mine[key] = self.cells[key]
        atomic_write_json(self.path, {"settings": self.settings, "cells": self._mine})
