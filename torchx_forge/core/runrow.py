"""One run of a sweep or a pipeline step: how its parameters resolve into a command line and an
environment (:func:`resolve`), and its typed row (:class:`RunRow`), the unit a run table holds and a
task reads (:mod:`torchx_forge.core.runtable`). Pure, standard library only.

A row's argv is the base command, then the base arguments with the run's own on top, rendered by
:func:`render_args`; its env is the base env with the run's on top (a null removes a variable).
"""

from __future__ import annotations

import os
import shlex
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core.record import fields, record
from torchx_forge.core.space import Point

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


@record
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


@record
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


@record
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


@record
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


@record
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
