"""The run bookkeeping every job shares: checked flag types, atomic files, output folders, locks, signals, cells."""

from __future__ import annotations

import argparse
import doctest
import os
import signal
import stat

import pytest

from rlrobust import cli, files, runs
from rlrobust.cli import count, parse_number, real, run_main
from rlrobust.files import atomic_write, atomic_write_text, check_writable, remove_stale_temporaries, sha256_of
from rlrobust.runs import (
    CellStore,
    RunLock,
    claim_output_dir,
    read_run_record,
    sigterm_as_interrupt,
    write_run_record,
)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1/0", "abc", "1/2/3", ""])
def test_numbers_must_be_finite_and_well_formed(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_number(text)


def test_number_types_check_their_range():
    assert real(0, 1)("8/255") == pytest.approx(8 / 255)
    with pytest.raises(argparse.ArgumentTypeError, match=r"must lie in \(0, inf\)"):
        real(0, low_open=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\]"):
        real(0, 1)("1.5")
    assert count()("3") == 3
    for text, message in (("0", r"\[1, 10\]"), ("-5", r"\[1, 10\]"), ("2.5", "not an integer"), ("11", r"\[1, 10\]")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            count(1, 10)(text)


def test_argparse_names_the_flag_and_exits_2(capsys):
    parser = argparse.ArgumentParser(prog="job")
    parser.add_argument("--lr", type=real(0, low_open=True))
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--lr", "nan"])
    assert stop.value.code == 2
    assert "argument --lr: must be a finite number, got 'nan'" in capsys.readouterr().err


def test_run_main_turns_a_user_error_into_one_line_and_status_2(capsys):
    def main():
        raise ValueError("--eps must lie in [0, 255]")

    with pytest.raises(SystemExit) as stop:
        run_main(main)
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: --eps must lie in [0, 255]\n"
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: 130)  # an explicit status passes through
    assert stop.value.code == 130
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_main(lambda: {}["x"])


def test_atomic_files_respect_the_umask_and_leave_nothing_on_failure(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.csv", "a,b\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "r.csv", lambda handle: (handle.write(b"half"), (_ for _ in ()).throw(RuntimeError())))
    assert path.read_text() == "a,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    dead_pid = 2**22 + 12345  # above Linux's pid_max default: no such process
    stale = tmp_path / f".r.csv.pid{dead_pid}.abc123.tmp"
    stale.write_text("half")
    mine = tmp_path / f".r.csv.pid{os.getpid()}.xyz.tmp"
    mine.write_text("in progress")
    atomic_write_text(tmp_path / "other.txt", "x")
    assert not stale.exists() and mine.exists()
    assert remove_stale_temporaries(tmp_path) == []


def test_sha256_of_files_and_folders(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert sha256_of(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    before = sha256_of(tmp_path)
    (tmp_path / "b").write_bytes(b"")
    assert sha256_of(tmp_path) != before


def test_output_folder_claims(tmp_path):
    out = tmp_path / "eval"
    settings = {"model_sha256": "ab", "eps": [1, 2]}
    assert claim_output_dir(out, settings) == out and out.is_dir()
    write_run_record(out, "eval", settings, {"model": tmp_path / "nothing-here", "data": "synthetic"})
    with pytest.raises(ValueError, match=r"already holds results of another run.*--resume.*--overwrite"):
        claim_output_dir(out, settings)
    assert claim_output_dir(out, settings, resume=True) == out
    with pytest.raises(ValueError, match=r"other settings \(eps: \[1, 2\] -> \[1, 4\]\)"):
        claim_output_dir(out, {**settings, "eps": [1, 4]}, resume=True)
    assert claim_output_dir(out, {"eps": 3}, overwrite=True) == out
    record = read_run_record(out)
    assert record["job"] == "eval" and record["inputs"]["data"] == "synthetic" and "git" in record
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        claim_output_dir(tmp_path / "file", settings)
    with pytest.raises(NotADirectoryError):
        check_writable(tmp_path / "file" / "below")
    assert not (tmp_path / "file" / "below").exists()


def test_a_second_job_on_a_locked_folder_is_refused(tmp_path):
    busy = f"in use by another running job \\(pid {os.getpid()}"
    with RunLock(tmp_path), pytest.raises(ValueError, match=busy), RunLock(tmp_path):
        pass
    with RunLock(tmp_path):  # released on exit
        pass
    assert not (tmp_path / ".lock").exists()


def test_sigterm_interrupts_like_ctrl_c():
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_cells_are_kept_and_never_reused_under_other_settings(tmp_path):
    store = CellStore(tmp_path, {"model_sha256": "ab", "lambdas": [1.0]})
    store.add("fgsm/1", {"score": 3.5, "changed": float("nan")})
    again = CellStore(tmp_path, {"model_sha256": "ab", "lambdas": [1.0]})
    assert "fgsm/1" in again and again.get("fgsm/1")["score"] == 3.5 and len(again) == 1
    with pytest.raises(ValueError, match=r"other settings.*model_sha256: 'ab' -> 'cd'"):
        CellStore(tmp_path, {"model_sha256": "cd", "lambdas": [1.0]})
    (tmp_path / "cells.json").write_text("{truncated")
    with pytest.raises(ValueError, match="not readable JSON"):
        CellStore(tmp_path, {})


@pytest.mark.parametrize("module", [cli, files, runs], ids=lambda m: m.__name__)
def test_the_examples_in_the_docstrings_run(module):
    assert doctest.testmod(module).failed == 0
