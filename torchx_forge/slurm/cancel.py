"""Cancelling an app, or single runs of a sweep: every job the app has (companions, resubmissions,
pipeline steps), then any a running companion adds meanwhile."""

from __future__ import annotations

from typing import List, Set

from torchx_forge.core.states import JobKind
from torchx_forge.errors import ConfigError, UnknownAppError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.status import own_queued
from torchx_forge.state.records import AppRecord, Records


def cancel_app(cli: SlurmCli, records: Records, rec: AppRecord) -> None:
    """Cancel every job of ``rec`` (``cli``: on the app's cluster), companions first marked off."""
    records.mark_cancelled(rec.app_id)  # first: a companion job that runs now resubmits nothing
    done: Set[str] = set()
    while True:  # again with jobs a companion added while we cancelled
        ids = [j for j in rec.job_ids(companions=True) if j not in done]
        if not ids:
            break
        mine = own_queued(cli, rec, ids)  # not a job of another app under an id Slurm gave again
        if mine:
            cli.cancel(mine, ended_ok=True)
        done.update(ids)
        rec = records.load(rec.app_id) or rec


def cancel_tasks(cli: SlurmCli, rec: AppRecord, role: str, replicas: List[int]) -> List[str]:
    """Cancel single runs (array tasks) of ``rec``; returns the Slurm ids cancelled."""
    keys = {(r, k): (key, job) for key, r, k, job in rec.tasks()}
    ids = []
    for k in replicas:
        if (role, k) not in keys:
            raise UnknownAppError(f"app {rec.app_id} has no replica {role}/{k}")
        key, job = keys[(role, k)]
        if job.job_kind is not JobKind.ARRAY:
            raise ConfigError(
                f"{role}/{k}", "is part of a heterogeneous job, whose components Slurm cannot cancel one by one;"
                " cancel the whole app with `torchx cancel`"
            )
        ids.append(key)
    cli.cancel(ids)
    return ids
