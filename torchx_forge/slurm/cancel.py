"""Cancelling an app, or single runs of a sweep: every job the app has (companions, resubmissions,
pipeline steps), then any a running companion adds meanwhile.

A controller that does not answer cancels nothing, and the user hears exactly that: when this
process's squeue found the controller silent a moment ago (the status asked just before), no
scancel is tried and nothing is marked; when scancel (or the squeue that picks the app's own
jobs) gets no answer before anything was cancelled, the cancel mark is taken back. Either way the
app is as it was, and one line says to run the cancel again once the controller answers.
"""

from __future__ import annotations

from typing import List, Set

from torchx_forge.core import layout
from torchx_forge.core.states import JobKind
from torchx_forge.errors import ConfigError, SlurmError, UnknownAppError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.resubmit import LIVE
from torchx_forge.slurm.status import own_queued
from torchx_forge.state.records import AppRecord, Records


def check_answering(cli: SlurmCli, app_id: str) -> None:
    """Raise :func:`not_cancelled` when the controller of ``cli``'s cluster did not answer this
    process's squeue just now: scancel would wait a minute for the same silence."""
    silent = cli.unanswered("squeue")
    if silent is not None:
        raise not_cancelled(cli, app_id, silent)


def not_cancelled(cli: SlurmCli, app_id: str, err: SlurmError) -> SlurmError:
    """One line: nothing of ``app_id`` was cancelled because Slurm did not answer (``err``), and what to do."""
    on, m = (f" of cluster {cli.cluster}", f" -M {cli.cluster}") if cli.cluster else ("", "")
    return SlurmError(err.argv, err.returncode, err.stderr, err.stdout, transient=True, message=(
        f"app {app_id}: nothing was cancelled: the Slurm controller{on} does not answer ({err.argv[0]}: {err.first_line});"
        f" run the same cancel again once `sinfo{m}` answers"))


def cancel_app(cli: SlurmCli, records: Records, rec: AppRecord) -> None:
    """Cancel every job of ``rec`` (``cli``: on the app's cluster), companions first marked off."""
    check_answering(cli, rec.app_id)
    records.mark_cancelled(rec.app_id)  # first: a companion job that runs now resubmits nothing
    done: Set[str] = set()
    while True:  # again with jobs a companion added while we cancelled
        ids = [j for j in rec.job_ids(companions=True) if j not in done]
        if not ids:
            break
        try:
            mine = own_queued(cli, rec, ids)  # not a job of another app under an id Slurm gave again
            if mine:
                cli.cancel(mine, ended_ok=True)
        except SlurmError as e:
            if not e.transient or done:
                raise
            records.store.remove(layout.cancelled(rec.app_id))  # nothing was cancelled: the app is as it was
            raise not_cancelled(cli, rec.app_id, e) from None
        done.update(ids)
        rec = records.load(rec.app_id) or rec
    if rec.meta.search:  # a decision job a trial's script submitted links itself only once it starts
        try:
            cli.cancel([j for j in cli.find_tagged(f"{rec.submission}-", prefix=True, states=LIVE) if j not in done],
                       ended_ok=True)
        except SlurmError:  # the app is cancelled: such a decision, if one starts, decides nothing
            pass


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
