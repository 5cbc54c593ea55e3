"""The rows of :class:`~torchx_forge.results.runs.Results` as a readable table, CSV and JSON. Pure,
but for the ``write_*`` functions."""

from __future__ import annotations

import csv
import json
from typing import Any, Dict, List, Optional, Sequence

from torchx_forge.errors import ForgeError
from torchx_forge.results.runs import Results

#: Shown in the table for a value a run did not report.
MISSING = "-"
#: Columns every row has; a metric with one of these names is exported as ``metric.<name>``.
FIXED = ("index", "run_id", "case", "state", "attempts", "exit_code", "result_dir")


def select_metrics(res: Results, metric: Optional[str]) -> List[str]:
    """The metric columns: ``metric`` alone, or every metric found when it is None."""
    found = res.metrics()
    if metric is None:
        return found
    if found and metric not in found:
        raise ForgeError(f"no run reported metric {metric!r}; metrics found: {', '.join(found)}")
    return [metric]


def export_name(metric: str, params: Sequence[str]) -> str:
    return f"metric.{metric}" if metric in FIXED or metric in params else metric


def rows_of(res: Results, metrics: Sequence[str]) -> List[Dict[str, Any]]:
    """One flat dict per run (the CSV and JSON rows); a missing value is None."""
    params = res.params()
    out = []
    for r in res.runs:
        given = dict(r.params)
        row: Dict[str, Any] = {"index": r.index, "run_id": r.run_id, "case": r.case}
        row.update((p, given.get(p)) for p in params)
        row.update(state=r.state, attempts=r.attempts, exit_code=r.exit_code)
        row.update((export_name(m, params), r.metrics.get(m)) for m in metrics)
        row["result_dir"] = r.result_dir
        out.append(row)
    return out


def fmt(value: Any, short: bool = False) -> str:
    """A cell of the readable table, missing values as '-'; ``short``: floats to 6 significant digits."""
    if value is None or value == "":
        return MISSING
    if short and isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def table_rows(res: Results, metrics: Sequence[str]) -> List[List[str]]:
    """Header plus one row per run, for :func:`torchx_forge.slurm.report.format_table`."""
    params = res.params()
    rows = [["RUN", "RUN ID", "CASE", *params, "STATE", "ATTEMPTS", "EXIT", *metrics]]
    for r in res.runs:
        given = dict(r.params)
        rows.append([str(r.index), r.run_id, fmt(r.case), *(fmt(given.get(p)) for p in params), r.state,
                     fmt(r.attempts), fmt(r.exit_code), *(fmt(r.metrics.get(m), short=True) for m in metrics)])
    return rows


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def write_csv(path: str, rows: List[Dict[str, Any]]) -> None:
    """A CSV file with a header row; missing values are empty cells."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if rows:
            w.writerow(list(rows[0]))
            w.writerows([_csv_cell(v) for v in r.values()] for r in rows)


def write_json(path: str, rows: List[Dict[str, Any]]) -> None:
    """A JSON list with one object per run; missing values are null."""
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")


