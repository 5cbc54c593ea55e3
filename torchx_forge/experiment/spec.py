"""Experiment files: load, override, validate (the typed :class:`Experiment`).

An experiment file is YAML with a base run, cluster settings and an optional
sweep, using slurmforge's key names where the concept is the same::

    name: demo
    run:
      command: ["python3", "train.py"]      # list, or one string split like a shell
      args: {lr: 0.1, epochs: 2}            # rendered as --lr 0.1 --epochs 2
      env: {WANDB_MODE: offline}
      workdir: .                            # relative to this file; default: where you run torchx
    cluster:
      partition: debug
      time_limit: "00:30:00"
      nodes: 1
      cpus_per_task: 2
      gpus_per_node: 0
      mem: 4G
    sweep:
      max_runs: 20
      shared_axes: {run.args.lr: [0.1, 0.01]}
      cases:
        - {name: adam, set: {run.args.opt: adam}}
        - {name: sgd, set: {run.args.opt: sgd}, axes: {run.args.momentum: [0.0, 0.9]}}

Every problem is reported as a :class:`ConfigError` naming the file, line and
key path (``demo.yaml:7: sweep.shared_axes.run.args.lr: expected a non-empty list``).
Overrides (``--set 'a.b=1;c=[1,2]'`` or ``a.b=1`` words) are typed as YAML.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge.errors import ConfigError
from torchx_forge.experiment.overrides import parse_overrides, set_path
from torchx_forge.experiment.schema import (
    ARTIFACTS_SCHEMA,
    CLUSTER_SCHEMA,
    RETRY_SCHEMA,
    RUN_SCHEMA,
    Check,
    check_mapping,
    leaf_check,
    t_bool,
    t_int,
    t_str,
    type_name,
)
from torchx_forge.experiment.source import Source, read_yaml


@dataclass(frozen=True)
class Case:
    name: str
    set: Tuple[Tuple[str, Any], ...] = ()
    axes: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    enabled: bool = True
    max_runs: Optional[int] = None
    shared_axes: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()
    cases: Tuple[Case, ...] = ()


def _check_path(path: str, where: str, s: Source) -> Check:
    check = leaf_check(path)
    if check is None:
        raise ConfigError(
            s.where(where),
            f"{path!r} is not a key a sweep can set; use run.args.NAME, run.env.NAME, run.command, run.workdir"
            f" or cluster.KEY ({', '.join(CLUSTER_SCHEMA)})",
        )
    return check


def _check_axes(v: Any, p: str, s: Source) -> Tuple[Tuple[str, Tuple[Any, ...]], ...]:
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of dot-path key to a list of values, got {type_name(v)}")
    out = []
    for key, values in v.items():
        where = f"{p}.{key}"
        check = _check_path(str(key), where, s)
        if not isinstance(values, list) or not values:
            raise ConfigError(s.where(where), f"expected a non-empty list of values, got {type_name(values)} {values!r}")
        out.append((str(key), tuple(check(x, f"{where}.{i}", s) for i, x in enumerate(values))))
    return tuple(out)


def _check_set(v: Any, p: str, s: Source) -> Tuple[Tuple[str, Any], ...]:
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of dot-path key to value, got {type_name(v)}")
    return tuple((str(k), _check_path(str(k), f"{p}.{k}", s)(x, f"{p}.{k}", s)) for k, x in v.items())


def _overlap(keys: List[str]) -> Optional[Tuple[str, str]]:
    seen: List[str] = []
    for k in keys:
        for o in seen:
            if k == o or k.startswith(o + ".") or o.startswith(k + "."):
                return o, k
        seen.append(k)
    return None


def check_sweep(v: Any, p: str, s: Source) -> SweepSpec:
    raw = check_mapping(
        v, p, s, {"enabled": t_bool, "max_runs": t_int(1), "shared_axes": _check_axes, "cases": lambda x, q, t: x}
    )
    cases_raw = raw.get("cases")
    cases: List[Case] = []
    if cases_raw is not None:
        if not isinstance(cases_raw, list) or not cases_raw:
            raise ConfigError(s.where(f"{p}.cases"), "expected a non-empty list of cases, each with a name")
        names = set()
        for i, c in enumerate(cases_raw):
            cp = f"{p}.cases.{i}"
            cd = check_mapping(c, cp, s, {"name": t_str, "set": _check_set, "axes": _check_axes})
            if "name" not in cd:
                raise ConfigError(s.where(cp), "every case needs a name")
            if cd["name"] in names:
                raise ConfigError(s.where(f"{cp}.name"), f"duplicate case name {cd['name']!r}")
            names.add(cd["name"])
            cases.append(Case(cd["name"], cd.get("set", ()), cd.get("axes", ())))
    shared = raw.get("shared_axes", ())
    for c in cases or [Case("")]:
        keys = [k for k, _ in shared] + [k for k, _ in c.set] + [k for k, _ in c.axes]
        clash = _overlap(keys)
        if clash:
            where = f"{p}.cases.{cases.index(c)}" if cases else f"{p}.shared_axes"
            raise ConfigError(
                s.where(where), f"dot-path keys overlap: {clash[0]!r} and {clash[1]!r}; each key may be set once per run"
            )
    if not shared and not cases and raw.get("enabled", True):
        raise ConfigError(s.where(p), "a sweep needs shared_axes or cases (or enabled: false)")
    return SweepSpec(raw.get("enabled", True), raw.get("max_runs"), shared, tuple(cases))


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: the resolved config dict plus typed views of its parts."""

    name: str
    config: Dict[str, Any]
    sweep: Optional[SweepSpec]
    source: Source
    base_dir: str

    @property
    def run(self) -> Dict[str, Any]:
        return self._section("run")

    @property
    def cluster(self) -> Dict[str, Any]:
        return self._section("cluster")

    @property
    def retry(self) -> Dict[str, Any]:
        return self._section("retry")

    def _section(self, name: str) -> Dict[str, Any]:
        section: Dict[str, Any] = self.config.get(name) or {}
        return section

    @property
    def artifact_globs(self) -> List[str]:
        """Every glob of the ``artifacts:`` section, in key order."""
        section = self.config.get("artifacts") or {}
        keys = ("checkpoint_globs", "eval_csv_globs", "eval_image_globs", "extra_globs")
        return [g for key in keys for g in section.get(key, [])]


TOP_SCHEMA = ("name", "description", "run", "cluster", "retry", "artifacts", "sweep")


def validate(cfg: Dict[str, Any], source: Source, base_dir: str, require_run: bool = True) -> Experiment:
    allowed = list(TOP_SCHEMA)
    for key in cfg:
        if key not in allowed:
            raise ConfigError(source.where(str(key)), f"unknown key; expected one of: {', '.join(allowed)}")
    if "name" not in cfg:
        raise ConfigError(source.where(""), "missing key 'name' (the experiment's name)")
    name = t_str(cfg["name"], "name", source)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ConfigError(source.where("name"), f"{name!r}: use letters, digits, '_', '.', '-' (it names jobs and files)")
    resolved = copy.deepcopy(cfg)
    resolved["run"] = check_mapping(cfg.get("run"), "run", source, RUN_SCHEMA)
    resolved["cluster"] = check_mapping(cfg.get("cluster"), "cluster", source, CLUSTER_SCHEMA)
    resolved["retry"] = check_mapping(cfg.get("retry"), "retry", source, RETRY_SCHEMA)
    resolved["artifacts"] = check_mapping(cfg.get("artifacts"), "artifacts", source, ARTIFACTS_SCHEMA)
    if require_run and "command" not in resolved["run"]:
        raise ConfigError(source.where("run"), "missing key 'run.command' (the program to run)")
    sweep = None
    if cfg.get("sweep") is not None:
        sweep = check_sweep(cfg["sweep"], "sweep", source)
        if not sweep.enabled:
            sweep = None
    return Experiment(name=name, config=resolved, sweep=sweep, source=source, base_dir=base_dir)


def load_experiment(path: str, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override and validate an experiment file."""
    cfg, source = read_yaml(path)
    for key, value in parse_overrides(overrides):
        set_path(cfg, key, value)
        source.lines.pop(key, None)  # an error in an overridden value must not point at the file's line
    return validate(cfg, source, os.path.dirname(os.path.abspath(path)), require_run="stages" not in cfg)
