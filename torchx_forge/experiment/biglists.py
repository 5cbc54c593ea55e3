"""Long lists of plain scalars (``[0, 1, 2, ..., 99999]``, or a ``- value`` a line), read in bulk.

libyaml builds a node (with two marks) for every scalar and PyYAML resolves and constructs each
one in Python: a 100,000-value axis written out costs about half a second that way. Before the
file is parsed, every list of at least :data:`MIN_ITEMS` plain scalars made of letters, digits and
``_ . ~ / + -`` (no quotes, comments, anchors, tags or nested collections) is cut out of the text
and replaced by a placeholder scalar, keeping the line breaks, so every later line keeps its
number: a flow list (``[...]`` after ``key:``, ``-``, ``,``, ``[`` or ``{``), or a block list (one
``- item`` a line, all at one indent, right under a ``key:`` line). The items are typed in bulk
(decimal integers by JSON, decimals by ``float``, anything else by PyYAML's own resolver and
constructor, once per distinct spelling), so the values are exactly what ``yaml.safe_load`` gives.

A placeholder is accepted only where the parser finds it whole, as a plain scalar value: a list
inside a quoted or block scalar, a comment or a longer plain scalar leaves it inside some other
scalar, and the caller then parses the original text the usual way. An item's line is found from
the list's text only when an error names it (:meth:`BigListNode.item_line`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

#: the fewest items a list needs to be read in bulk (shorter lists are cheap either way)
MIN_ITEMS = 1000
#: the tag of a list read in bulk (its node holds the values, no child nodes)
TAG = "tag:torchx-forge,2026:big-list"
PREFIX = "__torchx_forge_big_list_"

_ITEM = r"[-+]?[A-Za-z0-9_.~/][A-Za-z0-9_.~/+-]*"
_DEC_INT = r"[-+]?(?:0|[1-9][0-9]*)"
_DEC_FLOAT = r"[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?"


def _body(item: str) -> re.Pattern[str]:
    """A list body of such items: ``1, 2,\n 3``."""
    return re.compile(rf"[ \n]*{item}(?:[ \n]*,[ \n]*{item})*[ \n]*")


#: list bodies: decimals that float() reads exactly as YAML 1.1 does (no `_`, no `.5` or `1.5e3`,
#: which YAML 1.1 reads as text), or any plain items
_FLOATS = _body(_DEC_FLOAT)
_ANY = _body(_ITEM)
#: the characters of a list of decimal integers (JSON reads them as YAML does: no octal `010`, no `+1`)
_INT_CHARS = str.maketrans("", "", "0123456789-, \n")
_SEP = re.compile(r"[ \n]*,[ \n]*")
_BLOCK = re.compile(rf"^( *)- {_ITEM} *(?:\n|\Z)(?:\1- {_ITEM} *(?:\n|\Z))+", re.MULTILINE)
_BLOCK_ITEM = re.compile(rf"^ *- ({_ITEM}) *$", re.MULTILINE)
_ITEM_RE = re.compile(_ITEM)
#: the last character before a list's `[` (spaces aside) where a flow list is a value
_BEFORE = (":", "-", ",", "[", "{")


@dataclass(frozen=True)
class Span:
    """A list that may be read in bulk: ``text[start:end]``, from its ``[`` to its ``]`` (a flow list)
    or from its first ``- `` line's start to its last item (a block list, ``indent`` > -1); ``line``
    is the line it starts on, ``body`` the text its items are found in."""

    start: int
    end: int
    line: int
    values: List[Any]
    body: str
    indent: int = -1

    def replacement(self, name: str, text: str) -> str:
        """The placeholder ``name`` where the list was, and the list's line breaks after it."""
        breaks = "\n" * text.count("\n", self.start, self.end)
        return f"{name}{breaks}" if self.indent < 0 else f"{' ' * (self.indent + 1)}{name}{breaks}"


class BigListNode(yaml.SequenceNode):
    """A long list read in bulk: its values, no child nodes (the rest of the tree is as usual)."""

    def __init__(self, values: List[Any], body: str, node: yaml.Node) -> None:
        super().__init__(TAG, [], node.start_mark, node.end_mark, flow_style=True)
        self.values = values
        self.body = body

    @property
    def line(self) -> int:
        """The 1-based line the list starts on (its ``[``, or its first ``-``)."""
        return int(self.start_mark.line) + 1

    def item_line(self, index: int) -> int:
        """The 1-based line of item ``index`` (0 if there is no such item)."""
        if not 0 <= index < len(self.values):
            return 0
        for k, m in enumerate(_ITEM_RE.finditer(self.body)):
            if k == index:
                return self.line + self.body.count("\n", 0, m.start())
        return 0  # not reached: the body holds one match per value


def find(text: str, min_items: int = MIN_ITEMS) -> List[Span]:
    """The lists of ``text`` that may be read in bulk (at least ``min_items`` plain items), in order
    (none if the text holds what a placeholder looks like)."""
    if PREFIX in text:
        return []
    spans = _flow(text, min_items)
    if text.count("- ") >= min_items:
        spans = sorted(spans + _block(text, min_items), key=lambda span: span.start)
    return spans


def _flow(text: str, min_items: int) -> List[Span]:
    """The flow lists (``[1, 2, 3]``) that may be read in bulk."""
    spans: List[Span] = []
    line, counted, end = 1, 0, -1
    start = text.find("[")
    while start >= 0:
        if end < start:  # else the first "]" after an earlier "[" with none between is this one's too
            end = text.find("]", start)
            if end < 0:
                break
        inner = text.find("[", start + 1, end)
        if inner >= 0:  # holds a list: not plain items; go on from the inner one (linear on [[[[...]]]])
            start = inner
            continue
        body = text[start + 1:end]
        items = _values(body) if body.count(",") + 1 >= min_items else None
        if items is not None and _value_at(text, start):
            line += text.count("\n", counted, start)
            counted = start
            spans.append(Span(start, end + 1, line, items, body))
            start = text.find("[", end)
        else:
            start = text.find("[", start + 1)
    return spans


def _block(text: str, min_items: int) -> List[Span]:
    """The block lists (a ``- item`` a line, the same indent, under a ``key:`` line) that may be read
    in bulk; each item alone on its line, with no comment."""
    spans = []
    for m in _BLOCK.finditer(text):
        start, end = m.start(), m.end() - (m.group(0).endswith("\n"))
        chunk, dashes = text[start:end], m.group(1) + "-"
        if chunk.count("\n") + 1 < min_items or not text[:start].rstrip(" \n").endswith(":") \
                or text.startswith(dashes, end + 1):  # the next entry is not a plain item: not the whole list
            continue
        items = _values(", ".join(_BLOCK_ITEM.findall(chunk)))
        if items is not None:
            spans.append(Span(start, end, text.count("\n", 0, start) + 1, items, chunk, len(m.group(1))))
    return spans


def _values(body: str) -> Optional[List[Any]]:
    """The values of a list body (``1, 2,\n x``), typed as ``yaml.safe_load`` types them; None if
    it is not a list of plain items (or an item at the start of a line reads as ``---`` or ``...``,
    a document marker)."""
    if "\n---" in body or "\n..." in body:
        return None
    if not body.translate(_INT_CHARS):
        try:
            found = json.loads(f"[{body}]")
        except ValueError:
            found = None
        if isinstance(found, list) and set(map(type, found)) == {int}:
            return found
    if _FLOATS.fullmatch(body):
        return list(map(float, body.split(",")))  # float() skips the blanks around an item
    return values(body) if _ANY.fullmatch(body) else None


def _value_at(text: str, pos: int) -> bool:
    """A ``[`` at ``pos`` may start a value: what precedes it (blanks and line breaks aside) is ``:``,
    ``-``, ``,``, ``[``, ``{`` or nothing; an anchor (``&a [``), a tag (``!!seq [``, also on the line
    before) or a comment before it leaves the list to the parser."""
    before = text[:pos].rstrip(" \n")
    return not before or before[-1] in _BEFORE


def placeholder(k: int) -> str:
    return f"{PREFIX}{k}__"


def substitute(text: str, spans: List[Span]) -> str:
    """``text`` with each span replaced by its placeholder and the span's line breaks."""
    parts, at = [], 0
    for k, span in enumerate(spans):
        parts += [text[at:span.start], span.replacement(placeholder(k), text)]
        at = span.end
    parts.append(text[at:])
    return "".join(parts)


def values(body: str) -> List[Any]:
    """The items of a list body of plain items (``1, x, yes``), each typed by PyYAML (once per spelling)."""
    items = _SEP.split(body.strip(" \n"))
    memo: Dict[str, Any] = {}
    out = []
    for item in items:
        if item not in memo:
            memo[item] = scalar(item)
        out.append(memo[item])
    return out


_STR = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def scalar(text: str) -> Any:
    """One plain scalar, resolved and constructed by PyYAML's safe loader (the reference)."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, text))


def _scalars(root: yaml.Node) -> Iterator[Tuple[yaml.ScalarNode, Optional[yaml.Node], int, bool]]:
    """Every scalar of the tree: (node, the collection holding it, its index there, is it a key)."""
    if isinstance(root, yaml.ScalarNode):
        yield root, None, 0, False
    stack: List[yaml.Node] = [root]
    seen = {id(root)}
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            slots = [(pair[j], i, j == 0) for i, pair in enumerate(node.value) for j in (0, 1)]
        elif isinstance(node, yaml.SequenceNode):
            slots = [(item, i, False) for i, item in enumerate(node.value)]
        else:
            continue
        for child, index, key in slots:
            if isinstance(child, yaml.ScalarNode):
                yield child, node, index, key
            elif id(child) not in seen:
                seen.add(id(child))
                stack.append(child)


def swap(root: yaml.Node, text: str, spans: List[Span]) -> Optional[yaml.Node]:
    """``root`` (composed from the substituted text) with each placeholder replaced by a
    :class:`BigListNode`; None when a placeholder is not found whole as a plain scalar value."""
    want = {placeholder(k): span for k, span in enumerate(spans)}
    found: Dict[str, Tuple[yaml.ScalarNode, Optional[yaml.Node], int]] = {}
    for node, parent, index, key in _scalars(root):
        if PREFIX in node.value:
            if key or node.value not in want or node.value in found or node.style not in (None, "") \
                    or node.tag != _STR:
                return None
            found[node.value] = (node, parent, index)
    if len(found) != len(want):
        return None
    for name, (node, parent, index) in found.items():
        span = want[name]
        big = BigListNode(span.values, span.body, node)
        if parent is None:
            root = big
        elif isinstance(parent, yaml.MappingNode):
            parent.value[index] = (parent.value[index][0], big)
        else:
            parent.value[index] = big
    return root


def items_of(node: yaml.Node) -> int:
    """How many item nodes a node read in bulk stands for (0 for any other node)."""
    return len(node.values) if isinstance(node, BigListNode) else 0
