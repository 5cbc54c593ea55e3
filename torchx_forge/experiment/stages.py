"""Pipelines in experiment files: the ``stages:`` section, read and checked (pure).

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

Stage keys: ``run``, ``cluster``, ``retry``, ``sweep`` (as in a plain experiment file, on top of
the file's top-level ``cluster``/``retry`` defaults), ``after`` (step names, or ``job:12345`` for
a Slurm job outside the pipeline), ``per_run``, ``when`` (``all_ok``/``afterok`` default,
``any_done``/``afterany``, ``afternotok``) and ``inputs`` (per-run steps: which checkpoint of the
upstream run to hand over). :func:`load_stages` gives the steps in an order where each comes
after those it waits for; :mod:`torchx_forge.appdef.stages` makes them AppDefs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge.core.states import DepKind
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.overrides import parse_overrides, set_path
from torchx_forge.experiment.schema import RETRY_SCHEMA, Check, check_mapping, t_bool, t_str, type_name
from torchx_forge.experiment.source import Source, read_yaml
from torchx_forge.experiment.spec import Experiment, validate
from torchx_forge.experiment.sweep import space_of

WHEN = {"all_ok": DepKind.AFTEROK, "afterok": DepKind.AFTEROK, "any_done": DepKind.AFTERANY,
        "afterany": DepKind.AFTERANY, "afternotok": DepKind.AFTERNOTOK}
CHECKPOINT_POLICIES = ("latest", "best", "explicit")
STAGE_KEYS = ("run", "cluster", "retry", "artifacts", "sweep", "after", "per_run", "when", "inputs")
STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: the most runs a pipeline may have in all: its run tables list every run, and it is submitted
#: whole (the job records of all its runs at once: Slurm's default MaxJobCount is 10,000)
PIPELINE_RUNS = 100_000
#: the most (run, upstream run) pairs its tables may list: each run of a step that waits for a whole
#: step (not per run) lists every run of it
PIPELINE_LINKS = 1_000_000


def t_after(v: Any, p: str, s: Source) -> List[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        raise ConfigError(s.where(p), f"expected a list of step names (or job:ID), got {type_name(v)} {v!r}")
    out = [str(x) for x in v]
    for x in out:
        if x.startswith("job:") and not re.match(r"^job:\d+(_\d+)?$", x):
            raise ConfigError(s.where(p), f"{x!r}: an external dependency is job:<Slurm job id>")
    return out


def t_when(v: Any, p: str, s: Source) -> DepKind:
    text = t_str(v, p, s)
    if text not in WHEN:
        raise ConfigError(s.where(p), f"got {text!r}; expected one of {', '.join(WHEN)}")
    return WHEN[text]


def t_inputs(v: Any, p: str, s: Source) -> Dict[str, Any]:
    schema: Dict[str, Check] = {
        "checkpoint": t_str, "metric_file": t_str, "metric": t_str, "mode": t_str, "path": t_str, "arg": t_str,
    }
    out = check_mapping(v, p, s, schema)
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


STAGE_SCHEMA: Dict[str, Check] = {"after": t_after, "per_run": t_bool, "when": t_when, "inputs": t_inputs}


@dataclass(frozen=True)
class StageSpec:
    """One step of a pipeline file: its experiment and how it waits for the steps before it."""

    name: str
    exp: Experiment
    after: Tuple[str, ...] = ()  # steps of this pipeline
    external: Tuple[str, ...] = ()  # Slurm job ids outside it
    per_run: bool = False
    when: DepKind = DepKind.AFTEROK
    inputs: Optional[Dict[str, Any]] = field(default=None, hash=False)


def is_pipeline_file(cfg: Dict[str, Any]) -> bool:
    return "stages" in cfg


def load_pipeline_config(path: str, overrides: Sequence[str] = ()) -> Tuple[Dict[str, Any], Source]:
    cfg, source = read_yaml(path)
    for key, value in parse_overrides(overrides):
        set_path(cfg, key, value)
    check_pipeline_config(cfg, source)
    return cfg, source


def check_pipeline_config(cfg: Dict[str, Any], source: Source) -> None:
    """The top level of a pipeline (file or dict): its keys, its name, its steps."""
    allowed = ("name", "description", "cluster", "retry", "artifacts", "stages")
    for key in cfg:
        if key not in allowed:
            raise ConfigError(source.where(str(key)), f"unknown key in a pipeline file; expected one of: {', '.join(allowed)}")
    if not isinstance(cfg.get("stages"), dict) or not cfg["stages"]:
        raise ConfigError(source.where("stages"), "expected a mapping of step name to step")
    if "name" not in cfg:
        raise ConfigError(source.where(""), "missing key 'name' (the pipeline's name)")
    check_mapping(cfg.get("retry"), "retry", source, RETRY_SCHEMA)


def _stage(cfg: Dict[str, Any], name: str, source: Source, base_dir: str) -> StageSpec:
    stage = cfg["stages"][name]
    where = source.under(f"stages.{name}.")
    if not isinstance(stage, dict):
        raise ConfigError(where.where(""), f"expected a mapping with run/after/..., got {type_name(stage)}")
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
    if not STEP_NAME.match(name):
        raise ConfigError(where.where(""), "step names use letters, digits, '_', '.', '-'")
    exp = validate(sub, where, base_dir)
    after = opts.get("after", [])
    return StageSpec(
        name, exp,
        after=tuple(a for a in after if not a.startswith("job:")),
        external=tuple(a[len("job:"):] for a in after if a.startswith("job:")),
        per_run=bool(opts.get("per_run")), when=opts.get("when", DepKind.AFTEROK), inputs=opts.get("inputs"),
    )


def load_stages(path: str, overrides: Sequence[str] = ()) -> Tuple[str, List[StageSpec]]:
    """(pipeline name, its steps in dependency order) from a pipeline file."""
    cfg, source = load_pipeline_config(path, overrides)
    return stages_of(cfg, source, os.path.dirname(os.path.abspath(path)))


def stages_of(cfg: Dict[str, Any], source: Source, base_dir: str) -> Tuple[str, List[StageSpec]]:
    """(pipeline name, its steps in dependency order) from a checked pipeline config (file or dict)."""
    specs = {n: _stage(cfg, n, source, base_dir) for n in cfg["stages"]}
    order = topological_order({n: list(s.after) for n, s in specs.items()}, f"{source.path}: stages")
    for name in order:
        spec = specs[name]
        where = source.under(f"stages.{name}.").where("per_run")
        if spec.per_run and len(spec.after) != 1:
            raise ConfigError(where, "per_run follows exactly one step (the sweep it evaluates)")
        if spec.per_run and spec.exp.sweep is not None:
            raise ConfigError(where, "a per_run step takes its runs from the step it follows; remove its sweep")
    check_pipeline_size([specs[n] for n in order], source)
    return str(cfg["name"]), [specs[n] for n in order]


def check_pipeline_size(stages: Sequence[StageSpec], source: Source) -> None:
    """A pipeline's run tables list every run (a step that waits for a whole step lists all of its runs
    in each of its own): refuse, before any is built, more than :data:`PIPELINE_RUNS` runs or
    :data:`PIPELINE_LINKS` such links. Sizes are counted from the axes, never listed."""
    runs: Dict[str, int] = {}
    links = 0
    for spec in stages:
        runs[spec.name] = runs[spec.after[0]] if spec.per_run else space_of(spec.exp).size
        if not spec.per_run and spec.after:
            upstream = sum(runs[a] for a in spec.after)
            links += runs[spec.name] * upstream
            if links > PIPELINE_LINKS:
                raise ConfigError(
                    source.under(f"stages.{spec.name}.").where("after"),
                    f"each of its {runs[spec.name]:,} runs waits for all {upstream:,} runs of {', '.join(spec.after)},"
                    f" which its run table lists for each: more than the {PIPELINE_LINKS:,} such links a pipeline may"
                    " have; make the step per_run (run i follows run i), put a one-run step between them, or run fewer")
    total = sum(runs.values())
    if total > PIPELINE_RUNS:
        counts = ", ".join(f"{n}: {k:,}" for n, k in runs.items())
        raise ConfigError(source.where("stages"), f"the pipeline has {total:,} runs ({counts}), more than the"
                                                  f" {PIPELINE_RUNS:,} a pipeline may have: it is submitted whole (only"
                                                  " a sweep goes in waves); run fewer, or the big sweep as an app of its own")


def topological_order(after: Dict[str, List[str]], where: str) -> List[str]:
    """Steps in an order where every step comes after those it waits for; errors on cycles and unknown names."""
    for name, deps in after.items():
        for d in deps:
            if d not in after:
                raise ConfigError(f"{where} step {name!r}", f"waits for {d!r}, which is not a step; steps: {', '.join(after)}")
    order: List[str] = []
    state: Dict[str, int] = {}

    def visit(n: str, path: List[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n):] + [n]
            raise ConfigError(f"{where}", f"steps wait for each other in a cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for d in after[n]:
            visit(d, path + [n])
        state[n] = 2
        order.append(n)

    for n in after:
        visit(n, [])
    return order
