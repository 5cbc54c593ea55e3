"""torchx-forge components: hyperparameter sweeps as one AppDef.

Run them with any scheduler; on ``slurm_forge`` every role becomes a job array::

    torchx run --scheduler slurm_forge forge.sweep --config exp.yaml --set 'run.args.epochs=5'
    torchx run --scheduler slurm_forge forge.grid --axes 'lr=[0.1,0.01];bs=[32,64]' -- python train.py
    torchx run --scheduler local_cwd forge.sweep --config exp.yaml --local_parallel 2
    torchx run --scheduler slurm_forge forge.pipeline --config pipe.yaml

(This file must not use ``from __future__ import annotations``: TorchX reads the
real annotations to build each component's command line.)
"""

import os
from typing import Any, Callable, Dict, Optional

from torchx import specs

from torchx_forge.appdef.stages import pipeline_appdef
from torchx_forge.appdef.sweep import build_appdef
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.overrides import parse_overrides
from torchx_forge.experiment.source import Source
from torchx_forge.experiment.spec import load_experiment, validate
from torchx_forge.slurm.options import configured_state_dir, state_dir_error
from torchx_forge.state.store import Store


def _tables() -> Callable[[Dict[str, Any]], str]:
    """Where run tables go: the state dir, where the compute nodes read them (a clear error if it
    cannot take them)."""
    store = Store(configured_state_dir())

    def put(table: Dict[str, Any]) -> str:
        try:
            return store.put_table(table)
        except OSError as e:
            raise state_dir_error(store.url, e) from None

    return put


def sweep(*overrides: str, config: str, set: Optional[str] = None, local_parallel: int = 0) -> specs.AppDef:
    """Expands an experiment file (YAML) into one AppDef: a role per resource shape, a replica per run.

    Args:
        overrides: KEY=VALUE overrides of any key, typed as YAML (e.g. run.args.epochs=5)
        config: path to the experiment YAML file
        set: overrides separated by ';' (e.g. 'run.args.lr=0.1;sweep.max_runs=4')
        local_parallel: outside Slurm (e.g. local_cwd), run at most this many points at once
            (default: cluster.array_parallelism, else all)
    """
    texts = ([set] if set else []) + list(overrides)
    exp = load_experiment(config, texts)
    return build_appdef(exp, _tables(), local_parallel=local_parallel or None)


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
) -> specs.AppDef:
    """A one-off grid sweep of a command, no file needed: every combination of the axes is a run.

    Args:
        command: the program and its fixed arguments (after --)
        axes: 'KEY=[v1,v2];KEY2=[...]'; a KEY without dots is an argument (--KEY v), otherwise any
            experiment key such as run.env.SEED or cluster.cpus_per_task
        name: experiment name (names the jobs and the role)
        cpus: CPUs per run
        gpus: GPUs per node per run
        mem: memory per node, e.g. 4G
        nodes: nodes per run
        time: time limit per run (Slurm format)
        max_runs: keep only the first N runs (0: all)
        local_parallel: outside Slurm, run at most this many points at once
    """
    if not command:
        raise ConfigError("forge.grid", "give the command to sweep after --, e.g. -- python train.py")
    shared: Dict[str, Any] = {}
    for key, values in parse_overrides([axes]):
        path = key if "." in key else f"run.args.{key}"
        if path in shared:
            raise ConfigError(f"forge.grid --axes {key}", "is given twice; give each axis once, with all its values")
        shared[path] = values if isinstance(values, list) else [values]
    cluster: Dict[str, Any] = {"cpus_per_task": cpus, "gpus_per_node": gpus, "nodes": nodes}
    if mem:
        cluster["mem"] = mem
    if time:
        cluster["time_limit"] = time
    sweep_section: Dict[str, Any] = {"shared_axes": shared}
    if max_runs:
        sweep_section["max_runs"] = max_runs
    cfg = {"name": name, "run": {"command": list(command)}, "cluster": cluster, "sweep": sweep_section}
    exp = validate(cfg, Source("forge.grid --axes"), os.getcwd())
    return build_appdef(exp, _tables(), local_parallel=local_parallel or None)


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
    texts = ([set] if set else []) + list(overrides)
    return pipeline_appdef(config, texts, _tables(), local_parallel=local_parallel or None)
