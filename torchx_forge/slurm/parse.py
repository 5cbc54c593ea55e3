"""Pure parsers for what Slurm prints: states, job ids, host lists, squeue and sacct rows.

Nothing here runs a command. Formats were read off a real Slurm 22.05 (captured outputs in
tests/fixtures/, which the parser tests read) and are kept to fields every Slurm since 20.x
prints, so a site upgrade does not break status (the peers' most common failure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from torchx_forge.core.hostlist import expand_ranges
from torchx_forge.core.states import SlurmState

if TYPE_CHECKING:
    from torchx.specs import AppState


@cache
def app_states() -> Mapping[SlurmState, AppState]:
    """Every Slurm state mapped to TorchX's (forge's LOST: it ended, nobody knows how, so FAILED).

    torchx is imported on first use: the search's decision and relay jobs parse Slurm's answers
    and never need TorchX's states (importing torchx.specs costs them 50-60 ms)."""
    from torchx.specs import AppState  # noqa: PLC0415

    return {
        **{s: AppState.PENDING for s in SlurmState if s.waiting},
        **{s: AppState.RUNNING for s in SlurmState if s.running},
        **{s: AppState.FAILED for s in SlurmState if s.final},
        SlurmState.COMPLETED: AppState.SUCCEEDED,
        SlurmState.CANCELLED: AppState.CANCELLED,
        SlurmState.UNKNOWN: AppState.UNKNOWN,
    }


def __getattr__(name: str) -> Any:
    if name == "APP_STATES":  # the mapping under its old name
        return app_states()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_app_state(state: Union[str, SlurmState]) -> AppState:
    """TorchX's state for any Slurm state (text as Slurm prints it, or parsed); unknown -> UNKNOWN."""
    return app_states()[state if isinstance(state, SlurmState) else SlurmState.parse(state)]


@dataclass(frozen=True)
class JobRow:
    """One job, array task or het component as squeue/sacct report it.

    ``base`` is the id the user submitted (array job id, het leader id or plain
    job id); ``task`` is the array task id, ``het`` the het component offset.
    """

    base: str
    task: Optional[int] = None
    het: Optional[int] = None
    state: SlurmState = SlurmState.UNKNOWN
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    nodes: str = ""
    name: str = ""
    reason: str = ""
    start: str = ""
    end: str = ""
    cluster: str = ""  # the Slurm cluster it runs on ("" for the local one)
    #: the forge tags the job carries (``forge:SUBMISSION-0 ...``, "" for none): its identity, since
    #: Slurm reuses the id of a job it lost; None when the source did not say
    tags: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.state, SlurmState):  # a state as Slurm prints it
            object.__setattr__(self, "state", SlurmState.parse(str(self.state)))

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
        return app_states()[self.state]


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


_SIMPLE_TASK = re.compile(r"^(\d+)_(\d+)$")
Ids = List[Tuple[str, Optional[int], Optional[int]]]


def ids_of(job_id: str) -> Ids:
    """(base, array task, het component) of each task or component ``job_id`` names: ``12_3``,
    ``12_[0-4%2]``, ``12+1``, ``12``; none for steps such as ``12.batch``."""
    simple = _SIMPLE_TASK.match(job_id)
    if simple:  # the common case: one array task
        return [(simple.group(1), int(simple.group(2)), None)]
    base, task, het, is_step = split_job_id(job_id)
    if not base or is_step:
        return []
    if task is None:
        return [(base, None, het)]
    return [(base, t, None) for t in expand_ranges(task)]


#: squeue --format used by :func:`parse_squeue`; the free texts last: the job name, then the comment.
SQUEUE_FORMAT = "%i|%T|%r|%N|%j|%k"
#: the tag every job forge submits carries in its --comment (``forge:<submission>-<n>``)
TAG_PREFIX = "forge:"


def tag_words(text: str) -> List[str]:
    """The forge tags (``forge:...``) in a job's comment or its sbatch command line."""
    words = (w.rpartition("=")[2] if w.startswith("--comment=") else w for w in text.split())
    return [w for w in words if w.startswith(TAG_PREFIX)]


def with_tag(argv: Sequence[str], tag: str) -> List[str]:
    """``argv`` with ``forge:<tag>`` in its --comment (after the user's own comment, if any)."""
    out = [a for a in argv if not a.startswith("--comment=")]
    user = next((a.split("=", 1)[1] for a in argv if a.startswith("--comment=")), "")
    user = " ".join(w for w in user.split() if not w.startswith(TAG_PREFIX))
    comment = f"{user} {TAG_PREFIX}{tag}".strip()
    return out[:-1] + [f"--comment={comment}", out[-1]]


def tag_in(comment: str, tag: str, prefix: bool = False) -> bool:
    """Does ``comment`` carry the tag ``tag`` (with ``prefix``, a tag starting with it)?"""
    want = f"{TAG_PREFIX}{tag}"
    return any(w == want or (prefix and w.startswith(want)) for w in comment.split())


class Tags:
    """The forge tags in a comment or a submit line, each text read once (a 100,000-task array
    repeats one submit line on every row)."""

    def __init__(self) -> None:
        self.seen: Dict[str, str] = {}

    def __call__(self, text: str) -> str:
        found = self.seen.get(text)
        if found is None:
            found = self.seen[text] = " ".join(tag_words(text))
        return found


def parse_squeue(text: str, cluster: str = "") -> List[JobRow]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` output (of ``cluster``); collapsed ``ID_[a-b]`` rows are
    expanded. A line without the comment (``%k``) leaves the rows' tags unknown."""
    rows: List[JobRow] = []
    tags_of = Tags()
    for line in text.splitlines():
        parts = line.split("|", 5)
        if len(parts) < 5:
            continue
        job_id, state, reason, nodes, name = parts[:5]
        tags = tags_of(parts[5]) if len(parts) > 5 else None
        parsed = SlurmState.parse(state)
        rows.extend(JobRow(base, task, het, parsed, reason=reason, nodes=nodes, name=name, cluster=cluster, tags=tags)
                    for base, task, het in ids_of(job_id))
    return rows


#: sacct fields used by :func:`parse_sacct`: present in every Slurm since 20.x.
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "NodeList", "Start", "End", "Reason")
#: the sbatch command line (since 21.08; kept by accounting, comment included, so it carries the
#: job's forge tag): always asked last, since it is free text that may hold ``|``
SUBMIT_LINE = "SubmitLine"


def _exit_code(text: str) -> Tuple[Optional[int], Optional[int]]:
    code, _, sig = text.partition(":")
    try:
        return int(code), (int(sig) if sig else None)
    except ValueError:
        return None, None


def parse_sacct(text: str, fields: Iterable[str] = SACCT_FIELDS, cluster: str = "") -> List[JobRow]:
    """Parse ``sacct --parsable2 --noheader -o FIELDS`` output (steps such as ``12.batch`` are skipped).

    With ``-D`` a requeued task appears once per attempt, oldest first.

    An array's own record keeps the range it had when accounting last wrote it (``12_[0-1]``), even
    after tasks were split off into records of their own (``12_0``): a task with a record of its own
    is not also taken from such a range, or a task that ran would look like the remainder that
    Slurm cancelled (seen on Slurm 22.05 when a pipeline step's dependency failed for one run).

    With :data:`SUBMIT_LINE` (last), each row carries the forge tags of its job (none for a job
    without a submit line: salloc and srun allocations); without it, the tags are unknown.
    """
    names = list(fields)
    at = {name: i for i, name in enumerate(names)}
    empty = len(names)  # the index of a field this output lacks: reads as ""

    def col(parts: List[str], name: str) -> str:
        return parts[at.get(name, empty)]

    parsed: List[Tuple[bool, List[JobRow]]] = []
    states: Dict[str, SlurmState] = {}
    tags_of = Tags()
    with_line = bool(names) and names[-1] == SUBMIT_LINE
    for line in text.splitlines():
        parts = line.split("|", len(names) - 1) if with_line else line.split("|")
        if len(parts) < len(names):
            continue
        parts = parts[: len(names)] + [""]  # extra fields (a later Slurm) are ignored
        code, sig = _exit_code(col(parts, "ExitCode"))
        job_id, raw_state, nodes = col(parts, "JobID"), col(parts, "State"), col(parts, "NodeList")
        state = states.get(raw_state)
        if state is None:
            state = states[raw_state] = SlurmState.parse(raw_state)
        nodes = nodes if nodes != "None assigned" else ""
        name, reason, start, end = col(parts, "JobName"), col(parts, "Reason"), col(parts, "Start"), col(parts, "End")
        where = col(parts, "Cluster") or cluster
        tags = tags_of(col(parts, SUBMIT_LINE)) if with_line else None  # (salloc/srun jobs: no line, no tag)
        parsed.append(("_[" in job_id, [
            JobRow(base, task, het, state, code, sig, nodes, name, reason, start, end, where, tags)
            for base, task, het in ids_of(job_id)
        ]))
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
        key = row.key
        found = out.get(key)
        if found is None:
            found = out[key] = TaskHistory()
        found.rows.append(row)
    return out
