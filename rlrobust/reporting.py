"""Result tables as files: CSV and JSON for machines, Markdown for people, each written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlrobust.files import atomic_write_text

__all__ = ["atomic_write_text", "markdown_table", "pivot", "write_tables"]

Row = Mapping[str, object]


def markdown_table(rows: Sequence[Row], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (floats rounded to ``digits`` significant places).

    >>> print(markdown_table([{"model": "dense", "accuracy": 0.91648}, {"model": "SAP-100", "accuracy": 0.594}]))
    | model | accuracy |
    |---|---|
    | dense | 0.9165 |
    | SAP-100 | 0.594 |
    <BLANKLINE>
    """
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))  # every row's columns, not the first's
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, ""), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def pivot(rows: Sequence[Row], index: Sequence[str], column: str, value: str) -> list[dict[str, object]]:
    """A wide table: one row per distinct ``index`` tuple, one column per distinct ``column`` value.

    >>> rows = [{"model": "dense", "lambda": 0, "acc": 0.91}, {"model": "dense", "lambda": 2, "acc": 0.28}]
    >>> pivot(rows + [{"model": "SAP", "lambda": 0, "acc": 0.6}], ["model"], "lambda", "acc")
    [{'model': 'dense', 'lambda=0': 0.91, 'lambda=2': 0.28}, {'model': 'SAP', 'lambda=0': 0.6}]
    """
    table: dict[tuple, dict[str, object]] = {}
    for row in rows:
        key = tuple(row[k] for k in index)
        entry = table.setdefault(key, {k: row[k] for k in index})
        entry[f"{column}={_cell(row[column], 6)}"] = row[value]
    return list(table.values())


def write_tables(
    rows: Sequence[Row],
    out_dir: str | Path,
    stem: str = "results",
    *,
    title: str = "",
    notes: str = "",
    markdown_rows: Sequence[Row] | None = None,
) -> dict[str, Path]:
    """Write ``stem.csv``, ``stem.json`` and ``stem.md`` under ``out_dir``; returns their paths by suffix.

    The Markdown shows ``markdown_rows`` when given (e.g. a :func:`pivot` of ``rows``), else ``rows``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     paths = write_tables([{"model": "dense", "accuracy": 0.91}], folder, title="Clean accuracy")
    ...     print(sorted(paths), paths["md"].read_text().splitlines()[0])
    ['csv', 'json', 'md'] # Clean accuracy
    """
    out_dir = Path(out_dir)
    columns = list(rows[0].keys()) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    heading = f"# {title}\n\n" if title else ""
    body = f"{heading}{notes.strip()}\n\n" if notes else heading
    return {
        "csv": atomic_write_text(out_dir / f"{stem}.csv", buffer.getvalue()),
        "json": atomic_write_text(out_dir / f"{stem}.json", json.dumps(list(rows), indent=2) + "\n"),
        "md": atomic_write_text(out_dir / f"{stem}.md", body + markdown_table(markdown_rows or rows)),
    }


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)
