"""The run table of a sweep: what every task of it reads to find its run (format owner, pure).

A table is JSON written once, content-addressed and read-only (``tables/<sha256>.json`` in the
state dir), so tasks read a snapshot, never the experiment file, which may change while they
pend. It comes in two forms, read through the same functions (:func:`find_run`,
:func:`iter_runs`, :func:`run_count`):

- a **space** (sweeps): the sweep's space (:class:`~torchx_forge.core.space.Space`) and its base
  run; a run's row is computed when asked for, so the table of a 100,000-point sweep is a few
  hundred bytes and a task reads only that::

    {"format": "space", "experiment": NAME, "source": FILE, "space": {...}, "base": BASE,
     "extra": {fields every row gets}, "roles": {ROLE: [[first run, last run + 1], ...]}}

- **rows** (pipeline steps, whose rows carry per-run links to other steps)::

    {"experiment": NAME, "source": FILE,
     "runs": [{"index", "run_id", "case", "params": [[key, value], ...], "argv", "env", "workdir",
               optional "resume_arg", "checkpoint_dir", "stage", "params_json", "upstream",
               "inputs", "artifacts"}, ...],
     "roles": {ROLE: [position in runs of replica 0, of replica 1, ...]}}

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
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core.space import Point, Space

Table = Dict[str, Any]
SPACE = "space"


def encode(table: Mapping[str, Any]) -> Tuple[str, bytes]:
    """(sha256, bytes) of a table: rows are built in a fixed key order, so equal tables give equal bytes."""
    data = json.dumps(table, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest(), data


def decode(data: bytes) -> Table:
    table = json.loads(data)
    if not isinstance(table, dict) or "roles" not in table or ("runs" not in table and table.get("format") != SPACE):
        raise ValueError("not a run table (expected an object with 'roles' and 'runs' or a 'space')")
    return table


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


def row(point: Point, resolved: Resolved, extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The table row of a run (the rows form stores these; the space form computes them)."""
    out: Dict[str, Any] = {
        "index": point.index,
        "run_id": point.run_id,
        "case": point.case,
        "params": [[k, v] for k, v in point.params],
        "argv": list(resolved.argv),
        "env": dict(resolved.env),
        "workdir": resolved.workdir,
    }
    if resolved.resume_arg:
        out["resume_arg"] = resolved.resume_arg
    if resolved.checkpoint_dir:
        out["checkpoint_dir"] = resolved.checkpoint_dir
    if extra:
        out.update(extra)
    return out


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


def space_table(name: str, source: str, space: Space, base: Base, roles: Mapping[str, Sequence[int]],
                extra: Optional[Mapping[str, Any]] = None) -> Table:
    """The compact table of a sweep: its space, base run and each role's run positions."""
    return {"format": SPACE, "experiment": name, "source": source, "space": space.to_json(), "base": base.to_json(),
            "extra": dict(extra or {}), "roles": {r: ranges(idx) for r, idx in roles.items()}}


@dataclass
class _Compiled:
    space: Space
    base: Base


_COMPILED: Dict[int, Tuple[Mapping[str, Any], _Compiled]] = {}


def _compiled(table: Mapping[str, Any]) -> _Compiled:
    """The parsed space and base of a space table (kept while the same table object is read)."""
    hit = _COMPILED.get(id(table))
    if hit is not None and hit[0] is table:
        return hit[1]
    if len(_COMPILED) > 8:
        _COMPILED.clear()
    compiled = _Compiled(Space.from_json(table["space"]), Base.from_json(table["base"]))
    _COMPILED[id(table)] = (table, compiled)
    return compiled


def is_space(table: Mapping[str, Any]) -> bool:
    return table.get("format") == SPACE


def role_positions(table: Mapping[str, Any], role: str) -> Sequence[int]:
    """The run positions of ``role``'s replicas (empty when the table has no such role)."""
    found = table["roles"].get(role)
    if found is None:
        return []
    return Positions(found) if is_space(table) else found


def run_count(table: Mapping[str, Any]) -> int:
    return len(_compiled(table).space) if is_space(table) else len(table["runs"])


def run_at(table: Mapping[str, Any], pos: int) -> Dict[str, Any]:
    """The row of the run at position ``pos``."""
    if not is_space(table):
        found: Dict[str, Any] = table["runs"][pos]
        return found
    c = _compiled(table)
    point = c.space.point(pos)
    return row(point, resolve(c.base, point.params), table.get("extra"))


def point_at(table: Mapping[str, Any], pos: int) -> Point:
    """Index, run id, case and parameters of the run at ``pos``, without rendering its command."""
    if not is_space(table):
        r = table["runs"][pos]
        return Point(int(r["index"]), str(r["run_id"]), str(r.get("case") or ""),
                     tuple((str(k), v) for k, v in r.get("params") or []))
    return _compiled(table).space.point(pos)


def iter_runs(table: Mapping[str, Any], limit: Optional[int] = None) -> Iterator[Dict[str, Any]]:
    """Every row (the first ``limit``), in position order."""
    if not is_space(table):
        yield from table["runs"][:limit]
        return
    c = _compiled(table)
    extra = table.get("extra")
    for point in itertools.islice(c.space, limit):
        yield row(point, resolve(c.base, point.params), extra)


def role_of_positions(table: Mapping[str, Any], limit: int) -> Dict[int, Tuple[str, int]]:
    """(role, replica) of the runs at positions below ``limit``."""
    out: Dict[int, Tuple[str, int]] = {}
    for name in table["roles"]:
        for k, pos in enumerate(role_positions(table, name)):
            if pos >= limit:
                if is_space(table):
                    break
                continue
            out[pos] = (name, k)
    return out


def find_run(table: Mapping[str, Any], role: str, replica: int) -> Dict[str, Any]:
    """Run ``replica`` of ``role`` (LookupError naming what exists)."""
    positions = role_positions(table, role)
    if not 0 <= replica < len(positions):
        raise LookupError(f"role {role!r} has {len(positions)} run(s); there is no replica {replica}")
    return run_at(table, positions[replica])
