"""Random search: each key's distribution (:class:`Dist`) and the samples drawn from them
(:class:`RandomSpec`), deterministic and computed directly (pure).

Sample ``s`` of a key depends only on the seed, the key and ``s`` (:func:`uniforms`), never on
the machine, the Python version or the other keys. Standard library only: compute nodes import
it for every task.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any, Callable, Dict, Iterator, Mapping, Tuple

from torchx_forge.core.axes import Params, tidy
from torchx_forge.core.record import record

#: random samples drawn per seeded stream (sample s of a key is in block s // BLOCK)
BLOCK = 1024


@record
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


@record
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


