"""Sweep expansion: an Experiment -> an ordered tuple of runs (pure).

slurmforge's semantics: every case is multiplied with the shared axes, so the
number of runs is |shared product| x sum(|case product|), capped by
``max_runs`` (the first N in order). Runs are ordered case by case, then shared
axes, then the case's own axes, each axis in the order written. A run's id is
derived from its case and parameters only, so it stays the same whatever else
changes in the file; its index is its position.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import shlex
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from torchx_forge.experiment import Case, Experiment, get_path, render_value, set_path


@dataclass(frozen=True)
class Run:
    """One point of a sweep: its index, stable id, case and the dot-path values it sets."""

    index: int
    run_id: str
    case: str
    params: Tuple[Tuple[str, Any], ...]


def run_id_of(case: str, params: Tuple[Tuple[str, Any], ...]) -> str:
    blob = json.dumps({"case": case, "params": sorted(params, key=lambda kv: kv[0])}, sort_keys=True, default=str)
    return f"{case or 'run'}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def _product(axes: Tuple[Tuple[str, Tuple[Any, ...]], ...]) -> Iterator[Tuple[Tuple[str, Any], ...]]:
    keys = [k for k, _ in axes]
    for combo in itertools.product(*[vals for _, vals in axes]):
        yield tuple(zip(keys, combo))


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


def resolve(exp: Experiment, run: Run, default_workdir: Optional[str] = None) -> ResolvedRun:
    """Apply a run's parameters to the base config and render its command line."""
    cfg = exp.config
    if run.params:
        cfg = {"run": copy.deepcopy(exp.run), "cluster": dict(exp.cluster)}
        for key, value in run.params:
            set_path(cfg, key, value)
    command = get_path(cfg, "run.command")
    if isinstance(command, str):
        command = shlex.split(command)
    argv = tuple(command) + tuple(render_args(get_path(cfg, "run.args", {}) or {}))
    env = tuple(sorted((get_path(cfg, "run.env", {}) or {}).items()))
    workdir = get_path(cfg, "run.workdir")
    if workdir:
        workdir = os.path.normpath(os.path.join(exp.base_dir, os.path.expanduser(str(workdir))))
    else:
        workdir = default_workdir or os.getcwd()
    cluster = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (cfg.get("cluster") or {}).items()))
    return ResolvedRun(
        run, argv, tuple((k, str(v)) for k, v in env), workdir, cluster,
        resume_arg=str(get_path(cfg, "run.resume_arg", "") or ""),
        checkpoint_dir=str(get_path(cfg, "run.checkpoint_dir", "") or ""),
    )
