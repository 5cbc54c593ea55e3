"""``torchx forge validate | preview`` of an experiment file with a ``search:`` section: the search
checked (file:line errors), and shown: its space, algorithm, budget, rungs and the first wave of
trials as the first decision asks them. Nothing is submitted."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any, List, Sequence

from torchx_forge.core.sampling import Dist
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.spec import Experiment
from torchx_forge.experiment.sweep import base_of
from torchx_forge.node.task import with_trial_params
from torchx_forge.search import SearchSpec, Trial, require_optuna
from torchx_forge.search.spec import RUNG_ALGORITHMS
from torchx_forge.searches import load_search
from torchx_forge.slurm.report import format_table


def dist_text(d: Dist) -> str:
    """A distribution as the files write it (``tag(log, interval(1e-05, 0.1))``), and what it draws."""
    bounds = f"{d.low:g}, {d.high:g}"
    text = {"uniform": f"interval({bounds})", "loguniform": f"tag(log, interval({bounds}))",
            "int": f"int(interval({int(d.low)}, {int(d.high)}))",
            "logint": f"tag(log, int(interval({int(d.low)}, {int(d.high)})))"}.get(d.kind)
    if text is None:
        return f"choice({', '.join(json.dumps(c) if not isinstance(c, str) else c for c in d.choices)})"
    return f"{text}  ({d.kind})"


def describe(spec: SearchSpec) -> List[str]:
    """The search in a few lines: algorithm, metric and mode, trials, space, budget and rungs."""
    lines = [f"search {spec.algorithm}: {spec.mode} {spec.metric}",
             f"trials: {spec.trials}, {spec.parallel} at a time; sampler {spec.sampler_name}, seed {spec.seed};"
             f" stops when more than {spec.max_failures:g} of them fail",
             "space:"]
    width = max(len(k) for k, _ in spec.space)
    lines += [f"  {key.ljust(width)}  {dist_text(d)}" for key, d in spec.space]
    if spec.algorithm in RUNG_ALGORITHMS:
        rungs = ", ".join(str(b) for b in spec.rungs)
        brackets = "; each bracket starts at one of them" if spec.algorithm == "hyperband" else ""
        lines.append(f"budget: {spec.budget} = {spec.max_budget} steps; rungs (steps): {rungs} (eta {spec.eta}: the best"
                     f" 1/{spec.eta} of a rung go on{brackets})")
    elif spec.budget:
        lines.append(f"budget: {spec.budget} = {spec.max_budget} steps")
    return lines


def first_wave(spec: SearchSpec) -> List[Trial]:
    """The first ``parallel`` trials as the search's first decision asks them (needs optuna)."""
    from torchx_forge.search import apply, decide  # noqa: PLC0415

    return apply([], decide(spec, [], 0))


def trial_command(exp: Experiment, trial: Trial) -> str:
    """The command line trial ``trial`` runs (the run's, with the trial's parameters added as a task adds them)."""
    from torchx_forge.core.runrow import resolve  # noqa: PLC0415

    argv = list(resolve(base_of(exp), ()).argv)
    return shlex.join(with_trial_params(argv, {}, trial.params))


def cmd_validate_search(config: str, overrides: Sequence[str]) -> None:
    """Check a search file (ConfigError at file:line); say what it would run."""
    _, spec = load_search(config, overrides)
    keys = ", ".join(k for k, _ in spec.space)
    rungs = f"; rungs at {', '.join(map(str, spec.rungs))} steps" if spec.algorithm in RUNG_ALGORITHMS else ""
    print(f"{config}: OK, search {spec.algorithm} ({spec.mode} {spec.metric}): {spec.trials} trial(s),"
          f" {spec.parallel} at a time, over {keys}{rungs}")
    try:
        require_optuna()
    except ConfigError as e:
        print(f"note: {e}", file=sys.stderr)


def cmd_preview_search(config: str, overrides: Sequence[str], as_json: bool) -> None:
    """The search, and its first wave of trials (a table, or one JSON object per trial)."""
    exp, spec = load_search(config, overrides)
    wave = first_wave(spec)
    if as_json:
        for t in wave:
            print(json.dumps({"trial": t.number, "budget": t.budget, "params": t.params}))
        return
    print(f"{config}:")
    print("\n".join(f"  {line}" for line in describe(spec)))
    print(f"first wave: {len(wave)} trial(s), as the first decision asks them (the next ones follow the results)")
    print(format_table(_wave_rows(exp, spec, wave)))


def _wave_rows(exp: Experiment, spec: SearchSpec, wave: Sequence[Trial]) -> List[List[str]]:
    keys = [k for k, _ in spec.space]
    rungs = spec.algorithm in RUNG_ALGORITHMS
    rows = [["TRIAL", *(["BUDGET"] if rungs else []), *keys, "COMMAND"]]
    for t in wave:
        rows.append([str(t.number), *([str(t.budget)] if rungs else []), *(_cell(t.params.get(k)) for k in keys),
                     trial_command(exp, t)])
    return rows


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)

