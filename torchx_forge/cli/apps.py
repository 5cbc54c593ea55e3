"""``torchx forge cancel | retry | results``: acting on apps slurm_forge submitted."""

from __future__ import annotations

import argparse
import sys

from torchx.specs.api import parse_app_handle

from torchx_forge import scheduler
from torchx_forge.cli import results as rs
from torchx_forge.core import envvars
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.report import format_table


def cmd_cancel(args: argparse.Namespace) -> None:
    scheme, _, path = args.target.partition("://")
    parts = path.split("/")
    if scheme != "slurm_forge" or len(parts) != 4:
        raise ForgeError(f"expected slurm_forge://SESSION/APP_ID/ROLE/REPLICAS (e.g. .../demo/3,4), got {args.target!r}")
    _, app_id, role, replicas = parts
    try:
        ids = [int(x) for x in replicas.split(",") if x]
    except ValueError:
        raise ForgeError(f"replica ids must be numbers separated by ',', got {replicas!r}") from None
    cancelled = scheduler.create_scheduler("torchx").cancel_replicas(app_id, role, ids)
    print(f"cancelled {', '.join(cancelled)}")


def cmd_cancel_app(args: argparse.Namespace) -> None:
    """``torchx cancel slurm_forge://SESSION/APP_ID``."""
    _, session, app_id = parse_app_handle(args.app_handle)
    scheduler.create_scheduler(session).cancel(app_id)


def app_id_of(handle: str) -> str:
    scheme, _, path = handle.partition("://")
    parts = path.split("/")
    if scheme != "slurm_forge" or len(parts) != 2 or not parts[1]:
        raise ForgeError(f"expected an app handle slurm_forge://SESSION/APP_ID, got {handle!r}")
    return parts[1]


def cmd_retry(args: argparse.Namespace) -> None:
    states = [s.strip().upper() for s in args.states.split(",")] if args.states else None
    done = scheduler.create_scheduler("torchx").retry(app_id_of(args.app_handle), states)
    if not done:
        print(f"{args.app_handle}: no ended task in {args.states or 'a failed or cancelled state'}; nothing resubmitted")
        return
    for job_id, tasks in done:
        print(f"resubmitted {', '.join(tasks)} as job {job_id}")
    print(f"follow them with: torchx status {args.app_handle}")


def cmd_results(args: argparse.Namespace) -> None:
    """One row per run: parameters, state, attempts, exit code and the metrics in each result dir."""
    app_id = app_id_of(args.app_handle)
    if bool(args.plot) != bool(args.x):
        raise ForgeError("--plot FILE.png and --x PARAM go together (e.g. --plot lr.png --x run.args.lr)")
    res = rs.load(scheduler.create_scheduler("torchx"), app_id, args.stage)
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
