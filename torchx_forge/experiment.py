"""Experiment files: load, override, validate.

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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from torchx_forge.errors import ConfigError
from torchx_forge.schema import (  # noqa: F401 (read_yaml, Source, render_value are part of this module's API)
    ARTIFACTS_SCHEMA,
    CLUSTER_SCHEMA,
    FREE_MAPS,
    RETRY_SCHEMA,
    RUN_SCHEMA,
    Check,
    Scalar,
    Source,
    _check_mapping,
    _type_name,
    leaf_check,
    read_yaml,
    render_value,
    split_path,
    t_bool,
    t_int,
    t_str,
)

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 4x faster on big axis lists



# -- overrides ---------------------------------------------------------------------------


def _split_top(text: str, sep: str) -> List[str]:
    """Split at ``sep`` outside brackets and quotes."""
    if sep not in text:  # the common case, and big axis lists: no character loop
        return [text.strip()] if text.strip() else []
    parts, depth, quote, cur = [], 0, "", []
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"" and (i == 0 or text[i - 1] in "=[{(, :"):  # a quote opens a value, not "don't"
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_NUM = r"-?(?:0|[1-9]\d*)(?:\.\d+)?"  # what YAML and JSON read alike (no leading zeros: YAML reads 010 as octal)
_NUMBER_LIST = re.compile(r"^\s*\[\s*%s(?:\s*,\s*%s)*\s*\]\s*$" % (_NUM, _NUM))


def _parse_value(raw: str) -> Any:
    """A value typed as YAML; a plain list of numbers (big sweep axes) takes JSON's much faster path."""
    if not raw.strip():
        return ""
    if _NUMBER_LIST.match(raw):
        import json

        return json.loads(raw)  # same values YAML gives for integers and plain decimals
    return yaml.load(raw, Loader=_FAST_LOADER)


def parse_overrides(texts: Sequence[str]) -> List[Tuple[str, Any]]:
    """``["a.b=1;c=[1,2]", "d=x"]`` -> ``[("a.b", 1), ("c", [1, 2]), ("d", "x")]`` (values typed as YAML)."""
    out = []
    for text in texts:
        for item in _split_top(text, ";"):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if not eq or not re.match(r"^[A-Za-z_][\w.\-]*$", key):
                raise ConfigError(
                    f"override {item!r}", "expected KEY=VALUE with a dot-path key, e.g. run.args.lr=0.01"
                )
            try:
                value = _parse_value(raw)
            except yaml.YAMLError as e:
                raise ConfigError(f"override {item!r}", f"the value is not valid YAML: {e}") from None
            out.append((key, value))
    return out


def set_path(cfg: Dict[str, Any], path: str, value: Any) -> None:
    keys = split_path(path)
    cur = cfg
    for i, key in enumerate(keys[:-1]):
        nxt = cur.get(key)
        if nxt is None:
            nxt = cur[key] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(".".join(keys[: i + 1]), f"cannot set {path}: this key holds a {type(nxt).__name__}, not a mapping")
        cur = nxt
    cur[keys[-1]] = value


def get_path(cfg: Mapping[str, Any], path: str, default: Any = None) -> Any:
    cur: Any = cfg
    for key in split_path(path):
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    return cur


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
        raise ConfigError(s.where(p), f"expected a mapping of dot-path key to a list of values, got {_type_name(v)}")
    out = []
    for key, values in v.items():
        where = f"{p}.{key}"
        check = _check_path(str(key), where, s)
        if not isinstance(values, list) or not values:
            raise ConfigError(s.where(where), f"expected a non-empty list of values, got {_type_name(values)} {values!r}")
        out.append((str(key), tuple(check(x, f"{where}.{i}", s) for i, x in enumerate(values))))
    return tuple(out)


def _check_set(v: Any, p: str, s: Source) -> Tuple[Tuple[str, Any], ...]:
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of dot-path key to value, got {_type_name(v)}")
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
    raw = _check_mapping(
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
            cd = _check_mapping(c, cp, s, {"name": t_str, "set": _check_set, "axes": _check_axes})
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
            raise ConfigError(s.where(where), f"dot-path keys overlap: {clash[0]!r} and {clash[1]!r}; each key may be set once per run")
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
        return self.config.get("run", {})

    @property
    def cluster(self) -> Dict[str, Any]:
        return self.config.get("cluster", {})

    @property
    def retry(self) -> Dict[str, Any]:
        return self.config.get("retry", {})

    @property
    def artifact_globs(self) -> List[str]:
        """Every glob of the ``artifacts:`` section, in key order."""
        section = self.config.get("artifacts") or {}
        return [g for key in ("checkpoint_globs", "eval_csv_globs", "eval_image_globs", "extra_globs") for g in section.get(key, [])]


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
    resolved["run"] = _check_mapping(cfg.get("run"), "run", source, RUN_SCHEMA)
    resolved["cluster"] = _check_mapping(cfg.get("cluster"), "cluster", source, CLUSTER_SCHEMA)
    resolved["retry"] = _check_mapping(cfg.get("retry"), "retry", source, RETRY_SCHEMA)
    resolved["artifacts"] = _check_mapping(cfg.get("artifacts"), "artifacts", source, ARTIFACTS_SCHEMA)
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
