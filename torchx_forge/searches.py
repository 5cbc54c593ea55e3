"""Adaptive searches as one AppDef (``forge.search``): the experiment's run swept over trial numbers.

The AppDef is a sweep role of ``trials`` replicas, replica k being trial k (its run has
``SEARCH_TRIAL=k`` in its env, so every trial has a run id and a checkpoint dir of its own); the
role's metadata carries the validated ``search:`` section (:data:`SEARCH_META`). On
``slurm_forge`` nothing of that array is submitted as such: :mod:`torchx_forge.slurm.search`
submits trial k's task when the search asks it, with its parameters in its trial file.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from torchx import specs

from torchx_forge.appdef.sweep import build_appdef
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.overrides import parse_overrides, set_path
from torchx_forge.experiment.source import Source, read_yaml
from torchx_forge.experiment.spec import Experiment, validate
from torchx_forge.search import SearchSpec
from torchx_forge.slurm.options import table_sink
from torchx_forge.slurm.search import SEARCH_META

#: the run env key that numbers the trials
TRIAL_KEY = "SEARCH_TRIAL"


def load_search(path: str, overrides: Sequence[str] = ()) -> Tuple[Experiment, SearchSpec]:
    """An experiment file with a ``search:`` section, read, overridden and validated (file:line errors)."""
    cfg, source = read_yaml(path)
    for key, value in parse_overrides(overrides):
        set_path(cfg, key, value)
        source.lines.pop(key, None)
    return from_config(cfg, source, os.path.dirname(os.path.abspath(path)))


def from_config(cfg: Mapping[str, Any], source: Source, workdir: str) -> Tuple[Experiment, SearchSpec]:
    """(the experiment of one trial, swept over the trial numbers; the search) from a config with ``search:``."""
    if "search" not in cfg:
        raise ConfigError(source.where(""), "missing key 'search' (algorithm, metric, trials, space): see forge.search")
    rest: Dict[str, Any] = {k: copy.deepcopy(v) for k, v in cfg.items() if k != "search"}
    if "sweep" in rest or "stages" in rest:
        key = "sweep" if "sweep" in rest else "stages"
        raise ConfigError(source.where(key), "a search picks its own trials: remove the sweep (or stages) section,"
                                             " or give its keys to search.space")
    spec = SearchSpec.from_section(cfg["search"], "search", source, base=rest)
    # a run for each trial the search may ever have (max_trials), compact: the table is a space
    rest["sweep"] = {"shared_axes": {f"run.env.{TRIAL_KEY}": f"range(0,{spec.ceiling})"}}
    return validate(rest, source, workdir), spec


def search_appdef(exp: Experiment, spec: SearchSpec, sink: Optional[Callable[[Any], str]] = None) -> specs.AppDef:
    """The AppDef of a search: the trials' sweep role, with the spec in its metadata (:data:`SEARCH_META`);
    its run table goes to ``sink`` (default: the configured state dir)."""
    app = build_appdef(exp, sink or table_sink())
    if len(app.roles) != 1:
        raise ConfigError("search", "every trial must have the same resources (one role)")
    app.roles[0].metadata[SEARCH_META] = spec.to_json()
    app.roles[0].num_replicas = spec.trials  # its table has max_trials runs: room for a raised budget
    app.metadata["forge/runs"] = str(spec.trials)
    return app
