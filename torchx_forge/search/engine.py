"""The decision between waves of a search (pure): given the trials so far, what to start, promote, prune.

:func:`decide` is a function of its inputs only. The Slurm side runs it in a short job whenever a
trial ends (or a slot frees up): it reads every trial file (folding in the reports with
:func:`~torchx_forge.search.trials.with_report`), calls ``decide(spec, trials, running)``, writes
the trials :func:`apply` returns (new files first), then submits the new and promoted trials.
Deciding again on the same trials gives the same decision, so a decision step killed halfway is
simply run again: nothing is asked twice, no report is lost.

Under ASHA and Hyperband a trial runs to its rung's budget, saves a checkpoint and stops (PAUSED);
the next decision promotes it (a larger budget: it resumes from its checkpoint, so no step is
computed twice) or prunes it, with optuna's successive halving: a trial goes on when it is in the
best 1/eta of the trials that reached its rung so far (the first ones go on when they lead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge.core.record import replace
from torchx_forge.search import study as studies
from torchx_forge.search.spec import RUNG_ALGORITHMS, SearchSpec
from torchx_forge.search.trials import Trial, TrialState


@dataclass(frozen=True)
class Decision:
    """What the search does next.

    Args:
        new: trials to write (state ASKED, with their number, params and budget) and then submit.
        promote: number -> budget: PAUSED trials to resume from their checkpoint with a larger budget
            (the same trial and number, one rung up).
        prune: numbers of PAUSED trials that stop here (PRUNED).
        failed: numbers to mark FAIL: ended without ever reporting the metric.
        told: numbers whose end this decision took into account for the first time (set ``told``).
        finished: every trial has ended and the budget of trials is spent: the search is over.
        stop_reason: the search must stop (nothing new was asked), e.g. too many failures.
    """

    new: Tuple[Trial, ...] = ()
    promote: Dict[int, int] = field(default_factory=dict)
    prune: Tuple[int, ...] = ()
    failed: Tuple[int, ...] = ()
    told: Tuple[int, ...] = ()
    finished: bool = False
    stop_reason: str = ""

    @property
    def over(self) -> bool:
        """Nothing more will run: finished, or stopped."""
        return self.finished or bool(self.stop_reason)


def check_numbers(trials: Sequence[Trial]) -> List[Trial]:
    """``trials`` sorted by number; ValueError unless they are 0, 1, ... n-1 (optuna numbers trials so,
    and a missing file would shift every later number)."""
    ordered = sorted(trials, key=lambda t: t.number)
    numbers = [t.number for t in ordered]
    if numbers != list(range(len(ordered))):
        missing = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        raise ValueError(f"search trials must be numbered 0..{len(ordered) - 1} once each;"
                         + (f" missing {missing}" if missing else "") + (f" twice: {dup}" if dup else ""))
    return ordered


def _no_result(t: Trial) -> bool:
    """Ended, or paused at a rung, without a value of the metric: a failure (a wrong metric name, a crash)."""
    return t.state in (TrialState.COMPLETE, TrialState.PAUSED) and t.objective is None


def failure_stop(spec: SearchSpec, trials: Sequence[Trial]) -> str:
    """Why the search must stop because too many trials failed, or "".

    The rate is failures over ended trials, but never over fewer than ``min(parallel, trials)``:
    the first failure of a wave of 8 does not stop a search, five failures out of its first 8 do.
    """
    failed = sum(t.state == TrialState.FAIL for t in trials)
    ended = sum(t.state.finished for t in trials)
    if failed and failed > spec.max_failures * max(ended, min(spec.parallel, spec.trials)):
        return f"search stopped: {failed} of {ended} trials failed (max_failures {spec.max_failures:g})"
    return ""


def decide(spec: SearchSpec, trials: Sequence[Trial], running: int = 0) -> Decision:
    """The next step of a search, from every trial so far (see the module docstring).

    Args:
        spec: the search.
        trials: every trial, numbered 0..n-1 (with their reports folded in).
        running: trials Slurm holds now (pending or running); the larger of it and the trials in
            state ASKED or RUNNING take slots.

    Returns a :class:`Decision`: new trials fill the free slots (``parallel`` minus the taken ones,
    promotions included) up to the budget of ``trials``; each PAUSED trial is promoted or pruned.
    """
    ordered = check_numbers(trials)
    failed = tuple(t.number for t in ordered if _no_result(t))
    seen = [replace(t, state=TrialState.FAIL) if t.number in failed else t for t in ordered]
    told = tuple(t.number for t in seen if t.state.finished and (not t.told or t.number in failed))
    stop = failure_stop(spec, seen)
    if stop:
        return Decision(failed=failed, told=told, stop_reason=stop)
    study = studies.rebuild(spec, seen)
    promote, prune = _judge_paused(spec, study, seen)
    taken = max(running, sum(t.state.active for t in seen)) + len(promote)
    n_new = max(0, min(spec.parallel - taken, spec.trials - len(seen)))
    dists = spec.distributions()
    new = []
    for _ in range(n_new):
        asked = study.ask(dists)
        new.append(Trial(asked.number, dict(asked.params), budget=_first_budget(spec, study, asked.number)))
    ended = {*prune, *failed}
    finished = not new and len(seen) >= spec.trials and all(t.state.finished or t.number in ended for t in seen)
    return Decision(tuple(new), promote, prune, failed, tuple(sorted({*told, *prune})), finished)


def _first_budget(spec: SearchSpec, study: Any, number: int) -> Optional[int]:
    """A new trial's budget: its first rung (asha: ``min_budget``; hyperband: its bracket's), else its full length."""
    if spec.algorithm in RUNG_ALGORITHMS:
        return studies.rung_step(spec, studies.bracket(spec, study, number), 0)
    return spec.max_budget


def _judge_paused(spec: SearchSpec, study: Any, trials: Sequence[Trial]) -> Tuple[Dict[int, int], Tuple[int, ...]]:
    """Promote or prune every PAUSED trial, in number order (each one judged competes with the next)."""
    paused = [t for t in trials if t.state == TrialState.PAUSED]
    if paused and spec.algorithm not in RUNG_ALGORITHMS:
        raise ValueError(f"trials {[t.number for t in paused]} are PAUSED, but {spec.algorithm} has no rungs:"
                         " a trial that reaches its full length is COMPLETE")
    promote: Dict[int, int] = {}
    prune: List[int] = []
    for t in paused:
        b = studies.bracket(spec, study, t.number)
        if _promotable(spec, study, t, b, trials):
            promote[t.number] = studies.rung_step(spec, b, t.rung + 1)
        else:
            prune.append(t.number)
            study.tell(t.number, state=studies._optuna().trial.TrialState.PRUNED)
    return promote, tuple(prune)


def _promotable(spec: SearchSpec, study: Any, trial: Trial, bracket: int, trials: Sequence[Trial]) -> bool:
    if not study.pruner.prune(study, study.get_trials(deepcopy=False)[trial.number]):
        if studies.rung_key(trial.rung) in study.get_trials(deepcopy=False)[trial.number].system_attrs:
            return True  # judged at its rung and kept
        # The pruner judges a trial only once its last step reaches its rung's step; a program that
        # stopped short of it (it reports every 10 steps, the rung is at 9) was not judged. Apply
        # the same rule plainly, to the value it had at its last step.
        return _plain_rule(spec, trial, bracket, trials)
    return False


def _plain_rule(spec: SearchSpec, trial: Trial, bracket: int, trials: Sequence[Trial]) -> bool:
    """ASHA's promotion rule: in the best 1/eta of the trials that reached this rung (the leader while
    fewer than eta did), as optuna's successive halving has it."""
    value = trial.objective
    if value is None or math.isnan(value):
        return False
    step = studies.rung_step(spec, bracket, trial.rung)
    rivals = [v for t in trials if t.number != trial.number and (v := studies.value_at(t, step)) is not None]
    sign = 1.0 if spec.mode == "min" else -1.0
    ranked = sorted(sign * v for v in [*rivals, value])
    return sign * value <= ranked[max(0, len(ranked) // spec.eta - 1)]


def apply(trials: Sequence[Trial], decision: Decision) -> List[Trial]:
    """The trials after ``decision``, in number order: promoted ones ASKED again one rung up with their
    new budget, pruned ones PRUNED, failed ones FAIL, told ones marked, new ones appended.
    The Slurm side writes every trial that changed (the new ones before submitting anything)."""
    out = []
    for t in check_numbers(trials):
        if t.number in decision.promote:
            t = replace(t, state=TrialState.ASKED, budget=decision.promote[t.number], rung=t.rung + 1)
        elif t.number in decision.prune:
            t = replace(t, state=TrialState.PRUNED)
        elif t.number in decision.failed:
            t = replace(t, state=TrialState.FAIL)
        if t.number in decision.told:
            t = replace(t, told=True)
        out.append(t)
    return out + list(decision.new)


def best(spec: SearchSpec, trials: Sequence[Trial]) -> Optional[Trial]:
    """The COMPLETE trial with the best value (the lowest number among equals), None before any."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and not math.isnan(t.value)]
    if not done:
        return None
    sign = 1.0 if spec.mode == "min" else -1.0
    return min(done, key=lambda t: (sign * (t.value or 0.0), t.number))


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def summary(spec: SearchSpec, trials: Sequence[Trial]) -> str:
    """A few lines for ``torchx status``: progress, the best trial with its parameters, and (asha,
    hyperband) how many trials stand at each rung now and how many reached it."""
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    done = count[TrialState.COMPLETE] + count[TrialState.PRUNED] + count[TrialState.FAIL]
    lines = [
        f"search {spec.algorithm}, {spec.mode} {spec.metric}: {done} of {spec.trials} trials done"
        f" ({count[TrialState.COMPLETE]} complete, {count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed),"
        f" {count[TrialState.RUNNING]} running, {count[TrialState.ASKED]} pending, {count[TrialState.PAUSED]} paused,"
        f" {max(0, spec.trials - len(trials))} not asked yet",
    ]
    top = best(spec, trials)
    if top is not None:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(top.params.items()))
        lines.append(f"best: trial {top.number}, {spec.metric} {_fmt(top.value)} ({params})")
    elif trials:
        lines.append("best: none complete yet")
    stop = failure_stop(spec, trials)
    if stop:
        lines.append(stop)
    if spec.algorithm in RUNG_ALGORITHMS and trials:
        cells = []
        for budget in sorted({t.budget for t in trials if t.budget is not None} | set(spec.rungs)):
            here = sum(t.budget == budget and not t.state.finished for t in trials)
            reached = sum(t.last_step is not None and t.last_step >= budget for t in trials)
            cells.append(f"{budget}: {here} now, {reached} reached")
        lines.append("rungs (steps): " + "; ".join(cells))
    return "\n".join(lines)
