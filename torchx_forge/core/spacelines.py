"""Every point of a :class:`~torchx_forge.core.space.Space` as a JSON line, in batches (pure).

``torchx forge preview --json`` prints one line per run: exactly
``json.dumps({"index": i, "id": run_id, "case": case, "params": dict(params)})`` for each point
:meth:`Space.__iter__` yields. Here what many points share is computed once: each value of an axis
is encoded (its JSON and its ``repr``, which the run id hashes) once, not once for every point it
is part of; the order :func:`~torchx_forge.core.space.run_id_of` sorts a case's parameters in is
found once per case; random samples are encoded a block at a time; lines are joined into batches
of :data:`BATCH`. A space whose ``max_runs`` keeps fewer points than its axes have values, or
whose points repeat a key (no experiment file makes one), is printed point by point.

Standard library only, like the rest of core.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from json.encoder import encode_basestring_ascii as _text
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from torchx_forge.core.space import CaseSpace, Space

#: lines per batch
BATCH = 1000
#: one value of a factor of the product: (its params as JSON members, its (key, value) reprs)
Entry = Tuple[str, Tuple[str, ...]]
_JSON: Dict[type, Callable[[Any], str]] = {int: int.__repr__, str: _text, bool: lambda v: "true" if v else "false",
                                           type(None): lambda v: "null"}


def _json(value: Any) -> str:
    """``json.dumps(value)``, without its per-call overhead for the common scalars."""
    enc = _JSON.get(type(value))
    if enc is not None:
        return enc(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value)


def _encode(values: Sequence[Any]) -> List[str]:
    """The JSON of every value, in one step for a list of integers or of text."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    if kinds == {str}:
        return list(map(_text, values))
    if kinds == {float} and all(map(math.isfinite, values)):
        return list(map(float.__repr__, values))
    return list(map(_json, values))


def _heads(keys: Sequence[str]) -> List[Tuple[str, str]]:
    """Per key, what its JSON member and its ``(key, value)`` repr start with."""
    return [(_text(key) + ": ", f"({key!r}, ") for key in keys]


def _factor(keys: Sequence[str], columns: Sequence[Sequence[Any]]) -> List[Entry]:
    """The entries of one factor of the product: ``columns[k]`` holds the values of ``keys[k]``."""
    if not keys:
        return [("", ())]
    members: List[List[str]] = []
    pairs: List[List[str]] = []
    for (jk, rk), column in zip(_heads(keys), columns, strict=True):
        members.append([jk + j for j in _encode(column)])
        pairs.append([f"{rk}{r})" for r in map(repr, column)])
    if len(keys) == 1:
        return [(m, (p,)) for m, p in zip(members[0], pairs[0], strict=True)]
    return [(", ".join(m), p) for m, p in zip(zip(*members, strict=True), zip(*pairs, strict=True), strict=True)]


def _samples(keys: Sequence[str], drawn: Sequence[Sequence[Tuple[str, Any]]]) -> List[Entry]:
    """The entries of random samples (as the space draws them), encoded a column at a time."""
    return _factor(keys, [[d[k][1] for d in drawn] for k in range(len(keys))])


class _Case:
    """What every point of one case shares: its factors, the run id's head and the sort order."""

    def __init__(self, case: CaseSpace, random_keys: Sequence[str]) -> None:
        factors = [_factor([k for k, _ in case.set], [[v] for _, v in case.set])]
        factors += [_factor([key], [list(values)]) for key, values in case.axes]
        self.factors: List[List[Entry]] = [f for f in factors if f[0][1]]  # a case without set values: none
        keys = [k for k, _ in case.set] + [k for k, _ in case.axes] + list(random_keys)
        self.unique = len(set(keys)) == len(keys)
        order = sorted(range(len(keys)), key=lambda j: keys[j])
        self.order: Optional[List[int]] = None if order == list(range(len(keys))) else order
        self.head = f"({case.name!r}, ["
        self.id_json = _text(f"{case.name or 'run'}-")[:-1]
        self.case_json = _text(case.name)

    def line(self, index: int, entries: Sequence[Entry], sample: Optional[int] = None) -> str:
        """The JSON line of one point, from its entries (one per factor) and its sample number."""
        if len(entries) == 1:
            members, pairs = entries[0]
        else:
            members = ", ".join(m for m, _ in entries)
            pairs = tuple(p for _, ps in entries for p in ps)
        if self.order is not None:
            pairs = tuple(pairs[j] for j in self.order)
        tail = "])" if sample is None else f"], {sample})"
        digest = hashlib.sha1(f"{self.head}{', '.join(pairs)}{tail}".encode()).hexdigest()[:8]
        return f'{{"index": {index}, "id": {self.id_json}{digest}", "case": {self.case_json}, "params": {{{members}}}}}\n'


def _reference(space: Space) -> Iterator[str]:
    for p in space:
        yield json.dumps({"index": p.index, "id": p.run_id, "case": p.case, "params": dict(p.params)}) + "\n"


def _lines(space: Space) -> Iterator[str]:
    """Every point's line, in the order of :meth:`Space.__iter__`."""
    i, cap = 0, len(space)
    if sum(values.size for c in space.cases for _, values in c.axes) > cap:  # max_runs keeps few of the values
        yield from _reference(space)
        return
    random_keys = [k for k, _ in space.random.params] if space.random else []
    cases = [_Case(c, random_keys) for c in space.cases]
    if not all(c.unique for c in cases):
        yield from _reference(space)
        return
    for case in cases:
        for combo in itertools.product(*case.factors):
            if space.random is None:
                if i >= cap:
                    return
                yield case.line(i, combo)
                i += 1
                continue
            drawn = space.random.iter_samples()
            s = 0
            while i < cap:
                entries = _samples(random_keys, list(itertools.islice(drawn, min(BATCH, cap - i))))
                if not entries:
                    break
                for entry in entries:
                    yield case.line(i, (*combo, entry), s)
                    i, s = i + 1, s + 1
            if i >= cap:
                return


def json_lines(space: Space, batch: int = BATCH) -> Iterator[str]:
    """The points' JSON lines, ``batch`` lines joined into one string at a time."""
    lines = _lines(space)
    while True:
        chunk = "".join(itertools.islice(lines, batch))
        if not chunk:
            return
        yield chunk
