"""Format versions of the files forge writes and reads again: one process writes, another reads.

App records, added jobs, task state files, intents, run tables, run summaries, the cluster limits
cache, checkpoint_state.json: each is a dataclass with a ``format`` field, written into its file as
``"format": N``. Files written before formats were numbered have no ``format`` key: they are
format 1, the layout of that time. A reader takes every format up to the one it knows (converting
older ones as it reads them) and refuses a newer one with :class:`NewerFormatError`: one line that
names the file and both formats, never a KeyError deep inside.

Standard library only: the launcher on every node reads task files, run tables and summaries.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple, Type, TypeVar

from torchx_forge.core.errors import ForgeError
from torchx_forge.core.record import asdict, fields

KEY = "format"
T = TypeVar("T")
#: the format of a file without a ``format`` key (written before formats were numbered)
UNNUMBERED = 1


class NewerFormatError(ForgeError):
    """A file written by a newer torchx-forge than this one: upgrade to read it.

    A :class:`ForgeError` (the ``torchx`` command line prints it as one line), deliberately neither
    OSError nor ValueError: readers that take an unreadable file for a missing one (and would
    write over it) must not swallow it. The node side reports it as a task's failure.
    """

    def __init__(self, kind: str, path: str, found: int, known: int) -> None:
        super().__init__(f"{kind} {path} is format {found}; this torchx-forge reads up to format {known}:"
                         " upgrade torchx-forge")
        self.kind, self.path, self.found, self.known = kind, path, found, known

    def __reduce__(self) -> Tuple[type, Tuple[str, str, int, int]]:
        return (type(self), (self.kind, self.path, self.found, self.known))


def format_of(obj: Mapping[str, Any], kind: str, path: str, known: int) -> int:
    """The format of ``obj``, the JSON object read from ``path`` (a ``kind`` such as "app record"):
    1 without a ``format`` key. :class:`NewerFormatError` above ``known``; ValueError for a value
    that is no format number (the file is unreadable, as a broken one is)."""
    found = obj.get(KEY, UNNUMBERED)
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise ValueError(f"{kind} {path}: {found!r} is not a format number")
    if found > known:
        raise NewerFormatError(kind, path, found, known)
    return found


def dump(obj: Any) -> Dict[str, Any]:
    """``obj``, a dataclass of a file kind (its class says its ``FORMAT``), as the JSON object its
    file holds: every field, and the format this torchx-forge writes."""
    return {**asdict(obj), KEY: type(obj).FORMAT}


def known_fields(cls: Type[T], obj: Mapping[str, Any]) -> T:
    """``cls(**obj)`` with only the fields ``cls`` has: a file written by another version may hold
    more (and its ``format`` is the class's own once read)."""
    names = {f.name for f in fields(cls)} - {KEY}
    return cls(**{k: v for k, v in obj.items() if k in names})
