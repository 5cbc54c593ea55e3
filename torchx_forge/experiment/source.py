"""Where an experiment's values came from: the file, and the line of every key path.

:func:`read_yaml` parses a file once into plain data plus the line of each key path, so every
error can say ``file.yaml:12: sweep.shared_axes.run.args.lr: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import yaml

from torchx_forge.errors import ConfigError

FREE_MAPS = ("run.args", "run.env", "sweep.shared_axes")
#: libyaml's parser where PyYAML was built with it (several times faster on big axis lists)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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

    def under(self, prefix: str) -> Source:
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
        own = out.get(prefix)
        for i, item in enumerate(node.value):
            line = item.start_mark.line + 1
            if line == own and isinstance(item, yaml.ScalarNode):
                continue  # a value of a flow list (`[1, 2, ...]`): Source.where falls back to the list's line
            path = f"{prefix}.{i}"
            out[path] = line
            _collect_lines(item, path, out, file)


def read_yaml(path: str) -> Tuple[Dict[str, Any], Source]:
    """Parse a YAML file into a dict plus the line of every key path."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, f"cannot read the experiment file: {e.strerror}") from None
    loader = _LOADER(text)
    try:  # one parse: the node tree gives the lines, then the values
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{line}", f"YAML syntax error: {problem}") from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping at the top level, got {type(data).__name__}")
    lines: Dict[str, int] = {}
    if node is not None:
        _collect_lines(node, "", lines, path)
    return data, Source(path, lines)
