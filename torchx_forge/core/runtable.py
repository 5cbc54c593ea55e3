"""The run table of a sweep: what every task of it reads to find its run (format owner, pure).

A table (:class:`RunTable`) is JSON written once, content-addressed and read-only
(``tables/<sha256>.json`` in the state dir), so tasks read a snapshot, never the experiment file,
which may change while they pend. It comes in two forms, read through the same functions
(:func:`find_run`, :func:`iter_runs`, :func:`run_count`), which give typed rows (:class:`RunRow`):

- a **space** (sweeps): the sweep's space (:class:`~torchx_forge.core.space.Space`) and its base
  run; a run's row is computed when asked for, so the table of a 100,000-point sweep is a few
  hundred bytes and a task reads only that::

    {"format": 2, "experiment": NAME, "source": FILE, "space": {...}, "base": BASE,
     "extra": {fields every row gets}, "roles": {ROLE: [[first run, last run + 1], ...]}}

- **rows** (pipeline steps, whose rows carry per-run links to other steps)::

    {"format": 2, "experiment": NAME, "source": FILE,
     "runs": [{"index", "run_id", "case", "params": [[key, value], ...], "argv", "env", "workdir",
               optional "resume_arg", "checkpoint_dir", "stage", "params_json", "upstream",
               "inputs", "artifacts"}, ...],
     "roles": {ROLE: [position in runs of replica 0, of replica 1, ...]}}

Formats (:mod:`torchx_forge.core.formats`): format 1, the tables written before formats were
numbered, told the space form by ``"format": "space"`` and had no ``format`` key in the rows form;
format 2 numbers it, and a ``space`` key tells the space form. Both are read.

What a row holds and how it is computed from a run's parameters: :mod:`torchx_forge.core.runrow`.
"""

from __future__ import annotations

import bisect
import itertools
import json
from typing import Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core import formats
from torchx_forge.core.record import field, record
from torchx_forge.core.runrow import Base, RunRow, resolve, row, row_fields
from torchx_forge.core.space import Point, Space

#: how format 1 marked the space form
SPACE = "space"


# -- building and reading tables ---------------------------------------------------------------


def ranges(indices: Sequence[int]) -> List[List[int]]:
    """``[0, 1, 2, 7, 8]`` -> ``[[0, 3], [7, 9]]``: run positions as half-open ranges."""
    out: List[List[int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


class Positions(Sequence[int]):
    """The run positions of a role's replicas, stored as ranges (replica k -> position)."""

    def __init__(self, spans: Sequence[Sequence[int]]) -> None:
        self.spans = [(int(a), int(b)) for a, b in spans]
        self.starts = list(itertools.accumulate((b - a for a, b in self.spans), initial=0))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if not 0 <= k < len(self):
            raise IndexError(k)
        s = bisect.bisect_right(self.starts, k) - 1
        return self.spans[s][0] + k - self.starts[s]

    def __iter__(self) -> Iterator[int]:
        for a, b in self.spans:
            yield from range(a, b)


@record(frozen=False)
class RunTable:
    """A run table, in either form: ``runs`` (rows) or ``space`` and ``base`` (a space).

    ``roles``: the run positions of each role's replicas (replica k -> position), as
    :class:`Positions` in a space table; ``extra``: the space form's fields every row gets (JSON,
    as :func:`row_fields` reads them).
    """

    FORMAT: ClassVar[int] = 2
    KIND: ClassVar[str] = "run table"

    experiment: str
    source: str
    roles: Dict[str, Sequence[int]]
    runs: Optional[List[RunRow]] = None
    space: Optional[Space] = None
    base: Optional[Base] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT  # see torchx_forge.core.formats
    _extra: Dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)  # ``extra``, typed

    def __post_init__(self) -> None:
        if (self.runs is None) == (self.space is None or self.base is None):
            raise ValueError("a run table has either runs or a space and its base")
        self._extra = row_fields(self.extra) if self.extra else {}

    def to_json(self) -> Dict[str, Any]:
        """The table as it is stored, keys in a fixed order (equal tables give equal bytes)."""
        head: Dict[str, Any] = {formats.KEY: self.FORMAT, "experiment": self.experiment, "source": self.source}
        if self.space is not None and self.base is not None:
            spans = {r: [list(s) for s in p.spans] if isinstance(p, Positions) else ranges(p) for r, p in self.roles.items()}
            return {**head, "space": self.space.to_json(), "base": self.base.to_json(), "extra": dict(self.extra),
                    "roles": spans}
        return {**head, "runs": [r.to_json() for r in self.runs or []], "roles": {r: list(p) for r, p in self.roles.items()}}

    @classmethod
    def from_json(cls, obj: Any, where: str = "") -> RunTable:
        """A table read from ``where``: ValueError when it is none, NewerFormatError when a newer
        torchx-forge wrote it."""
        if not isinstance(obj, dict) or "roles" not in obj:
            raise ValueError("not a run table (expected an object with 'roles' and 'runs' or a 'space')")
        if obj.get(formats.KEY) == SPACE:  # format 1, the space form
            is_space = True
        else:
            is_space = formats.format_of(obj, cls.KIND, where, cls.FORMAT) >= 2 and "space" in obj
        if not is_space and "runs" not in obj:
            raise ValueError("not a run table (expected an object with 'roles' and 'runs' or a 'space')")
        name, source = str(obj.get("experiment") or ""), str(obj.get("source") or "")
        if is_space:
            return cls(name, source, {str(r): Positions(spans) for r, spans in obj["roles"].items()},
                       space=Space.from_json(obj["space"]), base=Base.from_json(obj["base"]), extra=dict(obj.get("extra") or {}))
        return cls(name, source, {str(r): [int(p) for p in pos] for r, pos in obj["roles"].items()},
                   runs=[RunRow.from_json(r) for r in obj["runs"]])


def encode(table: RunTable) -> Tuple[str, bytes]:
    """(sha256, bytes) of a table: rows are built in a fixed key order, so equal tables give equal bytes."""
    import hashlib  # noqa: PLC0415 (the submit side's: tasks only read tables)

    data = json.dumps(table.to_json(), separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest(), data


def decode(data: bytes, where: str = "") -> RunTable:
    """The table in ``data`` (read from ``where``); ValueError when it is none."""
    return RunTable.from_json(json.loads(data), where)


def space_table(name: str, source: str, space: Space, base: Base, roles: Mapping[str, Sequence[int]],
                extra: Optional[Mapping[str, Any]] = None) -> RunTable:
    """The compact table of a sweep: its space, base run and each role's run positions."""
    return RunTable(name, source, {r: Positions(ranges(idx)) for r, idx in roles.items()}, space=space, base=base,
                    extra=dict(extra or {}))


def rows_table(name: str, source: str, runs: Sequence[RunRow], roles: Mapping[str, Sequence[int]]) -> RunTable:
    """The table that lists every row (pipeline steps)."""
    return RunTable(name, source, {r: list(p) for r, p in roles.items()}, runs=list(runs))


def is_space(table: RunTable) -> bool:
    return table.space is not None


def role_positions(table: RunTable, role: str) -> Sequence[int]:
    """The run positions of ``role``'s replicas (empty when the table has no such role)."""
    return table.roles.get(role, [])


def run_count(table: RunTable) -> int:
    return len(table.space) if table.space is not None else len(table.runs or [])


def run_at(table: RunTable, pos: int) -> RunRow:
    """The row of the run at position ``pos``."""
    if table.space is None or table.base is None:
        return (table.runs or [])[pos]
    point = table.space.point(pos)
    return row(point, resolve(table.base, point.params), table._extra)


def point_at(table: RunTable, pos: int) -> Point:
    """Index, run id, case and parameters of the run at ``pos``, without rendering its command."""
    if table.space is None:
        return (table.runs or [])[pos].point
    return table.space.point(pos)


def iter_runs(table: RunTable, limit: Optional[int] = None) -> Iterator[RunRow]:
    """Every row (the first ``limit``), in position order."""
    if table.space is None or table.base is None:
        yield from (table.runs or [])[:limit]
        return
    for point in itertools.islice(table.space, limit):
        yield row(point, resolve(table.base, point.params), table._extra)


def role_of_positions(table: RunTable, limit: int) -> Dict[int, Tuple[str, int]]:
    """(role, replica) of the runs at positions below ``limit``."""
    out: Dict[int, Tuple[str, int]] = {}
    for name in table.roles:
        for k, pos in enumerate(role_positions(table, name)):
            if pos >= limit:
                if is_space(table):
                    break
                continue
            out[pos] = (name, k)
    return out


def find_run(table: RunTable, role: str, replica: int) -> RunRow:
    """Run ``replica`` of ``role`` (LookupError naming what exists)."""
    positions = role_positions(table, role)
    if not 0 <= replica < len(positions):
        raise LookupError(f"role {role!r} has {len(positions)} run(s); there is no replica {replica}")
    return run_at(table, positions[replica])
