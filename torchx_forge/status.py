"""Per-task status from an app record plus what Slurm (or the task state files) says.

Pure: callers pass in the squeue rows, sacct rows (None without accounting)
and task state files; this module decides, per task, which source is the
freshest and folds everything into TorchX's DescribeAppResponse. squeue knows
live jobs (and forgets finished ones after MinJobAge); sacct knows everything
but lags a few seconds behind a submission; the state files the launcher writes
cover clusters without accounting.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional

from torchx.schedulers.api import DescribeAppResponse
from torchx.specs import AppState, ReplicaStatus, Resource, Role, RoleStatus

from torchx_forge.records import AppRecord
from torchx_forge.slurm_parse import (
    FINAL_SLURM_STATES,
    JobRow,
    group_attempts,
    to_app_state,
)

#: Tasks listed one by one in the status message; bigger apps get counts plus the odd ones.
TABLE_LIMIT = 40


@dataclass
class TaskView:
    """What we know about one replica (one Slurm task)."""

    role: str
    replica: int
    key: str
    slurm_state: str
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    host: str = ""
    attempts: int = 1
    reason: str = ""
    source: str = ""
    resumed_from: str = ""
    retry_pending: bool = False

    @property
    def state(self) -> AppState:
        if self.retry_pending:
            return AppState.PENDING
        if self.slurm_state == "LOST":
            return AppState.FAILED
        return to_app_state(self.slurm_state)

    @property
    def final(self) -> bool:
        return self.slurm_state in FINAL_SLURM_STATES or self.slurm_state == "LOST"


def task_views(
    rec: AppRecord,
    squeue: Iterable[JobRow],
    sacct: Optional[Iterable[JobRow]],
    files: Mapping[str, Mapping[str, Any]],
    cancelled: bool = False,
) -> List[TaskView]:
    """One TaskView per replica, in role/replica order (a resubmitted replica: its newest job)."""
    live = {r.key: r for r in squeue}
    history = group_attempts(sacct or [])
    every_key = rec.all_keys()
    views = []
    for key, role, replica, job in rec.tasks():
        view = _view(key, role, replica, live.get(key), history.get(key), files.get(f"{role}.{replica}"), cancelled)
        earlier = sum(history[k].attempts for k in every_key.get((role, replica), []) if k != key and k in history)
        if earlier:  # attempts under earlier job ids (resubmissions) count too
            view.attempts = max(view.attempts, earlier + (history[key].attempts if key in history else 1))
        _mark_retry(view, job, live, history, cancelled)
        views.append(view)
    return views


def _mark_retry(view: TaskView, job: Any, live: Mapping[str, JobRow], history: Mapping[str, Any], cancelled: bool) -> None:
    """A task that ended in a retry_on state while its companion job still waits is not over."""
    if not job.companion or cancelled or not view.final or view.slurm_state not in (job.retry_on or ()):
        return
    comp = live.get(job.companion)
    comp_state = comp.state if comp else (history[job.companion].last.state if job.companion in history else "")
    if comp_state and comp_state not in FINAL_SLURM_STATES and view.attempts <= job.max_retries:
        view.retry_pending = True
        view.reason = f"retry pending (companion job {job.companion})"


def task_views_from_rows(rows: Iterable[JobRow]) -> List[TaskView]:
    """Views for a job without a record, named like TorchX's slurm scheduler does (``role-i``)."""
    views = []
    counters: Counter = Counter()
    for key, hist in group_attempts(rows).items():
        last = hist.last
        role, _, idx = last.name.rpartition("-")
        if not (role and idx.isdigit()):
            role, idx = last.name or "job", str(counters[last.name])
        counters[last.name] += 1
        views.append(
            TaskView(role=role, replica=int(idx), key=key, slurm_state=last.state, exit_code=last.exit_code,
                     signal=last.signal, host=last.nodes, attempts=hist.attempts, reason=last.reason)
        )
    return views


def _view(key: str, role: str, replica: int, live: Optional[JobRow], hist: Any, file: Optional[Mapping[str, Any]], cancelled: bool) -> TaskView:
    view = TaskView(role=role, replica=replica, key=key, slurm_state="UNKNOWN")
    if hist is not None:
        last: JobRow = hist.last
        view.slurm_state, view.exit_code, view.signal = last.state, last.exit_code, last.signal
        view.host, view.attempts, view.source = last.nodes, hist.attempts, "sacct"
        # sacct's Reason is the last *pending* reason, even for ended jobs: not worth showing
    if live is not None and (hist is None or live.state not in FINAL_SLURM_STATES):
        # squeue is the live truth; sacct may lag behind a requeue or a new submission
        view.slurm_state, view.source = live.state, "squeue"
        view.host = live.nodes or view.host
        view.reason = live.reason if live.reason not in ("None", "") else ""
        if live.state not in FINAL_SLURM_STATES:
            view.exit_code = view.signal = None
    if file is not None:
        _merge_file(view, file, in_queue=live is not None or hist is not None, cancelled=cancelled)
    if view.slurm_state == "UNKNOWN" and cancelled:
        view.slurm_state = "CANCELLED"
    return view


def _merge_file(view: TaskView, file: Mapping[str, Any], in_queue: bool, cancelled: bool) -> None:
    """Use the launcher's own report where Slurm has nothing (no accounting, or a lag)."""
    view.attempts = max(view.attempts, int(file.get("attempt", 0)) + 1, len(file.get("history") or []))
    view.resumed_from = str(file.get("resumed_from") or "")
    if not view.host:
        view.host = str(file.get("host", ""))
    if in_queue:
        if view.exit_code is None and view.final and file.get("exit_code") is not None:
            view.exit_code = int(file["exit_code"])
        if view.final and file.get("note"):
            view.reason = str(file["note"])
        return
    state = str(file.get("state", "UNKNOWN"))
    view.source = "state file"
    if state in ("RUNNING", "KILLED"):
        # the job left the queue killed, or without the launcher reporting an end at all
        view.slurm_state = "CANCELLED" if cancelled else "LOST"
        how = f"stopped by signal {file.get('stopped_by')}" if state == "KILLED" else "ended without reporting"
        view.reason = "" if cancelled else f"{how} (time limit, preemption or node failure?); no accounting to tell"
        view.exit_code = file.get("exit_code")
    else:
        view.slurm_state = {"INTERRUPTED": "FAILED"}.get(state, state)
        view.exit_code = file.get("exit_code")
        view.reason = str(file.get("note") or ("interrupted (warned), not retried" if state == "INTERRUPTED" else ""))


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


def _exit_text(v: TaskView) -> str:
    if v.exit_code is None:
        return "-"
    if v.signal:
        return f"{v.exit_code} (signal {v.signal})"
    return str(v.exit_code)


def format_table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _short(path: str) -> str:
    """The last two parts of a checkpoint path: enough to tell checkpoints apart in a table."""
    parts = [p for p in path.rstrip("/").split("/") if p]
    return "/".join(parts[-2:]) if parts else ""


def _counts(views: List[TaskView]) -> str:
    counts = Counter(v.state.name for v in views)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def step_lines(rec: AppRecord, views: List[TaskView]) -> List[str]:
    """Pipelines: one line per step with its counts, and which runs failed or were cancelled and why."""
    raw = rec.meta.get("stages") or []
    stages = [(str(s), list(r)) for s, r in (raw.items() if isinstance(raw, dict) else raw)]
    lines = []
    width = max((len(s) for s, _ in stages), default=0)
    for stage, roles in stages:
        mine = [v for v in views if v.role in roles]
        if not mine:
            continue
        line = f"  {stage.ljust(width)}  {_counts(mine)}"
        failed = [f"{v.role}[{v.replica}] ({v.slurm_state.lower()}" + (f", exit {v.exit_code}" if v.exit_code else "") + ")"
                  for v in mine if v.state == AppState.FAILED]
        cancelled = [f"{v.role}[{v.replica}]" for v in mine if v.state == AppState.CANCELLED]
        if failed:
            line += f"; failed: {', '.join(failed[:10])}" + (" ..." if len(failed) > 10 else "")
        if cancelled:
            line += f"; cancelled: {', '.join(cancelled[:10])}" + (" ..." if len(cancelled) > 10 else "")
            line += " (what they wait for failed)" if any(o.state == AppState.FAILED for o in views) else ""
        lines.append(line)
    return ["steps:"] + lines if lines else []


def status_message(rec: AppRecord, views: List[TaskView]) -> str:
    """The app message: counts per state (per step in a pipeline), then a table of tasks."""
    head = f"{rec.name}: {len(views)} task(s) in {len(rec.jobs)} Slurm job(s) ({_counts(views)}); logs in {rec.log_dir}"
    steps = step_lines(rec, views)
    if steps:
        head += "\n" + "\n".join(steps)
    shown = views
    if len(views) > TABLE_LIMIT:
        odd = [v for v in views if v.state != AppState.SUCCEEDED]
        shown = odd[:TABLE_LIMIT]
        head += f"\n  showing {len(shown)} of {len(odd)} task(s) not SUCCEEDED"
    if not shown:
        return head
    rows = [["TASK", "SLURM ID", "SLURM STATE", "EXIT", "HOST", "ATTEMPTS", "RESUMED FROM", "NOTE"]]
    for v in shown:
        rows.append([f"{v.role}[{v.replica}]", v.key, v.slurm_state, _exit_text(v), v.host or "-", str(v.attempts),
                     _short(v.resumed_from) or "-", v.reason])
    return head + "\n" + format_table(rows)


def describe_response(rec: AppRecord, views: List[TaskView]) -> DescribeAppResponse:
    by_role: Dict[str, RoleStatus] = {}
    for v in views:
        by_role.setdefault(v.role, RoleStatus(v.role, [])).replicas.append(
            ReplicaStatus(id=v.replica, state=v.state, role=v.role, hostname=v.host)
        )
    roles = [
        Role(
            name=r.name,
            image=r.image,
            entrypoint=r.entrypoint,
            args=list(r.args),
            env=dict(r.env),
            num_replicas=r.num_replicas,
            max_retries=r.max_retries,
            resource=Resource(**r.resource) if r.resource else Resource(cpu=-1, gpu=-1, memMB=-1),
        )
        for r in rec.roles
    ]
    return DescribeAppResponse(
        app_id=rec.app_id,
        state=app_state(views),
        num_restarts=max((v.attempts for v in views), default=1) - 1,
        msg=status_message(rec, views),
        roles=roles,
        roles_statuses=list(by_role.values()),
    )


def is_settled(views: List[TaskView]) -> bool:
    """Every task ended for good and the end came from sacct or a state file (not a lagging squeue)."""
    return bool(views) and all(v.final and not v.retry_pending and v.source != "squeue" for v in views)


def freeze(views: List[TaskView]) -> Dict[str, Any]:
    """A settled status, stored in the record so later describes need no Slurm call."""
    return {"time": time.time(), "tasks": [asdict(v) for v in views]}


def thaw(final: Mapping[str, Any]) -> List[TaskView]:
    return [TaskView(**t) for t in final.get("tasks", [])]
