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

A row's argv is the base command, then the base arguments with the run's own on top, rendered by
:func:`render_args`; its env is the base env with the run's on top (a null removes a variable).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import shlex
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core import formats
from torchx_forge.core.space import Point, Space

#: how format 1 marked the space form
SPACE = "space"


# -- rendering a run ---------------------------------------------------------------------------


def render_value(v: Any) -> str:
    """How a value appears on a command line or in env: booleans as true/false."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render_args(args: Mapping[str, Any]) -> List[str]:
    """``{lr: 0.1, fast: true, tags: [a, b], flag: null}`` -> ``--lr 0.1 --fast true --tags a b --flag``."""
    out: List[str] = []
    for key, value in args.items():
        out.append(f"--{key}")
        if value is None:
            continue
        if isinstance(value, list):
            out.extend(render_value(v) for v in value)
        else:
            out.append(render_value(value))
    return out


@dataclass(frozen=True)
class Base:
    """The run every point of a sweep starts from (an experiment's ``run:`` section, resolved).

    Args:
        command: the program and its fixed words.
        args: arguments rendered after it (``--key value``).
        env: environment variables (values as text).
        workdir: the absolute working directory of every run.
        base_dir: what a run's own relative ``run.workdir`` is relative to (the file's directory).
        resume_arg: the flag that passes the checkpoint to resume from ("" for none).
        checkpoint_dir: the checkpoint dir template ("" for the default).
    """

    command: Tuple[str, ...]
    args: Tuple[Tuple[str, Any], ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    workdir: str = ""
    base_dir: str = ""
    resume_arg: str = ""
    checkpoint_dir: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {"command": list(self.command), "args": [list(kv) for kv in self.args], "env": [list(kv) for kv in self.env],
                "workdir": self.workdir, "base_dir": self.base_dir, "resume_arg": self.resume_arg,
                "checkpoint_dir": self.checkpoint_dir}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Base:
        return cls(tuple(obj["command"]), tuple((k, v) for k, v in obj.get("args", [])),
                   tuple((k, v) for k, v in obj.get("env", [])), obj.get("workdir", ""), obj.get("base_dir", ""),
                   obj.get("resume_arg", ""), obj.get("checkpoint_dir", ""))


def split_params(params: Sequence[Tuple[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """A run's parameters by section: run.args.X, run.env.X, cluster.X, other run.X keys."""
    args: Dict[str, Any] = {}
    env: Dict[str, Any] = {}
    cluster: Dict[str, Any] = {}
    run: Dict[str, Any] = {}
    for key, value in params:
        if key.startswith("run.args."):
            args[key[9:]] = value
        elif key.startswith("run.env."):
            env[key[8:]] = value
        elif key.startswith("cluster."):
            cluster[key[8:]] = value
        else:
            run[key[4:]] = value  # run.command, run.workdir, ... (validated by the experiment loader)
    return args, env, cluster, run


@dataclass(frozen=True)
class Resolved:
    """What one run executes: argv, env and working directory (plus its resume settings)."""

    argv: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...]
    workdir: str
    resume_arg: str = ""
    checkpoint_dir: str = ""


def resolve(base: Base, params: Sequence[Tuple[str, Any]]) -> Resolved:
    """Apply a run's parameters to the base run and render its command line."""
    args_p, env_p, _, run_p = split_params(params)
    command = run_p.get("command") or base.command
    if isinstance(command, str):
        command = shlex.split(command)
    args = {**dict(base.args), **args_p} if args_p else dict(base.args)
    env = dict(base.env)
    for key, value in env_p.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = render_value(value)
    workdir = run_p.get("workdir")
    workdir = os.path.normpath(os.path.join(base.base_dir, os.path.expanduser(str(workdir)))) if workdir else base.workdir
    return Resolved(
        tuple(command) + tuple(render_args(args)), tuple(sorted(env.items())), workdir,
        str(run_p.get("resume_arg", base.resume_arg) or ""), str(run_p.get("checkpoint_dir", base.checkpoint_dir) or ""),
    )


@dataclass(frozen=True)
class Upstream:
    """Pipelines: a step this run follows, and the runs of it (index, run id) it takes results from."""

    stage: str
    runs: Tuple[Tuple[int, str], ...]
    checkpoint_dir: Optional[str] = None  # the upstream step's checkpoint_dir template (None: the default)

    def to_json(self) -> Dict[str, Any]:
        return {"stage": self.stage, "runs": [[i, r] for i, r in self.runs], "checkpoint_dir": self.checkpoint_dir}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Upstream:
        return cls(str(obj["stage"]), tuple((int(i), str(r)) for i, r in obj.get("runs") or []),
                   None if obj.get("checkpoint_dir") is None else str(obj["checkpoint_dir"]))


@dataclass(frozen=True)
class Inputs:
    """Per-run pipeline steps: which upstream checkpoint a run gets (an experiment's ``inputs:``)."""

    checkpoint: str = "latest"  # latest, best or explicit
    metric_file: Optional[str] = None  # best: where the metric per checkpoint is (default metrics.json)
    metric: Optional[str] = None  # best: which metric
    mode: Optional[str] = None  # best: min (default) or max
    path: Optional[str] = None  # explicit: the checkpoint ({run_id} and {checkpoint_dir} filled in)
    arg: Optional[str] = None  # also pass it to the program as this argument

    def to_json(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Inputs:
        return cls(**{f.name: str(obj[f.name]) for f in fields(cls) if obj.get(f.name) is not None})


@dataclass(frozen=True)
class RunRow:
    """One run of a table: what its task executes, and (pipelines) how it links to other steps."""

    index: int
    run_id: str
    case: str = ""
    params: Tuple[Tuple[str, Any], ...] = ()
    argv: Tuple[str, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()
    workdir: str = ""
    resume_arg: str = ""
    checkpoint_dir: str = ""  # the run's checkpoint_dir template ("" for the default)
    stage: str = ""  # pipelines: the step
    params_json: str = ""  # pipelines: the parameters as a JSON object (FORGE_RUN_PARAMS)
    upstream: Tuple[Upstream, ...] = ()
    inputs: Optional[Inputs] = None
    artifacts: Tuple[str, ...] = ()  # globs of files collected into the result dir

    #: written only when set, in this order
    _OPTIONAL: ClassVar[Tuple[str, ...]] = ("resume_arg", "checkpoint_dir", "stage", "params_json", "upstream",
                                            "inputs", "artifacts")

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"index": self.index, "run_id": self.run_id, "case": self.case,
                               "params": [[k, v] for k, v in self.params], "argv": list(self.argv), "env": dict(self.env),
                               "workdir": self.workdir}
        for name in self._OPTIONAL:
            value = getattr(self, name)
            if value:
                out[name] = _field_json(value)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunRow:
        return cls(int(obj["index"]), str(obj["run_id"]), **row_fields(obj))

    @property
    def point(self) -> Point:
        return Point(self.index, self.run_id, self.case, self.params)


def _field_json(value: Any) -> Any:
    if isinstance(value, (Upstream, Inputs)):
        return value.to_json()
    if isinstance(value, tuple):
        return [_field_json(v) for v in value]
    return value


def row_fields(obj: Mapping[str, Any]) -> Dict[str, Any]:
    """The :class:`RunRow` fields (but index and run id) a row's JSON gives, typed; unknown keys are left out."""
    out: Dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("index", "run_id"):
            continue
        if key in ("params", "env"):
            out[key] = tuple((str(k), v) for k, v in (value.items() if isinstance(value, dict) else value or []))
        elif key in ("argv", "artifacts"):
            out[key] = tuple(str(v) for v in value or [])
        elif key == "upstream":
            out[key] = tuple(Upstream.from_json(u) for u in value or [])
        elif key == "inputs":
            out[key] = Inputs.from_json(value) if value else None
        elif key in ("case", "workdir", "resume_arg", "checkpoint_dir", "stage", "params_json"):
            out[key] = str(value or "")
    return out


def row(point: Point, resolved: Resolved, extra: Optional[Mapping[str, Any]] = None) -> RunRow:
    """The table row of a run (the rows form stores these; the space form computes them); ``extra``:
    more :class:`RunRow` fields, typed (see :func:`row_fields`)."""
    return RunRow(point.index, point.run_id, point.case, tuple(point.params), tuple(resolved.argv), tuple(resolved.env),
                  resolved.workdir, resolved.resume_arg, resolved.checkpoint_dir, **(extra or {}))


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


@dataclass
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
