"""Submissions in flight: written before the first sbatch, removed once the jobs are released.

A client killed between its held sbatch calls and the release leaves an intent behind, listing
the jobs it submitted (and the tag each carries in its ``--comment``, for the ones whose id it
never heard). Whoever finds a stale intent (a later forge command, or the submission's guard
job) finishes it when the app record was written (releases the jobs) or rolls it back (cancels
them): a held job never outlives its submission for long.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from torchx_forge.core import layout
from torchx_forge.state.store import Store


@dataclass
class Intent:
    """One submission: its id, what it has submitted so far, and who is submitting it."""

    submission: str
    app_name: str
    state_dir: str
    log_dir: str
    jobs: List[str] = field(default_factory=list)  # job ids submitted so far (companions included)
    guard: str = ""  # the guard job that cleans up if this client dies
    app_id: str = ""  # set once the record is written: from then on, finishing means releasing
    cluster: str = ""  # where its jobs go: a cluster, "a,b" until Slurm has chosen, "" for the local one
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

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
        self.store.write_json(layout.intent(intent.submission), asdict(intent))

    def load(self, submission: str) -> Optional[Intent]:
        obj = self.store.read_json(layout.intent(submission))
        return Intent(**obj) if isinstance(obj, dict) else None

    def done(self, intent: Intent) -> None:
        self.store.remove(layout.intent(intent.submission))

    def pending(self) -> List[Intent]:
        out = []
        for name in self.store.listdir(layout.INTENTS):
            if name.endswith(".json"):
                found = self.load(name[: -len(".json")])
                if found:
                    out.append(found)
        return out
