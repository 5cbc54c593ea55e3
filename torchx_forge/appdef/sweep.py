"""Experiment -> one scheduler-agnostic AppDef.

A sweep is ONE AppDef: a role per distinct resource shape, whose replicas are the sweep points
of that shape, so ``torchx status`` lists every point as a replica and ``torchx log .../ROLE/7``
shows point 7. Every replica runs ``python -m torchx_forge.node.task --table T --role R
--replica ${replica_id}``; the table T is the resolved list of runs (:mod:`torchx_forge.core.runtable`),
handed to a :data:`TableSink` that stores it where compute nodes can read it (the components pass
the state dir's :meth:`~torchx_forge.state.store.Store.put_table`). Tasks read only that snapshot,
never the experiment file, which may change while they pend.

Each role carries :class:`~torchx_forge.appdef.meta.ForgeMeta`: slurm_forge makes it a job array
with the Slurm options of its shape; other schedulers ignore it.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from torchx import specs

from torchx_forge.appdef.meta import ForgeMeta, RetrySpec
from torchx_forge.core import options, runrow, runtable
from torchx_forge.core.record import replace
from torchx_forge.core.space import Space
from torchx_forge.experiment.spec import Experiment
from torchx_forge.experiment.sweep import ResolvedRun, base_of, cluster_shape, space_of

#: stores a run table and returns the path (or URL) tasks read it from
TableSink = Callable[[runtable.RunTable], str]
PROGRESS_AT = 500  # sweeps at least this big report their expansion (torchx shows INFO logs)
TASK_MODULE = "torchx_forge.node.task"
log = logging.getLogger("torchx_forge")

Shape = Tuple[Tuple[str, Any], ...]
Group = Tuple[str, Shape, Sequence[int]]  # role name, cluster shape, run indices


def shape_of(run: ResolvedRun) -> Shape:
    return run.cluster


def build_table(exp: Experiment, runs: Sequence[ResolvedRun], roles: Mapping[str, List[int]],
                extra: Optional[Mapping[int, Dict[str, Any]]] = None) -> runtable.RunTable:
    """The run table: ``runs`` stored by position; a role lists the run positions of its replicas.
    ``extra``: more row fields by run index (typed :class:`~torchx_forge.core.runrow.RunRow` fields)."""
    rows = []
    position = {}
    for pos, r in enumerate(runs):
        position[r.run.index] = pos
        rows.append(r.row((extra or {}).get(r.run.index)))
    return runtable.rows_table(exp.name, exp.source.path, rows, {name: [position[i] for i in idx] for name, idx in roles.items()})


def role_name(exp: Experiment, k: int, n_shapes: int) -> str:
    return exp.name if n_shapes == 1 else f"{exp.name}-{k}"


def group_by_shape(exp: Experiment, runs: Sequence[ResolvedRun]) -> List[Group]:
    """One role per distinct cluster shape, in order of first appearance."""
    shapes: OrderedDict[Shape, List[int]] = OrderedDict()
    for r in runs:
        shapes.setdefault(shape_of(r), []).append(r.run.index)
    return [(role_name(exp, k, len(shapes)), shape, idx) for k, (shape, idx) in enumerate(shapes.items())]


def space_groups(exp: Experiment, space: Space) -> List[Group]:
    """:func:`group_by_shape` of a sweep's space: without a swept ``cluster.`` key, one shape and
    no run is looked at; otherwise only each run's cluster values are computed."""
    if not any(k.startswith("cluster.") for k in space.swept_keys()):
        return [(exp.name, cluster_shape(exp, ()), range(len(space)))]
    shapes: OrderedDict[Shape, List[int]] = OrderedDict()
    for point in space:
        shapes.setdefault(cluster_shape(exp, point.params), []).append(point.index)
    return [(role_name(exp, k, len(shapes)), shape, idx) for k, (shape, idx) in enumerate(shapes.items())]


def build_appdef(
    exp: Experiment,
    sink: TableSink,
    local_parallel: Optional[int] = None,
    python: Optional[str] = None,
    extra_env: Optional[Mapping[str, str]] = None,
    runs: Optional[List[ResolvedRun]] = None,
    groups: Optional[List[Group]] = None,
    row_extra: Optional[Callable[[ResolvedRun], Dict[str, Any]]] = None,
    task_args: Sequence[str] = (),
) -> specs.AppDef:
    """The AppDef of an experiment: one role per resource shape, a replica per run.

    A sweep's table is its space (no run is listed, whatever its size). Pipelines pass their own
    ``runs``/``groups`` (a per-run step mirrors its sweep's roles), extra table fields per run
    (``row_extra``) and task arguments; their table lists every row.
    """
    if runs is None:
        space = space_of(exp)
        groups = space_groups(exp, space)
        base = base_of(exp, os.getcwd())
        extra = {"artifacts": exp.artifact_globs} if exp.artifact_globs else {}
        table = sink(runtable.space_table(exp.name, exp.source.path, space, base, {n: idx for n, _, idx in groups}, extra))
        count = len(space)
        workdirs = {name: runrow.resolve(base, space.point(idx[0]).params).workdir for name, _, idx in groups}
    else:
        groups = groups if groups is not None else group_by_shape(exp, runs)
        extra_rows = {r.run.index: row_extra(r) for r in runs} if row_extra else {}
        if exp.artifact_globs:
            for r in runs:
                extra_rows.setdefault(r.run.index, {})["artifacts"] = tuple(exp.artifact_globs)
        table = sink(build_table(exp, runs, {name: list(idx) for name, _, idx in groups}, extra_rows))
        count = len(runs)
        by_index = {r.run.index: r for r in runs}
        workdirs = {name: by_index[idx[0]].workdir for name, _, idx in groups}
    if count >= PROGRESS_AT:
        log.info(f"{exp.name}: {count:,} runs in {len(groups)} role(s) (one per resource shape); run table {table}")
    roles = [
        sweep_role(name, dict(shape), len(idx), table, workdirs[name], local_parallel, python, extra_env,
                   exp.retry, task_args)
        for name, shape, idx in groups
    ]
    return specs.AppDef(name=exp.name, roles=roles, metadata={"forge/table": table, "forge/runs": str(count)})


def shape_sbatch(cluster: Mapping[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    """The Slurm options of a shape, by runopt name, from its experiment ``cluster:`` keys."""
    out = []
    for key, opt in options.BY_CLUSTER_KEY.items():
        if key in cluster:
            value = cluster[key]
            out.append((opt.name, " ".join(shlex.quote(str(w)) for w in value) if opt.cluster_list else value))
    return tuple(out)


def sweep_role(
    name: str,
    cluster: Dict[str, Any],
    n: int,
    table: str,
    workdir: str,
    local_parallel: Optional[int],
    python: Optional[str],
    extra_env: Optional[Mapping[str, str]],
    retry: Mapping[str, Any],
    task_args: Sequence[str] = (),
) -> specs.Role:
    """The role of one resource shape: ``n`` replicas, each running one point of ``table``."""
    args = ["-m", TASK_MODULE, "--table", table, "--role", name, "--replica", specs.macros.replica_id,
            "--app-id", specs.macros.app_id, *task_args]
    parallel = local_parallel or cluster.get("array_parallelism")
    if parallel:
        args += ["--local-parallel", str(parallel)]
    role = specs.Role(
        name=name,
        image=workdir,
        entrypoint=python or sys.executable or "python3",
        args=args,
        env=dict(extra_env or {}),
        num_replicas=n,
        resource=specs.Resource(
            cpu=int(cluster.get("cpus_per_task", 1)),
            gpu=int(cluster.get("gpus_per_node", 0)),
            memMB=int(cluster.get("mem", 0)),
        ),
    )
    spec = RetrySpec.from_section(retry)
    meta = ForgeMeta(array=True, table=table, nodes=int(cluster.get("nodes", 1)), sbatch=shape_sbatch(cluster),
                     retry=replace(spec, max_retries=spec.max_retries or 0))
    return meta.apply(role)
