"""Pipelines in experiment files: ``stages:`` -> a Pipeline of experiment AppDefs.

    name: pipe
    cluster: {time_limit: "00:10:00"}          # defaults for every stage
    stages:
      prepare: {run: {command: [sh, -c, "date > prepared"]}}
      train:
        after: [prepare]
        run: {command: [python3, train.py], args: {lr: 0.1}}
        sweep: {shared_axes: {run.args.lr: [0.1, 0.01, 0.001]}}
      eval:
        after: [train]
        per_run: true                          # eval of run i waits for training run i only
        inputs: {checkpoint: best, metric_file: metrics.json, metric: val_loss, mode: min, arg: --checkpoint}
        run: {command: [python3, eval.py]}
      compare: {after: [eval], when: all_ok, run: {command: [python3, compare.py]}}

Stage keys: ``run``, ``cluster``, ``retry``, ``sweep`` (as in a plain experiment
file, on top of the file's top-level ``cluster``/``retry`` defaults), ``after``
(step names, or ``job:12345`` for a Slurm job outside the pipeline), ``per_run``,
``when`` (``all_ok``/``afterok`` default, ``any_done``/``afterany``, ``afternotok``)
and ``inputs`` (per-run steps: which checkpoint of the upstream run to hand over).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx import specs

from torchx_forge.appdefs import build_appdef, group_by_shape
from torchx_forge.errors import ConfigError
from torchx_forge.experiment import parse_overrides, set_path, validate
from torchx_forge.pipeline import Pipeline, Step, StepInfo, topological_order
from torchx_forge.records import Store
from torchx_forge.schema import (
    RETRY_SCHEMA,
    Check,
    Source,
    _check_mapping,
    _type_name,
    read_yaml,
    t_bool,
    t_str,
)
from torchx_forge.sweep import ResolvedRun, Run, expand, resolve

WHEN = {"all_ok": "afterok", "afterok": "afterok", "any_done": "afterany", "afterany": "afterany", "afternotok": "afternotok"}
CHECKPOINT_POLICIES = ("latest", "best", "explicit")
STAGE_KEYS = ("run", "cluster", "retry", "artifacts", "sweep", "after", "per_run", "when", "inputs")


def t_after(v: Any, p: str, s: Source) -> List[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        raise ConfigError(s.where(p), f"expected a list of step names (or job:ID), got {_type_name(v)} {v!r}")
    out = [str(x) for x in v]
    for x in out:
        if x.startswith("job:") and not re.match(r"^job:\d+(_\d+)?$", x):
            raise ConfigError(s.where(p), f"{x!r}: an external dependency is job:<Slurm job id>")
    return out


def t_when(v: Any, p: str, s: Source) -> str:
    text = t_str(v, p, s)
    if text not in WHEN:
        raise ConfigError(s.where(p), f"got {text!r}; expected one of {', '.join(WHEN)}")
    return WHEN[text]


def t_inputs(v: Any, p: str, s: Source) -> Dict[str, Any]:
    schema: Dict[str, Check] = {
        "checkpoint": t_str, "metric_file": t_str, "metric": t_str, "mode": t_str, "path": t_str, "arg": t_str,
    }
    out = _check_mapping(v, p, s, schema)
    policy = out.setdefault("checkpoint", "latest")
    if policy not in CHECKPOINT_POLICIES:
        raise ConfigError(s.where(f"{p}.checkpoint"), f"got {policy!r}; expected one of {', '.join(CHECKPOINT_POLICIES)}")
    if policy == "best" and "metric" not in out:
        raise ConfigError(s.where(p), "checkpoint: best needs metric (and metric_file, default metrics.json; mode min or max)")
    if policy == "explicit" and "path" not in out:
        raise ConfigError(s.where(p), "checkpoint: explicit needs path (may use {run_id} and {checkpoint_dir})")
    if out.get("mode", "min") not in ("min", "max"):
        raise ConfigError(s.where(f"{p}.mode"), f"got {out['mode']!r}; expected min or max")
    return out


STAGE_SCHEMA: Dict[str, Check] = {
    "after": t_after, "per_run": t_bool, "when": t_when, "inputs": t_inputs,
}


def load_pipeline_config(path: str, overrides: Sequence[str] = ()) -> Tuple[Dict[str, Any], Source]:
    cfg, source = read_yaml(path)
    for key, value in parse_overrides(overrides):
        set_path(cfg, key, value)
    allowed = ("name", "description", "cluster", "retry", "artifacts", "stages")
    for key in cfg:
        if key not in allowed:
            raise ConfigError(source.where(str(key)), f"unknown key in a pipeline file; expected one of: {', '.join(allowed)}")
    if not isinstance(cfg.get("stages"), dict) or not cfg["stages"]:
        raise ConfigError(source.where("stages"), "expected a mapping of step name to step")
    if "name" not in cfg:
        raise ConfigError(source.where(""), "missing key 'name' (the pipeline's name)")
    _check_mapping(cfg.get("retry"), "retry", source, RETRY_SCHEMA)
    return cfg, source


def _stage_experiment(cfg: Dict[str, Any], name: str, source: Source, base_dir: str):  # type: ignore[no-untyped-def]
    stage = cfg["stages"][name]
    where = source.under(f"stages.{name}.")
    if not isinstance(stage, dict):
        raise ConfigError(where.where(""), f"expected a mapping with run/after/..., got {_type_name(stage)}")
    for key in stage:
        if key not in STAGE_KEYS:
            raise ConfigError(where.where(str(key)), f"unknown key; expected one of: {', '.join(STAGE_KEYS)}")
    sub = {
        "name": name,
        "run": stage.get("run"),
        "cluster": {**(cfg.get("cluster") or {}), **(stage.get("cluster") or {})},
        "retry": {**(cfg.get("retry") or {}), **(stage.get("retry") or {})},
        "artifacts": {**(cfg.get("artifacts") or {}), **(stage.get("artifacts") or {})},
    }
    if stage.get("sweep") is not None:
        sub["sweep"] = stage["sweep"]
    opts = {k: STAGE_SCHEMA[k](stage[k], k, where) for k in STAGE_SCHEMA if k in stage}
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ConfigError(where.where(""), "step names use letters, digits, '_', '.', '-'")
    return validate(sub, where, base_dir), opts


def build_pipeline(
    path: str, overrides: Sequence[str], store: Store, local_parallel: Optional[int] = None
) -> Tuple[Pipeline, Dict[str, StepInfo]]:
    """Read a pipeline file and build every step's AppDef (tables written to ``store``)."""
    cfg, source = load_pipeline_config(path, overrides)
    base_dir = os.path.dirname(os.path.abspath(path))
    stages = {n: _stage_experiment(cfg, n, source, base_dir) for n in cfg["stages"]}
    internal = {n: [a for a in o.get("after", []) if not a.startswith("job:")] for n, (_, o) in stages.items()}
    order = topological_order(internal, f"{path}: stages")
    built: Dict[str, Tuple[List[ResolvedRun], List[Any]]] = {}
    steps: List[Step] = []
    infos: Dict[str, StepInfo] = {}
    for name in order:
        exp, o = stages[name]
        after = internal[name]
        per_run = bool(o.get("per_run"))
        where = source.under(f"stages.{name}.").where("per_run")
        if per_run and len(after) != 1:
            raise ConfigError(where, "per_run follows exactly one step (the sweep it evaluates)")
        if per_run and exp.sweep is not None:
            raise ConfigError(where, "a per_run step takes its runs from the step it follows; remove its sweep")
        if per_run:
            runs, groups = _mirror(exp, name, built[after[0]])
        else:
            runs = [resolve(exp, r) for r in expand(exp)]
            groups = group_by_shape(exp, runs)
        built[name] = (runs, groups)
        upstream = [_upstream(a, built[a][0], stages[a][0]) for a in after]
        extra = _row_extra(name, per_run, o.get("inputs"), after, upstream)
        wait = json.dumps([{"stage": a, "per_run": per_run, "type": o.get("when", "afterok")} for a in after])
        app = build_appdef(
            exp, store, local_parallel=local_parallel, runs=runs, groups=groups, row_extra=extra,
            task_args=["--stage", name] + (["--wait-for", wait] if after else []),
            extra_env={"FORGE_STAGE": name},
        )
        steps.append(Step(name, app, after=after, when=o.get("when", "afterok"), per_run=per_run,
                          external=[a[len("job:"):] for a in o.get("after", []) if a.startswith("job:")]))
        infos[name] = StepInfo(name, tuple(after), len(runs), _resources(exp), exp.cluster.get("time_limit"),
                               per_run, o.get("when", "afterok"))
    return Pipeline(str(cfg["name"]), steps), infos


def _mirror(exp, name: str, upstream: Tuple[List[ResolvedRun], List[Any]]):  # type: ignore[no-untyped-def]
    """A per-run step: run i has upstream run i's index and id, in roles of the same sizes."""
    up_runs, up_groups = upstream
    own = resolve(exp, Run(0, "", "", ()))
    runs = [ResolvedRun(Run(u.run.index, u.run.run_id, u.run.case, u.run.params), own.argv, own.env, own.workdir,
                        own.cluster, own.resume_arg, own.checkpoint_dir) for u in up_runs]
    groups = [(name if len(up_groups) == 1 else f"{name}-{k}", own.cluster, list(idx))
              for k, (_, _, idx) in enumerate(up_groups)]
    return runs, groups


def _upstream(stage: str, runs: List[ResolvedRun], exp) -> Dict[str, Any]:  # type: ignore[no-untyped-def]
    ckpt = exp.run.get("checkpoint_dir")
    return {"stage": stage, "runs": [[r.run.index, r.run.run_id] for r in runs], "checkpoint_dir": ckpt}


def _row_extra(name: str, per_run: bool, inputs: Optional[Dict[str, Any]], after: List[str], upstream: List[Dict[str, Any]]):  # type: ignore[no-untyped-def]
    def extra(r: ResolvedRun) -> Dict[str, Any]:
        row: Dict[str, Any] = {"stage": name}
        if r.run.params:
            row["params_json"] = json.dumps(dict(r.run.params))
        if upstream:
            row["upstream"] = upstream if not per_run else [{**upstream[0], "runs": [[r.run.index, r.run.run_id]]}]
        if inputs:
            row["inputs"] = inputs
        return row

    return extra


def _resources(exp) -> str:  # type: ignore[no-untyped-def]
    c = exp.cluster
    parts = [f"{c.get('nodes', 1)} node(s)", f"{c.get('cpus_per_task', 1)} cpu"]
    if c.get("gpus_per_node"):
        parts.append(f"{c['gpus_per_node']} gpu")
    if c.get("mem"):
        parts.append(f"{c['mem']} MB")
    if c.get("partition"):
        parts.append(f"partition {c['partition']}")
    return ", ".join(parts)


def pipeline_appdef(path: str, overrides: Sequence[str], store: Store, local_parallel: Optional[int] = None) -> specs.AppDef:
    pipe, _ = build_pipeline(path, overrides, store, local_parallel)
    return pipe.to_appdef()
