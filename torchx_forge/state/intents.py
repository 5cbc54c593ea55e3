"""Submissions in flight: written before the first sbatch, removed once the jobs are released.

A client killed between its held sbatch calls and the release leaves an intent behind, listing
the jobs it submitted (and the tag each carries in its ``--comment``, for the ones whose id it
never heard). Whoever finds a stale intent (a later forge command, or the submission's guard
job) finishes it when the app record was written (releases the jobs) or rolls it back (cancels
them): a held job never outlives its submission for long.

An app of one job is sent without a hold (``direct``): its intent carries the record to write,
and a client killed between the sbatch and the record leaves a job that runs; the next forge
command adopts it (the record, with the job id found by its tag, or in the claim the job's first
task writes when it starts before the record exists: ``intents/<submission>.claim``).

An intent file carries its format (:mod:`torchx_forge.core.formats`; format 1 is the layout of the
files written before formats were numbered; format 2 adds ``direct`` and ``record``. A
torchx-forge that reads only format 1 would roll a direct submission back, cancelling a job that
runs: it leaves a format-2 intent alone, to the next command of a newer one).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from torchx_forge.core import formats, layout
from torchx_forge.state.store import Store


@dataclass
class Intent:
    """One submission: its id, what it has submitted so far, and who is submitting it."""

    FORMAT: ClassVar[int] = 2
    KIND: ClassVar[str] = "intent"

    submission: str
    app_name: str
    state_dir: str
    log_dir: str
    jobs: List[str] = field(default_factory=list)  # job ids submitted so far (companions included)
    guard: str = ""  # the guard job that cleans up if this client dies
    app_id: str = ""  # set once the record is written: from then on, finishing means releasing
    cluster: str = ""  # where its jobs go: a cluster, "a,b" until Slurm has chosen, "" for the local one
    direct: bool = False  # one job, sent without a hold: recovery adopts it (never cancels it)
    record: Dict[str, Any] = field(default_factory=dict)  # direct: the app record, but for its job id
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    format: int = FORMAT  # see torchx_forge.core.formats

    def to_json(self) -> Dict[str, Any]:
        return formats.dump(self)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Optional[Intent]:
        """The intent read from ``where`` (None when it is not one; NewerFormatError when a newer
        torchx-forge wrote it)."""
        if not isinstance(obj, dict):
            return None
        formats.format_of(obj, cls.KIND, where, cls.FORMAT)
        return formats.known_fields(cls, obj)

    @property
    def tag(self) -> str:
        """The prefix of the tags this submission's sbatch calls carry in their --comment."""
        return self.submission

    def stale(self, after: float) -> bool:
        """Its client is gone: on this machine, its process has exited; seen from elsewhere (the guard
        job, another login node), nobody has touched the intent for ``after`` seconds."""
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
            return False
        return time.time() - self.updated > after


class Intents:
    """The intents in a state dir (``intents/<submission>.json``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, intent: Intent) -> None:
        intent.updated = time.time()
        self.store.write_json(layout.intent(intent.submission), intent.to_json())

    def load(self, submission: str) -> Optional[Intent]:
        rel = layout.intent(submission)
        return Intent.from_json(self.store.read_json(rel), self.store.url_of(rel))

    def done(self, intent: Intent) -> None:
        self.store.remove(layout.intent(intent.submission))
        if intent.direct:
            self.store.remove(layout.intent_claim(intent.submission))

    def claimed(self, intent: Intent) -> List[str]:
        """The app id the direct submission's job wrote on starting before its record existed ([] if none)."""
        data = self.store.read_bytes(layout.intent_claim(intent.submission))
        return [data.decode().strip()] if data and data.strip() else []

    def pending(self) -> List[Intent]:
        """The submissions in flight. One a newer torchx-forge makes is left to it (its guard job
        recovers it if its client dies): this one cannot read it, and must not block on it."""
        out = []
        for name in self.store.listdir(layout.INTENTS):
            if name.endswith(".json"):
                try:
                    found = self.load(name[: -len(".json")])
                except formats.NewerFormatError:
                    continue
                if found:
                    out.append(found)
        return out
