"""Pure parsers for what Slurm prints: states, job ids, host lists, squeue and sacct rows.

Nothing here runs a command. Formats were read off a real Slurm 22.05 (see
tests/fixtures/) and are kept to fields every Slurm since 20.x prints, so a site
upgrade does not break status (the peers' most common failure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from torchx.specs import AppState

from torchx_forge.hostlist import expand_hostlist, expand_ranges  # noqa: F401 (re-exported)

#: Every state squeue or sacct can print (Slurm 20.x to 25.x), mapped to TorchX's.
#: A state not listed maps to UNKNOWN instead of failing (torchx 0.7 asserts).
SLURM_STATES: Mapping[str, AppState] = {
    "BOOT_FAIL": AppState.FAILED,
    "CANCELLED": AppState.CANCELLED,
    "COMPLETED": AppState.SUCCEEDED,
    "COMPLETING": AppState.RUNNING,
    "CONFIGURING": AppState.PENDING,
    "DEADLINE": AppState.FAILED,
    "FAILED": AppState.FAILED,
    "NODE_FAIL": AppState.FAILED,
    "OUT_OF_MEMORY": AppState.FAILED,
    "PENDING": AppState.PENDING,
    "PREEMPTED": AppState.FAILED,
    "RESIZING": AppState.RUNNING,
    "REQUEUED": AppState.PENDING,
    "REQUEUE_FED": AppState.PENDING,
    "REQUEUE_HOLD": AppState.PENDING,
    "RESV_DEL_HOLD": AppState.PENDING,
    "REVOKED": AppState.FAILED,
    "RUNNING": AppState.RUNNING,
    "SIGNALING": AppState.RUNNING,
    "SPECIAL_EXIT": AppState.FAILED,
    "STAGE_OUT": AppState.RUNNING,
    "STOPPED": AppState.PENDING,
    "SUSPENDED": AppState.PENDING,
    "TIMEOUT": AppState.FAILED,
}

#: States after which Slurm will not run the job again by itself.
FINAL_SLURM_STATES = frozenset(
    s for s, a in SLURM_STATES.items() if a in (AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED)
)


def normalize_state(raw: str) -> str:
    """``'CANCELLED by 0'`` -> ``'CANCELLED'``, ``'CANCELLED+'`` -> ``'CANCELLED'``."""
    words = raw.strip().split()
    return words[0].rstrip("+").upper() if words else "UNKNOWN"


def to_app_state(raw: str) -> AppState:
    """Map any Slurm state string to an AppState; unknown states give UNKNOWN."""
    return SLURM_STATES.get(normalize_state(raw), AppState.UNKNOWN)


@dataclass(frozen=True)
class JobRow:
    """One job, array task or het component as squeue/sacct report it.

    ``base`` is the id the user submitted (array job id, het leader id or plain
    job id); ``task`` is the array task id, ``het`` the het component offset.
    """

    base: str
    task: Optional[int] = None
    het: Optional[int] = None
    state: str = "UNKNOWN"
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    nodes: str = ""
    name: str = ""
    reason: str = ""
    start: str = ""
    end: str = ""

    @property
    def key(self) -> str:
        """Canonical id: ``12``, ``12_3`` (array task) or ``12+1`` (het component)."""
        if self.task is not None:
            return f"{self.base}_{self.task}"
        if self.het is not None:
            return f"{self.base}+{self.het}"
        return self.base

    @property
    def app_state(self) -> AppState:
        return to_app_state(self.state)


_ID_RE = re.compile(r"^(?P<base>\d+)(?:_(?P<task>\d+|\[(?P<spec>[^\]]*)\])|\+(?P<het>\d+))?(?P<step>\..*)?$")


def split_job_id(job_id: str) -> Tuple[str, Optional[str], Optional[int], bool]:
    """Split ``12_[3-5]`` / ``12_3`` / ``12+1`` / ``12.batch`` into (base, task spec, het, is_step).

    Returns ``("", None, None, False)`` for text that is not a job id.
    """
    m = _ID_RE.match(job_id.strip())
    if not m:
        return "", None, None, False
    task: Optional[str] = m.group("spec") if m.group("spec") is not None else m.group("task")
    het = int(m.group("het")) if m.group("het") is not None else None
    return m.group("base"), task, het, m.group("step") is not None


def _rows_for_id(job_id: str, **fields: object) -> Iterator[JobRow]:
    base, task, het, is_step = split_job_id(job_id)
    if not base or is_step:
        return
    if task is None:
        yield JobRow(base=base, het=het, **fields)  # type: ignore[arg-type]
    else:
        for t in expand_ranges(task):
            yield JobRow(base=base, task=t, **fields)  # type: ignore[arg-type]


#: squeue --format used by :func:`parse_squeue`; name last since it is free text.
SQUEUE_FORMAT = "%i|%T|%r|%N|%j"


def parse_squeue(text: str) -> List[JobRow]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` output; collapsed ``ID_[a-b]`` rows are expanded."""
    rows: List[JobRow] = []
    for line in text.splitlines():
        parts = line.split("|", 4)
        if len(parts) < 5:
            continue
        job_id, state, reason, nodes, name = parts
        rows.extend(_rows_for_id(job_id, state=normalize_state(state), reason=reason, nodes=nodes, name=name))
    return rows


#: sacct fields used by :func:`parse_sacct`: present in every Slurm since 20.x.
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "NodeList", "Start", "End", "Reason")


def _exit_code(text: str) -> Tuple[Optional[int], Optional[int]]:
    code, _, sig = text.partition(":")
    try:
        return int(code), (int(sig) if sig else None)
    except ValueError:
        return None, None


def parse_sacct(text: str, fields: Iterable[str] = SACCT_FIELDS) -> List[JobRow]:
    """Parse ``sacct --parsable2 --noheader -o FIELDS`` output (steps such as ``12.batch`` are skipped).

    With ``-D`` a requeued task appears once per attempt, oldest first.

    An array's own record keeps the range it had when accounting last wrote it (``12_[0-1]``), even
    after tasks were split off into records of their own (``12_0``): a task with a record of its own
    is not also taken from such a range, or a task that ran would look like the remainder that
    Slurm cancelled (seen on Slurm 22.05 when a pipeline step's dependency failed for one run).
    """
    names = list(fields)
    parsed: List[Tuple[bool, List[JobRow]]] = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(names):
            continue
        rec = dict(zip(names, parts))
        code, sig = _exit_code(rec.get("ExitCode", ""))
        spread = "_[" in rec["JobID"]
        parsed.append((spread, list(
            _rows_for_id(
                rec["JobID"],
                state=normalize_state(rec.get("State", "")),
                exit_code=code,
                signal=sig,
                nodes=rec.get("NodeList", "") if rec.get("NodeList") not in ("None assigned",) else "",
                name=rec.get("JobName", ""),
                reason=rec.get("Reason", ""),
                start=rec.get("Start", ""),
                end=rec.get("End", ""),
            )
        )))
    own = {r.key for spread, rows in parsed if not spread for r in rows}
    return [r for spread, rows in parsed for r in rows if not (spread and r.key in own)]


@dataclass
class TaskHistory:
    """All attempts Slurm recorded for one task (sacct ``-D`` rows), oldest first."""

    rows: List[JobRow] = field(default_factory=list)

    @property
    def last(self) -> JobRow:
        return self.rows[-1]

    @property
    def attempts(self) -> int:
        return len(self.rows)


def group_attempts(rows: Iterable[JobRow]) -> Dict[str, TaskHistory]:
    """Group sacct -D rows by task key, keeping Slurm's order (attempts oldest first)."""
    out: Dict[str, TaskHistory] = {}
    for row in rows:
        out.setdefault(row.key, TaskHistory()).rows.append(row)
    return out
