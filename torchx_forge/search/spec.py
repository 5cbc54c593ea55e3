"""A validated ``search:`` section: what to optimise, how, over which space, within which budget (pure).

::

    search:
      algorithm: asha        # random | tpe | asha | hyperband
      metric: loss           # a metric the program reports (runtime.report, metrics.json)
      mode: min              # min | max
      trials: 64             # how many trials (configurations) at most
      max_trials: 256        # how far `torchx forge budget` may raise trials later (default: trials)
      parallel: 8            # trials running at once
      seed: 0
      space:                 # the grammar of random sweeps (torchx_forge.experiment.generators)
        run.args.width: interval(0, 20)
        run.args.lr: tag(log, interval(1e-5, 1e-1))
        run.args.layers: int(interval(1, 8))
        run.args.opt: choice(adam, sgd)
      budget: run.args.steps # asha/hyperband: the key whose value is a trial's full length
      min_budget: 1          # the first rung (default 1)
      eta: 3                 # keep the best 1/eta of each rung (default 3)
      max_failures: 0.5      # stop the search when more than this fraction of trials failed

The full length (``max_budget``) is the experiment's value at ``budget`` (``run.args.steps: 27``),
or ``max_budget: 27`` in the section. ``sampler: tpe`` makes ASHA/Hyperband pick new
configurations with TPE instead of at random. Every problem is a :class:`ConfigError` naming the
file, line and key path. Nothing here imports optuna: :meth:`SearchSpec.distributions` does, lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from torchx_forge.core.sampling import Dist
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.generators import FLOW_HINT
from torchx_forge.experiment.overrides import get_path
from torchx_forge.experiment.schema import check_mapping, leaf_check, t_int, t_str, type_name
from torchx_forge.experiment.source import Source
from torchx_forge.experiment.spec import checked_distribution

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

ALGORITHMS = ("random", "tpe", "asha", "hyperband")
#: the algorithms that stop trials at rungs and promote the best (they need ``budget``)
RUNG_ALGORITHMS = ("asha", "hyperband")
SAMPLERS = ("random", "tpe")
MODES = ("min", "max")
INSTALL_HINT = "pip install 'torchx-forge[search]'"


def require_optuna() -> None:
    """ConfigError unless optuna (the ``search`` extra) is importable: call it before submitting a search."""
    try:
        import optuna  # noqa: F401, PLC0415 (lazy: the search extra; torchx works without it)
    except ImportError as e:
        raise ConfigError("search", f"adaptive search runs on optuna, which cannot be imported here ({e}):"
                                    f" {INSTALL_HINT}") from None


class SpecError(ConfigError):
    """A value of a :class:`SearchSpec` that does not hold, with the key it is at (``trials``)."""

    def __init__(self, key: str, msg: str) -> None:
        self.key = key
        super().__init__(f"search.{key}", msg)


@dataclass(frozen=True)
class SearchSpec:
    """An adaptive search (see the module docstring for the YAML form).

    Args:
        algorithm: random | tpe | asha | hyperband.
        metric: the metric to optimise, as the program reports it.
        mode: min | max.
        trials: the budget: how many trials (configurations) at most.
        max_trials: how high the budget may be raised while the search runs (``torchx forge
            budget``); None: ``trials`` (the app has a run, a run id and a checkpoint dir, for each).
        parallel: trials running at once.
        seed: the sampler's seed (a search is reproducible given the order of its results).
        space: (dot-path key, distribution) pairs, sorted by key.
        sampler: how new configurations are picked: random | tpe; "" for the algorithm's own
            (tpe for tpe, random for the others).
        budget: the key the trial's full length is set at (``run.args.steps``); None: none.
        max_budget: a trial's full length in steps (the value at ``budget``).
        min_budget: the first rung's budget (asha/hyperband).
        eta: the reduction factor: the best 1/eta of a rung go on to the next (asha/hyperband).
        max_failures: the fraction of failed trials above which the search stops.
    """

    algorithm: str
    metric: str
    trials: int
    space: Tuple[Tuple[str, Dist], ...]
    mode: str = "min"
    parallel: int = 1
    seed: int = 0
    sampler: str = ""
    budget: Optional[str] = None
    max_budget: Optional[int] = None
    min_budget: int = 1
    eta: int = 3
    max_failures: float = 0.5
    max_trials: Optional[int] = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise SpecError("algorithm", f"unknown algorithm {self.algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
        if self.mode not in MODES:
            raise SpecError("mode", f"expected min or max, got {self.mode!r}")
        if self.sampler and self.sampler not in SAMPLERS:
            raise SpecError("sampler", f"expected one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not self.metric:
            raise SpecError("metric", "expected the name of a metric the program reports, e.g. loss")
        for key, low in (("trials", 1), ("parallel", 1), ("seed", 0), ("min_budget", 1), ("eta", 2)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SpecError(key, f"expected a whole number >= {low}, got {value!r}")
        if self.max_trials is not None and (isinstance(self.max_trials, bool) or not isinstance(self.max_trials, int)
                                            or self.max_trials < self.trials):
            raise SpecError("max_trials", f"expected a whole number >= trials ({self.trials}), got {self.max_trials!r}")
        if not 0.0 <= self.max_failures <= 1.0:
            raise SpecError("max_failures", f"expected a fraction between 0 and 1, got {self.max_failures!r}")
        if not self.space:
            raise SpecError("space", "expected a mapping of dot-path key to a distribution, e.g. run.args.lr: interval(0, 1)")
        self._check_budget()

    def _check_budget(self) -> None:
        if self.algorithm in RUNG_ALGORITHMS and not self.budget:
            raise SpecError("budget", f"missing key 'budget': {self.algorithm} stops trials at rungs: name the key"
                                      " that sets a trial's length in steps, e.g. budget: run.args.steps")
        if not self.budget:
            return
        if self.max_budget is None:
            raise SpecError("budget", f"{self.budget} has no value: set it in the experiment"
                                      " (e.g. run.args.steps: 27) or give search.max_budget")
        if isinstance(self.max_budget, bool) or not isinstance(self.max_budget, int) or self.max_budget < 1:
            raise SpecError("max_budget", f"{self.budget}: expected a whole number of steps >= 1, got {self.max_budget!r}")
        if self.algorithm in RUNG_ALGORITHMS and self.min_budget > self.max_budget:
            raise SpecError("min_budget", f"{self.min_budget} is above the full length {self.max_budget} ({self.budget})")
        if any(key == self.budget for key, _ in self.space):
            raise SpecError("budget", f"{self.budget} is also in search.space: the budget is set by the search")

    @property
    def ceiling(self) -> int:
        """The most trials this search can ever have (``max_trials``, else ``trials``)."""
        return self.max_trials if self.max_trials is not None else self.trials

    @property
    def sampler_name(self) -> str:
        """random or tpe: the sampler that picks new configurations."""
        return self.sampler or ("tpe" if self.algorithm == "tpe" else "random")

    @property
    def rungs(self) -> Tuple[int, ...]:
        """asha/hyperband: the budgets trials stop at, smallest first (the last is ``max_budget``)."""
        if self.algorithm not in RUNG_ALGORITHMS or self.max_budget is None:
            return (self.max_budget,) if self.max_budget else ()
        out: List[int] = []
        b = self.min_budget
        while b < self.max_budget:
            out.append(b)
            b *= self.eta
        return (*out, self.max_budget)

    def rung_budget(self, rung: int) -> int:
        """The budget of rung ``rung`` (0 = ``min_budget``), capped at ``max_budget``."""
        assert self.max_budget is not None
        return min(self.min_budget * int(self.eta**rung), self.max_budget)

    def distributions(self) -> Dict[str, BaseDistribution]:
        """The space as optuna distributions, in key order (needs optuna: ConfigError with the extra to install)."""
        require_optuna()
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: PLC0415

        out: Dict[str, BaseDistribution] = {}
        for key, d in self.space:
            if d.kind == "choice":
                out[key] = CategoricalDistribution(list(d.choices))
            elif d.kind in ("int", "logint"):
                out[key] = IntDistribution(int(d.low), int(d.high), log=d.kind == "logint")
            else:
                out[key] = FloatDistribution(d.low, d.high, log=d.kind == "loguniform")
        return out

    def to_json(self) -> Dict[str, Any]:
        """The spec as JSON (what the decision step reads back with :meth:`from_json`)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "space"}
        out["space"] = [[key, d.to_json()] for key, d in self.space]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SearchSpec:
        fields = {k: v for k, v in obj.items() if k in cls.__dataclass_fields__ and k != "space"}
        return cls(space=tuple((str(k), Dist.from_json(d)) for k, d in obj["space"]), **fields)

    @classmethod
    def from_section(cls, obj: Any, where: str = "search", source: Optional[Source] = None,
                     base: Optional[Mapping[str, Any]] = None) -> SearchSpec:
        """Validate a ``search:`` mapping.

        Args:
            obj: the section, as read from YAML (or built in Python).
            where: its key path, the prefix of every error's key path.
            source: the file and the line of each key path (``experiment.source.read_yaml``), for
                ``file.yaml:12: search.space.run.args.lr: ...`` errors.
            base: the experiment's config, where ``max_budget`` is read at the ``budget`` key.
        """
        s = source or Source()
        raw = check_mapping(obj, where, s, _SCHEMA)
        for key in ("algorithm", "metric", "trials"):
            if key not in raw:
                raise ConfigError(s.where(where), f"missing key {key!r} ({_MISSING[key]})")
        if "space" not in raw:
            raise ConfigError(s.where(where), "missing key 'space' (the keys to search and their distributions)")
        space = _check_space(raw.pop("space"), f"{where}.space", s)
        if raw.get("budget") and "max_budget" not in raw and base is not None:
            raw["max_budget"] = get_path(base, raw["budget"])
        try:
            return cls(space=space, **raw)
        except SpecError as e:
            at = e.key if e.key in raw or e.key == "space" else ("budget" if "budget" in raw else "")
            raise ConfigError(s.where(f"{where}.{at}" if at else where), e.msg) from None


_MISSING = {"algorithm": f"one of {', '.join(ALGORITHMS)}", "metric": "the metric to optimise, e.g. loss",
            "trials": "how many trials at most"}


def _one_of(choices: Tuple[str, ...]) -> Any:
    def check(v: Any, p: str, s: Source) -> str:
        text = t_str(v, p, s)
        if text not in choices:
            raise ConfigError(s.where(p), f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    return check


def _fraction(v: Any, p: str, s: Source) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ConfigError(s.where(p), f"expected a fraction between 0 and 1 (0.5: half the trials), got {type_name(v)} {v!r}")
    return float(v)


def _budget_key(v: Any, p: str, s: Source) -> str:
    key = t_str(v, p, s)
    if leaf_check(key) is None or not key.startswith(("run.args.", "run.env.")):
        raise ConfigError(s.where(p), f"expected the key a trial's length in steps is set at, such as run.args.steps"
                                      f" or run.env.STEPS, got {key!r}")
    return key


_SCHEMA = {
    "algorithm": _one_of(ALGORITHMS), "metric": t_str, "mode": _one_of(MODES), "trials": t_int(1),
    "parallel": t_int(1), "seed": t_int(0), "space": lambda v, p, s: v, "sampler": _one_of(SAMPLERS),
    "budget": _budget_key, "max_budget": t_int(1), "min_budget": t_int(1), "eta": t_int(2), "max_failures": _fraction,
    "max_trials": t_int(1),
}


def _check_space(v: Any, p: str, s: Source) -> Tuple[Tuple[str, Dist], ...]:
    """key -> distribution, written in the random-sweep grammar; each key one a sweep may set."""
    if not isinstance(v, dict) or not v:
        raise ConfigError(s.where(p), "expected a mapping of dot-path key to a distribution such as interval(0, 1),"
                                      " tag(log, interval(1e-5, 1e-1)), int(interval(1, 8)) or choice(a, b)")
    out = []
    for key, text in v.items():
        where = f"{p}.{key}"
        check = leaf_check(str(key))
        if check is None:
            raise ConfigError(s.where(where), f"{key!r} is not a key a search can set; use run.args.NAME, run.env.NAME"
                                              " or cluster.KEY" + (FLOW_HINT if "(" in str(key) else ""))
        dist = checked_distribution(text, check, where, s)
        if dist.kind == "choice" and not all(c is None or isinstance(c, (bool, int, float, str)) for c in dist.choices):
            raise ConfigError(s.where(where), "choices must be numbers, text, true/false or null")
        out.append((str(key), dist))
    return tuple(sorted(out, key=lambda kv: kv[0]))

