"""Sweep expansion: an Experiment -> its runs, in order (pure).

slurmforge 0.2.0's semantics: every case is multiplied with the shared axes, so the number of
runs is |shared product| x sum(|case product|) (x samples, for a random search), capped by
``max_runs`` (the first N in order). Runs are ordered case by case; within a case the shared
axes and its own are merged and sorted by key, the first key outermost, random samples innermost
(:mod:`torchx_forge.core.space`). A run's id is derived from its case and parameters only, so it
stays the same whatever else changes in the file; its index is its position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from torchx_forge.core import runrow
from torchx_forge.core.runrow import render_args, split_params
from torchx_forge.core.space import Point, Space, run_id_of, single
from torchx_forge.experiment.spec import Experiment

#: one point of a sweep: index, run id, case, parameters (and the sample, in a random search)
Run = Point
__all__ = ["Run", "ResolvedRun", "base_of", "count_runs", "expand", "render_args", "resolve", "run_id_of", "space_of"]


def space_of(exp: Experiment) -> Space:
    """Every run of the experiment, computed on demand (a single run when there is no sweep)."""
    return exp.sweep.space() if exp.sweep is not None else single()


def count_runs(exp: Experiment) -> int:
    """How many runs the sweep expands to (without building them)."""
    return len(space_of(exp))


def expand(exp: Experiment) -> Tuple[Run, ...]:
    """All runs of the experiment, in order (a single run when there is no sweep)."""
    return tuple(space_of(exp))


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

    def row(self, extra: Optional[Mapping[str, Any]] = None) -> runrow.RunRow:
        """The run's row in a run table (``extra``: more of its fields, see :func:`runrow.row`)."""
        return runrow.row(self.run, runrow.Resolved(self.argv, self.env, self.workdir, self.resume_arg,
                                                        self.checkpoint_dir), extra)


def _cluster_shape(cluster: Dict[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    """A run's resource shape: its cluster keys, sorted (a null key falls back to the default)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cluster.items() if v is not None))


def base_of(exp: Experiment, default_workdir: Optional[str] = None) -> runrow.Base:
    """The base run every point starts from: the ``run:`` section, with its paths made absolute."""
    run = exp.run
    workdir = run.get("workdir")
    if workdir:
        workdir = os.path.normpath(os.path.join(exp.base_dir, os.path.expanduser(str(workdir))))
    return runrow.Base(
        command=tuple(run.get("command") or ()), args=tuple((run.get("args") or {}).items()),
        env=tuple(sorted((run.get("env") or {}).items())), workdir=workdir or default_workdir or os.getcwd(),
        base_dir=exp.base_dir, resume_arg=str(run.get("resume_arg", "") or ""),
        checkpoint_dir=str(run.get("checkpoint_dir", "") or ""),
    )


def cluster_shape(exp: Experiment, params: Tuple[Tuple[str, Any], ...]) -> Tuple[Tuple[str, Any], ...]:
    """The resource shape of a run with these parameters: the ``cluster:`` section with its own on top."""
    cluster_p = split_params(params)[2]
    return _cluster_shape({**exp.cluster, **cluster_p})


_BASES: Dict[Tuple[int, Optional[str]], Tuple[Experiment, runrow.Base]] = {}


def _base(exp: Experiment, default_workdir: Optional[str]) -> runrow.Base:
    """base_of, kept while one experiment is being expanded (resolve is called once per run)."""
    hit = _BASES.get((id(exp), default_workdir))
    if hit is None or hit[0] is not exp:
        if len(_BASES) > 8:
            _BASES.clear()
        hit = _BASES[(id(exp), default_workdir)] = (exp, base_of(exp, default_workdir))
    return hit[1]


def resolve(exp: Experiment, run: Run, default_workdir: Optional[str] = None) -> ResolvedRun:
    """Apply a run's parameters to the base config and render its command line."""
    r = runrow.resolve(_base(exp, default_workdir), run.params)
    return ResolvedRun(run, r.argv, r.env, r.workdir, cluster_shape(exp, run.params), r.resume_arg, r.checkpoint_dir)
