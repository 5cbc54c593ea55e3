"""Per-task status: what the records, Slurm and the task state files say, folded into one view.

:func:`task_views` is pure: given an app record, the squeue rows, the sacct rows (None without
accounting) and the task state files, it decides per task which source is the freshest. squeue
knows live jobs (and forgets finished ones after MinJobAge); sacct knows everything but lags a
few seconds behind a submission; the state files the launcher writes cover clusters without
accounting. :func:`gather` is the one place that asks Slurm: one squeue and one sacct for any
number of apps, shared by ``describe`` and ``list``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from torchx.specs import AppState

from torchx_forge.core import layout
from torchx_forge.core.states import SlurmState
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.parse import APP_STATES, JobRow, TaskHistory, group_attempts
from torchx_forge.state.records import AppRecord, JobRecord, Records
from torchx_forge.state.taskfile import TaskReport


@dataclass
class TaskView:
    """What we know about one replica (one Slurm task)."""

    role: str
    replica: int
    key: str
    slurm_state: SlurmState
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    host: str = ""
    attempts: int = 1
    reason: str = ""
    source: str = ""
    resumed_from: str = ""
    retry_pending: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.slurm_state, SlurmState):  # a state as Slurm prints it
            self.slurm_state = SlurmState.parse(str(self.slurm_state))

    @property
    def state(self) -> AppState:
        return AppState.PENDING if self.retry_pending else APP_STATES[self.slurm_state]

    @property
    def final(self) -> bool:
        return self.slurm_state.final

    def to_json(self) -> Dict[str, Any]:
        return {**asdict(self), "slurm_state": self.slurm_state.value}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TaskView:
        return cls(**obj)


def task_views(
    rec: AppRecord,
    squeue: Iterable[JobRow],
    sacct: Optional[Iterable[JobRow]],
    reports: Mapping[str, TaskReport],
    cancelled: bool = False,
) -> List[TaskView]:
    """One TaskView per replica, in role/replica order (a resubmitted replica: its newest job)."""
    live = {r.key: r for r in squeue}
    history = group_attempts(sacct or [])
    every_key = rec.all_keys()
    views = []
    for key, role, replica, job in rec.tasks():
        report = reports.get(layout.task_key(role, replica))
        view = _view(key, role, replica, live.get(key), history.get(key), report, cancelled)
        earlier = sum(history[k].attempts for k in every_key.get((role, replica), []) if k != key and k in history)
        if earlier:  # attempts under earlier job ids (resubmissions) count too
            view.attempts = max(view.attempts, earlier + (history[key].attempts if key in history else 1))
        _mark_retry(view, job, live, history, cancelled)
        views.append(view)
    return views


def _mark_retry(view: TaskView, job: JobRecord, live: Mapping[str, JobRow], history: Mapping[str, TaskHistory],
                cancelled: bool) -> None:
    """A task that ended in a retry_on state while its companion job still waits is not over."""
    policy = job.policy()
    if not job.companion or cancelled or not view.final or not policy.retries(view.slurm_state):
        return
    comp = live.get(job.companion)
    comp_state = comp.state if comp else (history[job.companion].last.state if job.companion in history else None)
    if comp_state is not None and not comp_state.final and policy.attempts_left(view.attempts):
        view.retry_pending = True
        view.reason = f"retry pending (companion job {job.companion})"


def task_views_from_rows(rows: Iterable[JobRow]) -> List[TaskView]:
    """Views for a job without a record, named like TorchX's slurm scheduler does (``role-i``)."""
    views = []
    counters: Dict[str, int] = {}
    for key, hist in group_attempts(rows).items():
        last = hist.last
        role, _, idx = last.name.rpartition("-")
        if not (role and idx.isdigit()):
            role, idx = last.name or "job", str(counters.get(last.name, 0))
        counters[last.name] = counters.get(last.name, 0) + 1
        views.append(
            TaskView(role=role, replica=int(idx), key=key, slurm_state=last.state, exit_code=last.exit_code,
                     signal=last.signal, host=last.nodes, attempts=hist.attempts, reason=last.reason)
        )
    return views


def _view(key: str, role: str, replica: int, live: Optional[JobRow], hist: Optional[TaskHistory],
          report: Optional[TaskReport], cancelled: bool) -> TaskView:
    view = TaskView(role=role, replica=replica, key=key, slurm_state=SlurmState.UNKNOWN)
    if hist is not None:
        last = hist.last
        view.slurm_state, view.exit_code, view.signal = last.state, last.exit_code, last.signal
        view.host, view.attempts, view.source = last.nodes, hist.attempts, "sacct"
        # sacct's Reason is the last *pending* reason, even for ended jobs: not worth showing
    if live is not None and (hist is None or not live.state.final):
        # squeue is the live truth; sacct may lag behind a requeue or a new submission
        view.slurm_state, view.source = live.state, "squeue"
        view.host = live.nodes or view.host
        view.reason = live.reason if live.reason not in ("None", "") else ""
        if not live.state.final:
            view.exit_code = view.signal = None
    if report is not None:
        _merge_report(view, report, in_queue=live is not None or hist is not None, cancelled=cancelled)
    if view.slurm_state is SlurmState.UNKNOWN and cancelled:
        view.slurm_state = SlurmState.CANCELLED
    return view


def _merge_report(view: TaskView, report: TaskReport, in_queue: bool, cancelled: bool) -> None:
    """Use the launcher's own report where Slurm has nothing (no accounting, or a lag)."""
    view.attempts = max(view.attempts, report.attempts)
    view.resumed_from = report.resumed_from
    if not view.host:
        view.host = report.host
    if in_queue:
        if view.exit_code is None and view.final and report.exit_code is not None:
            view.exit_code = report.exit_code
        if view.final and report.note:
            view.reason = report.note
        return
    view.source = "state file"
    view.exit_code = report.exit_code
    if report.state is None:
        view.slurm_state = SlurmState.UNKNOWN
        return
    view.slurm_state, view.reason = report.state.as_slurm(cancelled, report.stopped_by)
    view.reason = report.note or view.reason


def app_state(views: List[TaskView]) -> AppState:
    """TorchX app state: running while any task runs or waits after another started."""
    states = [v.state for v in views]
    if not states:
        return AppState.UNKNOWN
    if any(s == AppState.RUNNING for s in states):
        return AppState.RUNNING
    waiting = [s for s in states if s in (AppState.PENDING, AppState.SUBMITTED, AppState.UNSUBMITTED)]
    if waiting:
        return AppState.PENDING if len(waiting) == len(states) else AppState.RUNNING
    if any(s == AppState.UNKNOWN for s in states):
        return AppState.UNKNOWN
    for s in (AppState.FAILED, AppState.CANCELLED):
        if s in states:
            return s
    return AppState.SUCCEEDED


def is_settled(views: List[TaskView]) -> bool:
    """Every task ended for good and the end came from sacct or a state file (not a lagging squeue)."""
    return bool(views) and all(v.final and not v.retry_pending and v.source != "squeue" for v in views)


def freeze(views: List[TaskView]) -> Dict[str, Any]:
    """A settled status, stored in the record so later describes need no Slurm call."""
    return {"time": time.time(), "tasks": [v.to_json() for v in views]}


def thaw(final: Mapping[str, Any]) -> List[TaskView]:
    return [TaskView.from_json(t) for t in final.get("tasks", [])]


# -- asking Slurm ----------------------------------------------------------------------------


def _needs_reports(rec: AppRecord, history: Optional[List[JobRow]]) -> bool:
    """Task state files are read when there is no accounting, when retries may have left notes,
    or while sacct lags (tasks it does not report yet, exit codes squeue lacks)."""
    if history is None or any(j.max_retries > 0 or j.extra_retries for j in rec.jobs):
        return True
    known = {r.key for r in history}
    return any(key not in known for key, _, _, _ in rec.tasks())


def gather(cli: SlurmCli, records: Records, recs: Sequence[AppRecord]) -> Dict[str, List[TaskView]]:
    """The task views of every app in ``recs``, by app id: one squeue and one sacct for all of them.

    Apps that settled before are answered from their records (no Slurm call); apps that settle
    now are frozen into their records.
    """
    pending = [r for r in recs if not r.final]
    ids = [j for r in pending for j in r.job_ids(companions=True)]
    live = cli.squeue(ids) if ids else []
    history = cli.sacct(ids) if ids else []
    out: Dict[str, List[TaskView]] = {}
    for rec in recs:
        if rec.final:
            out[rec.app_id] = thaw(rec.final)
            continue
        reports: Mapping[str, TaskReport] = {}
        cancelled = False
        if _needs_reports(rec, history):
            reports = records.task_reports(rec.app_id)
            cancelled = records.cancelled(rec.app_id)
        views = out[rec.app_id] = task_views(rec, live, history, reports, cancelled)
        if is_settled(views):
            rec.final = freeze(views)
            records.save(rec)
    return out
