"""Where an experiment's values came from: the file, and the line of every key path.

:func:`read_yaml` parses a file once into plain data plus the line of each key path, so every
error can say ``file.yaml:12: sweep.shared_axes.run.args.lr: ...`` (the items of a long list read
in bulk, :mod:`~torchx_forge.experiment.biglists`, have their lines found when an error names one). The file must be UTF-8 text
of at most :data:`MAX_BYTES`; its YAML is read with bounds on aliases and nesting
(:mod:`torchx_forge.experiment.yamlload`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import yaml

from torchx_forge.errors import ConfigError
from torchx_forge.experiment import biglists, yamlload

FREE_MAPS = ("run.args", "run.env", "sweep.shared_axes")
#: the largest experiment file read (a 100,000-value axis written out is about 1 MB)
MAX_BYTES = 16 * 2**20


def split_path(path: str) -> List[str]:
    """Dot path -> keys; the part after a free map (``run.args``) is one key: ``run.args.a.b`` -> run, args, a.b."""
    if path.startswith("stages."):
        name, _, rest = path[len("stages."):].partition(".")
        return ["stages", name] + (split_path(rest) if rest else [])
    for free in FREE_MAPS:
        if path.startswith(free + "."):
            return free.split(".") + [path[len(free) + 1:]]
    return path.split(".")


@dataclass(frozen=True)
class BigList:
    """A long list read in bulk, whose items' lines are found only when an error names one: its
    node, and the line of the key holding it (an item on that line has no line of its own)."""

    node: biglists.BigListNode
    own: int

    def line(self, index: str) -> int:
        """The line of item ``index`` (``"12"``), or 0 if it has none of its own."""
        if not index.isdigit() or str(int(index)) != index:
            return 0
        line = self.node.item_line(int(index))
        return 0 if line == self.own else line


@dataclass
class Source:
    """Where values came from, for error messages: a file and the line of each key path."""

    path: str = "<config>"
    lines: Dict[str, int] = field(default_factory=dict)

    prefix: str = ""
    #: the long lists read in bulk, by key path (their items' lines, on demand)
    lists: Dict[str, BigList] = field(default_factory=dict)

    def where(self, key_path: str) -> str:
        key_path = self.prefix + key_path if key_path else self.prefix.rstrip(".")
        probe = key_path
        while probe:
            line = self._line(probe)
            if line:
                return f"{self.path}:{line}: {key_path}"
            probe = probe.rpartition(".")[0]
        return f"{self.path}: {key_path}" if key_path else self.path

    def _line(self, path: str) -> int:
        """The line of a key path (0: none), an item of a long list included."""
        if path in self.lines:
            return self.lines[path]
        parent, _, index = path.rpartition(".")
        big = self.lists.get(parent) if self.lists else None
        return big.line(index) if big is not None else 0

    def under(self, prefix: str) -> Source:
        """The same file, with key paths reported under ``prefix`` (e.g. ``stages.train.``)."""
        return Source(self.path, self.lines, self.prefix + prefix, self.lists)


def _collect_lines(node: yaml.Node, prefix: str, out: Dict[str, int], file: str,
                   lists: Dict[str, BigList]) -> None:
    if isinstance(node, biglists.BigListNode):
        lists[prefix] = BigList(node, out.get(prefix, 0))
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            if path in out:  # PyYAML would silently keep the last one
                raise ConfigError(f"{file}:{key_node.start_mark.line + 1}: {path}",
                                  f"duplicate key (first at line {out[path]}); each key may appear once")
            out[path] = key_node.start_mark.line + 1
            _collect_lines(value_node, path, out, file, lists)
    elif isinstance(node, yaml.SequenceNode):
        own = out.get(prefix)
        for i, item in enumerate(node.value):
            line = item.start_mark.line + 1
            if line == own and isinstance(item, yaml.ScalarNode):
                continue  # a value of a flow list (`[1, 2, ...]`): Source.where falls back to the list's line
            path = f"{prefix}.{i}"
            out[path] = line
            _collect_lines(item, path, out, file, lists)


def _line_of(raw: bytes, pos: int) -> int:
    return raw.count(b"\n", 0, pos) + 1


def read_text(path: str) -> str:
    """An experiment file's text: UTF-8, at most :data:`MAX_BYTES`; anything else is a ConfigError
    naming the file and the byte (a binary file, one saved as Latin-1, ``/dev/zero``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(path, f"cannot read the experiment file: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(path, f"the file is larger than {MAX_BYTES // 2**20} MB, too big for an experiment file:"
                                " write long axes as range(...), linspace(...) or logspace(...)")
    nul = raw.find(b"\0")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.end].hex(" ")
        raise ConfigError(f"{path}:{_line_of(raw, e.start)}",
                          f"not UTF-8 text: byte {e.start:,} (0x{bad}) {e.reason}; experiment files are UTF-8 YAML"
                          + (": this looks like a binary file" if nul >= 0 else
                             ": convert it, e.g. iconv -f latin1 -t utf-8 FILE > NEW.yaml")) from None
    if nul >= 0:
        raise ConfigError(f"{path}:{_line_of(raw, nul)}",
                          f"byte {nul:,} is a NUL: this looks like a binary file, not YAML text")
    return text


def read_yaml(path: str) -> Tuple[Dict[str, Any], Source]:
    """Parse a YAML file into a dict plus the line of every key path."""
    text = read_text(path)

    def where(key_path: str, line: int) -> str:
        at = f"{path}:{line}" if line else path
        return f"{at}: {key_path}" if key_path else at

    data, node = yamlload.load(text, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping at the top level, got {type(data).__name__}")
    lines: Dict[str, int] = {}
    lists: Dict[str, BigList] = {}
    if node is not None:
        _collect_lines(node, "", lines, path, lists)
    return data, Source(path, lines, lists=lists)
