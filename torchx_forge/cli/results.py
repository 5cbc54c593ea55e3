"""``torchx forge results``: one row per run of an app, with its parameters, state and metrics.

The command only: reading the runs, their metrics, the table, CSV, JSON and plot are
:mod:`torchx_forge.results`.
"""

from __future__ import annotations

import argparse
import sys

from torchx_forge import laptop as scheduler  # slurm_forge as torchx makes it: apps on a login too
from torchx_forge import results as rs
from torchx_forge.cli.apps import app_id_of
from torchx_forge.core import envvars
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.report import format_table


def cmd_results(args: argparse.Namespace) -> None:
    """One row per run: parameters, state, attempts, exit code and the metrics in each result dir."""
    app_id = app_id_of(args.app_handle)
    if bool(args.plot) != bool(args.x):
        raise ForgeError("--plot FILE.png and --x PARAM go together (e.g. --plot lr.png --x run.args.lr)")
    res = scheduler.create_scheduler("torchx").load_results(app_id, args.stage)
    metrics = rs.select_metrics(res, args.metric)
    if args.plot:  # check before writing anything
        metric = rs.plot_metric(res, args.metric)
        rs.check_param(res, args.x)
    print(f"{res.title}: {len(res.runs)} run(s)")
    print(format_table(rs.table_rows(res, metrics)))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    if not res.metrics():
        print(f"note: no run has written {rs.METRICS_JSON} (or {rs.METRICS_CSV}) in its {envvars.RESULT_DIR.name} yet",
              file=sys.stderr)
    rows = rs.rows_of(res, metrics)
    if args.csv:
        rs.write_csv(args.csv, rows)
        print(f"wrote {args.csv}")
    if args.json:
        rs.write_json(args.json, rows)
        print(f"wrote {args.json}")
    if args.plot:
        n = rs.plot(res, metric, args.x, args.plot)
        print(f"wrote {args.plot} ({metric} vs {args.x}, {n} point(s))")
