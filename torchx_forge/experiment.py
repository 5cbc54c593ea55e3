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
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from torchx_forge.errors import ConfigError
from torchx_forge.slurm_time import parse_slurm_time

Scalar = (str, int, float, bool, type(None))
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 4x faster on big axis lists

#: Mapping sections whose keys are free names (not schema keys): ``run.args.lr``, ``run.env.HOME``.
FREE_MAPS = ("run.args", "run.env", "sweep.shared_axes")


@dataclass
class Source:
    """Where values came from, for error messages: a file and the line of each key path."""

    path: str = "<config>"
    lines: Dict[str, int] = field(default_factory=dict)

    prefix: str = ""

    def where(self, key_path: str) -> str:
        key_path = self.prefix + key_path if key_path else self.prefix.rstrip(".")
        probe = key_path
        while probe:
            if probe in self.lines:
                return f"{self.path}:{self.lines[probe]}: {key_path}"
            probe = probe.rpartition(".")[0]
        return f"{self.path}: {key_path}" if key_path else self.path

    def under(self, prefix: str) -> "Source":
        """The same file, with key paths reported under ``prefix`` (e.g. ``stages.train.``)."""
        return Source(self.path, self.lines, self.prefix + prefix)


def _collect_lines(node: yaml.Node, prefix: str, out: Dict[str, int], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            if path in out:  # PyYAML would silently keep the last one
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: {path}",
                                  f"duplicate key (first at line {out[path]}); each key may appear once")
            out[path] = key_node.start_mark.line + 1
            _collect_lines(value_node, path, out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}.{i}"
            out[path] = item.start_mark.line + 1
            _collect_lines(item, path, out, file)


def read_yaml(path: str) -> Tuple[Dict[str, Any], Source]:
    """Parse a YAML file into a dict plus the line of every key path."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, f"cannot read the experiment file: {e.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{line}", f"YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping at the top level, got {type(data).__name__}")
    lines: Dict[str, int] = {}
    if node is not None:
        _collect_lines(node, "", lines, path)
    return data, Source(path, lines)


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


def split_path(path: str) -> List[str]:
    """Dot path -> keys; the part after a free map (``run.args``) is one key: ``run.args.a.b`` -> run, args, a.b."""
    if path.startswith("stages."):
        name, _, rest = path[len("stages."):].partition(".")
        return ["stages", name] + (split_path(rest) if rest else [])
    for free in FREE_MAPS:
        if path.startswith(free + "."):
            return free.split(".") + [path[len(free) + 1:]]
    return path.split(".")


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


# -- validation ----------------------------------------------------------------------------


Check = Callable[[Any, str, Source], Any]


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def t_str(v: Any, p: str, s: Source) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ConfigError(s.where(p), f"expected text, got {_type_name(v)} {v!r}")
    return str(v)


def t_int(low: int) -> Check:
    def check(v: Any, p: str, s: Source) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(s.where(p), f"expected a whole number >= {low}, got {_type_name(v)} {v!r}")
        if v < low:
            raise ConfigError(s.where(p), f"expected a whole number >= {low}, got {v}")
        return v

    return check


def t_bool(v: Any, p: str, s: Source) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(s.where(p), f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def t_time(v: Any, p: str, s: Source) -> str:
    text = t_str(v, p, s)
    try:
        parse_slurm_time(text)
    except ValueError as e:
        raise ConfigError(s.where(p), str(e)) from None
    return text


_MEM_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$", re.IGNORECASE)


def mem_mb(v: Any, p: str, s: Source) -> int:
    """``4G`` / ``500M`` / ``1024`` (MB) -> megabytes."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    m = _MEM_RE.match(str(v).strip()) if isinstance(v, str) else None
    if not m:
        raise ConfigError(s.where(p), f"expected a memory size such as 4G, 500M or a number of MB, got {v!r}")
    factor = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    return int(float(m.group(1)) * factor)


def t_str_list(v: Any, p: str, s: Source) -> List[str]:
    if not isinstance(v, list):
        raise ConfigError(s.where(p), f"expected a list of strings, got {_type_name(v)} {v!r}")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (str, int, float)):
            hint = " (quote it: YAML reads true/false/yes/no as booleans)" if isinstance(x, bool) else ""
            raise ConfigError(s.where(f"{p}.{i}"), f"expected a string, got {_type_name(x)} {x!r}{hint}")
    return [str(x) for x in v]


def t_command(v: Any, p: str, s: Source) -> List[str]:
    import shlex

    if isinstance(v, str):
        try:
            words = shlex.split(v)
        except ValueError as e:
            raise ConfigError(s.where(p), f"cannot split the command {v!r}: {e}") from None
    else:
        words = t_str_list(v, p, s)
    if not words:
        raise ConfigError(s.where(p), "the command is empty")
    return words


def t_args(v: Any, p: str, s: Source) -> Dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of argument name to value, got {_type_name(v)}")
    for k, x in v.items():
        ok = isinstance(x, Scalar) or (isinstance(x, list) and all(isinstance(i, Scalar) for i in x))
        if not ok:
            raise ConfigError(s.where(f"{p}.{k}"), f"expected a scalar or a list of scalars, got {_type_name(x)}")
    return {str(k): x for k, x in v.items()}


def t_env(v: Any, p: str, s: Source) -> Dict[str, str]:
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of variable name to value, got {_type_name(v)}")
    out = {}
    for k, x in v.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(k)):
            raise ConfigError(s.where(f"{p}.{k}"), "not a valid environment variable name")
        if not isinstance(x, Scalar) or x is None:
            raise ConfigError(s.where(f"{p}.{k}"), f"expected a scalar value, got {_type_name(x)}")
        out[str(k)] = render_value(x)
    return out


def render_value(v: Any) -> str:
    """How a value appears on a command line or in env: booleans as true/false."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def t_resume_arg(v: Any, p: str, s: Source) -> str:
    """``true`` -> ``--resume_from_checkpoint``; a string is the flag to use; ``false`` -> off."""
    if isinstance(v, bool):
        return "--resume_from_checkpoint" if v else ""
    text = t_str(v, p, s)
    if not text.startswith("-"):
        raise ConfigError(s.where(p), f"expected true/false or a flag such as --resume, got {text!r}")
    return text


def t_template(v: Any, p: str, s: Source) -> str:
    from torchx_forge.opts import check_template

    return check_template(t_str(v, p, s), s.where(p))


def t_signal(v: Any, p: str, s: Source) -> str:
    from torchx_forge.policy import parse_signal

    text = "off" if v is False else t_str(v, p, s)
    parse_signal(text, s.where(p))
    return text


def t_retry_on(v: Any, p: str, s: Source) -> List[str]:
    from torchx_forge.policy import parse_retry_on

    if not isinstance(v, (str, list)):
        raise ConfigError(s.where(p), f"expected a list of end states, got {_type_name(v)}")
    return list(parse_retry_on(v, s.where(p)))


RUN_SCHEMA: Dict[str, Check] = {
    "command": t_command,
    "args": t_args,
    "env": t_env,
    "workdir": t_str,
    "resume_arg": t_resume_arg,
    "checkpoint_dir": t_template,
}
ARTIFACTS_SCHEMA: Dict[str, Check] = {
    "checkpoint_globs": t_str_list, "eval_csv_globs": t_str_list, "eval_image_globs": t_str_list, "extra_globs": t_str_list,
}
RETRY_SCHEMA: Dict[str, Check] = {"max_retries": t_int(0), "retry_on": t_retry_on, "signal": t_signal, "grace": t_int(1)}
CLUSTER_SCHEMA: Dict[str, Check] = {
    "partition": t_str,
    "account": t_str,
    "qos": t_str,
    "constraint": t_str,
    "time_limit": t_time,
    "nodes": t_int(1),
    "gpus_per_node": t_int(0),
    "cpus_per_task": t_int(1),
    "mem": mem_mb,
    "exclusive": t_bool,
    "extra_sbatch_args": t_str_list,
    "array_parallelism": t_int(1),
}

#: Keys of extra top-level sections other modules validate (retry policy, pipeline stages).
EXTRA_SECTIONS: Dict[str, Callable[[Any, str, Source], Any]] = {}


def _check_mapping(v: Any, p: str, s: Source, schema: Mapping[str, Check]) -> Dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping, got {_type_name(v)}")
    out = {}
    for k, x in v.items():
        if k not in schema:
            raise ConfigError(s.where(f"{p}.{k}"), f"unknown key; expected one of: {', '.join(schema)}")
        out[k] = schema[k](x, f"{p}.{k}", s)
    return out


def _arg_value(v: Any, p: str, s: Source) -> Any:
    if isinstance(v, Scalar) or (isinstance(v, list) and all(isinstance(i, Scalar) for i in v)):
        return v
    raise ConfigError(s.where(p), f"expected a scalar or a list of scalars, got {_type_name(v)}")


def _env_value(v: Any, p: str, s: Source) -> str:
    if v is None or not isinstance(v, Scalar):
        raise ConfigError(s.where(p), f"expected a scalar value, got {_type_name(v)}")
    return render_value(v)


def leaf_check(path: str) -> Optional[Check]:
    """The check for a dot path a sweep may set (run.args.*, run.env.*, run.*, cluster.*), or None."""
    keys = split_path(path)
    if len(keys) == 3 and keys[:2] == ["run", "args"]:
        return _arg_value
    if len(keys) == 3 and keys[:2] == ["run", "env"]:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", keys[2]):
            return lambda v, p, s: t_env({keys[2]: v}, p.rpartition(".")[0], s)[keys[2]]
        return _env_value
    if len(keys) == 2 and keys[0] == "run" and keys[1] in ("command", "workdir", "resume_arg", "checkpoint_dir"):
        return RUN_SCHEMA[keys[1]]
    if len(keys) == 2 and keys[0] == "cluster" and keys[1] in CLUSTER_SCHEMA:
        return CLUSTER_SCHEMA[keys[1]]
    return None


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
    extras: Dict[str, Any] = field(default_factory=dict)

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
    allowed = list(TOP_SCHEMA) + list(EXTRA_SECTIONS)
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
    extras = {k: check(cfg.get(k), k, source) for k, check in EXTRA_SECTIONS.items() if k in cfg}
    return Experiment(name=name, config=resolved, sweep=sweep, source=source, base_dir=base_dir, extras=extras)


def load_experiment(path: str, overrides: Sequence[str] = ()) -> Experiment:
    """Read, override and validate an experiment file."""
    cfg, source = read_yaml(path)
    for key, value in parse_overrides(overrides):
        set_path(cfg, key, value)
        source.lines.pop(key, None)
        source.lines.setdefault(key, 0)
    source.lines = {k: v for k, v in source.lines.items() if v}
    return validate(cfg, source, os.path.dirname(os.path.abspath(path)), require_run="stages" not in cfg)
