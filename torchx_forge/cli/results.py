"""``torchx forge results``: one row per run of an app, with its parameters, state and metrics.

The command only: reading the runs, their metrics, the table, CSV, JSON and plot are
:mod:`torchx_forge.results`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

from torchx_forge import laptop as scheduler  # slurm_forge as torchx makes it: apps on a login too
from torchx_forge import results as rs
from torchx_forge.cli.apps import app_id_of
from torchx_forge.core import envvars
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.report import format_table


def cmd_results(args: argparse.Namespace) -> None:
    """One row per run: parameters, state, attempts, exit code and the metrics in each result dir
    (a search: one row per trial, see :func:`search_results`)."""
    app_id = app_id_of(args.app_handle)
    if args.x and not args.plot:
        raise ForgeError(f"--x goes with --plot FILE.png (e.g. --plot lr.png --x {args.x})")
    res = scheduler.create_scheduler("torchx").load_results(app_id, args.stage)
    if res.search is not None:
        search_results(args, res)
        return
    if args.optuna:
        raise ForgeError(f"--optuna writes a search's study; {res.title} is not a search (forge.search)")
    if args.plot and not args.x:
        raise ForgeError("--plot FILE.png and --x PARAM go together (e.g. --plot lr.png --x run.args.lr)")
    metrics = rs.select_metrics(res, args.metric)
    if args.plot:  # check before writing anything
        metric = rs.plot_metric(res, args.metric)
        if args.x == rs.TRIAL_X and args.x not in res.params():
            raise ForgeError(f"--x {rs.TRIAL_X} is for searches (forge.search); {res.title} is not one")
        rs.check_param(res, args.x)
    print(f"{res.title}: {len(res.runs)} run(s)")
    print(format_table(rs.table_rows(res, metrics)))
    _notes(res)
    _write(args, rs.rows_of(res, metrics))
    if args.plot:
        n = rs.plot(res, metric, args.x, args.plot)
        print(f"wrote {args.plot} ({metric} vs {args.x}, {n} point(s))")


def search_results(args: argparse.Namespace, res: rs.Results) -> None:
    """A search: one row per trial (trial, state, rung, steps, metrics, parameters), the best marked;
    ``--plot`` draws its metric by trial with the best so far (``--x trial``, the default) or
    against a parameter (``--x run.args.lr``)."""
    assert res.search is not None
    info = res.search
    metrics = rs.search_metrics(res, args.metric)
    x = args.x or rs.TRIAL_X
    metric = args.metric or info.metric
    if args.plot:  # check before writing anything
        if x != rs.TRIAL_X:
            rs.check_param(res, x)
        if not rs.trial_points(res, metric):
            raise ForgeError(f"nothing to plot: no trial of {res.title} has a numeric {metric!r} yet")
    print(f"{res.title}: search {info.algorithm}, {info.mode} {info.metric}: {len(res.runs)} of {info.trials} trial(s)")
    print(format_table(rs.trial_table(res, metrics)))
    print(rs.best_line(res))
    _notes(res, search=True)
    _write(args, rs.trial_rows_of(res, metrics))
    if args.plot:
        n = rs.plot_trials(res, metric, args.plot) if x == rs.TRIAL_X else rs.plot(res, metric, x, args.plot)
        print(f"wrote {args.plot} ({metric} {'by trial' if x == rs.TRIAL_X else f'vs {x}'}, {n} point(s))")
    if args.optuna:
        url = rs.export_optuna(res, args.optuna)
        print(f"wrote {args.optuna} (the study, {len(res.runs)} trial(s)): optuna-dashboard {url}")


def _notes(res: rs.Results, search: bool = False) -> None:
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    if not res.metrics() and not search:  # a search's trials report with runtime.report
        print(f"note: no run has written {rs.METRICS_JSON} (or {rs.METRICS_CSV}) in its {envvars.RESULT_DIR.name} yet",
              file=sys.stderr)


def _write(args: argparse.Namespace, rows: List[Dict[str, Any]]) -> None:
    if args.csv:
        rs.write_csv(args.csv, rows)
        print(f"wrote {args.csv}")
    if args.json:
        rs.write_json(args.json, rows)
        print(f"wrote {args.json}")
