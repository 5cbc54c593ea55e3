"""A task's state file (``apps/<app>/tasks/<role>.<replica>.json``): written by its launcher.

The launcher on the task's first node writes it when the program starts and when it ends: the
latest attempt at the top level, every attempt in ``history``. It is how status stays right
without accounting (and during sacct's lag), how attempts are counted across requeues and
resubmissions, and where notes such as "retries exhausted" reach the user.

The file is a :class:`TaskState` (format 1: the layout of the files written before formats were
numbered; see :mod:`torchx_forge.core.formats`), each attempt an :class:`AttemptEntry`; readers
get the typed :class:`TaskReport`.

Standard library only (fsspec for URL state dirs): the launcher imports this on every node.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from torchx_forge.core import formats, layout
from torchx_forge.core.record import field, record, replace
from torchx_forge.core.states import FileState, Outcome
from torchx_forge.core.storage import StoreError
from torchx_forge.state.files import read_file, write_file


def _opt(cast: Any, value: Any) -> Any:
    return None if value is None else cast(value)


@record
class AttemptEntry:
    """One attempt as its launcher writes it. Every field is optional in the file: None here is a
    key the file does not have (a start writes what it knows, the end adds the rest), except that
    ``stopped_by`` is written, null or not, with ``warned_by`` (the end of a program that ran)."""

    attempt: Optional[int] = None
    job_key: Optional[str] = None  # the Slurm key: A_T for an array task, else the job id
    job_id: Optional[str] = None
    restart: Optional[str] = None  # SLURM_RESTART_COUNT (requeues of the same job id)
    host: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    state: Optional[str] = None  # a FileState
    outcome: Optional[str] = None  # an Outcome, or "running"
    exit_code: Optional[int] = None
    note: Optional[str] = None
    resumed_from: Optional[str] = None
    stopped_by: Optional[int] = None  # the signal that killed the program
    warned_by: Optional[str] = None  # the signal that warned it ("" when none did)
    saved: Optional[bool] = None  # a checkpoint was saved after the warning

    _CASTS: ClassVar[Dict[str, Any]] = {
        "attempt": int, "job_key": str, "job_id": str, "restart": str, "host": str, "start": float, "end": float,
        "state": str, "outcome": str, "exit_code": int, "note": str, "resumed_from": str, "stopped_by": int,
        "warned_by": str, "saved": bool,
    }

    def to_json(self, keys: Optional[Tuple[str, ...]] = None) -> Dict[str, Any]:
        """The keys this attempt has (``keys``: only these)."""
        out = {}
        for name in keys or tuple(self._CASTS):
            value = getattr(self, name)
            if value is not None or (name == "stopped_by" and self.warned_by is not None):
                out[name] = value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AttemptEntry:
        return cls(**{name: _opt(cast, obj.get(name)) for name, cast in cls._CASTS.items()})

    def updated(self, later: AttemptEntry) -> AttemptEntry:
        """This attempt with what ``later`` (a later write of the same attempt) says on top."""
        return replace(self, **later.to_json())


#: keys of the latest attempt copied to the top level of the file
_TOP_KEYS = ("state", "exit_code", "host", "attempt", "job_id", "outcome", "note", "resumed_from", "stopped_by",
             "warned_by", "start", "end")


@record(frozen=False)
class TaskState:
    """What a task's state file holds: every attempt, and the latest one's keys at the top level
    (``latest``: they stay from earlier attempts where the latest has not written them yet)."""

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "task state file"

    role: Optional[str] = None
    replica: Optional[int] = None
    history: List[AttemptEntry] = field(default_factory=list)
    latest: AttemptEntry = field(default_factory=AttemptEntry)
    time: Optional[float] = None  # of the last write
    format: int = FORMAT  # see torchx_forge.core.formats

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"role": self.role, "replica": self.replica, "history": [h.to_json() for h in self.history],
                               **self.latest.to_json(_TOP_KEYS), formats.KEY: self.FORMAT}
        if self.time is not None:
            out["time"] = self.time
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> TaskState:
        """The file read from ``where``: ValueError when it is no task state, NewerFormatError when
        a newer torchx-forge wrote it."""
        if not isinstance(obj, dict):
            raise ValueError(f"{cls.KIND} {where}: expected a JSON object, got {type(obj).__name__}")
        formats.format_of(obj, cls.KIND, where, cls.FORMAT)
        return cls(_opt(str, obj.get("role")), _opt(int, obj.get("replica")),
                   [AttemptEntry.from_json(h) for h in obj.get("history") or [] if isinstance(h, dict)],
                   AttemptEntry.from_json({k: obj[k] for k in _TOP_KEYS if k in obj}), _opt(float, obj.get("time")))

    def record(self, attempt: AttemptEntry) -> None:
        """Add ``attempt`` (a new one, or an update of the latest with the same number and job) and
        copy its keys to the top level."""
        hist = self.history
        if hist and hist[-1].attempt == attempt.attempt and hist[-1].job_key == attempt.job_key:
            hist[-1] = hist[-1].updated(attempt)
        else:
            hist.append(attempt)
        self.latest = self.latest.updated(AttemptEntry.from_json(hist[-1].to_json(_TOP_KEYS)))


class TaskFile:
    """Read and update one task's state file (the writer side, on the node).

    Args:
        state_dir: the app's state dir (local path or URL).
        app_id, role, replica: which task.
    """

    def __init__(self, state_dir: str, app_id: str, role: str, replica: int) -> None:
        self.rel = layout.task_file(app_id, role, replica)
        self.state_dir = state_dir
        self.data = TaskState(role, replica)
        #: False while the file is unknown because the store did not answer: then a write merges
        #: with what the store holds instead of replacing it (no attempt is ever lost)
        self.loaded = True

    def _path(self) -> str:
        return layout.join(self.state_dir, self.rel)

    def _stored(self) -> Optional[TaskState]:
        """The file as stored (an empty one when missing or unreadable); None when the store did not
        answer. NewerFormatError when a newer torchx-forge wrote it: never written over."""
        try:
            found = json.loads(read_file(self._path()))
        except StoreError as e:
            print(f"torchx-forge: warning: cannot read task state {self.rel}: {e}", file=sys.stderr)
            return None
        except (OSError, ValueError):
            return TaskState()
        try:
            return TaskState.from_json(found, self._path())
        except (ValueError, TypeError):
            return TaskState()

    def load(self) -> TaskFile:
        stored = self._stored()
        self.loaded = stored is not None
        if stored is not None:
            mine = self.data
            self.data = replace(stored, role=stored.role if stored.role is not None else mine.role,
                                replica=stored.replica if stored.replica is not None else mine.replica)
        return self

    def _merge_stored(self) -> None:
        """After a load the store did not answer: take what it holds now, plus the attempts written since."""
        stored = self._stored()
        if stored is None:
            return
        mine = {(h.attempt, h.job_key): h for h in self.history}
        hist = [mine.pop((h.attempt, h.job_key), h) for h in stored.history]
        hist += list(mine.values())
        self.data = replace(self.data, history=hist, latest=stored.latest.updated(self.data.latest))
        self.loaded = True

    @property
    def history(self) -> List[AttemptEntry]:
        return list(self.data.history)

    @property
    def last(self) -> AttemptEntry:
        hist = self.history
        return hist[-1] if hist else AttemptEntry()

    def attempt_for(self, key: str, restart: str) -> Tuple[int, str]:
        """(attempt number, initial job) of the current attempt: 0 for the first start of this task."""
        hist = self.history
        initial = hist[0].job_key if hist and hist[0].job_key is not None else key
        if hist and hist[-1].job_key == key and str(hist[-1].restart) == restart:
            last = hist[-1].attempt
            return (last if last is not None else len(hist) - 1), initial  # written by this attempt's first node
        # Slurm's restart count is a floor when the history is missing (state dir not shared)
        return max(len(hist), int(restart or 0)), initial

    def write(self, attempt: AttemptEntry) -> None:
        """Record ``attempt`` (a new one, or an update of the latest with the same number and job)."""
        self.data.record(attempt)
        self.data.time = time.time()
        if not self.loaded:  # never replace a history the store could not show us
            self._merge_stored()
            if not self.loaded:
                print(f"torchx-forge: warning: task state {self.rel} not written: the store did not answer"
                      " (status comes from Slurm meanwhile)", file=sys.stderr)
                return
            self.data.latest = self.data.latest.updated(AttemptEntry.from_json(self.last.to_json(_TOP_KEYS)))
        try:
            write_file(self._path(), json.dumps(self.data.to_json(), sort_keys=True).encode(), mode=0o600, dir_mode=0o700)
        except OSError as e:  # status degrades, the task itself must not fail
            print(f"torchx-forge: warning: cannot write task state {self.rel}: {e}", file=sys.stderr)

    def note(self, text: str) -> None:
        """Add a note to the latest attempt (e.g. why it will not be retried)."""
        if self.history:
            self.write(replace(self.last, note=text))


@record
class AttemptReport:
    """One attempt as its launcher recorded it."""

    attempt: int
    job_key: str
    outcome: Optional[Outcome]
    warned_by: str = ""  # the signal that warned the program: USR1 (time limit), TERM (preemption, cancel)

    @classmethod
    def of(cls, entry: AttemptEntry) -> AttemptReport:
        return cls(entry.attempt or 0, entry.job_key or "", _outcome(entry.outcome), entry.warned_by or "")


def _outcome(raw: object) -> Optional[Outcome]:
    try:
        return Outcome(raw)
    except ValueError:
        return None


@record
class TaskReport:
    """What a task's state file says, typed (the reader side: status, retries, results)."""

    state: Optional[FileState]
    outcome: Optional[Outcome]
    exit_code: Optional[int]
    host: str
    attempts: int  # attempts the file knows of (the latest attempt number + 1, or the history length)
    note: str
    resumed_from: str
    stopped_by: Optional[int]
    history: Tuple[AttemptReport, ...] = ()

    @classmethod
    def of(cls, task: TaskState) -> TaskReport:
        top = task.latest
        return cls(
            state=FileState.parse(top.state),
            outcome=_outcome(top.outcome),
            exit_code=top.exit_code,
            host=top.host or "",
            attempts=max((top.attempt or 0) + 1, len(task.history)),
            note=top.note or "",
            resumed_from=top.resumed_from or "",
            stopped_by=top.stopped_by,
            history=tuple(AttemptReport.of(h) for h in task.history),
        )

    @classmethod
    def from_json(cls, obj: Any, where: str = "") -> TaskReport:
        """The report of the task state file read from ``where`` (see :meth:`TaskState.from_json`)."""
        return cls.of(TaskState.from_json(obj, where))
