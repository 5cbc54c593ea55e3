"""Retrying what Slurm lost, as the app's retry policy says, from the next forge command.

A job Slurm lost in a controller crash never ends, so its companion job (lost with it, or waiting
on a job that no longer exists) never retries it. The retry policy takes such a loss as it takes
a kill from outside (``NODE_FAIL``, ``PREEMPTED`` or ``TIMEOUT`` in ``retry_on``: the default; attempts left): whichever forge
command first sees the loss (``torchx status``, ``list``, ``log``, ``forge watch``) resubmits the
lost tasks once, as the companion would have, with the pipeline steps that waited for them.

Once, even when several commands see the loss at the same time: each resubmission is tagged
``<app id>-lost-<job id>-...``; a command that finds a queued job with that tag, or a record
that already has the resubmission, does nothing, and of two that submit at once the one with
the older (smaller) job id keeps it while the other cancels its own, still held.
"""

from __future__ import annotations

import time
from typing import Dict, List, Mapping, Optional, Sequence

from torchx_forge.core.states import JobKind, SlurmState
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.resubmit import SupersededError, follow_dependents, live_tagged, resubmit
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord, JobRecord, Records

#: seconds after the controller starts before lost tasks are resubmitted: the nodes report the lost
#: jobs' steps as orphans and end them meanwhile. A job the controller later launches under one of
#: their ids on the same node can still fail ("launch failed requeued held"): :mod:`~torchx_forge.slurm.held`
#: releases it
SETTLE = 30


def once_tag(rec: AppRecord, job: JobRecord) -> str:
    return f"{rec.app_id}-lost-{job.job_id}"


def to_retry(rec: AppRecord, views: Sequence[TaskView]) -> Dict[str, List[TaskView]]:
    """Job id -> its lost tasks that the job's retry policy takes back (attempts left)."""
    by_key = {v.key: v for v in views}
    out: Dict[str, List[TaskView]] = {}
    for key, _, _, job in rec.tasks():
        view = by_key.get(key)
        if view is None or view.slurm_state is not SlurmState.LOST or view.source != "lost":
            continue
        policy = job.policy()
        if job.max_retries > 0 and policy.retries(SlurmState.LOST) and policy.attempts_left(view.attempts):
            out.setdefault(job.job_id, []).append(view)
    return out


def retry_lost(cli: SlurmCli, records: Records, rec: AppRecord, views: Sequence[TaskView], python: str,
               booted: Optional[float] = None) -> List[str]:
    """Resubmit, once, the lost tasks of ``rec`` its retry policy takes back; one note per job.
    Not in the first :data:`SETTLE` seconds after the controller started (``booted``)."""
    wanted = to_retry(rec, views)
    if not wanted or records.cancelled(rec.app_id):
        return []
    if booted is not None and time.time() - booted < SETTLE:
        return [f"app {rec.app_id}: the lost tasks its retry policy takes back are resubmitted once the controller has"
                f" been up {SETTLE} s (the nodes are still ending what the lost jobs left running)"]
    fresh = records.load(rec.app_id) or rec  # another command may have done it since this one read the record
    done = {j.retry_of for j in fresh.jobs if j.retry_of}
    jobs: Mapping[str, JobRecord] = {j.job_id: j for j in rec.jobs}
    notes = []
    for job_id, lost in wanted.items():
        job = jobs[job_id]
        if job_id in done or live_tagged(cli, once_tag(rec, job)):
            continue
        tasks = sorted(int(v.key.rsplit("_", 1)[1]) for v in lost) if job.job_kind is JobKind.ARRAY else None
        try:
            new = resubmit(cli, records, rec, job, tasks, python, once=once_tag(rec, job))
        except SupersededError:
            continue
        follow_dependents(cli, records, rec, job.job_id, new, python)
        notes.append(f"app {rec.app_id}: Slurm lost {len(lost)} task(s) of job {job_id}; the retry policy takes a loss as a"
                     f" node failure: resubmitted as job {new.job_id}")
    return notes
