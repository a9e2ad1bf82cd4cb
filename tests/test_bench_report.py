"""benchmarks/bench_report.py at toy size: both setups play every cell to the same frame cap, and the table's
rates, totals and speed-ups are consistent with its seconds and steps."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_report.py"
EPISODES, MAX_FRAMES = 2, 40  # Pong lasts far longer: every game is capped, at most 40 / 4 = 10 agent steps


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_toy_run_plays_every_cell_in_both_setups_and_the_rates_add_up(tmp_path, capsys):
    bench = load_benchmark()
    out = tmp_path / "bench.json"
    argv = ["--random-agent", "--episodes", str(EPISODES), "--max-frames", str(MAX_FRAMES), "--threads", "1"]
    rows = bench.main([*argv, "--json", str(out)])
    assert [r["cell"] for r in rows] == [*bench.CELLS, "total"]
    cells, total = rows[:-1], rows[-1]
    for row in cells:
        for setup in ("engine", "loop"):
            assert row[f"{setup}_capped"] == EPISODES  # the cap holds in both setups
            assert EPISODES <= row[f"{setup}_steps"] <= EPISODES * MAX_FRAMES // 4
            assert row[f"{setup}_cells_per_h"] == pytest.approx(3600 / row[f"{setup}_s"], rel=0.05)
            assert row[f"{setup}_steps_per_s"] == pytest.approx(row[f"{setup}_steps"] / row[f"{setup}_s"], rel=0.1)
        assert row["speedup"] == pytest.approx(row["loop_s"] / row["engine_s"], rel=0.05)
    for setup in ("engine", "loop"):
        assert total[f"{setup}_steps"] == sum(r[f"{setup}_steps"] for r in cells)
        assert total[f"{setup}_s"] == pytest.approx(sum(r[f"{setup}_s"] for r in cells), abs=0.05)
        assert total[f"{setup}_cells_per_h"] == pytest.approx(len(cells) * 3600 / total[f"{setup}_s"], rel=0.05)
    assert "| total |" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"] == rows


def test_max_frames_must_be_whole_agent_steps():
    with pytest.raises(ValueError, match="multiple of 4"):
        load_benchmark().parse_args(["--max-frames", "82"])
