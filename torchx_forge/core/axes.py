"""The values of a sweep's axes: a list, or a generator (:class:`IntRange`, :class:`Linspace`,
:class:`Logspace`) that computes its ``k``-th value without listing the others (pure).

Floats are kept to 12 significant digits (:func:`tidy`), so a one-ulp difference between two C
libraries cannot change a value or a run id. Standard library only: compute nodes import it for
every task.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Dict, Iterator, Mapping, Tuple, Union

from torchx_forge.core.record import record

#: the (dot-path key, value) pairs one run sets
Params = Tuple[Tuple[str, Any], ...]
DIGITS = 12


def tidy(x: float) -> float:
    """``x`` to :data:`DIGITS` significant digits (0.1 + 0.2 -> 0.3): stable, readable values."""
    return float(f"{x:.{DIGITS}g}")


class Values:
    """The values of one axis: a sized, indexable sequence that may never be listed in full.

    :attr:`size` is the number of values, computed (never by listing them) and unbounded:
    ``len()`` fails above ``sys.maxsize``, so sizes are checked through ``size`` first."""

    @property
    def size(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, k: int) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return (self[k] for k in range(len(self)))

    def to_json(self) -> Dict[str, Any]:
        raise NotImplementedError


@record
class Listed(Values):
    """Values written out: ``[1, 2, 3]`` or ``choice(1, 2, 3)``."""

    items: Tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Any:
        return self.items[k]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def to_json(self) -> Dict[str, Any]:
        return {"list": list(self.items)}


@record
class IntRange(Values):
    """``range(start, stop[, step])``: Python's range; floats allowed (``range(0, 1, 0.25)``)."""

    start: Union[int, float]
    stop: Union[int, float]
    step: Union[int, float] = 1

    def __post_init__(self) -> None:
        if self.step == 0:
            raise ValueError("step must not be 0")
        if not self.ints and not all(math.isfinite(v) for v in (self.start, self.stop, self.step)):
            raise ValueError(f"range({self.start}, {self.stop}, {self.step}): start, stop and step must be finite numbers")
        if not self.ints and not math.isfinite((self.stop - self.start) / self.step):
            raise ValueError(f"range({self.start}, {self.stop}, {self.step}) has more values than can be counted")
        if self.size == 0:
            raise ValueError(f"range({self.start}, {self.stop}, {self.step}) is empty"
                             + (": the step goes away from stop" if self.start != self.stop else ""))

    @property
    def ints(self) -> bool:
        return all(isinstance(v, int) for v in (self.start, self.stop, self.step))

    @property
    def size(self) -> int:
        if self.ints:  # len(range(...)), by arithmetic: len() fails above sys.maxsize
            start, stop, step = int(self.start), int(self.stop), int(self.step)
            return max(0, (stop - start + step - (1 if step > 0 else -1)) // step)
        return max(0, math.ceil((self.stop - self.start) / self.step - 1e-9))

    def __getitem__(self, k: int) -> Any:
        if not 0 <= k < self.size:
            raise IndexError(k)
        value = self.start + k * self.step
        return value if self.ints else tidy(value)

    def to_json(self) -> Dict[str, Any]:
        return {"range": [self.start, self.stop, self.step]}


@record
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

    @property
    def size(self) -> int:
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


@record
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


