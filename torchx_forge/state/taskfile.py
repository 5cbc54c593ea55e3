"""A task's state file (``apps/<app>/tasks/<role>.<replica>.json``): written by its launcher.

The launcher on the task's first node writes it when the program starts and when it ends: the
latest attempt at the top level, every attempt in ``history``. It is how status stays right
without accounting (and during sacct's lag), how attempts are counted across requeues and
resubmissions, and where notes such as "retries exhausted" reach the user.

Standard library only (fsspec for URL state dirs): the launcher imports this on every node.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from torchx_forge.core import layout
from torchx_forge.core.states import FileState, Outcome
from torchx_forge.core.storage import StoreError
from torchx_forge.state.files import read_file, write_file

#: keys of the latest attempt copied to the top level of the file
_TOP_KEYS = ("state", "exit_code", "host", "attempt", "job_id", "outcome", "note", "resumed_from", "stopped_by",
             "warned_by", "start", "end")


class TaskFile:
    """Read and update one task's state file (the writer side, on the node).

    Args:
        state_dir: the app's state dir (local path or URL).
        app_id, role, replica: which task.
    """

    def __init__(self, state_dir: str, app_id: str, role: str, replica: int) -> None:
        self.rel = layout.task_file(app_id, role, replica)
        self.state_dir = state_dir
        self.data: Dict[str, Any] = {"role": role, "replica": replica, "history": []}
        #: False while the file is unknown because the store did not answer: then a write merges
        #: with what the store holds instead of replacing it (no attempt is ever lost)
        self.loaded = True

    def _path(self) -> str:
        return layout.join(self.state_dir, self.rel)

    def _stored(self) -> Optional[Dict[str, Any]]:
        """The file as stored ({} when missing or unreadable); None when the store did not answer."""
        try:
            found = json.loads(read_file(self._path()))
        except StoreError as e:
            print(f"torchx-forge: warning: cannot read task state {self.rel}: {e}", file=sys.stderr)
            return None
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def load(self) -> TaskFile:
        stored = self._stored()
        self.loaded = stored is not None
        self.data.update(stored or {})
        return self

    def _merge_stored(self) -> None:
        """After a load the store did not answer: take what it holds now, plus the attempts written since."""
        stored = self._stored()
        if stored is None:
            return
        mine = {(h.get("attempt"), h.get("job_key")): h for h in self.history}
        hist = [mine.pop((h.get("attempt"), h.get("job_key")), h) for h in stored.get("history") or []]
        hist += list(mine.values())
        self.data = {**stored, **{k: v for k, v in self.data.items() if k != "history"}, "history": hist}
        self.loaded = True

    @property
    def history(self) -> List[Dict[str, Any]]:
        return list(self.data.get("history") or [])

    @property
    def last(self) -> Dict[str, Any]:
        hist = self.history
        return hist[-1] if hist else {}

    def attempt_for(self, key: str, restart: str) -> Tuple[int, str]:
        """(attempt number, initial job) of the current attempt: 0 for the first start of this task."""
        hist = self.history
        initial = str(hist[0].get("job_key", key)) if hist else key
        if hist and hist[-1].get("job_key") == key and str(hist[-1].get("restart")) == restart:
            return int(hist[-1].get("attempt", len(hist) - 1)), initial  # written by this attempt's first node
        # Slurm's restart count is a floor when the history is missing (state dir not shared)
        return max(len(hist), int(restart or 0)), initial

    def write(self, attempt: Mapping[str, Any]) -> None:
        """Record ``attempt`` (a new one, or an update of the latest with the same number and job)."""
        hist = self.history
        if hist and hist[-1].get("attempt") == attempt.get("attempt") and hist[-1].get("job_key") == attempt.get("job_key"):
            hist[-1] = {**hist[-1], **attempt}
        else:
            hist.append(dict(attempt))
        self.data.update(history=hist, time=time.time())
        if not self.loaded:  # never replace a history the store could not show us
            self._merge_stored()
            if not self.loaded:
                print(f"torchx-forge: warning: task state {self.rel} not written: the store did not answer"
                      " (status comes from Slurm meanwhile)", file=sys.stderr)
                return
        hist = self.history
        for k in _TOP_KEYS:
            if k in hist[-1]:
                self.data[k] = hist[-1][k]
        try:
            write_file(self._path(), json.dumps(self.data, sort_keys=True).encode(), mode=0o600, dir_mode=0o700)
        except OSError as e:  # status degrades, the task itself must not fail
            print(f"torchx-forge: warning: cannot write task state {self.rel}: {e}", file=sys.stderr)

    def note(self, text: str) -> None:
        """Add a note to the latest attempt (e.g. why it will not be retried)."""
        if self.history:
            self.write({**self.last, "note": text})


@dataclass(frozen=True)
class AttemptReport:
    """One attempt as its launcher recorded it."""

    attempt: int
    job_key: str
    outcome: Optional[Outcome]
    warned_by: str = ""  # the signal that warned the program: USR1 (time limit), TERM (preemption, cancel)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AttemptReport:
        return cls(int(obj.get("attempt", 0)), str(obj.get("job_key", "")), _outcome(obj.get("outcome")),
                   str(obj.get("warned_by") or ""))


def _outcome(raw: object) -> Optional[Outcome]:
    try:
        return Outcome(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
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
    def from_json(cls, obj: Mapping[str, Any]) -> TaskReport:
        code = obj.get("exit_code")
        return cls(
            state=FileState.parse(obj.get("state")),
            outcome=_outcome(obj.get("outcome")),
            exit_code=int(code) if code is not None else None,
            host=str(obj.get("host") or ""),
            attempts=max(int(obj.get("attempt", 0)) + 1, len(obj.get("history") or [])),
            note=str(obj.get("note") or ""),
            resumed_from=str(obj.get("resumed_from") or ""),
            stopped_by=obj.get("stopped_by"),
            history=tuple(AttemptReport.from_json(h) for h in obj.get("history") or [] if isinstance(h, dict)),
        )
