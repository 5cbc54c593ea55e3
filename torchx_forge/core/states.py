"""States and kinds, as enums, with one translation from each outside vocabulary.

- :class:`SlurmState`: a task's state in Slurm's words (squeue, sacct), plus forge's own
  ``LOST`` (it ended without reporting, and no accounting says how) and ``UNKNOWN``.
  :meth:`SlurmState.parse` is the one translation from what Slurm prints.
- :class:`FileState`: what the task launcher writes in a task's state file.
  :meth:`FileState.as_slurm` is the one translation into a :class:`SlurmState`.
- :class:`Outcome`: how one attempt ended, as the launcher saw it (decides requeues).
- :class:`JobKind` and :class:`DepKind`: what one sbatch call is, and how jobs wait for others.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional, Tuple


class SlurmState(str, Enum):
    """A Slurm job or array-task state (Slurm 20.x to 25.x), plus ``LOST`` and ``UNKNOWN``."""

    # waiting
    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    REQUEUED = "REQUEUED"
    REQUEUE_FED = "REQUEUE_FED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    STOPPED = "STOPPED"
    SUSPENDED = "SUSPENDED"
    # running
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    RESIZING = "RESIZING"
    SIGNALING = "SIGNALING"
    STAGE_OUT = "STAGE_OUT"
    # ended
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    # forge's own
    LOST = "LOST"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, raw: str) -> SlurmState:
        """``'CANCELLED by 0'`` / ``'CANCELLED+'`` -> CANCELLED; a state Slurm adds later -> UNKNOWN."""
        words = raw.strip().split()
        name = words[0].rstrip("+").upper() if words else ""
        try:
            return cls(name)
        except ValueError:
            return cls.UNKNOWN

    @property
    def final(self) -> bool:
        """Slurm will not run the task again by itself (forge's companion job may)."""
        return self in _FINAL

    @property
    def waiting(self) -> bool:
        return self in _WAITING

    @property
    def running(self) -> bool:
        return self in _RUNNING


_WAITING = frozenset({
    SlurmState.PENDING, SlurmState.CONFIGURING, SlurmState.REQUEUED, SlurmState.REQUEUE_FED,
    SlurmState.REQUEUE_HOLD, SlurmState.RESV_DEL_HOLD, SlurmState.STOPPED, SlurmState.SUSPENDED,
})
_RUNNING = frozenset({
    SlurmState.RUNNING, SlurmState.COMPLETING, SlurmState.RESIZING, SlurmState.SIGNALING, SlurmState.STAGE_OUT,
})
_FINAL = frozenset(set(SlurmState) - _WAITING - _RUNNING - {SlurmState.UNKNOWN})

#: End states in which the cause was outside the program: time limit, preemption, node failure.
KILLED_FROM_OUTSIDE = (SlurmState.TIMEOUT, SlurmState.PREEMPTED, SlurmState.NODE_FAIL)


class FileState(str, Enum):
    """The ``state`` a task launcher writes in its state file."""

    RUNNING = "RUNNING"  # started, no end reported (yet)
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    KILLED = "KILLED"  # stopped by a signal from outside (cancel, time limit, preemption)
    INTERRUPTED = "INTERRUPTED"  # warned, saved and exited: resume it

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, raw: object) -> Optional[FileState]:
        try:
            return cls(str(raw))
        except ValueError:
            return None

    def as_slurm(self, cancelled: bool, stopped_by: Optional[int] = None) -> Tuple[SlurmState, str]:
        """(state, note) for a task whose only report is this file (no accounting, job gone)."""
        if self in (FileState.RUNNING, FileState.KILLED):
            if cancelled:
                return SlurmState.CANCELLED, ""
            how = f"stopped by signal {stopped_by}" if self is FileState.KILLED else "ended without reporting"
            return SlurmState.LOST, f"{how} (time limit, preemption or node failure?); no accounting to tell"
        if self is FileState.INTERRUPTED:
            return SlurmState.FAILED, "interrupted (warned), not retried"
        return SlurmState(self.value), ""


class Outcome(str, Enum):
    """How one attempt of a task ended, as its launcher saw it."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"  # warned (or exit code 75): resume from the last checkpoint
    FAILED = "failed"
    STOPPED = "stopped"  # a terminating signal from outside: cancel, time limit or preemption
    EXHAUSTED = "exhausted"  # refused to start: no retries left
    BAD_CHECKPOINT = "bad_checkpoint"  # refused to start: cannot choose the checkpoint

    @property
    def file_state(self) -> FileState:
        return {
            Outcome.COMPLETED: FileState.COMPLETED,
            Outcome.INTERRUPTED: FileState.INTERRUPTED,
            Outcome.STOPPED: FileState.KILLED,
        }.get(self, FileState.FAILED)

    @property
    def refused(self) -> bool:
        """The task never started its program: retrying cannot help."""
        return self in (Outcome.EXHAUSTED, Outcome.BAD_CHECKPOINT)


class JobKind(str, Enum):
    """One sbatch call of an app: a heterogeneous job (a component per replica), a job array, or
    the small job that submits the next wave of a sweep too big to be queued at once."""

    HET = "het"
    ARRAY = "array"
    WAVE = "wave"
    DECIDE = "decide"  # a search's decision job (no tasks)

    def __str__(self) -> str:
        return self.value


class DepKind(str, Enum):
    """Slurm dependency types (``--dependency=TYPE:ID``)."""

    AFTER = "after"
    AFTERANY = "afterany"
    AFTERBURSTBUFFER = "afterburstbuffer"
    AFTERCORR = "aftercorr"
    AFTERNOTOK = "afternotok"
    AFTEROK = "afterok"

    def __str__(self) -> str:
        return self.value


#: How a pipeline step may wait for the steps before it.
STEP_DEP_KINDS = (DepKind.AFTEROK, DepKind.AFTERANY, DepKind.AFTERNOTOK)
