"""Which Slurm jobs are an app's, and which of them Slurm has lost (pure).

A Slurm job id is not an identity. A controller that restarts from state saved before a
submission has forgotten that submission's jobs (squeue does not know them; accounting keeps them
PENDING or RUNNING for ever) and hands their ids out again. So every row forge reads is checked
against the tag it gave the job (``forge:<submission>-...`` in ``--comment``: squeue's ``%k``,
sacct's ``SubmitLine``): a row of another submission is not the app's, whatever its id. And a job
the controller does not know, that accounting does not show ended, and that was submitted before
the controller last started, is **lost**: nothing will ever run or end it.

Nothing here asks Slurm: :mod:`torchx_forge.slurm.status` gathers the rows and the controller's
start time, and :mod:`torchx_forge.slurm.merge` shows a lost task as ``LOST``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from torchx_forge.core.states import JobKind
from torchx_forge.slurm.parse import TAG_PREFIX, JobRow, split_job_id
from torchx_forge.state.records import AppRecord, JobRecord


class Owner:
    """Says whether a row is one of ``rec``'s jobs. A job whose record keeps its tag is its own only
    with that very tag (within an app too: a resubmission may get an id an earlier job of the app
    had); any other id, with a tag that names the app's submission (first jobs, companions, waves)
    or a resubmission of the app (``<app id>-again-``, ``<app id>-lost-``). A row whose tags are unknown (a Slurm
    without SubmitLine) or a record without a submission is taken as the app's."""

    def __init__(self, rec: AppRecord) -> None:
        self.prefixes = (f"{TAG_PREFIX}{rec.submission}-", f"{TAG_PREFIX}{rec.app_id}-again-",
                         f"{TAG_PREFIX}{rec.app_id}-lost-")
        self.checked = bool(rec.submission)
        self.exact: Dict[str, Set[str]] = {}
        for job in rec.jobs:
            if job.tag and not job.planned:
                self.exact.setdefault(job.job_id, set()).add(f"{TAG_PREFIX}{job.tag}")
        self.seen: Dict[Tuple[str, str], bool] = {}

    def __call__(self, row: JobRow) -> bool:
        tags = row.tags
        if tags is None or not self.checked:
            return True
        mine = self.seen.get((row.base, tags))
        if mine is None:
            exact = self.exact.get(row.base)
            words = tags.split()
            mine = any(w in exact for w in words) if exact else any(w.startswith(self.prefixes) for w in words)
            self.seen[(row.base, tags)] = mine
        return mine


@dataclass
class Sorted:
    """An app's rows from one source, and the job ids whose rows belong to other submissions."""

    rows: Optional[List[JobRow]]
    foreign: List[str] = field(default_factory=list)


def own_rows(owner: Owner, rows: Optional[Sequence[JobRow]]) -> Sorted:
    """The rows ``owner`` recognises (None stays None: the source did not answer)."""
    if rows is None:
        return Sorted(None)
    mine: List[JobRow] = []
    foreign: Dict[str, None] = {}
    for row in rows:
        if owner(row):
            mine.append(row)
        else:
            foreign[row.base] = None
    return Sorted(mine, list(foreign))


def foreign_note(app_id: str, ids: Iterable[str]) -> str:
    listed = ", ".join(sorted(set(ids), key=lambda i: (len(i), i)))
    return (f"app {app_id}: Slurm job(s) {listed} now belong to another submission (Slurm gave the id again after"
            " losing this app's job): not counted")


def unseen(rec: AppRecord, live: Optional[Sequence[JobRow]], history: Optional[Sequence[JobRow]]) -> List[Tuple[str, JobRecord]]:
    """(key, job) of each submitted task and wave job of ``rec`` that the controller does not know
    (``live``: squeue's rows, which answered) and accounting does not show ended (``history``: None
    without accounting). Such a task ended and left both (a lag, accounting down), or was lost:
    :func:`unaccounted` and :func:`lost` tell them apart."""
    if live is None:
        return []
    known = {r.key for r in live}
    last = {r.key: r for r in history} if history is not None else {}
    out = []
    for key, _, _, job in rec.tasks():
        if job.planned or key in known:
            continue
        row = last.get(key)
        if row is None or not row.state.final:
            out.append((key, job))
    for job in rec.jobs:
        if job.job_kind is JobKind.WAVE and job.job_id not in known:
            row = last.get(job.job_id)
            if row is None or not row.state.final:
                out.append((job.job_id, job))
    return out


def unaccounted(unseen: Sequence[Tuple[str, JobRecord]], ended: Iterable[str]) -> List[Tuple[str, JobRecord]]:
    """The ``unseen`` tasks whose launcher did not report an end (``ended``: keys of those that did)."""
    done = set(ended)
    return [(key, job) for key, job in unseen if key not in done]


def lost(candidates: Sequence[Tuple[str, JobRecord]], booted: Optional[float]) -> Dict[str, str]:
    """Key -> why, for the ``candidates`` (:func:`unseen`) submitted before the controller last
    started at ``booted`` (epoch seconds; None: not known, nothing is called lost)."""
    if booted is None:
        return {}
    when = datetime.fromtimestamp(booted).strftime("%Y-%m-%d %H:%M:%S")
    out = {}
    for key, job in candidates:
        if job.created < booted:
            out[key] = (f"lost by Slurm: job {split_job_id(key)[0]} was submitted before its"
                        f" controller restarted ({when}), which no longer knows it; `torchx forge retry` submits it again")
    return out


def lost_note(app_id: str, found: Mapping[str, str]) -> str:
    jobs = sorted({split_job_id(k)[0] for k in found}, key=lambda i: (len(i), i))
    return (f"app {app_id}: Slurm lost job(s) {', '.join(jobs)} ({len(found)} task(s)) when its controller restarted:"
            " they will never run; `torchx forge retry` submits them again, `torchx cancel` ends the app")


def boot_time(config: Mapping[str, str]) -> Optional[float]:
    """The controller's start (``BOOT_TIME`` of ``scontrol show config``) in epoch seconds."""
    text = config.get("BOOT_TIME", "")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
