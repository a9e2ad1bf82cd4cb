"""agents/sap_report.py: the action-change rates beside the scores in results.md, the reading line, and the plot."""

from __future__ import annotations

import json

from agents.sap_evaluation import EvalSettings, columns
from agents.sap_report import action_change_rows, column_title, reading, write_report

SETTINGS = {"lambdas": (0, 2), "episodes": 2, "sap_passes": 4, "mc_samples": 4, "eot_samples": 2, "pgd_steps": 2}
RATES = {0.0: (0.0, 0.68, 0.68, 0.0, 0.68), 2.0: (1.0, 0.84, 0.81, 1.0, 0.72)}  # the Quickstart agent's, rounded


def rows(settings: EvalSettings, score: float = 0.0) -> list[dict]:
    """Rows as sap_evaluation.table_rows makes them: every score ``score``, the rates of RATES."""
    out = []
    for lam, rates in RATES.items():
        row = {"agent": "demo", "agent_sha256": "0" * 64, "game": "Bowling", "sap_frac": 1.0, "lambda": lam}
        row["episodes"] = 2
        for column, rate in zip(columns(settings), rates, strict=True):
            row |= {f"{column.key}_mean": score, f"{column.key}_se": 0.0}
            if column.baseline:
                row[f"{column.key}_rel_change_pct"] = float("nan") if score == 0 else 0.0
            row |= {f"{column.key}_action_change": rate, f"{column.key}_capped": 2}
        out.append(row)
    return out


def test_action_change_rows_give_each_column_its_rate_in_percent():
    settings = EvalSettings(**SETTINGS).validate()
    lines = action_change_rows(rows(settings), settings)
    titles = [column_title(column, settings) for column in columns(settings)]
    assert [[line[t] for t in titles] for line in lines] == [
        ["0%", "68%", "68%", "0%", "68%"],
        ["100%", "84%", "81%", "100%", "72%"],
    ]
    assert [line["lambda"] for line in lines] == ["0", "2"]


def test_reading_says_when_scores_cannot_separate_the_attackers():
    settings = EvalSettings(**SETTINGS).validate()
    flat = reading(rows(settings), settings)
    assert flat.startswith("Every mean score is 0: these games cannot tell the attackers apart by score")
    assert "still changes on 68% of steps" in flat
    scored = reading(rows(settings)[:1] + rows(settings, score=3.0)[1:], settings)
    assert "Every mean score" not in scored and "68% of steps" in scored


def test_results_md_shows_the_rates_beside_the_scores_and_the_plot_has_both(tmp_path):
    settings = EvalSettings(**SETTINGS).validate()
    paths = write_report(rows(settings), settings, tmp_path, agents=["demo"], seconds=1.0)
    markdown = paths["md"].read_text()
    scores, changes = markdown.split("## Action-change rates")
    assert "| 0.0 ± 0.0 [100%] | 0.0 ± 0.0 (n/a) [84%] |" in scores  # each score cell carries its rate
    assert "| 100% | 84% | 81% | 100% | 72% |" in changes
    assert "Every mean score is 0" in changes
    assert json.loads(paths["json"].read_text())[1]["sap_eot_action_change"] == 0.72
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
