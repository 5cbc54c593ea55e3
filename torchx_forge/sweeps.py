"""Sweeps and pipelines from Python, for launch scripts: the experiment files' model, as data.

An experiment is the same thing an experiment file holds, given as a dict or as the dataclasses
below; it goes through the same validation (the same errors, naming the key path), and the
result is an AppDef for any TorchX scheduler (job arrays on ``slurm_forge``)::

    from torchx.runner import get_runner
    from torchx_forge import sweeps

    exp = sweeps.Experiment(
        name="lr",
        run=sweeps.Run(command=["python", "train.py"], args={"epochs": 3}),
        cluster={"cpus_per_task": 2, "time_limit": "00:30:00"},
        sweep=sweeps.Sweep(
            shared_axes={"run.args.lr": sweeps.logspace(1e-4, 1e-1, 4), "run.args.seed": range(3)},
            random=sweeps.Random(samples=20, seed=0, params={"run.args.wd": sweeps.loguniform(1e-6, 1e-2)}),
        ),
    )
    with get_runner() as runner:
        handle = runner.run(sweeps.appdef(exp), scheduler="slurm_forge")

Axis values may be lists, tuples, ``range`` objects, any other iterable (a generator, a numpy
array), :func:`linspace`, :func:`logspace`, :func:`choice`, or a string in the files' grammar
(``"logspace(1e-4, 1e-1, 4)"``). Random-search keys take :func:`uniform`, :func:`loguniform`,
:func:`randint`, :func:`logint`, :func:`choice` (or a list), or a string (``"tag(log,
interval(1e-5, 1e-1))"``). :func:`pipeline` takes a pipeline (``stages:``) the same way, and
:func:`search` an adaptive search (a file's ``search:`` section, on ``slurm_forge``)::

    app = sweeps.search(
        sweeps.Experiment(name="height", run=sweeps.Run(command=["python", "height.py"], args={"steps": 27})),
        sweeps.Search(algorithm="asha", metric="loss", trials=16, parallel=4, budget="run.args.steps",
                      space={"run.args.width": sweeps.uniform(0, 20), "run.args.opt": sweeps.choice("adam", "sgd")}),
    )
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sized, TypeVar, Union

from torchx import specs

from torchx_forge.appdef.stages import build_steps
from torchx_forge.appdef.sweep import build_appdef
from torchx_forge.core import envvars
from torchx_forge.core.axes import IntRange, Linspace, Listed, Logspace, Values
from torchx_forge.core.record import fields
from torchx_forge.core.sampling import Dist
from torchx_forge.core.space import check_size, sweep_limit
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.source import Source
from torchx_forge.experiment.spec import Experiment as ValidExperiment
from torchx_forge.experiment.spec import validate
from torchx_forge.experiment.stages import check_pipeline_config, stages_of
from torchx_forge.searches import from_config, search_appdef
from torchx_forge.slurm.options import table_sink

__all__ = [
    "Case", "Experiment", "Random", "Run", "Search", "Sweep", "appdef", "choice", "experiment", "linspace", "logint",
    "logspace", "loguniform", "pipeline", "randint", "search", "table_sink", "uniform",
]


# -- values ------------------------------------------------------------------------------------


def linspace(start: float, stop: float, num: int) -> Values:
    """``num`` evenly spaced values from ``start`` to ``stop``, both included."""
    return _made(lambda: Linspace(start, stop, num), f"linspace({start}, {stop}, {num})")


def logspace(start: float, stop: float, num: int) -> Values:
    """``num`` values evenly spaced on a log scale from ``start`` to ``stop`` (the values, not exponents)."""
    return _made(lambda: Logspace(start, stop, num), f"logspace({start}, {stop}, {num})")


def choice(*values: Any) -> Values:
    """These values: a grid axis, or (under ``random``) one of them, each as likely."""
    return Listed(tuple(values))


def uniform(low: float, high: float) -> Dist:
    """A float, uniform in [low, high] (Hydra's ``interval(low, high)``)."""
    return _made(lambda: Dist("uniform", float(low), float(high)), f"uniform({low}, {high})")


def loguniform(low: float, high: float) -> Dist:
    """A float, log-uniform in [low, high] (``tag(log, interval(low, high))``)."""
    return _made(lambda: Dist("loguniform", float(low), float(high)), f"loguniform({low}, {high})")


def randint(low: int, high: int) -> Dist:
    """A whole number in [low, high], both included (``int(interval(low, high))``)."""
    return _made(lambda: Dist("int", low, high), f"randint({low}, {high})")


def logint(low: int, high: int) -> Dist:
    """A whole number in [low, high], log-uniform (``tag(log, int(interval(low, high)))``)."""
    return _made(lambda: Dist("logint", low, high), f"logint({low}, {high})")


T = TypeVar("T")


def _made(make: Callable[[], T], what: str) -> T:
    try:
        return make()
    except ValueError as e:
        raise ConfigError(what, str(e)) from None


def _axis(values: Any, where: str) -> Any:
    """Python axis values as the validator reads them: generators and strings as they are, a
    ``range`` as a generator, any other iterable as a list (no longer than the sweep limit: a
    generator that never ends is refused, not listed forever)."""
    if isinstance(values, (Values, str, list)):
        return values
    if isinstance(values, range):  # bool(), not len(): len() fails above sys.maxsize
        return IntRange(values.start, values.stop, values.step) if values else list(values)
    if isinstance(values, Iterable):
        if isinstance(values, Sized):
            check_size(len(values), where, f"the {type(values).__name__}")
        limit = sweep_limit()
        listed = list(itertools.islice(values, limit + 1))
        if len(listed) > limit:
            raise ConfigError(where, f"the {type(values).__name__} gives more than the {limit:,} values a sweep may"
                                     f" have (${envvars.SWEEP_LIMIT.name}); give a list, a range or sweeps.linspace()")
        return [v.item() if hasattr(v, "item") else v for v in listed]  # numpy scalars as Python numbers
    return values  # the validator names what is wrong with it


def _random_param(values: Any, where: str) -> Any:
    """A random-search key given in Python: a ``range`` as whole numbers (never listed), a tuple or
    Listed as its choices; anything else as it is (the validator reads it)."""
    if isinstance(values, range) and values and values.step == 1:
        return Dist("int", values.start, values.stop - 1)
    if isinstance(values, range):
        check_size(IntRange(values.start, values.stop, values.step).size if values else 0, where, str(values))
    return list(values) if isinstance(values, (Listed, tuple, range)) else values


# -- the experiment as dataclasses -------------------------------------------------------------


@dataclass
class Run:
    """The ``run:`` section: the program, its arguments (``--key value``) and environment."""

    command: Union[str, List[str]]
    args: Dict[str, Any] = field(default_factory=dict)
    env: Dict[str, Any] = field(default_factory=dict)
    workdir: Optional[str] = None
    resume_arg: Union[bool, str, None] = None
    checkpoint_dir: Optional[str] = None


@dataclass
class Case:
    """One case of a sweep: its name, fixed values and its own axes."""

    name: str
    set: Dict[str, Any] = field(default_factory=dict)
    axes: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Random:
    """A random search: ``samples`` draws of ``params`` (key -> distribution) with ``seed``."""

    samples: int
    params: Dict[str, Any]
    seed: int = 0


@dataclass
class Sweep:
    """The ``sweep:`` section (slurmforge's semantics and order)."""

    shared_axes: Dict[str, Any] = field(default_factory=dict)
    cases: List[Case] = field(default_factory=list)
    random: Optional[Random] = None
    max_runs: Optional[int] = None
    enabled: bool = True


@dataclass
class Experiment:
    """An experiment, as an experiment file holds it (``cluster``, ``retry`` and ``artifacts`` are
    the files' sections, as dicts)."""

    name: str
    run: Union[Run, Dict[str, Any]]
    cluster: Dict[str, Any] = field(default_factory=dict)
    sweep: Union[Sweep, Dict[str, Any], None] = None
    retry: Dict[str, Any] = field(default_factory=dict)
    artifacts: Dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class Search:
    """The ``search:`` section (see :mod:`torchx_forge.search.spec`); ``space`` maps a key to a
    distribution: :func:`uniform`, :func:`loguniform`, :func:`randint`, :func:`logint`,
    :func:`choice` (or a list), a ``range`` (whole numbers) or a string in the files' grammar.
    Fields left None take the section's defaults."""

    algorithm: str
    metric: str
    trials: int
    space: Dict[str, Any]
    mode: Optional[str] = None
    parallel: Optional[int] = None
    seed: Optional[int] = None
    sampler: Optional[str] = None
    budget: Optional[str] = None
    max_budget: Optional[int] = None
    min_budget: Optional[int] = None
    eta: Optional[int] = None
    max_failures: Optional[float] = None


def _plain(obj: Any) -> Any:
    """Dataclasses as the dicts of an experiment file (unset fields left out), axes made readable."""
    if isinstance(obj, (Values, Dist)):
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if value is None or (isinstance(value, (dict, list, str)) and not value) or (f.name == "enabled" and value is True):
                continue
            out[f.name] = _plain(value)
        return out
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def to_config(exp: Union[Experiment, Mapping[str, Any]]) -> Dict[str, Any]:
    """The experiment as the dict an experiment file would give, with Python axis values converted."""
    cfg: Dict[str, Any] = _plain(exp) if isinstance(exp, Experiment) else _plain(dict(exp))
    sweep = cfg.get("sweep")
    if isinstance(sweep, dict):
        if isinstance(sweep.get("shared_axes"), dict):
            sweep["shared_axes"] = {k: _axis(v, f"sweep.shared_axes.{k}") for k, v in sweep["shared_axes"].items()}
        for i, case in enumerate(sweep.get("cases") or []):
            if isinstance(case, dict) and isinstance(case.get("axes"), dict):
                case["axes"] = {k: _axis(v, f"sweep.cases.{i}.axes.{k}") for k, v in case["axes"].items()}
        rnd = sweep.get("random")
        if isinstance(rnd, dict) and isinstance(rnd.get("params"), dict):
            rnd["params"] = {k: _random_param(v, f"sweep.random.params.{k}") for k, v in rnd["params"].items()}
    return cfg


def experiment(exp: Union[Experiment, Mapping[str, Any]], base_dir: Optional[str] = None) -> ValidExperiment:
    """Validate an experiment given in Python (ConfigError naming the key path, as for files);
    relative paths are relative to ``base_dir`` (default: the current directory)."""
    cfg = to_config(exp)
    name = cfg.get("name") if isinstance(cfg.get("name"), str) else "experiment"
    return validate(cfg, Source(f"experiment {name!r}"), base_dir or os.getcwd())


# -- AppDefs -----------------------------------------------------------------------------------


def appdef(exp: Union[Experiment, Mapping[str, Any]], local_parallel: Optional[int] = None,
           state_dir: Optional[str] = None) -> specs.AppDef:
    """The AppDef of an experiment: one role per resource shape, one replica per run."""
    return build_appdef(experiment(exp), table_sink(state_dir), local_parallel=local_parallel)


def pipeline(cfg: Mapping[str, Any], local_parallel: Optional[int] = None, state_dir: Optional[str] = None,
             base_dir: Optional[str] = None) -> specs.AppDef:
    """The AppDef of a pipeline given as a dict (what a pipeline file holds: ``name`` and ``stages``,
    each stage an experiment plus ``after``, ``per_run``, ``when``, ``inputs``)."""
    plain = _plain(dict(cfg))
    for stage in (plain.get("stages") or {}).values() if isinstance(plain.get("stages"), dict) else ():
        if isinstance(stage, dict) and stage.get("sweep") is not None:
            stage["sweep"] = to_config({"sweep": stage["sweep"]})["sweep"]
    source = Source(f"pipeline {plain.get('name')!r}")
    check_pipeline_config(plain, source)
    name, stages = stages_of(plain, source, base_dir or os.getcwd())
    pipe, _ = build_steps(name, stages, table_sink(state_dir), local_parallel)
    return pipe.to_appdef()


def search(exp: Union[Experiment, Mapping[str, Any]], search: Union[Search, Mapping[str, Any], None] = None,
           state_dir: Optional[str] = None, base_dir: Optional[str] = None) -> specs.AppDef:
    """The AppDef of an adaptive search (what ``forge.search --config`` builds from a file): ``exp``
    is a trial's experiment, a dict of which may hold the ``search`` section itself (as a file does),
    else it is ``search`` (a :class:`Search` or a dict). Submit it to ``slurm_forge``. Problems are
    ConfigErrors naming the key path (``search.space.run.args.lr``); relative paths are relative to
    ``base_dir`` (default: the current directory)."""
    cfg = to_config(exp)
    if search is not None:
        if "search" in cfg:
            raise ConfigError("search", "given twice: in the experiment and as search=; give it once")
        cfg["search"] = _plain(search)
    section = cfg.get("search")
    if isinstance(section, dict) and isinstance(section.get("space"), dict):
        section["space"] = {k: _random_param(v, f"search.space.{k}") for k, v in section["space"].items()}
    name = cfg.get("name") if isinstance(cfg.get("name"), str) else "search"
    valid, spec = from_config(cfg, Source(f"experiment {name!r}"), base_dir or os.getcwd())
    return search_appdef(valid, spec, table_sink(state_dir))
