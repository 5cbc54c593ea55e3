"""What a laptop remembers of the apps it sent to login nodes: ``<state dir>/remote/<login>/<token>.json``.

A note is written before the submission leaves the laptop; its ``token`` names the submission on
both sides (the login node writes ``<its state dir>/remote/<token>.json`` as it goes). The answer
completes the note with the app's id. A note without one is a submission whose answer never came
back (the connection closed, the laptop's command was killed): the next ``torchx list`` asks the
login node what became of it and says so. Everything else about the apps (their records, logs,
checkpoints) stays on the cluster.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import MISSING, dataclass
from typing import Any, ClassVar, Dict, List, Mapping

from torchx_forge.core import formats
from torchx_forge.core.record import asdict, fields
from torchx_forge.state.store import Store


@dataclass
class Note:
    """One submission from this laptop: where it went and, once known, the app's id (``ID@LOGIN``)."""

    token: str
    login: str
    python: str
    state_dir: str
    name: str
    created: float
    app_id: str = ""
    snapshot: str = ""
    outcome: str = ""  # what became of a submission whose answer was lost, once the login said
    format: int = 1  # see torchx_forge.core.formats

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "laptop note"

    @classmethod
    def new(cls, login: str, python: str, state_dir: str, name: str, snapshot: str = "") -> Note:
        token = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        return cls(token, login, python, state_dir, name, time.time(), snapshot=snapshot)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Note:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


#: the keys without which a file is no note (left over from an older torchx-forge: skipped)
REQUIRED = frozenset(f.name for f in fields(Note) if f.default is MISSING)


class Notes:
    """The notes in a laptop's state dir."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, note: Note) -> None:
        self.store.write_json(f"remote/{note.login}/{note.token}.json", asdict(note))
        self.store.write_json(f"remote/{note.login}/.last.json", {"python": note.python, "state_dir": note.state_dir})

    def logins(self) -> List[str]:
        return sorted(self.store.listdir("remote"))

    def of(self, login: str) -> List[Note]:
        """The notes of ``login``, oldest first."""
        found = self.store.read_many_json(f"remote/{login}")
        notes = [Note.from_json(v) for name, v in found.items() if isinstance(v, dict) and v.keys() >= REQUIRED
                 and formats.format_of(v, Note.KIND, self.store.url_of("remote", login, f"{name}.json"), Note.FORMAT)]
        return sorted(notes, key=lambda n: n.created)

    def settings(self, login: str) -> Dict[str, str]:
        """The interpreter and state dir this laptop last used on ``login`` ({} if never): one small
        file, however many apps were sent there."""
        found = self.store.read_json(f"remote/{login}/.last.json")
        return {k: str(found.get(k) or "") for k in ("python", "state_dir")} if isinstance(found, dict) else {}
