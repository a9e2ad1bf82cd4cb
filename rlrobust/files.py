"""Files written so that nothing is ever half there: a temporary file beside the target, flushed to disk, renamed
over it. The file gets the permissions any new file of the user gets (the umask), and temporaries left by a killed
writer are removed by the next write to the same folder. Also the content hash that results record.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> path = atomic_write_text(folder / "a.txt", "hello")
>>> path.read_text(), len(sha256_of(path))
('hello', 64)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_TEMPORARY = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.tmp$")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, fsync it, give it the umask's permissions and
    rename it over ``path``; an exception (Ctrl-C included) removes the temporary and leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, so readers never see half a file."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, record: Any) -> Path:
    """Write ``record`` as indented JSON (one trailing newline) to ``path`` atomically; values JSON lacks (paths,
    dates) are written as their ``str``.

    >>> import tempfile, pathlib
    >>> path = atomic_write_json(pathlib.Path(tempfile.mkdtemp()) / "run.json", {"seed": 0, "out": pathlib.Path("x")})
    >>> path.read_text().splitlines()
    ['{', '  "seed": 0,', '  "out": "x"', '}']
    """
    return atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries of :func:`atomic_write` in ``folder`` whose writing process no longer exists (it was
    killed mid-write); returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and not _process_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (hex), or of every file under a folder (names and bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def load_weights(source: str | Path | bytes, what: str = "file") -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (tensors and plain containers only: loading never runs code)
    from a path or bytes; a missing, truncated, foreign or code-carrying file raises one clear line.

    >>> import io, torch
    >>> buffer = io.BytesIO(); torch.save({"w": torch.ones(2)}, buffer)
    >>> load_weights(buffer.getvalue())["w"].tolist()
    [1.0, 1.0]
    """
    import io

    import torch

    name = f"{what} {source}" if not isinstance(source, bytes) else what
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise FileNotFoundError(f"{what} not found: {source}")
    try:
        return torch.load(
            io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu", weights_only=True
        )
    except Exception as err:  # torch raises several types for truncated, foreign or malicious files
        raise ValueError(
            f"cannot read {name}: {_first_line(err)} (corrupt, truncated or not a torch file of tensors)"
        ) from None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if "Weights only load failed" in lines[0]:  # torch's long explanation: keep what it refused
        detail = next((line for line in lines if "Unsupported" in line or "global" in line.lower()), "")
        named = re.search(r"Unsupported global: GLOBAL (\S+)", detail)  # torch's advice to allow it is left out
        if named:
            return f"not weights only: it names {named.group(1)}, which a file of tensors never does (nothing ran)"
        return "not weights only" + (f" ({detail})" if detail else "")
    return lines[0].split(". ")[0]


def check_writable(folder: str | Path, what: str = "output folder") -> Path:
    """Raise ``PermissionError`` with one clear line unless files can be created in ``folder`` (or, if it does not
    exist yet, in its nearest existing parent). Creates nothing."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{what} {folder}: {probe} exists and is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder} is not writable (no write permission on {probe})")
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
