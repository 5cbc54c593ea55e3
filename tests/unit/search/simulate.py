"""Searches run in-process: decide, "run" each trial by computing a function, record, decide again.

What the Slurm side will do, without Slurm: one trial runs at a time (the lowest-numbered pending
one), so slots free up one by one as they would with asynchronous top-up.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, List, Tuple

from torchx_forge.search import SearchSpec, Trial, TrialState, apply, decide

Objective = Callable[[Dict[str, Any], int], float]  # params, step -> value


def height(params: Dict[str, Any], step: int) -> float:
    """Syne Tune's "height" learning curve: better with steps, best at width 20, height -100."""
    width, h = params["run.args.width"], params["run.args.height"]
    return float((0.1 + width * step / 100) ** -1 + h * 0.1)


def run_trial(spec: SearchSpec, trial: Trial, f: Objective, fail: Callable[[Trial], bool] = lambda t: False) -> Tuple[Trial, int]:
    """The trial after its job: steps from where it stopped (its checkpoint) to its budget. Returns it and the steps run."""
    if fail(trial):
        return replace(trial, state=TrialState.FAIL, attempts=trial.attempts + 1), 0
    budget = trial.budget or spec.max_budget or 1
    start = (trial.last_step or 0) + 1
    inter = dict(trial.intermediate)
    for step in range(start, budget + 1):
        inter[step] = f(trial.params, step)
    full = spec.max_budget or 1
    state = TrialState.COMPLETE if budget >= full else TrialState.PAUSED
    value = inter[budget] if state == TrialState.COMPLETE else None
    return replace(trial, state=state, intermediate=inter, value=value, attempts=trial.attempts + 1), budget + 1 - start


def simulate(spec: SearchSpec, f: Objective, max_steps: int = 10**9, fail: Callable[[Trial], bool] = lambda t: False,
             ) -> Tuple[List[Trial], int, List[Any]]:
    """Run a whole search: (trials, trial-steps spent, decisions). Stops when the search is over or
    ``max_steps`` trial-steps are spent."""
    trials: List[Trial] = []
    spent = 0
    decisions = []
    for _ in range(10_000):
        d = decide(spec, trials, running=0)
        decisions.append(d)
        trials = apply(trials, d)
        if d.over:
            return trials, spent, decisions
        pending = [t for t in trials if t.state == TrialState.ASKED]
        if not pending or spent >= max_steps:
            return trials, spent, decisions
        t, steps = run_trial(spec, pending[0], f, fail)
        spent += steps
        trials[t.number] = t
    raise AssertionError("the search did not end")
