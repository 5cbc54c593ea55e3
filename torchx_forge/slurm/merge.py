"""Per-task status, the pure part: what the records, Slurm and the task state files say, folded into one view.

Given an app record, the squeue rows, the sacct rows (None without accounting) and the task
state files, :func:`task_views` decides per task which source is the freshest. squeue knows live
jobs (and forgets finished ones after MinJobAge); sacct knows everything but lags a few seconds
behind a submission; the state files the launcher writes cover clusters without accounting.
:func:`settles` says whether such an answer is final (worth freezing into the record), and
:func:`needs_reports` / :func:`settled_in_accounting` which sources it takes to get one.

Nothing here asks Slurm or reads a file: :mod:`torchx_forge.slurm.status` gathers the sources,
and writes a settled answer back.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence

from torchx_forge.core import layout
from torchx_forge.core.policy import STOPPED_FROM_OUTSIDE
from torchx_forge.core.states import FileState, JobKind, Outcome, SlurmState
from torchx_forge.slurm.parse import JobRow, TaskHistory, group_attempts
from torchx_forge.slurm.views import SEARCH_AGAIN, TaskView
from torchx_forge.state.records import AppRecord, JobRecord
from torchx_forge.state.taskfile import AttemptReport, TaskReport

if TYPE_CHECKING:
    from torchx.specs import AppState


def task_views(
    rec: AppRecord,
    squeue: Optional[Iterable[JobRow]],
    sacct: Optional[Iterable[JobRow]],
    reports: Mapping[str, TaskReport],
    cancelled: bool = False,
    lost: Mapping[str, str] = MappingProxyType({}),
) -> List[TaskView]:
    """One TaskView per replica, in role/replica order (a resubmitted replica: its newest job).

    ``squeue`` None: the controller did not answer, so a task whose state file says it runs is
    taken as running (its last report), not as lost. A task squeue does not list while accounting
    does not show it ended takes its launcher's report of an end (accounting lags, or was down).
    ``lost``: key -> why, for tasks Slurm lost (:mod:`torchx_forge.slurm.identity`); their launcher's
    report of an end still wins.
    """
    live_known = squeue is not None
    live = {r.key: r for r in squeue or []}
    history = group_attempts(sacct or [])
    every_key = rec.all_keys() if rec.resubmitted else {}
    views = []
    waves = WaveStates(rec, live, history, lost)
    for key, role, replica, job in rec.tasks():
        if job.planned:
            views.append(waves.planned_view(key, role, replica, job, cancelled))
            continue
        report = reports.get(layout.task_key(role, replica)) if reports else None
        hist = history.get(key)
        view = _view(key, role, replica, live.get(key), hist, report, cancelled, live_known)
        if report is not None and not live_known:
            _fresher_than_accounting(view, key, report, job, AS_REPORTED)
        elif report is not None and key not in live and reported_end(report):
            _fresher_than_accounting(view, key, report, job, AS_ENDED)
        if key in lost:  # (no end its launcher reported: those are not called lost)
            _mark_lost(view, lost[key], cancelled)
        keys = every_key.get((role, replica), [key])
        if len(keys) > 1:  # attempts under earlier job ids (resubmissions) count too
            earlier = sum(history[k].attempts for k in keys if k != key and k in history)
            if earlier:
                view.attempts = max(view.attempts, earlier + (hist.attempts if hist else 1))
        if len(keys) > 1 or report is not None or (hist is not None and len(hist.rows) > 1):
            view.causes = attempt_causes(keys, history, report)  # (one attempt, nothing to tell: the common case)
        if job.companion:
            _mark_retry(view, job, live, history, cancelled)
        if rec.meta.search and not cancelled and (waves.deciding_all or waves.deciding_after.get(job.tag, False)):
            _decided_next(view)
        views.append(view)
    return views


class WaveStates:
    """Where the waves of an app stand: the newest wave job of each wave, and its state."""

    def __init__(self, rec: AppRecord, live: Mapping[str, JobRow], history: Mapping[str, TaskHistory],
                 lost: Mapping[str, str] = MappingProxyType({})) -> None:
        self.rec = rec
        self.jobs: Dict[int, JobRecord] = {}
        for job in rec.jobs:  # in submission order: a later try of a wave replaces the earlier
            if job.job_kind is JobKind.WAVE:
                self.jobs[job.wave] = job
        self.states: Dict[str, Optional[SlurmState]] = {}
        for job in self.jobs.values():
            row = live.get(job.job_id)
            self.states[job.job_id] = row.state if row else (history[job.job_id].last.state if job.job_id in history else None)
            if job.job_id in lost and not (self.states[job.job_id] or SlurmState.PENDING).final:
                self.states[job.job_id] = SlurmState.LOST
        # a search's decision jobs that may still run: each trial job's (tagged as it, plus "d"), and
        # those of the whole search (a retry's, or one status submitted when none was left)
        trials = {j.tag for j in rec.jobs if j.job_kind is JobKind.ARRAY and j.tag}
        self.deciding_after: Dict[str, bool] = {}
        self.deciding_all = False
        for j in rec.jobs:
            if j.job_kind is JobKind.DECIDE:
                end = live[j.job_id].state if j.job_id in live else (
                    history[j.job_id].last.state if j.job_id in history else None)
                may_run = end is None or not end.final
                if j.tag[:-1] in trials:
                    self.deciding_after[j.tag[:-1]] = self.deciding_after.get(j.tag[:-1], False) or may_run
                else:
                    self.deciding_all = self.deciding_all or may_run
        self.deciding = self.deciding_all or any(self.deciding_after.values())

    def planned_view(self, key: str, role: str, replica: int, job: JobRecord, cancelled: bool) -> TaskView:
        """A task of a wave not submitted yet: pending behind its wave job, or failed with it."""
        view = TaskView(role=role, replica=replica, key=key, slurm_state=SlurmState.PENDING, attempts=0, source="plan")
        where = f"wave {job.wave + 1} of {self.rec.waves}"
        if self.rec.meta.search:  # a trial no decision has asked yet: pending while one may still run
            view.reason = "trial not asked yet: a decision job submits it when a slot frees up"
            if cancelled or not self.deciding:
                view.slurm_state, view.reason = SlurmState.CANCELLED, "trial not asked: the search " + (
                    "was cancelled" if cancelled else "ended (its summary says why)")
            return view
        if cancelled:
            view.slurm_state, view.reason = SlurmState.CANCELLED, f"{where}, cancelled before it was submitted"
            return view
        earlier = [w for w in self.jobs if w <= job.wave]
        wave_job = self.jobs[max(earlier)] if earlier else None
        state = self.states.get(wave_job.job_id) if wave_job else None
        if wave_job is None or state is None or not state.final:
            by = f" by job {wave_job.job_id}" if wave_job is not None and wave_job.wave == job.wave else ""
            view.reason = f"{where}: submitted{by} once wave {job.wave} has ended"
            return view
        log = layout.wave_log(self.rec.log_dir, self.rec.name, wave_job.wave).replace("%j", wave_job.job_id)
        view.slurm_state = SlurmState.FAILED
        view.reason = (f"{where} was not submitted: wave job {wave_job.job_id} ended {state.value} (see {log});"
                       " `torchx forge retry` submits it")
        return view


def _cause(state: Optional[SlurmState], entry: Optional[AttemptReport]) -> str:
    """What ended one attempt: Slurm's end state, or for a requeue (or a FAILED job whose program Slurm
    stopped: a preemption with a grace time) what the launcher saw."""
    stopped = state is SlurmState.FAILED and entry is not None and entry.outcome is Outcome.STOPPED
    if state is not None and state not in (SlurmState.REQUEUED, SlurmState.UNKNOWN) and not stopped:
        return str(state)
    if entry is not None and entry.warned_by:
        return str(SlurmState.PREEMPTED) if entry.warned_by in STOPPED_FROM_OUTSIDE else "warned"
    if entry is not None and entry.outcome is Outcome.FAILED:
        return str(SlurmState.FAILED)
    if entry is not None and entry.outcome is Outcome.STOPPED:
        return "KILLED"
    return str(state) if state is not None else "?"


def attempt_causes(keys: Sequence[str], history: Mapping[str, TaskHistory], report: Optional[TaskReport]) -> List[str]:
    """What ended every attempt of a task but its latest, oldest first: NODE_FAIL, PREEMPTED, TIMEOUT,
    ``warned`` (the pre-timeout warning, then a requeue), FAILED ... from sacct's row of each attempt
    and, for requeues, the launcher's own record of why the program stopped."""
    entries = {e.attempt: e for e in (report.history if report else ())}
    rows = [row for k in keys if k in history for row in history[k].rows]
    if rows:
        return [_cause(row.state, entries.get(i)) for i, row in enumerate(rows[:-1])]
    ordered = sorted(entries.values(), key=lambda e: e.attempt)
    return [_cause(None, e) for e in ordered[:-1]]


def _mark_retry(view: TaskView, job: JobRecord, live: Mapping[str, JobRow], history: Mapping[str, TaskHistory],
                cancelled: bool) -> None:
    """A task that ended in a retry_on state while its companion job still waits is not over."""
    if not job.companion or cancelled or not view.final:
        return
    policy = job.policy()
    if not policy.retries(view.slurm_state):
        return
    comp = live.get(job.companion)
    comp_state = comp.state if comp else (history[job.companion].last.state if job.companion in history else None)
    if comp_state is not None and not comp_state.final and policy.attempts_left(view.attempts):
        view.retry_pending = True
        view.reason = f"retry pending (companion job {job.companion})"


def _decided_next(view: TaskView) -> None:
    """A search's trial that ended otherwise than COMPLETED while the decision job that takes its end
    (its own, or one of the whole search) may still run is not over: that decision asks it again
    (preempted, timed out, node failure, or retried by hand: one more attempt, from its checkpoint)
    or marks it failed."""
    if not view.final or view.slurm_state is SlurmState.COMPLETED:
        return
    view.retry_pending = True
    again = view.slurm_state in SEARCH_AGAIN
    view.reason = (f"{view.slurm_state.value}: " + ("the search runs it again from its checkpoint" if again else
                   "the search's decision job decides what follows") + " (decision job pending)")


def task_views_from_rows(rows: Iterable[JobRow]) -> List[TaskView]:
    """Views for a job without a record: an array task's replica is its task id (its role the job
    name); a het component named ``role-i`` (TorchX's slurm scheduler) is replica i of role, any
    other job is replica (het offset) of a role named after the job."""
    views = []
    for key, hist in group_attempts(rows).items():
        last = hist.last
        role, replica = last.name or "job", last.task if last.task is not None else (last.het or 0)
        base, _, idx = last.name.rpartition("-")
        if last.task is None and base and idx.isdigit():
            role, replica = base, int(idx)
        views.append(
            TaskView(role=role, replica=replica, key=key, slurm_state=last.state, exit_code=last.exit_code,
                     signal=last.signal, host=last.nodes, attempts=hist.attempts,
                     reason=last.reason if last.reason not in ("None", "") else "")
        )
    return sorted(views, key=lambda v: (v.role, v.replica))


def _view(key: str, role: str, replica: int, live: Optional[JobRow], hist: Optional[TaskHistory],
          report: Optional[TaskReport], cancelled: bool, live_known: bool = True) -> TaskView:
    view = TaskView(role=role, replica=replica, key=key, slurm_state=SlurmState.UNKNOWN)
    if hist is not None:
        last = hist.last
        view.slurm_state, view.exit_code, view.signal = last.state, last.exit_code, last.signal
        view.host, view.attempts, view.source = last.nodes, hist.attempts, "sacct"
        # sacct's Reason is the last *pending* reason, even for ended jobs: not worth showing
    if live is not None and (hist is None or not live.state.final or not hist.last.state.final):
        # squeue is the live truth; sacct may lag behind a requeue, a new submission or an end (an
        # end both show: sacct's row, with its exit code)
        view.slurm_state, view.source = live.state, "squeue"
        view.host = live.nodes or view.host
        view.reason = live.reason if live.reason not in ("None", "") else ""
        if not live.state.final:
            view.exit_code = view.signal = None
    if report is not None:
        _merge_report(view, report, in_queue=live is not None or hist is not None, cancelled=cancelled,
                      live_known=live_known)
    if view.slurm_state is SlurmState.UNKNOWN and cancelled:
        view.slurm_state = SlurmState.CANCELLED
    return view


AS_REPORTED = "as of its last report (Slurm did not answer)"
AS_ENDED = "as its launcher reported (accounting has not recorded the end yet)"


def reported_end(report: Optional[TaskReport]) -> bool:
    """Did the launcher report an end of the program's own: a success, or a failure that is not a
    death by a signal (a cancel, or Slurm losing the job, kills it: exit 128 + n)? Such an end stands
    where accounting lags behind a task squeue no longer lists."""
    if report is None or report.state not in (FileState.COMPLETED, FileState.FAILED):
        return False
    code = report.exit_code or 0
    return report.state is FileState.COMPLETED or 0 <= code <= 128


def _mark_lost(view: TaskView, why: str, cancelled: bool) -> None:
    """A task Slurm lost: it will never run or end, unless retried (or it is over: cancelled)."""
    view.exit_code = view.signal = None
    if cancelled:  # over for good: frozen with the app
        view.slurm_state, view.reason, view.source = SlurmState.CANCELLED, "cancelled (Slurm had lost its job)", "record"
    else:  # not frozen: a retry brings it back
        view.slurm_state, view.reason, view.source = SlurmState.LOST, why, "lost"


def _fresher_than_accounting(view: TaskView, key: str, report: TaskReport, job: JobRecord, why: str = AS_REPORTED) -> None:
    """With the controller silent, accounting stops where the controller last told it (a task still
    PENDING or RUNNING there may have started or ended since); the launcher's own report of this
    job is then the fresher word. A start lifts PENDING to RUNNING; an end the retry policy would
    not take back (a success, a failure not retried) ends the task; a failure that may be retried
    shows as RUNNING until Slurm answers, so nobody waiting on the app takes it for the end."""
    if view.final or report.state is None or not _reports_on(report, key):
        return
    if report.state is FileState.RUNNING:
        if view.slurm_state.waiting:
            view.slurm_state, view.reason = SlurmState.RUNNING, why
        return
    if report.state not in (FileState.COMPLETED, FileState.FAILED):
        return  # stopped by a signal: a requeue, a time limit or a cancel; only Slurm can say which
    ended = SlurmState(report.state.value)
    policy = job.policy() if ended is SlurmState.FAILED else None  # (built only when needed: 100,000 tasks)
    if policy is not None and policy.retries(ended) and policy.attempts_left(view.attempts):
        view.slurm_state, view.reason = SlurmState.RUNNING, f"attempt {view.attempts} failed; a retry may follow ({why})"
        return
    view.slurm_state, view.exit_code, view.source = ended, report.exit_code, "state file"
    view.reason = report.note or why


def _reports_on(report: TaskReport, key: str) -> bool:
    """Is the report's latest attempt one of job ``key`` (not of an earlier job of the replica)?"""
    if not report.history or not report.history[-1].job_key:
        return True
    return report.history[-1].job_key.partition("+")[0] == key.partition("+")[0]


def _merge_report(view: TaskView, report: TaskReport, in_queue: bool, cancelled: bool, live_known: bool = True) -> None:
    """Use the launcher's own report where Slurm has nothing (no accounting, a lag, a daemon down)."""
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
    if report.state is FileState.RUNNING and not live_known:
        view.slurm_state, view.reason = SlurmState.RUNNING, AS_REPORTED
        return
    if report.state in (FileState.COMPLETED, FileState.FAILED) and not live_known:
        view.slurm_state = SlurmState.UNKNOWN  # _fresher_than_accounting ends it, under the retry policy
        return
    view.slurm_state, view.reason = report.state.as_slurm(cancelled, report.stopped_by)
    view.reason = report.note or view.reason


def app_state(views: List[TaskView]) -> AppState:
    """TorchX app state: running while any task runs or waits after another started."""
    from torchx.specs import AppState  # noqa: PLC0415 (decision jobs use this module without torchx)

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
    """Every task ended for good and the end came from sacct or a state file (not a lagging squeue);
    a task Slurm lost is not settled (a retry or a cancel ends it)."""
    return bool(views) and all(v.final and not v.retry_pending and v.source not in ("squeue", "lost") for v in views)


def freeze(views: List[TaskView]) -> Dict[str, Any]:
    """A settled status, stored in the record so later describes need no Slurm call."""
    return {"time": time.time(), "tasks": [v.to_json() for v in views]}


def thaw(final: Mapping[str, Any]) -> List[TaskView]:
    return [TaskView.from_json(t) for t in final.get("tasks", [])]


# -- which sources an answer needs, and when it is final ---------------------------------------


def needs_reports(rec: AppRecord, history: Optional[List[JobRow]]) -> bool:
    """Task state files are read when there is no accounting, when retries may have left notes,
    while sacct lags (tasks it does not report yet, exit codes squeue lacks), and once every task
    has ended (the status about to be frozen keeps the launchers' notes); and for a search (what
    ended its trials' attempts: a preemption Slurm accounts as FAILED is told by the launcher)."""
    if history is None or rec.meta.search or any(j.max_retries > 0 or j.extra_retries for j in rec.jobs):
        return True
    last = {r.key: r for r in history}
    keys = [key for key, _, _, job in rec.tasks() if not job.planned]
    return any(key not in last for key in keys) or all(last[key].state.final for key in keys)


def settled_in_accounting(recs: Sequence[AppRecord], history: Sequence[JobRow]) -> bool:
    """Does accounting alone tell every task's end for good? Every submitted task (and companion)
    has a final latest row, and none ended in a state its retries may still bring back."""
    last = {r.key: r for r in history}
    for rec in recs:
        for key, _, _, job in rec.tasks():
            if job.planned:
                return False  # a wave not submitted yet: its wave job may be pending
            row = last.get(key)
            if row is None or not row.state.final:
                return False
            if job.max_retries > 0 and job.policy().retries(row.state):
                return False  # a requeue or the companion may bring it back: ask squeue
    return True


def settles(rec: AppRecord, views: List[TaskView], history: Optional[Sequence[JobRow]], asked_live: bool,
            complete: bool) -> bool:
    """Is this answer of ``rec`` final, worth freezing into its record? Every source answered
    (``complete``), every task ended for good from a lasting source, and either squeue was asked or
    accounting alone tells every end (``history``: its sacct rows)."""
    return complete and is_settled(views) and (asked_live or settled_in_accounting([rec], history or []))
