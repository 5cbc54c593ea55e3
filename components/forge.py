"""torchx-forge components: hyperparameter sweeps as one AppDef.

Run them with any scheduler; on ``slurm_forge`` every role becomes a job array::

    torchx run --scheduler slurm_forge forge.sweep --config exp.yaml --set 'run.args.epochs=5'
    torchx run --scheduler slurm_forge forge.grid --axes 'lr=[0.1,0.01];bs=[32,64]' -- python train.py
    torchx run --scheduler local_cwd forge.sweep --config exp.yaml --local_parallel 2
    torchx run --scheduler slurm_forge forge.pipeline --config pipe.yaml

(This file must not use ``from __future__ import annotations``: TorchX reads the
real annotations to build each component's command line.) Each component builds its AppDef
inside ``component_errors()``: TorchX reports a bad argument or experiment file in one line.
"""

import os
from typing import Any, Callable, Dict, Optional

from torchx import specs

from torchx_forge.appdef.stages import pipeline_appdef
from torchx_forge.appdef.sweep import build_appdef
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.generators import is_call
from torchx_forge.experiment.overrides import parse_overrides
from torchx_forge.experiment.source import Source
from torchx_forge.experiment.spec import load_experiment, validate
from torchx_forge.searches import from_config, load_search, search_appdef
from torchx_forge.sweeps import table_sink
from torchx_forge.torchx_errors import component_errors


def sweep(*overrides: str, config: str, set: Optional[str] = None, local_parallel: int = 0) -> specs.AppDef:
    """Expands an experiment file (YAML) into one AppDef: a role per resource shape, a replica per run.

    Args:
        overrides: KEY=VALUE overrides of any key, typed as YAML (e.g. run.args.epochs=5)
        config: path to the experiment YAML file
        set: overrides separated by ';' (e.g. 'run.args.lr=0.1;sweep.max_runs=4')
        local_parallel: outside Slurm (e.g. local_cwd), run at most this many points at once
            (default: cluster.array_parallelism, else all)
    """
    with component_errors():
        texts = ([set] if set else []) + list(overrides)
        exp = load_experiment(config, texts)
        return build_appdef(exp, table_sink(), local_parallel=local_parallel or None)


def grid(
    *command: str,
    axes: str,
    name: str = "grid",
    cpus: int = 1,
    gpus: int = 0,
    mem: str = "",
    nodes: int = 1,
    time: str = "",
    max_runs: int = 0,
    local_parallel: int = 0,
    random: str = "",
    samples: int = 0,
    seed: int = 0,
) -> specs.AppDef:
    """A one-off sweep of a command, no file needed: every combination of the axes is a run
    (times ``samples`` random draws of the ``random`` keys, for a random search).

    Args:
        command: the program and its fixed arguments (after --)
        axes: 'KEY=[v1,v2];KEY2=range(0,100)'; a KEY without dots is an argument (--KEY v),
            otherwise any experiment key such as run.env.SEED or cluster.cpus_per_task. Values:
            a list, or range(start,stop[,step]), linspace(start,stop,num), logspace(start,stop,num),
            choice(a,b,...)
        random: random-search keys, 'KEY=DIST;...' with DIST interval(lo,hi), tag(log,interval(lo,hi)),
            int(interval(lo,hi)) or choice(a,b,...); needs samples
        name: experiment name (names the jobs and the role)
        cpus: CPUs per run
        gpus: GPUs per node per run
        mem: memory per node, e.g. 4G
        nodes: nodes per run
        time: time limit per run (Slurm format)
        max_runs: keep only the first N runs (0: all)
        local_parallel: outside Slurm, run at most this many points at once
        samples: random search: how many draws of the random keys (with each grid point)
        seed: random search: the seed (the same seed gives the same runs and run ids)
    """
    with component_errors():
        if not command:
            raise ConfigError("forge.grid", "give the command to sweep after --, e.g. -- python train.py")
        shared = _keyed("axes", axes, lambda v: v if isinstance(v, list) or is_call(v) else [v])
        sweep_section: Dict[str, Any] = {"shared_axes": shared} if shared else {}
        if random or samples:
            if not (random and samples):
                raise ConfigError("forge.grid --random/--samples", "a random search needs both: the keys to draw"
                                  " (--random 'lr=tag(log,interval(1e-5,1e-1))') and how many draws (--samples N)")
            sweep_section["random"] = {"samples": samples, "seed": seed, "params": _keyed("random", random, lambda v: v)}
        cluster: Dict[str, Any] = {"cpus_per_task": cpus, "gpus_per_node": gpus, "nodes": nodes}
        if mem:
            cluster["mem"] = mem
        if time:
            cluster["time_limit"] = time
        if max_runs:
            sweep_section["max_runs"] = max_runs
        cfg = {"name": name, "run": {"command": list(command)}, "cluster": cluster, "sweep": sweep_section}
        exp = validate(cfg, Source("forge.grid"), os.getcwd())
        return build_appdef(exp, table_sink(), local_parallel=local_parallel or None)


def _keyed(option: str, text: str, value: Callable[[Any], Any]) -> Dict[str, Any]:
    """``'lr=[1,2];run.env.X=range(0,3)'`` -> {run.args.lr: ..., run.env.X: ...}; each key once."""
    out: Dict[str, Any] = {}
    for key, raw in parse_overrides([text] if text else []):
        path = key if "." in key else f"run.args.{key}"
        if path in out:
            raise ConfigError(f"forge.grid --{option} {key}", "is given twice; give each key once, with all its values")
        out[path] = value(raw)
    return out


def pipeline(*overrides: str, config: str, set: Optional[str] = None, local_parallel: int = 0) -> specs.AppDef:
    """Runs a pipeline of steps from an experiment file with ``stages:`` (e.g. prepare -> train sweep -> eval per run -> compare).

    On slurm_forge every step becomes its own jobs, wired with Slurm dependencies
    (afterok; aftercorr for per-run steps); on local_cwd steps wait for each other.

    Args:
        overrides: KEY=VALUE overrides, typed as YAML (e.g. stages.train.run.args.lr=0.1)
        config: path to the pipeline YAML file
        set: overrides separated by ';'
        local_parallel: outside Slurm, run at most this many runs of a step at once
    """
    with component_errors():
        texts = ([set] if set else []) + list(overrides)
        return pipeline_appdef(config, texts, table_sink(), local_parallel=local_parallel or None)


def search(
    *command: str,
    config: str = "",
    set: Optional[str] = None,
    space: str = "",
    metric: str = "loss",
    mode: str = "min",
    trials: int = 16,
    max_trials: int = 0,
    parallel: int = 4,
    algorithm: str = "tpe",
    seed: int = 0,
    budget: str = "",
    name: str = "search",
    cpus: int = 1,
    mem: str = "",
    time: str = "",
) -> specs.AppDef:
    """An adaptive search (random, tpe, asha, hyperband): trials asked by decision steps that run as
    short Slurm jobs, each trial one job, ``parallel`` at a time; no process stays on the login node.

    Args:
        command: the program and its fixed arguments (after --), without --config
        config: an experiment file with a search: section (then the other options but set are ignored)
        set: overrides of the file separated by ';' (e.g. 'search.trials=8')
        space: 'KEY=DIST;...' with DIST interval(lo,hi), tag(log,interval(lo,hi)), int(interval(lo,hi)),
            choice(a,b,...); a KEY without dots is an argument (--KEY v)
        metric: the metric the program reports (runtime.report)
        mode: min or max
        trials: how many trials at most
        max_trials: how high `torchx forge budget` may raise trials while it runs (default: trials)
        parallel: trials running at once
        algorithm: random, tpe, asha or hyperband
        seed: the sampler's seed
        budget: asha/hyperband: KEY=STEPS, the argument that sets a trial's length (e.g. steps=27)
        name: the search's name (names the jobs and the role)
        cpus: CPUs per trial
        mem: memory per trial, e.g. 4G
        time: time limit per trial (Slurm format)
    """
    with component_errors():
        if config:
            exp, spec = load_search(config, [set] if set else [])
            return search_appdef(exp, spec)
        if not command:
            raise ConfigError("forge.search", "give an experiment file (--config exp.yaml) or the command after --,"
                              " e.g. -- python train.py")
        if not space:
            raise ConfigError("forge.search --space", "give the keys to search: 'lr=tag(log,interval(1e-5,1e-1));...'")
        section: Dict[str, Any] = {"algorithm": algorithm, "metric": metric, "mode": mode, "trials": trials,
                                   "parallel": parallel, "seed": seed, "space": _keyed("space", space, lambda v: v)}
        if max_trials:
            section["max_trials"] = max_trials
        run: Dict[str, Any] = {"command": list(command)}
        if budget:
            key, _, steps = budget.partition("=")
            path = key if "." in key else f"run.args.{key}"
            section["budget"] = path
            if path.startswith("run.args.") and steps:
                run["args"] = {path[len("run.args."):]: int(steps)}
            elif steps:
                section["max_budget"] = int(steps)
        cluster: Dict[str, Any] = {"cpus_per_task": cpus}
        if mem:
            cluster["mem"] = mem
        if time:
            cluster["time_limit"] = time
        cfg = {"name": name, "run": run, "cluster": cluster, "search": section}
        exp, spec = from_config(cfg, Source("forge.search"), os.getcwd())
        return search_appdef(exp, spec)
