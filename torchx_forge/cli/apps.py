"""``torchx forge cancel | retry``: acting on apps slurm_forge submitted."""

from __future__ import annotations

import argparse

from torchx.specs.api import parse_app_handle

from torchx_forge import laptop as scheduler  # slurm_forge as torchx makes it: apps on a login too
from torchx_forge.errors import ForgeError


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


def cmd_budget(args: argparse.Namespace) -> None:
    """Raise a running search's budget of trials (within the max_trials it was submitted with)."""
    before, job = scheduler.create_scheduler("torchx").raise_budget(app_id_of(args.app_handle), args.trials)
    print(f"{args.app_handle}: budget raised from {before} to {args.trials} trials; decision job {job} asks the"
          f" new ones as slots free up")
    print(f"follow them with: torchx status {args.app_handle}")
