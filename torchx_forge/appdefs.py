"""Experiment -> one scheduler-agnostic AppDef.

A sweep is ONE AppDef: a role per distinct resource shape, whose replicas are
the sweep points of that shape, so ``torchx status`` lists every point as a
replica and ``torchx log .../ROLE/7`` shows point 7. Every replica runs
``python -m torchx_forge.task --table T --role R --replica ${replica_id}``; the
table T is the resolved list of runs, written once, content-addressed and
read-only, where compute nodes can read it (the state dir). Tasks read only that
snapshot, never the experiment file, which may change while they pend.

Role metadata under ``"forge"`` tells slurm_forge to make each such role a job
array and carries the Slurm settings of the shape; other schedulers ignore it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from torchx import specs

from torchx_forge.experiment import Experiment
from torchx_forge.records import Store
from torchx_forge.sweep import ResolvedRun, expand, resolve

META_KEY = "forge"
PROGRESS_AT = 500  # sweeps at least this big report their expansion (torchx shows INFO logs)
log = logging.getLogger("torchx_forge")

#: cluster keys that become Slurm flags of an array (the rest are resources).
SBATCH_KEYS = ("partition", "account", "qos", "constraint", "time_limit", "exclusive", "extra_sbatch_args", "array_parallelism")


def shape_of(run: ResolvedRun) -> Tuple[Tuple[str, Any], ...]:
    return run.cluster


def write_table(
    store: Store,
    exp: Experiment,
    runs: Sequence[ResolvedRun],
    roles: Mapping[str, List[int]],
    extra: Optional[Mapping[int, Dict[str, Any]]] = None,
) -> str:
    """Write the run table (content-addressed, read-only); returns its path.

    ``runs`` are stored by position; a role lists the run indices of its replicas.
    """
    rows = []
    position = {}
    for pos, r in enumerate(runs):
        position[r.run.index] = pos
        rows.append({**r.to_json(), **(extra or {}).get(r.run.index, {})})
    table = {
        "experiment": exp.name,
        "source": exp.source.path,
        "runs": rows,
        "roles": {name: [position[i] for i in idx] for name, idx in roles.items()},
    }
    # rows are built in a fixed key order, so the bytes (and the content address) are deterministic
    data = json.dumps(table, separators=(",", ":")).encode()
    _, path = store.put_content_addressed("tables", data)
    _WRITTEN[path] = table
    return path


#: Tables written by this process, so a --dryrun preview does not parse them back.
_WRITTEN: Dict[str, Dict[str, Any]] = {}


def role_name(exp: Experiment, k: int, n_shapes: int) -> str:
    return exp.name if n_shapes == 1 else f"{exp.name}-{k}"


Group = Tuple[str, Tuple[Tuple[str, Any], ...], List[int]]  # role name, cluster shape, run indices


def group_by_shape(exp: Experiment, runs: Sequence[ResolvedRun]) -> List[Group]:
    """One role per distinct cluster shape, in order of first appearance."""
    shapes: "OrderedDict[Tuple[Tuple[str, Any], ...], List[int]]" = OrderedDict()
    for r in runs:
        shapes.setdefault(shape_of(r), []).append(r.run.index)
    return [(role_name(exp, k, len(shapes)), shape, idx) for k, (shape, idx) in enumerate(shapes.items())]


def build_appdef(
    exp: Experiment,
    store: Store,
    local_parallel: Optional[int] = None,
    python: Optional[str] = None,
    extra_env: Optional[Mapping[str, str]] = None,
    runs: Optional[List[ResolvedRun]] = None,
    groups: Optional[List[Group]] = None,
    row_extra: Optional[Callable[[ResolvedRun], Dict[str, Any]]] = None,
    task_args: Sequence[str] = (),
) -> specs.AppDef:
    """The AppDef of an experiment: one role per resource shape, a replica per run.

    Pipelines pass their own ``runs``/``groups`` (a per-run step mirrors its sweep's
    roles), extra table fields per run (``row_extra``) and task arguments.
    """
    cwd = os.getcwd()
    runs = runs if runs is not None else [resolve(exp, r, cwd) for r in expand(exp)]
    groups = groups if groups is not None else group_by_shape(exp, runs)
    extra = {r.run.index: row_extra(r) for r in runs} if row_extra else {}
    if exp.artifact_globs:
        for r in runs:
            extra.setdefault(r.run.index, {})["artifacts"] = exp.artifact_globs
    table = write_table(store, exp, runs, {name: idx for name, _, idx in groups}, extra)
    if len(runs) >= PROGRESS_AT:
        log.info(f"{exp.name}: {len(runs):,} runs in {len(groups)} role(s) (one per resource shape); run table {table}")
    by_index = {r.run.index: r for r in runs}
    roles = [
        _role(name, dict(shape), len(idx), table, by_index[idx[0]].workdir, local_parallel, python, extra_env,
              exp.retry, task_args)
        for name, shape, idx in groups
    ]
    return specs.AppDef(name=exp.name, roles=roles, metadata={"forge/table": table, "forge/runs": str(len(runs))})


def _role(
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
    args = ["-m", "torchx_forge.task", "--table", table, "--role", name, "--replica", specs.macros.replica_id,
            "--app-id", specs.macros.app_id, *task_args]
    parallel = local_parallel or cluster.get("array_parallelism")
    if parallel:
        args += ["--local-parallel", str(parallel)]
    sbatch = {k: cluster[k] for k in SBATCH_KEYS if k in cluster}
    return specs.Role(
        name=name,
        image=workdir,
        entrypoint=python or sys.executable or "python3",
        args=args,
        env=dict(extra_env or {}),
        num_replicas=n,
        max_retries=int(retry.get("max_retries", 0)),
        resource=specs.Resource(
            cpu=int(cluster.get("cpus_per_task", 1)),
            gpu=int(cluster.get("gpus_per_node", 0)),
            memMB=int(cluster.get("mem", 0)),
        ),
        metadata={META_KEY: {
            "array": True, "table": table, "nodes": int(cluster.get("nodes", 1)), "sbatch": sbatch,
            "retry": {k: retry[k] for k in ("retry_on", "signal", "grace") if k in retry},
        }},
    )


def read_table(path: str) -> Dict[str, Any]:
    """Load a run table written by :func:`write_table` (any fsspec URL); no re-read in the writing process."""
    if path in _WRITTEN:
        return _WRITTEN[path]
    from torchx_forge.task import load_table

    return load_table(os.path.expanduser(path))
