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

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge.core.axes import Listed, Values
from torchx_forge.core.record import replace
from torchx_forge.core.sampling import Dist, RandomSpec
from torchx_forge.core.space import CaseSpace, Space, check_size, merged_axes
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.generators import FLOW_HINT, distribution, grid_values, is_call, parse_call
from torchx_forge.experiment.overrides import parse_overrides, set_path
from torchx_forge.experiment.schema import (
    ARTIFACTS_SCHEMA,
    CLUSTER_SCHEMA,
    RETRY_SCHEMA,
    RUN_SCHEMA,
    Check,
    check_mapping,
    checked_items,
    deep_copy,
    leaf_check,
    t_bool,
    t_int,
    t_str,
    type_name,
)
from torchx_forge.experiment.source import Source, read_yaml

Axes = Tuple[Tuple[str, Values], ...]


@dataclass(frozen=True)
class Case:
    name: str
    set: Tuple[Tuple[str, Any], ...] = ()
    axes: Axes = ()


@dataclass(frozen=True)
class SweepSpec:
    """A validated ``sweep:`` section; :meth:`space` gives its runs in order."""

    enabled: bool = True
    max_runs: Optional[int] = None
    shared_axes: Axes = ()
    cases: Tuple[Case, ...] = ()
    random: Optional[RandomSpec] = None

    def space(self) -> Space:
        """slurmforge 0.2.0's order: cases in file order; per case its set values, then the shared and
        own axes merged and sorted by key (the first key outermost); random samples innermost."""
        cases = self.cases or (Case(""),)
        return Space(
            tuple(CaseSpace(c.name, tuple(sorted(c.set, key=lambda kv: kv[0])), merged_axes(self.shared_axes, c.axes))
                  for c in cases),
            self.random, self.max_runs,
        )


def _check_path(path: str, where: str, s: Source) -> Check:
    check = leaf_check(path)
    if check is None:
        raise ConfigError(
            s.where(where),
            f"{path!r} is not a key a sweep can set; use run.args.NAME, run.env.NAME, run.command, run.workdir"
            f" or cluster.KEY ({', '.join(CLUSTER_SCHEMA)})" + (FLOW_HINT if "(" in path or ")" in path else ""),
        )
    return check


def _axis_values(values: Any, where: str, check: Check, s: Source) -> Values:
    """A list of values, or a generator (``range(0, 100)``, ``logspace(1e-5, 1e-1, 5)``, ``choice(a, b)``);
    every listed value, and a generator's first and last (its values all have the same type), is checked."""
    if is_call(values) or isinstance(values, Values):  # a generator, written out or built in Python
        try:
            gen = values if isinstance(values, Values) else grid_values(parse_call(values))
        except ValueError as e:
            raise ConfigError(s.where(where), str(e)) from None
        check_size(gen.size, s.where(where), str(values) if isinstance(values, str) else "the axis")
        if not isinstance(gen, Listed):
            for k in {0, gen.size - 1}:
                check(gen[k], where, s)
            return gen
        values = list(gen)
    if not isinstance(values, list) or not values:
        raise ConfigError(
            s.where(where),
            f"expected a non-empty list of values or a generator such as range(0, 10), linspace(0, 1, 5),"
            f" logspace(1e-5, 1e-1, 5) or choice(a, b), got {type_name(values)} {values!r}",
        )
    check_size(len(values), s.where(where), "the list")
    return Listed(checked_items(values, where, check, s))


def _check_axes(v: Any, p: str, s: Source) -> Axes:
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of dot-path key to a list of values, got {type_name(v)}")
    out = []
    for key, values in v.items():
        where = f"{p}.{key}"
        out.append((str(key), _axis_values(values, where, _check_path(str(key), where, s), s)))
    return tuple(out)


def _check_set(v: Any, p: str, s: Source) -> Tuple[Tuple[str, Any], ...]:
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of dot-path key to value, got {type_name(v)}")
    return tuple((str(k), _check_path(str(k), f"{p}.{k}", s)(x, f"{p}.{k}", s)) for k, x in v.items())


def _check_random(v: Any, p: str, s: Source) -> RandomSpec:
    """``random: {samples: N, seed: S, params: {KEY: DISTRIBUTION}}``: a random search."""
    raw = check_mapping(v, p, s, {"samples": t_int(1), "seed": t_int(0), "params": lambda x, q, t: x})
    if "samples" not in raw:
        raise ConfigError(s.where(p), "missing key 'samples' (how many runs to draw)")
    check_size(raw["samples"], s.where(f"{p}.samples"), "the random search", "samples")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(s.where(f"{p}.params"), "expected a mapping of dot-path key to a distribution such as"
                          " interval(0, 1), tag(log, interval(1e-5, 1e-1)), int(interval(1, 8)) or choice(a, b)")
    dists = []
    for key, text in params.items():
        where = f"{p}.params.{key}"
        check = _check_path(str(key), where, s)
        dist = checked_distribution(text, check, where, s)
        if dist.choices:
            dist = replace(dist, choices=tuple(check(c, where, s) for c in dist.choices))
        dists.append((str(key), dist))
    try:
        return RandomSpec(raw["samples"], raw.get("seed", 0), tuple(sorted(dists, key=lambda kv: kv[0])))
    except ValueError as e:
        raise ConfigError(s.where(p), str(e)) from None


def checked_distribution(text: Any, check: Any, where: str, s: Source) -> Dist:
    """``text`` (a distribution in the random-search grammar, or a Dist) parsed, its bounds or
    choices passed through ``check`` (the key's own check); ConfigError at ``where`` if not."""
    try:
        dist = text if isinstance(text, Dist) else distribution(text)
    except ValueError as e:
        raise ConfigError(s.where(where), str(e)) from None
    for value in dist.choices or (dist.low, dist.high):
        check(int(value) if dist.kind in ("int", "logint") else value, where, s)
    return dist


def _overlap(keys: List[str]) -> Optional[Tuple[str, str]]:
    seen: List[str] = []
    for k in keys:
        for o in seen:
            if k == o or k.startswith(o + ".") or o.startswith(k + "."):
                return o, k
        seen.append(k)
    return None


SWEEP_KEYS = ("enabled", "max_runs", "shared_axes", "cases", "random")


def check_sweep(v: Any, p: str, s: Source) -> SweepSpec:
    raw = check_mapping(
        v, p, s, {"enabled": t_bool, "max_runs": t_int(1), "shared_axes": _check_axes, "cases": lambda x, q, t: x,
                  "random": _check_random},
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
    rnd: Optional[RandomSpec] = raw.get("random")
    for c in cases or [Case("")]:
        keys = [k for k, _ in (*shared, *c.set, *c.axes, *(rnd.params if rnd else ()))]
        clash = _overlap(keys)
        if clash:
            where = f"{p}.cases.{cases.index(c)}" if cases else f"{p}.shared_axes"
            raise ConfigError(
                s.where(where), f"dot-path keys overlap: {clash[0]!r} and {clash[1]!r}; each key may be set once per run"
            )
    if not shared and not cases and rnd is None and raw.get("enabled", True):
        raise ConfigError(s.where(p), "a sweep needs shared_axes, cases or random (or enabled: false)")
    spec = SweepSpec(raw.get("enabled", True), raw.get("max_runs"), shared, tuple(cases), rnd)
    size = spec.space().size  # counted from the axis sizes: nothing is listed
    check_size(size, s.where(p), "the sweep", "runs", "use fewer values, keep the first N runs (sweep.max_runs),"
               " or split it into several sweeps")
    return spec


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
    resolved = deep_copy(cfg)
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


def load_experiment(path: str, overrides: Sequence[str] = (),
                    parsed: Optional[Tuple[Dict[str, Any], Source]] = None) -> Experiment:
    """Read, override and validate an experiment file (``parsed``: what :func:`read_yaml` gave for it,
    to read a big file once; its data is changed by the overrides)."""
    cfg, source = parsed if parsed is not None else read_yaml(path)
    for key, value in parse_overrides(overrides):
        set_path(cfg, key, value)
        source.lines.pop(key, None)  # an error in an overridden value must not point at the file's line
    return validate(cfg, source, os.path.dirname(os.path.abspath(path)), require_run="stages" not in cfg)
