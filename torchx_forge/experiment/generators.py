"""Compact axes and random search, written in Hydra's override grammar (pure).

Researchers already write sweeps as Hydra overrides (``lr=choice(0.1,0.01)``,
``seed=range(0,100)``, ``lr=tag(log, interval(1e-5, 1e-1))`` for the Optuna sweeper), so forge
reads the same functions, in an experiment file's axes and on the command line:

========================================  ==========================================================
grid axis (``shared_axes``, case ``axes``, ``--axes``)
``range(start, stop[, step])``            Python's range (floats allowed): ``range(0, 100000)``
``linspace(start, stop, num)``            ``num`` evenly spaced values, both ends included
``logspace(start, stop, num)``            ``num`` values evenly spaced on a log scale; the bounds
                                          are values (``logspace(1e-5, 1e-1, 5)``), not exponents
``choice(a, b, ...)``                     the listed values (the same as a YAML list)
random search (``sweep.random.params``, ``--random``)
``interval(low, high)``                   a float, uniform in [low, high]
``tag(log, interval(low, high))``         a float, log-uniform in [low, high]
``int(interval(low, high))``              a whole number in [low, high], both included
``tag(log, int(interval(low, high)))``    a whole number, log-uniform
``choice(a, b, ...)``, ``range(...)``     one of the values, each as likely
========================================  ==========================================================

``linspace`` and ``logspace`` are not Hydra's (Hydra has no evenly spaced grid); they follow
numpy's names. Arguments are numbers, quoted strings, bare words, ``true``/``false`` and ``null``;
``range``, ``linspace`` and ``logspace`` also take ``start=``/``stop=``/``step=``/``num=``.
Every problem is a ValueError whose text says what was expected; callers add the file, line and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

from torchx_forge.core import envvars
from torchx_forge.core.axes import IntRange, Linspace, Listed, Logspace, Values
from torchx_forge.core.sampling import Dist
from torchx_forge.core.space import sweep_limit

GRID = ("range", "linspace", "logspace", "choice")
RANDOM = ("interval", "tag", "int", "choice", "range")
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(")
_TOKEN = re.compile(r"""\s*(?:(?P<str>'[^']*'|"[^"]*")|(?P<punct>[(),=])|(?P<word>[^\s(),='"]+))""")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?(?:inf|nan)$")


@dataclass(frozen=True)
class Call:
    """``name(arg, ..., key=value)`` as parsed."""

    name: str
    args: Tuple[Any, ...]
    kwargs: Tuple[Tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        parts = [str(a) for a in self.args] + [f"{k}={v}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})"


def is_call(text: Any) -> bool:
    """Does ``text`` look like ``name(...)``, a generator or distribution?"""
    return isinstance(text, str) and bool(_CALL.match(text))


def _scalar(word: str) -> Any:
    low = word.lower()
    if low in ("null", "~"):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    if _INT.match(word):
        return int(word)
    if _FLOAT.match(word):
        return float(word)
    return word


def _tokens(text: str) -> List[Tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read {text!r} at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> Tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, want: str = "") -> Tuple[str, str]:
        tok = self.peek()
        if want and tok[1] != want:
            got = repr(tok[1]) if tok[0] != "end" else "the end"
            raise ValueError(f"expected {want!r} in {self.text!r}, got {got}")
        self.i += 1
        return tok

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text[1:-1]
        if kind == "word":
            if self.peek()[1] == "(":
                return self.call(text)
            return _scalar(text)
        raise ValueError(f"expected a value in {self.text!r}, got {text!r}" if text else f"{self.text!r} ends too early")

    def call(self, name: str) -> Call:
        self.take("(")
        args: List[Any] = []
        kwargs: List[Tuple[str, Any]] = []
        while self.peek()[1] != ")":
            kind, text = self.peek()
            if kind == "word" and self.i + 1 < len(self.toks) and self.toks[self.i + 1][1] == "=":
                self.i += 2
                kwargs.append((text, self.value()))
            elif kwargs:
                raise ValueError(f"a positional argument follows a keyword argument in {self.text!r}")
            else:
                args.append(self.value())
            if self.peek()[1] == ",":
                self.take(",")
            elif self.peek()[1] != ")":
                self.take(")")
        self.take(")")
        return Call(name, tuple(args), tuple(kwargs))


FLOW_HINT = ("; in a YAML flow mapping or list ({...} or [...]) commas split values: quote the call,"
             " e.g. 'logspace(1e-5, 1e-1, 5)'")


def parse_call(text: str) -> Call:
    """``"range(0, 10, step=2)"`` -> ``Call("range", (0, 10), (("step", 2),))`` (ValueError if malformed)."""
    if text.count("(") > text.count(")"):
        raise ValueError(f"{text!r} is cut short (a ')' is missing){FLOW_HINT}")
    p = _Parser(text)
    kind, name = p.take()
    if kind != "word" or p.peek()[1] != "(":
        raise ValueError(f"expected a function call such as range(0, 10), got {text!r}")
    call = p.call(name)
    if p.peek()[0] != "end":
        raise ValueError(f"unexpected {p.peek()[1]!r} after {call} in {text!r}")
    return call


def _number(v: Any, what: str, call: Call) -> Union[int, float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{call}: {what} must be a number, got {v!r}")
    return v


def _count(v: Any, what: str, call: Call) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{call}: {what} must be a whole number >= 1, got {v!r}")
    return v


def _bind(call: Call, names: Tuple[str, ...], required: int) -> Dict[str, Any]:
    """Positional and keyword arguments of ``call`` by parameter name."""
    if len(call.args) > len(names):
        raise ValueError(f"{call}: takes at most {len(names)} arguments ({', '.join(names)}), got {len(call.args)}")
    bound = dict(zip(names, call.args, strict=False))
    for key, value in call.kwargs:
        if key not in names:
            raise ValueError(f"{call}: unknown argument {key!r}; expected {', '.join(names)}")
        if key in bound:
            raise ValueError(f"{call}: {key} is given twice")
        bound[key] = value
    missing = [n for n in names[:required] if n not in bound]
    if missing:
        raise ValueError(f"{call}: missing {', '.join(missing)}; expected {call.name}({', '.join(names)})")
    return bound


def _no_calls(call: Call) -> Tuple[Any, ...]:
    if not call.args:
        raise ValueError(f"{call}: give at least one value")
    if call.kwargs or any(isinstance(a, Call) for a in call.args):
        raise ValueError(f"{call}: choice() takes plain values")
    return call.args


def grid_values(call: Call) -> Values:
    """The values of a grid axis written as ``range``/``linspace``/``logspace``/``choice``."""
    if call.name == "choice":
        return Listed(_no_calls(call))
    if call.name == "range":
        b = _bind(call, ("start", "stop", "step"), 1)
        if "stop" not in b:  # range(stop), as in Python
            b = {"start": 0, "stop": b["start"]}
        return IntRange(_number(b["start"], "start", call), _number(b["stop"], "stop", call),
                        _number(b.get("step", 1), "step", call))
    if call.name in ("linspace", "logspace"):
        b = _bind(call, ("start", "stop", "num"), 3)
        kind = Linspace if call.name == "linspace" else Logspace
        return kind(_number(b["start"], "start", call), _number(b["stop"], "stop", call), _count(b["num"], "num", call))
    if call.name in RANDOM:
        raise ValueError(f"{call} is a distribution, not a list of values: put it under sweep.random.params"
                         " (a random search), or use linspace/logspace for a grid")
    raise ValueError(f"unknown generator {call.name}(); a grid axis is a list or one of {', '.join(f'{g}()' for g in GRID)}")


def _interval(call: Call) -> Tuple[float, float]:
    b = _bind(call, ("low", "high"), 2)
    return _number(b["low"], "low", call), _number(b["high"], "high", call)


def distribution(value: Any) -> Dist:
    """The distribution of a random-search key: a call (``interval(...)``, ``tag(log, ...)``, ...)
    or a list of values (a choice)."""
    if isinstance(value, list):
        if not value:
            raise ValueError("expected a distribution such as interval(0, 1) or a non-empty list of choices")
        return Dist("choice", choices=tuple(value))
    if not is_call(value):
        raise ValueError(f"expected a distribution such as interval(0, 1), tag(log, interval(1e-5, 1e-1)),"
                         f" int(interval(1, 8)) or choice(a, b), got {value!r}")
    return _dist(parse_call(value), log=False)


def _dist(call: Call, log: bool) -> Dist:
    if call.name == "tag":
        if len(call.args) != 2 or call.args[0] != "log" or not isinstance(call.args[1], Call):
            raise ValueError(f"{call}: expected tag(log, interval(low, high)) or tag(log, int(interval(low, high)))")
        return _dist(call.args[1], log=True)
    if call.name == "interval":
        low, high = _interval(call)
        return Dist("loguniform" if log else "uniform", float(low), float(high))
    if call.name == "int":
        inner = call.args[0] if len(call.args) == 1 and isinstance(call.args[0], Call) else None
        if inner is None or inner.name != "interval":
            raise ValueError(f"{call}: expected int(interval(low, high))")
        low, high = _interval(inner)
        return Dist("logint" if log else "int", low, high)
    if log:
        raise ValueError(f"{call}: tag(log, ...) applies to interval() or int(interval())")
    if call.name == "choice":
        return Dist("choice", choices=_no_calls(call))
    if call.name == "range":
        values = grid_values(call)
        if isinstance(values, IntRange) and values.ints and values.step == 1:  # no need to list them
            return Dist("int", values.start, values.stop - 1)
        limit = sweep_limit()
        if values.size > limit:  # counted before anything is listed
            raise ValueError(f"{call} has {values.size:,} values to choose from, more than the {limit:,} runs a sweep"
                             f" may have (${envvars.SWEEP_LIMIT.name}); use a step of 1 (an int(interval(...)))"
                             " or fewer values")
        return Dist("choice", choices=tuple(values))
    if call.name in GRID:
        raise ValueError(f"{call} is a grid of values: put it under sweep.shared_axes (or a case's axes)")
    raise ValueError(f"unknown distribution {call.name}(); expected interval, tag(log, ...), int(interval(...)),"
                     " choice or range")
