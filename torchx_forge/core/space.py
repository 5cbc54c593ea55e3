"""The space of a sweep: cases x axes x random samples, with point ``i`` computed directly (pure).

A sweep's runs are the points of a :class:`Space`, in slurmforge 0.2.0's order: case by case, in
file order; within a case, its ``set`` values, then the product of the shared axes merged with the
case's own axes **sorted by key**, the first key outermost; when the sweep has a random block, its
samples are one more axis, innermost. ``max_runs`` keeps the first N points.

Axes are lists or generators (:class:`IntRange`, :class:`Linspace`, :class:`Logspace`) that
compute their ``k``-th value without listing the others, and :meth:`Space.point` finds point
``i`` from the axis sizes alone. So a 100,000-point sweep is planned without listing its runs, and
a task on a compute node finds its own run in a table of a few hundred bytes.

Random samples are deterministic: sample ``s`` of a key depends only on the seed, the key and
``s`` (:func:`uniforms`), never on the machine, the Python version or the other keys. Floats are
kept to 12 significant digits, so a one-ulp difference between two C libraries cannot change a
value or a run id.

Standard library only: compute nodes import it for every task.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

Params = Tuple[Tuple[str, Any], ...]
#: random samples drawn per seeded stream (sample s of a key is in block s // BLOCK)
BLOCK = 1024
DIGITS = 12


def tidy(x: float) -> float:
    """``x`` to :data:`DIGITS` significant digits (0.1 + 0.2 -> 0.3): stable, readable values."""
    return float(f"{x:.{DIGITS}g}")


# -- axis values -------------------------------------------------------------------------------


class Values:
    """The values of one axis: a sized, indexable sequence that may never be listed in full."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, k: int) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return (self[k] for k in range(len(self)))

    def to_json(self) -> Dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Listed(Values):
    """Values written out: ``[1, 2, 3]`` or ``choice(1, 2, 3)``."""

    items: Tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Any:
        return self.items[k]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def to_json(self) -> Dict[str, Any]:
        return {"list": list(self.items)}


@dataclass(frozen=True)
class IntRange(Values):
    """``range(start, stop[, step])``: Python's range; floats allowed (``range(0, 1, 0.25)``)."""

    start: Union[int, float]
    stop: Union[int, float]
    step: Union[int, float] = 1

    def __post_init__(self) -> None:
        if self.step == 0:
            raise ValueError("step must not be 0")
        if len(self) == 0:
            raise ValueError(f"range({self.start}, {self.stop}, {self.step}) is empty"
                             + (": the step goes away from stop" if self.start != self.stop else ""))

    @property
    def ints(self) -> bool:
        return all(isinstance(v, int) for v in (self.start, self.stop, self.step))

    def __len__(self) -> int:
        if self.ints:
            return len(range(int(self.start), int(self.stop), int(self.step)))
        return max(0, math.ceil((self.stop - self.start) / self.step - 1e-9))

    def __getitem__(self, k: int) -> Any:
        if not 0 <= k < len(self):
            raise IndexError(k)
        value = self.start + k * self.step
        return value if self.ints else tidy(value)

    def to_json(self) -> Dict[str, Any]:
        return {"range": [self.start, self.stop, self.step]}


@dataclass(frozen=True)
class Linspace(Values):
    """``linspace(start, stop, num)``: ``num`` evenly spaced values, both ends included (numpy's)."""

    start: float
    stop: float
    num: int

    #: evenly spaced on a log scale instead (Logspace)
    LOG: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.LOG and (self.start <= 0 or self.stop <= 0):
            raise ValueError(f"both bounds must be > 0 (they are values, not exponents), got {self.start} and {self.stop}")
        if self.num < 1:
            raise ValueError(f"num must be at least 1, got {self.num}")

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, k: int) -> Any:
        if not 0 <= k < self.num:
            raise IndexError(k)
        if self.num == 1:
            return tidy(self.start)
        low, high = (math.log(self.start), math.log(self.stop)) if self.LOG else (self.start, self.stop)
        x = low + (high - low) * k / (self.num - 1)
        return tidy(math.exp(x) if self.LOG else x)

    def to_json(self) -> Dict[str, Any]:
        return {"logspace" if self.LOG else "linspace": [self.start, self.stop, self.num]}


@dataclass(frozen=True)
class Logspace(Linspace):
    """``logspace(start, stop, num)``: ``num`` values evenly spaced on a log scale from ``start`` to
    ``stop`` (the bounds are values, not exponents: numpy's geomspace), both ends included."""

    LOG: ClassVar[bool] = True


def values_from_json(obj: Mapping[str, Any]) -> Values:
    if "list" in obj:
        return Listed(tuple(obj["list"]))
    if "range" in obj:
        return IntRange(*obj["range"])
    if "linspace" in obj:
        return Linspace(*obj["linspace"])
    if "logspace" in obj:
        return Logspace(*obj["logspace"])
    raise ValueError(f"unknown axis values {sorted(obj)}")


# -- random samples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """One key's distribution in a random search.

    ``uniform``/``loguniform``: a float in [low, high]; ``int``/``logint``: a whole number in
    [low, high], both ends included; ``choice``: one of ``choices``, each as likely.
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: Tuple[Any, ...] = ()

    KINDS = ("uniform", "loguniform", "int", "logint", "choice")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown distribution {self.kind!r}; expected one of {', '.join(self.KINDS)}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("choice() needs at least one value")
            return
        if self.low > self.high:
            raise ValueError(f"the low bound {self.low} is above the high bound {self.high}")
        if self.kind.startswith("log") and self.low <= 0:
            raise ValueError(f"a log scale needs bounds > 0, got {self.low}")
        if self.kind in ("int", "logint") and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"int() needs whole-number bounds, got {self.low} and {self.high}")

    def sample(self, u: float) -> Any:
        """The value at quantile ``u`` in [0, 1)."""
        return self.sampler()(u)

    def sampler(self) -> Callable[[float], Any]:
        """:meth:`sample` as a function of ``u`` alone (the hot loop of a big random search)."""
        if self.kind == "choice":
            choices, n = self.choices, len(self.choices)
            return lambda u: choices[min(int(u * n), n - 1)]
        if self.kind == "uniform":
            low, width = self.low, self.high - self.low
            return lambda u: tidy(low + width * u)
        if self.kind == "loguniform":
            lo, hi, llo, lw = self.low, self.high, math.log(self.low), math.log(self.high) - math.log(self.low)
            return lambda u: tidy(min(max(math.exp(llo + lw * u), lo), hi))
        if self.kind == "int":
            first, n = int(self.low), int(self.high - self.low) + 1
            return lambda u: first + min(int(u * n), n - 1)
        last, llo = int(self.high), math.log(self.low)  # logint: log-uniform over [low, high + 1)
        lw = math.log(self.high + 1) - llo
        return lambda u: min(int(math.exp(llo + lw * u)), last)

    def to_json(self) -> Dict[str, Any]:
        if self.kind == "choice":
            return {"kind": "choice", "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Dist:
        return cls(obj["kind"], obj.get("low", 0.0), obj.get("high", 0.0), tuple(obj.get("choices", ())))


@functools.lru_cache(maxsize=64)
def uniforms(seed: int, key: str, block: int) -> Tuple[float, ...]:
    """Block ``block`` of the uniform stream of ``key``: :data:`BLOCK` numbers in [0, 1).

    Seeded by a string (Python's version-2 seeding, sha512 of the text), and only ``random()`` is
    drawn: the one sequence Python promises to keep the same across versions and machines.
    """
    rng = random.Random(f"torchx-forge:{seed}:{key}:{block}")
    return tuple(rng.random() for _ in range(BLOCK))


@dataclass(frozen=True)
class RandomSpec:
    """``samples`` points drawn from ``params`` with ``seed``: a random search."""

    samples: int
    seed: int
    params: Tuple[Tuple[str, Dist], ...]  # sorted by key

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")

    def sample(self, s: int) -> Params:
        """The values of sample ``s``."""
        b, k = divmod(s, BLOCK)
        return tuple((key, dist.sample(uniforms(self.seed, key, b)[k])) for key, dist in self.params)

    def iter_samples(self, start: int = 0) -> Iterator[Params]:
        """Samples ``start``, ``start + 1``, ... up to ``samples`` (one stream block at a time)."""
        keys = [key for key, _ in self.params]
        samplers = [dist.sampler() for _, dist in self.params]
        s = start
        while s < self.samples:
            b, k = divmod(s, BLOCK)
            end = min(BLOCK, self.samples - b * BLOCK)
            columns = [list(map(f, uniforms(self.seed, key, b)[k:end])) for key, f in zip(keys, samplers, strict=True)]
            for values in zip(*columns, strict=True):
                yield tuple(zip(keys, values, strict=True))
            s = (b + 1) * BLOCK

    def to_json(self) -> Dict[str, Any]:
        return {"samples": self.samples, "seed": self.seed, "params": [[k, d.to_json()] for k, d in self.params]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RandomSpec:
        return cls(int(obj["samples"]), int(obj["seed"]), tuple((k, Dist.from_json(d)) for k, d in obj["params"]))


# -- points ------------------------------------------------------------------------------------


def run_id_of(case: str, params: Params, sample: Optional[int] = None) -> str:
    """``<case or run>-<8 hex>``: a hash of the case, the (sorted) parameters and, in a random
    search, the sample number (two samples that happen to draw equal values stay two runs)."""
    ordered = sorted(params, key=lambda kv: kv[0])
    blob = repr((case, ordered)) if sample is None else repr((case, ordered, sample))
    return f"{case or 'run'}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its index (position), stable id, case and the dot-path values it sets."""

    index: int
    run_id: str
    case: str
    params: Params
    sample: Optional[int] = None


@dataclass(frozen=True)
class CaseSpace:
    """One case: its name, its fixed values and its grid (shared axes merged in, sorted by key)."""

    name: str
    set: Params = ()
    axes: Tuple[Tuple[str, Values], ...] = ()

    @property
    def grid_size(self) -> int:
        n = 1
        for _, values in self.axes:
            n *= len(values)
        return n

    def grid_point(self, j: int) -> Params:
        """Grid point ``j``: the first axis outermost (the last one changes fastest)."""
        out = []
        for key, values in reversed(self.axes):
            j, k = divmod(j, len(values))
            out.append((key, values[k]))
        return tuple(reversed(out))

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "set": [list(kv) for kv in self.set], "axes": [[k, v.to_json()] for k, v in self.axes]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CaseSpace:
        return cls(obj["name"], tuple((k, v) for k, v in obj.get("set", [])),
                   tuple((k, values_from_json(v)) for k, v in obj.get("axes", [])))


@dataclass(frozen=True)
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

    def __len__(self) -> int:
        total = self.total()
        return min(total, self.max_runs) if self.max_runs is not None else total

    def locate(self, i: int) -> Tuple[int, int, Optional[int]]:
        """(case number, grid point, sample) of point ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"the sweep has {len(self)} run(s); there is no run {i}")
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
