"""YAML text -> data and its node tree, with bounds: every input answers in well under a second.

YAML lets a file (or a ``--set`` value) say much more than it spells out:

- **aliases** repeat what their anchor holds. Experiment files use them for shared defaults
  (``<<: *defaults``), so they are allowed, but what they repeat is counted: a few levels of nine
  aliases each (the "billion laughs") stand for billions of nodes, which every later step (the key
  lines, the checks) would walk. At most :data:`ALIAS_NODES` nodes may come from aliases; an
  alias that refers to the node holding it (a recursive structure) is refused.
- **nesting** deeper than :data:`MAX_DEPTH` levels is refused before libyaml builds the node tree
  (its composer recurses in C: a line of 100,000 ``[`` crashes the interpreter), and again after
  aliases are counted in (an alias of an alias can nest deeper than the text).

Each problem is a :class:`ConfigError` naming ``file:line`` and the key path, with what to do.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import yaml

from torchx_forge.errors import ConfigError
from torchx_forge.experiment import biglists

#: libyaml's parser where PyYAML was built with it (several times faster on big axis lists)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: the most nodes aliases may add to a document (each use of an alias counts every node it repeats)
ALIAS_NODES = 100_000
#: the deepest nesting of mappings and lists (experiment files need about ten levels)
MAX_DEPTH = 100

SYNTAX = "YAML syntax error: "
#: what an alias can look like (a `*` that starts a token); a quoted "*.pt" does not
_ALIAS = re.compile(r"(?:^|[\s\[{,:?-])\*", re.MULTILINE)
_INDENT = re.compile(r"^[ ?-]*", re.MULTILINE)
#: where a key path is in the text: (key path) -> "file:line: key.path"
Where = Callable[[str, int], str]


class _Loader(LOADER):  # type: ignore[valid-type,misc]
    """The safe loader, which also constructs the lists :mod:`.biglists` read in bulk."""


_Loader.add_constructor(biglists.TAG, lambda _loader, node: node.values)


def load(text: str, where: Where) -> Tuple[Any, Optional[yaml.Node]]:
    """Parse ``text`` (one YAML document) into plain data and its node tree (None when empty).

    ``where(key_path, line)`` names a place for an error (line 0: unknown). Long flow lists of
    plain scalars are read in bulk (:mod:`.biglists`); whenever that cannot be done, or the text
    has a problem, the text is parsed the usual way, which finds and names the problem.
    """
    spans = biglists.find(text, biglists.MIN_ITEMS)
    if spans:
        fast = _load_bulk(text, spans, where)
        if fast is not None:
            return fast
    return _load(text, where)


def _load_bulk(text: str, spans: List[biglists.Span], where: Where) -> Optional[Tuple[Any, Optional[yaml.Node]]]:
    """:func:`_load` of ``text`` with its long lists read in bulk; None if it cannot be (see
    :func:`biglists.swap`) or the text has any problem (the usual parse will name it)."""
    short = biglists.substitute(text, spans)
    if _may_nest_deeper_than(short, MAX_DEPTH - 1):  # near the limit: the usual path counts exactly
        return None
    loader = _Loader(short)
    try:
        node = loader.get_single_node()
        node = biglists.swap(node, text, spans) if node is not None else None
        if node is None:
            return None
        if _ALIAS.search(short):
            check_node(node, where)
        return loader.construct_document(node), node
    except (yaml.YAMLError, ConfigError):
        return None
    finally:
        loader.dispose()


def _load(text: str, where: Where) -> Tuple[Any, Optional[yaml.Node]]:
    """Parse ``text`` with libyaml: the node tree, then the values (errors name file:line)."""
    if _may_nest_deeper_than(text, MAX_DEPTH):
        _check_depth(text, where)
    loader = _Loader(text)
    try:  # one parse: the node tree gives the lines, then the values
        node = loader.get_single_node()
        if node is not None and _ALIAS.search(text):
            check_node(node, where)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise syntax_error(e, where) from None
    finally:
        loader.dispose()
    return data, node


def syntax_error(e: yaml.YAMLError, where: Where) -> ConfigError:
    """The one-line error of a file libyaml refused; its own nesting limit (libyaml >= 0.2.6 stops at
    1,000 levels) reads as forge's."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if "maximum nesting depth" in problem:
        return ConfigError(where("", mark.line + 1 if mark else 0), _too_deep())
    return ConfigError(where("", mark.line + 1 if mark else 0), f"{SYNTAX}{problem}")


def _may_nest_deeper_than(text: str, depth: int) -> bool:
    """False when ``text`` surely nests at most ``depth`` levels, told without parsing it: a flow
    collection opens with ``[`` or ``{`` (and holds only flow collections), and a block collection
    starts at the column of its line's first key or ``-``, which grows at least every second
    level, so block nesting is at most twice the longest run of spaces, ``-`` and ``?`` that
    starts a line, plus one."""
    indent = max(map(len, _INDENT.findall(text)), default=0)
    return 2 * (indent + 1) + text.count("[") + text.count("{") > depth


def _check_depth(text: str, where: Where) -> None:
    """Nesting depth from libyaml's events (a flat loop, no recursion), before any node exists."""
    opening = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    closing = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    loader = LOADER(text)
    try:
        depth = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, opening):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise ConfigError(where("", mark.line + 1 if mark else 0), _too_deep())
            elif isinstance(event, closing):
                depth -= 1
    except yaml.YAMLError as e:
        raise syntax_error(e, where) from None
    finally:
        loader.dispose()


def _too_deep(how: str = "") -> str:
    return f"mappings and lists nest more than {MAX_DEPTH} levels deep{how}; an experiment file needs about ten"


Child = Tuple[str, yaml.Node, int]  # key (or list index), node, line of its key (0 for a list item)


def _children(node: yaml.Node) -> List[Child]:
    """A mapping's keys and values, or a list's items, in file order."""
    if isinstance(node, yaml.MappingNode):
        out: List[Child] = []
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            out += [(name, key, key.start_mark.line + 1), (name, value, key.start_mark.line + 1)]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(str(i), item, 0) for i, item in enumerate(node.value)]
    return []


def _recursive(child: yaml.Node, where: Where) -> ConfigError:
    return ConfigError(where("", child.start_mark.line + 1),
                       "a YAML alias refers to the mapping or list that holds it (a recursive structure);"
                       " an experiment file is a tree: repeat the values instead")


def _nodes(node: yaml.Node) -> List[yaml.Node]:
    """A collection's keys and values or items (what :func:`_children` gives, without keys and lines)."""
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value)


def _sizes(root: yaml.Node, where: Where) -> Tuple[Dict[int, Tuple[int, int]], int]:
    """(nodes, depth) of every mapping and list with its aliases expanded, each measured once (a
    flat depth-first walk: the graph may be deeper than Python's recursion limit), and how many
    distinct nodes there are. Depth counts mappings and lists, as nesting does (a scalar: 0)."""
    sizes: Dict[int, Tuple[int, int]] = {}
    scalars = set()
    bulk = 0  # the items of lists read in bulk (distinct nodes without a node object)
    open_ = {id(root)}
    stack: List[Tuple[yaml.Node, List[yaml.Node], Iterator[yaml.Node]]] = []
    if isinstance(root, yaml.ScalarNode):
        return {id(root): (1, 0)}, 1
    kids = _nodes(root)
    stack.append((root, kids, iter(kids)))
    while stack:
        node, kids, todo = stack[-1]
        for c in todo:
            if isinstance(c, yaml.ScalarNode):
                scalars.add(id(c))
            elif id(c) in open_:
                raise _recursive(c, where)
            elif id(c) not in sizes:
                open_.add(id(c))
                grand = _nodes(c)
                stack.append((c, grand, iter(grand)))
                break
        else:
            stack.pop()
            open_.discard(id(node))
            bulk += biglists.items_of(node)
            size, depth = 1 + biglists.items_of(node), 0
            for c in kids:
                n, d = (1, 0) if isinstance(c, yaml.ScalarNode) else sizes[id(c)]
                size += n
                depth = max(depth, d)
            sizes[id(node)] = (size, depth + 1)
    return sizes, len(sizes) + len(scalars) + bulk


def check_node(root: yaml.Node, where: Where) -> None:
    """Refuse a node graph whose aliases repeat more than :data:`ALIAS_NODES` nodes in all or nest
    it deeper than :data:`MAX_DEPTH`, naming the first alias (in file order) past the bound."""
    sizes, distinct = _sizes(root, where)
    expanded, depth = sizes[id(root)]
    if expanded - distinct <= ALIAS_NODES and depth <= MAX_DEPTH:
        return
    # in file order, into each node once: a node met again is the use of an alias
    seen = {id(root)}
    added = 0
    stack: List[Tuple[str, int, int, Iterator[Child]]] = [("", 0, 1, iter(_children(root)))]  # path, line, depth
    while stack:
        path, line, level, todo = stack[-1]
        child = next(todo, None)
        if child is None:
            stack.pop()
            continue
        key, node, key_line = child
        child_path = f"{path}.{key}" if path else key
        child_line = key_line or line  # a list item: the line of the key holding the list
        nodes, deep = sizes.get(id(node), (1, 0))  # a scalar: one node, no nesting
        if id(node) in seen:
            added += nodes
            if added > ALIAS_NODES:
                raise ConfigError(where(child_path, child_line), _too_big(nodes))
            if level + deep > MAX_DEPTH:
                raise ConfigError(where(child_path, child_line), _too_deep(" with its aliases expanded"))
            continue
        seen.add(id(node))
        if deep and level + 1 > MAX_DEPTH:
            raise ConfigError(where(child_path, child_line), _too_deep())
        stack.append((child_path, child_line if key_line else node.start_mark.line + 1, level + 1,
                      iter(_children(node))))
    raise ConfigError(where("", 0), _too_big(expanded - distinct))  # the walk finds the alias: not reached


def _too_big(nodes: int) -> str:
    return (f"YAML aliases repeat more than {ALIAS_NODES:,} nodes in all (this alias repeats {nodes:,}; an alias of"
            " aliases multiplies); aliases are for shared settings, not for building large structures:"
            " write long axes as range(...), linspace(...) or logspace(...)")
