"""Pipeline files -> a :class:`~torchx_forge.appdef.pipeline.Pipeline` of experiment AppDefs.

Each step of a ``stages:`` file (:mod:`torchx_forge.experiment.stages`) becomes the AppDef of its
experiment; a per-run step mirrors the roles of the sweep it follows, run for run, and its table
rows say which upstream run (and checkpoint) each run takes its input from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torchx import specs

from torchx_forge.appdef.pipeline import Pipeline, Step
from torchx_forge.appdef.sweep import Group, TableSink, build_appdef, group_by_shape
from torchx_forge.core import envvars
from torchx_forge.core.record import replace
from torchx_forge.core.runrow import Inputs, Upstream
from torchx_forge.core.slurm_time import parse_slurm_time
from torchx_forge.core.states import DepKind
from torchx_forge.experiment.spec import Experiment
from torchx_forge.experiment.stages import StageSpec, load_stages
from torchx_forge.experiment.sweep import ResolvedRun, Run, expand, resolve

Built = Tuple[List[ResolvedRun], List[Group]]


@dataclass(frozen=True)
class StepInfo:
    """What a built step amounts to: its runs, resources and time limit (``torchx forge plan`` shows it)."""

    name: str
    after: Tuple[str, ...]
    runs: int
    resources: str
    time_limit: Optional[str]
    per_run: bool = False
    when: DepKind = DepKind.AFTEROK

    @property
    def seconds(self) -> Optional[int]:
        return parse_slurm_time(self.time_limit) if self.time_limit else None


def step_runs(spec: StageSpec, built: Dict[str, Built]) -> Built:
    """A step's runs and roles: its own sweep, or (per run) a mirror of the step it follows."""
    if spec.per_run:
        return _mirror(spec.exp, spec.name, built[spec.after[0]])
    runs = [resolve(spec.exp, r) for r in expand(spec.exp)]
    return runs, group_by_shape(spec.exp, runs)


def build_pipeline(path: str, overrides: Sequence[str], sink: TableSink,
                   local_parallel: Optional[int] = None) -> Tuple[Pipeline, Dict[str, StepInfo]]:
    """Read a pipeline file and build every step's AppDef (run tables handed to ``sink``)."""
    name, stages = load_stages(path, overrides)
    return build_steps(name, stages, sink, local_parallel)


def build_steps(name: str, stages: Sequence[StageSpec], sink: TableSink,
                local_parallel: Optional[int] = None) -> Tuple[Pipeline, Dict[str, StepInfo]]:
    """Every step's AppDef, wired into a Pipeline (run tables handed to ``sink``)."""
    by_name = {s.name: s for s in stages}
    built: Dict[str, Built] = {}
    steps: List[Step] = []
    infos: Dict[str, StepInfo] = {}
    for spec in stages:
        runs, groups = built[spec.name] = step_runs(spec, built)
        upstream = [_upstream(a, built[a][0], by_name[a].exp) for a in spec.after]
        wait = json.dumps([{"stage": a, "per_run": spec.per_run, "type": spec.when.value} for a in spec.after])
        app = build_appdef(
            spec.exp, sink, local_parallel=local_parallel, runs=runs, groups=groups,
            row_extra=_row_extra(spec.name, spec.per_run, spec.inputs, upstream),
            task_args=["--stage", spec.name] + (["--wait-for", wait] if spec.after else []),
            extra_env={envvars.STAGE.name: spec.name},
        )
        steps.append(Step(spec.name, app, after=list(spec.after), when=spec.when.value, per_run=spec.per_run,
                          external=list(spec.external)))
        infos[spec.name] = StepInfo(spec.name, spec.after, len(runs), _resources(spec.exp),
                                    spec.exp.cluster.get("time_limit"), spec.per_run, spec.when)
    return Pipeline(name, steps), infos


def _resources(exp: Experiment) -> str:
    c = exp.cluster
    parts = [f"{c.get('nodes', 1)} node(s)", f"{c.get('cpus_per_task', 1)} cpu"]
    if c.get("gpus_per_node"):
        parts.append(f"{c['gpus_per_node']} gpu")
    if c.get("mem"):
        parts.append(f"{c['mem']} MB")
    if c.get("partition"):
        parts.append(f"partition {c['partition']}")
    return ", ".join(parts)


def _mirror(exp: Experiment, name: str, upstream: Built) -> Built:
    """A per-run step: run i has upstream run i's index and id, in roles of the same sizes."""
    up_runs, up_groups = upstream
    own = resolve(exp, Run(0, "", "", ()))
    runs = [ResolvedRun(Run(u.run.index, u.run.run_id, u.run.case, u.run.params), own.argv, own.env, own.workdir,
                        own.cluster, own.resume_arg, own.checkpoint_dir) for u in up_runs]
    groups: List[Group] = [(name if len(up_groups) == 1 else f"{name}-{k}", own.cluster, list(idx))
                           for k, (_, _, idx) in enumerate(up_groups)]
    return runs, groups


def _upstream(stage: str, runs: List[ResolvedRun], exp: Experiment) -> Upstream:
    ckpt = exp.run.get("checkpoint_dir")
    return Upstream(stage, tuple((r.run.index, r.run.run_id) for r in runs), None if ckpt is None else str(ckpt))


def _row_extra(name: str, per_run: bool, inputs: Optional[Dict[str, Any]],
               upstream: List[Upstream]) -> Callable[[ResolvedRun], Dict[str, Any]]:
    """The fields a step adds to each row of its table (typed RunRow fields)."""
    typed = Inputs.from_json(inputs) if inputs else None

    def extra(r: ResolvedRun) -> Dict[str, Any]:
        row: Dict[str, Any] = {"stage": name}
        if r.run.params:
            row["params_json"] = json.dumps(dict(r.run.params))
        if upstream:
            row["upstream"] = tuple(upstream) if not per_run else (
                replace(upstream[0], runs=((r.run.index, r.run.run_id),)),)
        if typed:
            row["inputs"] = typed
        return row

    return extra


def pipeline_appdef(path: str, overrides: Sequence[str], sink: TableSink,
                    local_parallel: Optional[int] = None) -> specs.AppDef:
    pipe, _ = build_pipeline(path, overrides, sink, local_parallel)
    return pipe.to_appdef()
