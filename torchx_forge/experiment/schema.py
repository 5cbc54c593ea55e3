"""The checks experiment files go through: one checker per type, one schema per section.

Every checker takes (value, key path, Source) and returns the normalised value or raises
ConfigError naming ``file:line: key.path`` and what was expected. The ``cluster:`` section's
Slurm settings come from the option table (:mod:`torchx_forge.core.options`), next to the
resources only experiment files have (nodes, cpus_per_task, gpus_per_node, mem).
"""

from __future__ import annotations

import copy
import re
import shlex
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core import options
from torchx_forge.core.policy import PolicyError, parse_retry_on, parse_signal
from torchx_forge.core.runrow import render_value
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.source import Source, split_path

Scalar = (str, int, float, bool, type(None))
Check = Callable[[Any, str, Source], Any]
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def t_str(v: Any, p: str, s: Source) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ConfigError(s.where(p), f"expected text, got {type_name(v)} {v!r}")
    return str(v)


def t_int(low: int) -> Check:
    def check(v: Any, p: str, s: Source) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(s.where(p), f"expected a whole number >= {low}, got {type_name(v)} {v!r}")
        if v < low:
            raise ConfigError(s.where(p), f"expected a whole number >= {low}, got {v}")
        return v

    return check


def t_bool(v: Any, p: str, s: Source) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(s.where(p), f"expected true or false, got {type_name(v)} {v!r}")
    return v


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
        raise ConfigError(s.where(p), f"expected a list of strings, got {type_name(v)} {v!r}")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (str, int, float)):
            hint = " (quote it: YAML reads true/false/yes/no as booleans)" if isinstance(x, bool) else ""
            raise ConfigError(s.where(f"{p}.{i}"), f"expected a string, got {type_name(x)} {x!r}{hint}")
    return [str(x) for x in v]


def t_command(v: Any, p: str, s: Source) -> List[str]:
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
        raise ConfigError(s.where(p), f"expected a mapping of argument name to value, got {type_name(v)}")
    for k, x in v.items():
        ok = isinstance(x, Scalar) or (isinstance(x, list) and all(isinstance(i, Scalar) for i in x))
        if not ok:
            raise ConfigError(s.where(f"{p}.{k}"), f"expected a scalar or a list of scalars, got {type_name(x)}")
    return {str(k): x for k, x in v.items()}


def t_env(v: Any, p: str, s: Source) -> Dict[str, str]:
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping of variable name to value, got {type_name(v)}")
    out = {}
    for k, x in v.items():
        if not ENV_NAME.match(str(k)):
            raise ConfigError(s.where(f"{p}.{k}"), "not a valid environment variable name")
        if not isinstance(x, Scalar) or x is None:
            raise ConfigError(s.where(f"{p}.{k}"), f"expected a scalar value, got {type_name(x)}")
        out[str(k)] = render_value(x)
    return out


def t_resume_arg(v: Any, p: str, s: Source) -> str:
    """``true`` -> ``--resume_from_checkpoint``; a string is the flag to use; ``false`` -> off."""
    if isinstance(v, bool):
        return "--resume_from_checkpoint" if v else ""
    text = t_str(v, p, s)
    if not text.startswith("-"):
        raise ConfigError(s.where(p), f"expected true/false or a flag such as --resume, got {text!r}")
    return text


def checked(check: Callable[[str], str]) -> Check:
    """A text checker from a check of the option table (ValueError -> ConfigError with the place)."""

    def run(v: Any, p: str, s: Source) -> str:
        text = t_str(v, p, s)
        try:
            return check(text)
        except ValueError as e:
            raise ConfigError(s.where(p), str(e)) from None

    return run


def t_signal(v: Any, p: str, s: Source) -> str:
    text = "off" if v is False else t_str(v, p, s)
    try:
        parse_signal(text)
    except PolicyError as e:
        raise ConfigError(s.where(p), str(e)) from None
    return text


def t_retry_on(v: Any, p: str, s: Source) -> List[str]:
    if not isinstance(v, (str, list)):
        raise ConfigError(s.where(p), f"expected a list of end states, got {type_name(v)}")
    try:
        return [state.value for state in parse_retry_on(v)]
    except PolicyError as e:
        raise ConfigError(s.where(p), str(e)) from None


def _option_check(opt: options.Option) -> Check:
    """The experiment-file checker of a row of the option table."""
    if opt.cluster_list:
        def words(v: Any, p: str, s: Source) -> List[str]:
            items = t_str_list(v, p, s)
            checked(opt.check or (lambda t: t))(" ".join(shlex.quote(w) for w in items), p, s)
            return items

        return words
    if opt.type_ is bool:
        return t_bool
    if opt.type_ is int:
        return t_int(opt.minimum or 0)
    return checked(opt.check) if opt.check else t_str


RUN_SCHEMA: Dict[str, Check] = {
    "command": t_command,
    "args": t_args,
    "env": t_env,
    "workdir": t_str,
    "resume_arg": t_resume_arg,
    "checkpoint_dir": checked(options.check_template),
}
ARTIFACTS_SCHEMA: Dict[str, Check] = {
    "checkpoint_globs": t_str_list, "eval_csv_globs": t_str_list, "eval_image_globs": t_str_list, "extra_globs": t_str_list,
}
RETRY_SCHEMA: Dict[str, Check] = {"max_retries": t_int(0), "retry_on": t_retry_on, "signal": t_signal, "grace": t_int(1)}
#: resources of a run that only experiment files set (a plain AppDef has them in its roles)
RESOURCE_SCHEMA: Dict[str, Check] = {"nodes": t_int(1), "gpus_per_node": t_int(0), "cpus_per_task": t_int(1), "mem": mem_mb}
CLUSTER_SCHEMA: Dict[str, Check] = {
    **{key: _option_check(opt) for key, opt in options.BY_CLUSTER_KEY.items()},
    **RESOURCE_SCHEMA,
}


def check_mapping(v: Any, p: str, s: Source, schema: Mapping[str, Check]) -> Dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(s.where(p), f"expected a mapping, got {type_name(v)}")
    out = {}
    for k, x in v.items():
        if k not in schema:
            raise ConfigError(s.where(f"{p}.{k}"), f"unknown key; expected one of: {', '.join(schema)}")
        out[k] = schema[k](x, f"{p}.{k}", s)
    return out


def _arg_value(v: Any, p: str, s: Source) -> Any:
    if isinstance(v, Scalar) or (isinstance(v, list) and all(isinstance(i, Scalar) for i in v)):
        return v
    raise ConfigError(s.where(p), f"expected a scalar or a list of scalars, got {type_name(v)}")


def _env_value(v: Any, p: str, s: Source) -> Optional[str]:
    if not isinstance(v, Scalar):
        raise ConfigError(s.where(p), f"expected a scalar value or null, got {type_name(v)}")
    return None if v is None else render_value(v)


def _or_null(check: Check) -> Check:
    """``check``, with null accepted (a run's null means: as if the key were not set)."""
    return lambda v, p, s: None if v is None else check(v, p, s)


def leaf_check(path: str) -> Optional[Check]:
    """The check for a dot path a sweep may set (run.args.*, run.env.*, run.*, cluster.*), or None.

    Null is a value like any other: an argument renders as a bare flag (``--name``), an env
    variable is not set, and any other key keeps its default."""
    keys = split_path(path)
    if len(keys) == 3 and keys[:2] == ["run", "args"]:
        return _arg_value
    if len(keys) == 3 and keys[:2] == ["run", "env"]:
        if not ENV_NAME.match(keys[2]):
            return lambda v, p, s: t_env({keys[2]: v}, p.rpartition(".")[0], s)[keys[2]]
        return _env_value
    if len(keys) == 2 and keys[0] == "run" and keys[1] == "command":
        return RUN_SCHEMA["command"]
    if len(keys) == 2 and keys[0] == "run" and keys[1] in ("workdir", "resume_arg", "checkpoint_dir"):
        return _or_null(RUN_SCHEMA[keys[1]])
    if len(keys) == 2 and keys[0] == "cluster" and keys[1] in CLUSTER_SCHEMA:
        return _or_null(CLUSTER_SCHEMA[keys[1]])
    return None


#: values deepcopy returns as they are (YAML's other scalars, dates, are copied one by one)
_ATOMS = frozenset((str, int, float, bool, type(None)))
_TEXTLIKE = frozenset((str, int, float))


def deep_copy(data: Any) -> Any:
    """``copy.deepcopy`` of YAML data, with every list of plain scalars (a long axis) copied in one
    step instead of value by value; the same result, shared lists (YAML aliases) still shared."""
    memo: Dict[int, Any] = {}
    stack = [data]
    seen = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        kids = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else ()
        if isinstance(node, list) and set(map(type, node)) <= _ATOMS:
            memo[id(node)] = list(node)
            continue
        stack.extend(k for k in kids if isinstance(k, (dict, list)))
    return copy.deepcopy(data, memo)


def _bulk_env(values: Sequence[Any]) -> Optional[Tuple[Any, ...]]:
    """:func:`_env_value` of every value, when all are numbers or text (bool and null render apart)."""
    return tuple(map(str, values)) if set(map(type, values)) <= _TEXTLIKE else None


def _bulk_arg(values: Sequence[Any]) -> Optional[Tuple[Any, ...]]:
    """:func:`_arg_value` of every value, when all are plain scalars."""
    return tuple(values) if set(map(type, values)) <= _ATOMS else None


_BULK: Dict[Check, Callable[[Sequence[Any]], Optional[Tuple[Any, ...]]]] = {_env_value: _bulk_env, _arg_value: _bulk_arg}


def checked_items(values: Sequence[Any], where: str, check: Check, s: Source) -> Tuple[Any, ...]:
    """``check`` of every value of a listed axis (``where.0``, ``where.1``, ...); a long axis of
    plain numbers or text for ``run.args`` or ``run.env`` is checked in one step."""
    bulk = _BULK.get(check)
    done = bulk(values) if bulk is not None else None
    if done is not None:
        return done
    return tuple(check(x, f"{where}.{i}", s) for i, x in enumerate(values))
