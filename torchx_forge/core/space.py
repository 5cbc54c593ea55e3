"""The space of a sweep: cases x axes x random samples, with point ``i`` computed directly (pure).

A sweep's runs are the points of a :class:`Space`, in slurmforge 0.2.0's order: case by case, in
file order; within a case, its ``set`` values, then the product of the shared axes merged with the
case's own axes **sorted by key**, the first key outermost; when the sweep has a random block, its
samples are one more axis, innermost. ``max_runs`` keeps the first N points.

Axes are lists or generators that compute their ``k``-th value without listing the others
(:mod:`torchx_forge.core.axes`), random samples are drawn directly and deterministically
(:mod:`torchx_forge.core.sampling`), and :meth:`Space.point` finds point ``i`` from the axis
sizes alone. So a 100,000-point sweep is planned without listing its runs, and a task on a
compute node finds its own run in a table of a few hundred bytes.

Standard library only: compute nodes import it for every task.
"""

from __future__ import annotations

import bisect
import itertools
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

try:  # CPython's own SHA-1, the same digest: importing hashlib loads OpenSSL (2-4 ms of every task)
    from _sha1 import sha1  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # another Python
    from hashlib import sha1

from torchx_forge.core import envvars
from torchx_forge.core.axes import Params, Values, values_from_json
from torchx_forge.core.errors import ConfigError
from torchx_forge.core.record import record
from torchx_forge.core.sampling import RandomSpec

#: the most runs a sweep may have (and values an axis, samples a random search), unless
#: ``FORGE_SWEEP_LIMIT`` says otherwise: ten times the biggest sweeps forge is planned for
#: (100,000 points, submitted in waves)
SWEEP_LIMIT = 1_000_000


def sweep_limit() -> int:
    """The most runs a sweep may have: ``$FORGE_SWEEP_LIMIT``, else :data:`SWEEP_LIMIT`."""
    name = envvars.SWEEP_LIMIT.name
    raw = os.environ.get(name, "").strip().replace("_", "").replace(",", "")
    if not raw:
        return SWEEP_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"${name}", f"expected a whole number >= 1 (the most runs a sweep may have;"
                                      f" default {SWEEP_LIMIT:,}), got {os.environ[name]!r}")
    return int(raw)


def check_size(size: int, where: str, what: str, unit: str = "values",
               hint: str = "use fewer values, or split it into several sweeps") -> None:
    """ConfigError when ``size`` (of ``what``, e.g. ``range(0, 1000000000000)``) is above
    :func:`sweep_limit`; sizes are counted, never listed, so this answers at once."""
    limit = sweep_limit()
    if size > limit:
        raise ConfigError(where, f"{what} has {size:,} {unit}, more than the {limit:,} runs a sweep may have"
                                 f" (${envvars.SWEEP_LIMIT.name}); {hint}")


def run_id_of(case: str, params: Params, sample: Optional[int] = None) -> str:
    """``<case or run>-<8 hex>``: a hash of the case, the (sorted) parameters and, in a random
    search, the sample number (two samples that happen to draw equal values stay two runs)."""
    ordered = sorted(params, key=lambda kv: kv[0])
    blob = repr((case, ordered)) if sample is None else repr((case, ordered, sample))
    return f"{case or 'run'}-{sha1(blob.encode()).hexdigest()[:8]}"


@record
class Point:
    """One run of a sweep: its index (position), stable id, case and the dot-path values it sets."""

    index: int
    run_id: str
    case: str
    params: Params
    sample: Optional[int] = None


@record
class CaseSpace:
    """One case: its name, its fixed values and its grid (shared axes merged in, sorted by key)."""

    name: str
    set: Params = ()
    axes: Tuple[Tuple[str, Values], ...] = ()

    @property
    def grid_size(self) -> int:
        n = 1
        for _, values in self.axes:
            n *= values.size
        return n

    def grid_point(self, j: int) -> Params:
        """Grid point ``j``: the first axis outermost (the last one changes fastest)."""
        out = []
        for key, values in reversed(self.axes):
            j, k = divmod(j, values.size)
            out.append((key, values[k]))
        return tuple(reversed(out))

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "set": [list(kv) for kv in self.set], "axes": [[k, v.to_json()] for k, v in self.axes]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CaseSpace:
        return cls(obj["name"], tuple((k, v) for k, v in obj.get("set", [])),
                   tuple((k, values_from_json(v)) for k, v in obj.get("axes", [])))


@record
class Space:
    """Every run of a sweep, in order (see the module docstring), without listing them."""

    cases: Tuple[CaseSpace, ...]
    random: Optional[RandomSpec] = None
    max_runs: Optional[int] = None

    @property
    def samples(self) -> int:
        return self.random.samples if self.random else 1

    def case_sizes(self) -> List[int]:
        return [c.grid_size * self.samples for c in self.cases]

    def total(self) -> int:
        """Points before ``max_runs``."""
        return sum(self.case_sizes())

    @property
    def size(self) -> int:
        """Points after ``max_runs``, counted (``len()`` fails above ``sys.maxsize``)."""
        total = self.total()
        return min(total, self.max_runs) if self.max_runs is not None else total

    def __len__(self) -> int:
        return self.size

    def locate(self, i: int) -> Tuple[int, int, Optional[int]]:
        """(case number, grid point, sample) of point ``i``."""
        if not 0 <= i < self.size:
            raise IndexError(f"the sweep has {self.size} run(s); there is no run {i}")
        starts = list(itertools.accumulate(self.case_sizes(), initial=0))
        c = bisect.bisect_right(starts, i) - 1
        j = i - starts[c]
        if self.random is None:
            return c, j, None
        g, s = divmod(j, self.random.samples)
        return c, g, s

    def point(self, i: int) -> Point:
        c, g, s = self.locate(i)
        case = self.cases[c]
        params = case.set + case.grid_point(g) + (self.random.sample(s) if self.random and s is not None else ())
        return Point(i, run_id_of(case.name, params, s), case.name, params, s)

    def __iter__(self) -> Iterator[Point]:
        i, cap = 0, len(self)
        for case in self.cases:
            keys = [k for k, _ in case.axes]
            for combo in itertools.product(*[values for _, values in case.axes]):
                grid = case.set + tuple(zip(keys, combo, strict=True))
                if self.random is None:
                    if i >= cap:
                        return
                    yield Point(i, run_id_of(case.name, grid), case.name, grid)
                    i += 1
                    continue
                for s, drawn in enumerate(self.random.iter_samples()):
                    if i >= cap:
                        return
                    params = grid + drawn
                    yield Point(i, run_id_of(case.name, params, s), case.name, params, s)
                    i += 1

    def swept_keys(self) -> List[str]:
        """Every dot-path key some run sets."""
        found = dict.fromkeys(k for c in self.cases for k, _ in c.set + tuple(c.axes))
        found.update(dict.fromkeys(k for k, _ in (self.random.params if self.random else ())))
        return list(found)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"cases": [c.to_json() for c in self.cases]}
        if self.random:
            out["random"] = self.random.to_json()
        if self.max_runs is not None:
            out["max_runs"] = self.max_runs
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Space:
        rnd = obj.get("random")
        return cls(tuple(CaseSpace.from_json(c) for c in obj["cases"]), RandomSpec.from_json(rnd) if rnd else None,
                   obj.get("max_runs"))


def single() -> Space:
    """The space of an experiment without a sweep: one run, no parameters."""
    return Space((CaseSpace(""),))


def merged_axes(shared: Sequence[Tuple[str, Values]], own: Sequence[Tuple[str, Values]]) -> Tuple[Tuple[str, Values], ...]:
    """A case's grid: the shared axes and its own, sorted by key (slurmforge 0.2.0's ``merge_axes``)."""
    return tuple(sorted([*shared, *own], key=lambda kv: kv[0]))
