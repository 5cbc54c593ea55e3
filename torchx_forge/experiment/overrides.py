"""Overrides: ``--set 'a.b=1;c=[1,2]'`` and ``KEY=VALUE`` words, typed as YAML, applied by dot path."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from torchx_forge.errors import ConfigError
from torchx_forge.experiment import yamlload
from torchx_forge.experiment.source import split_path


def _split_top(text: str, sep: str) -> List[str]:
    """Split at ``sep`` outside brackets and quotes."""
    if sep not in text:  # the common case, and big axis lists: no character loop
        return [text.strip()] if text.strip() else []
    parts: List[str] = []
    cur: List[str] = []
    depth, quote = 0, ""
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
_NUMBER_LIST = re.compile(rf"^\s*\[\s*{_NUM}(?:\s*,\s*{_NUM})*\s*\]\s*$")


def _parse_value(raw: str, item: str) -> Any:
    """A value typed as YAML (with the files' bounds on aliases and nesting); a plain list of numbers
    (big sweep axes) takes JSON's much faster path."""
    if not raw.strip():
        return ""
    if _NUMBER_LIST.match(raw):
        return json.loads(raw)  # same values YAML gives for integers and plain decimals

    def where(key_path: str, line: int) -> str:
        return f"override {item!r}" + (f" at {key_path}" if key_path else "")

    try:
        return yamlload.load(raw, where)[0]
    except ConfigError as e:
        if e.msg.startswith(yamlload.SYNTAX):
            raise ConfigError(e.where, f"the value is not valid YAML: {e.msg[len(yamlload.SYNTAX):]}") from None
        raise


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
            out.append((key, _parse_value(raw, item)))
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
