"""The pieces experiment files are checked with: where a value came from, and one checker per type.

Every checker takes (value, key path, Source) and returns the normalised value or
raises ConfigError naming ``file:line: key.path`` and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml

from torchx_forge.errors import ConfigError
from torchx_forge.slurm_time import parse_slurm_time

Scalar = (str, int, float, bool, type(None))
FREE_MAPS = ("run.args", "run.env", "sweep.shared_axes")


def split_path(path: str) -> List[str]:
    """Dot path -> keys; the part after a free map (``run.args``) is one key: ``run.args.a.b`` -> run, args, a.b."""
    if path.startswith("stages."):
        name, _, rest = path[len("stages."):].partition(".")
        return ["stages", name] + (split_path(rest) if rest else [])
    for free in FREE_MAPS:
        if path.startswith(free + "."):
            return free.split(".") + [path[len(free) + 1:]]
    return path.split(".")


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
