"""What status shows: TorchX's DescribeAppResponse, with forge's message (counts, steps, the
retry policy in effect, a table of tasks). Pure text formatting."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence

from torchx.schedulers.api import DescribeAppResponse
from torchx.specs import AppState, ReplicaStatus, Resource, Role, RoleStatus

from torchx_forge.slurm.merge import app_state
from torchx_forge.slurm.parse import split_job_id
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord

#: Tasks listed one by one in the status message; bigger apps get counts plus the odd ones.
TABLE_LIMIT = 40


def format_table(rows: List[List[str]]) -> str:
    """Rows of cells as aligned columns, the first row being the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _exit_text(v: TaskView) -> str:
    if v.exit_code is None:
        return "-"
    if v.signal:
        return f"{v.exit_code} (signal {v.signal})"
    return str(v.exit_code)


def _short(path: str) -> str:
    """The last two parts of a checkpoint path: enough to tell checkpoints apart in a table."""
    parts = [p for p in path.rstrip("/").split("/") if p]
    return "/".join(parts[-2:]) if parts else ""


def _counts(views: List[TaskView]) -> str:
    counts = Counter(v.state.name for v in views)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def step_lines(rec: AppRecord, views: List[TaskView]) -> List[str]:
    """Pipelines: one line per step with its counts, and which runs failed or were cancelled and why."""
    stages = rec.stages()
    lines = []
    width = max((len(s) for s, _ in stages), default=0)
    for stage, roles in stages:
        mine = [v for v in views if v.role in roles]
        if not mine:
            continue
        line = f"  {stage.ljust(width)}  {_counts(mine)}"
        failed = [f"{v.role}[{v.replica}] ({v.slurm_state.value.lower()}" + (f", exit {v.exit_code}" if v.exit_code else "") + ")"
                  for v in mine if v.state == AppState.FAILED]
        cancelled = [f"{v.role}[{v.replica}]" for v in mine if v.state == AppState.CANCELLED]
        if failed:
            line += f"; failed: {', '.join(failed[:10])}" + (" ..." if len(failed) > 10 else "")
        if cancelled:
            line += f"; cancelled: {', '.join(cancelled[:10])}" + (" ..." if len(cancelled) > 10 else "")
            line += " (what they wait for failed)" if any(o.state == AppState.FAILED for o in views) else ""
        lines.append(line)
    return ["steps:"] + lines if lines else []


def policy_lines(rec: AppRecord) -> List[str]:
    """The retry policy in effect, per role when roles differ (what the node and companion count against)."""
    by_role: Dict[str, str] = {}
    for job in rec.jobs:
        if job.retry_of:
            continue
        text = job.policy().describe()
        for _, role, _, _ in job.task_keys():
            by_role.setdefault(role, text)
    texts = list(dict.fromkeys(by_role.values()))
    if not texts or texts == ["off"]:
        return []
    if len(texts) == 1:
        return [f"retries: {texts[0]}"]
    return ["retries:"] + [f"  {role}: {text}" for role, text in by_role.items()]


def wave_lines(rec: AppRecord, views: List[TaskView]) -> List[str]:
    """Sweeps cut in waves: how many are submitted, and what the rest wait for."""
    if rec.waves == 1:
        return []
    line = f"waves: {rec.waves - len(rec.unsubmitted_waves())} of {rec.waves} submitted"
    waiting = [v for v in views if v.source == "plan" and v.state != AppState.CANCELLED]
    if waiting:
        line += f"; {len(waiting):,} task(s) not submitted yet ({waiting[0].reason})"
    return [line]


def status_message(rec: AppRecord, views: List[TaskView], notes: Sequence[str] = ()) -> str:
    """The app message: counts per state (per step in a pipeline), the waves, what Slurm could not
    tell, the retry policy, then a table of tasks."""
    where = f" on cluster {rec.cluster}" if rec.cluster else ""
    jobs = len(rec.job_ids()) or len({split_job_id(v.key)[0] for v in views})  # no record (or none readable): Slurm's
    logs = f"logs in {rec.log_dir}" if rec.log_dir else "its logs are not known without its record (see the note)"
    head = f"{rec.name}: {len(views)} task(s) in {jobs} Slurm job(s){where} ({_counts(views)}); {logs}"
    extra = [f"note: {n}" for n in notes] + wave_lines(rec, views) + step_lines(rec, views) + policy_lines(rec)
    if extra:
        head += "\n" + "\n".join(extra)
    shown = views
    if len(views) > TABLE_LIMIT:
        odd = [v for v in views if v.state != AppState.SUCCEEDED]
        shown = odd[:TABLE_LIMIT]
        head += f"\n  showing {len(shown)} of {len(odd)} task(s) not SUCCEEDED"
    if not shown:
        return head
    rows = [["TASK", "SLURM ID", "SLURM STATE", "EXIT", "HOST", "ATTEMPTS", "RESUMED FROM", "RETRIED AFTER", "NOTE"]]
    for v in shown:
        key = "-" if v.source == "plan" else v.key
        rows.append([f"{v.role}[{v.replica}]", key, v.slurm_state.value, _exit_text(v), v.host or "-", str(v.attempts),
                     _short(v.resumed_from) or "-", ",".join(v.causes) or "-", v.reason])
    return head + "\n" + format_table(rows)


def describe_response(rec: AppRecord, views: List[TaskView], notes: Sequence[str] = ()) -> DescribeAppResponse:
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
        msg=status_message(rec, views, notes),
        roles=roles,
        roles_statuses=list(by_role.values()),
    )
