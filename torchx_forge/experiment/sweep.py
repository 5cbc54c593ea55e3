"""Sweep expansion: an Experiment -> an ordered tuple of runs (pure).

slurmforge's semantics: every case is multiplied with the shared axes, so the
number of runs is |shared product| x sum(|case product|), capped by
``max_runs`` (the first N in order). Runs are ordered case by case, then shared
axes, then the case's own axes, each axis in the order written. A run's id is
derived from its case and parameters only, so it stays the same whatever else
changes in the file; its index is its position.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from torchx_forge.experiment.schema import render_value
from torchx_forge.experiment.spec import Case, Experiment


@dataclass(frozen=True)
class Run:
    """One point of a sweep: its index, stable id, case and the dot-path values it sets."""

    index: int
    run_id: str
    case: str
    params: Tuple[Tuple[str, Any], ...]


def run_id_of(case: str, params: Tuple[Tuple[str, Any], ...]) -> str:
    """``<case or run>-<8 hex>``: a hash of the case and the (sorted) parameters, nothing else."""
    blob = repr((case, sorted(params, key=lambda kv: kv[0])))  # str/int/float/bool/None reprs are stable
    return f"{case or 'run'}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def _product(axes: Tuple[Tuple[str, Tuple[Any, ...]], ...]) -> Iterator[Tuple[Tuple[str, Any], ...]]:
    keys = [k for k, _ in axes]
    for combo in itertools.product(*[vals for _, vals in axes]):
        yield tuple(zip(keys, combo, strict=True))


def count_runs(exp: Experiment) -> int:
    """How many runs the sweep expands to (before building them)."""
    if exp.sweep is None:
        return 1
    shared = 1
    for _, vals in exp.sweep.shared_axes:
        shared *= len(vals)
    per_case = 0
    for case in exp.sweep.cases or (Case(""),):
        n = 1
        for _, vals in case.axes:
            n *= len(vals)
        per_case += n
    total = shared * per_case
    return min(total, exp.sweep.max_runs) if exp.sweep.max_runs else total


def expand(exp: Experiment) -> Tuple[Run, ...]:
    """All runs of the experiment, in order (a single run when there is no sweep)."""
    if exp.sweep is None:
        return (Run(0, run_id_of("", ()), "", ()),)
    runs: List[Run] = []
    cap = exp.sweep.max_runs
    for case in exp.sweep.cases or (Case(""),):
        for shared in _product(exp.sweep.shared_axes):
            for own in _product(case.axes):
                if cap is not None and len(runs) >= cap:
                    return tuple(runs)
                params = case.set + shared + own
                runs.append(Run(len(runs), run_id_of(case.name, params), case.name, params))
    return tuple(runs)


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
class ResolvedRun:
    """Everything one run needs: its argv, env, working dir and cluster shape."""

    run: Run
    argv: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...]
    workdir: str
    cluster: Tuple[Tuple[str, Any], ...]
    resume_arg: str = ""
    checkpoint_dir: str = ""

    def to_json(self) -> Dict[str, Any]:
        out = {
            "index": self.run.index,
            "run_id": self.run.run_id,
            "case": self.run.case,
            "params": [[k, v] for k, v in self.run.params],
            "argv": list(self.argv),
            "env": dict(self.env),
            "workdir": self.workdir,
        }
        if self.resume_arg:
            out["resume_arg"] = self.resume_arg
        if self.checkpoint_dir:
            out["checkpoint_dir"] = self.checkpoint_dir
        return out


def _split_params(params: Tuple[Tuple[str, Any], ...]) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
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


def _cluster_shape(cluster: Dict[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cluster.items()))


_SHAPES: Dict[int, Tuple[Experiment, Tuple[Tuple[str, Any], ...]]] = {}


def _base_shape(exp: Experiment) -> Tuple[Tuple[str, Any], ...]:
    hit = _SHAPES.get(id(exp))
    if hit is None or hit[0] is not exp:
        if len(_SHAPES) > 8:  # a tiny cache: one entry per experiment being expanded
            _SHAPES.clear()
        hit = _SHAPES[id(exp)] = (exp, _cluster_shape(exp.cluster))
    return hit[1]


def resolve(exp: Experiment, run: Run, default_workdir: Optional[str] = None) -> ResolvedRun:
    """Apply a run's parameters to the base config and render its command line.

    Hot path of big sweeps: works on shallow copies of the base sections (no deep copy).
    """
    base = exp.run
    args_p, env_p, cluster_p, run_p = _split_params(run.params)
    command = run_p.get("command", base.get("command")) or []
    if isinstance(command, str):
        command = shlex.split(command)
    args = {**(base.get("args") or {}), **args_p} if args_p else (base.get("args") or {})
    env = {**(base.get("env") or {}), **env_p} if env_p else (base.get("env") or {})
    argv = tuple(command) + tuple(render_args(args))
    workdir = run_p.get("workdir", base.get("workdir"))
    if workdir:
        workdir = os.path.normpath(os.path.join(exp.base_dir, os.path.expanduser(str(workdir))))
    else:
        workdir = default_workdir or os.getcwd()
    cluster = _cluster_shape({**exp.cluster, **cluster_p}) if cluster_p else _base_shape(exp)
    return ResolvedRun(
        run, argv, tuple(sorted((k, str(v)) for k, v in env.items())), workdir, cluster,
        resume_arg=str(run_p.get("resume_arg", base.get("resume_arg", "")) or ""),
        checkpoint_dir=str(run_p.get("checkpoint_dir", base.get("checkpoint_dir", "")) or ""),
    )

