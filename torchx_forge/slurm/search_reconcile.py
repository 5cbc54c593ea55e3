"""How a search's decision sees its trials' jobs: each asked or running trial reconciled with Slurm's
answer (:func:`reconcile`), and ``forge retry``'s failed trials asked again (:func:`reask`)."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Callable, Collection, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core import layout
from torchx_forge.core.record import replace
from torchx_forge.core.states import Outcome, SlurmState
from torchx_forge.slurm.views import SEARCH_AGAIN
from torchx_forge.state.records import AppRecord
from torchx_forge.state.taskfile import TaskReport

#: Slurm end states after which a trial is run again (not a failure)
AGAIN = SEARCH_AGAIN


def trial_tag(submission: str, trial: Any) -> str:
    """The tag of ``trial``'s current job (its number, rung and attempt) in ``--comment``."""
    return f"{submission}-t{trial.number}r{trial.rung}a{trial.attempts}"


def trial_of_tag(tag: str) -> Optional[Tuple[int, int, int]]:
    """(number, rung, attempts) of a trial job's tag (:func:`trial_tag`); None for another tag."""
    m = re.search(r"-t(\d+)r(\d+)a(\d+)$", tag)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def stopped_from_outside(view: Any, reports: Mapping[str, TaskReport]) -> bool:
    """Did the task of ``view`` end FAILED because Slurm stopped it (its launcher says its program got a
    terminating signal from outside in this job)? A preemption with a grace time (Slurm's SIGTERM,
    then the job ends on its own) is accounted so, where a job that may not be requeued is concerned."""
    report = reports.get(layout.task_key(view.role, view.replica))
    last = report.history[-1] if report is not None and report.history else None
    return (view.slurm_state is SlurmState.FAILED and last is not None and last.job_key == view.key
            and last.outcome is Outcome.STOPPED)


def _view_finder(rec: AppRecord, views: Sequence[Any], submission: str) -> Callable[[Any], Optional[Any]]:
    """trial -> the task view of its current job (the job of its tag: its rung and attempt), or None."""
    by_tag = {j.tag: j for j in rec.jobs if j.tag}
    by_key = {v.key: v for v in views}

    def view_of(t: Any) -> Optional[Any]:
        job = by_tag.get(trial_tag(submission, t))
        return by_key.get(f"{job.job_id}_{t.number}") if job else None

    return view_of


def reconcile(spec: Any, trials: List[Any], rec: AppRecord, views: Sequence[Any], submission: str,
              reports: Mapping[str, TaskReport] = MappingProxyType({})) -> List[Any]:
    """Asked and running trials as Slurm has them now: a trial whose job (its current tag's) ended is
    PAUSED (exit 0 below its full length, under asha/hyperband), COMPLETE (exit 0), ASKED again with
    one more attempt (time limit, preemption, node failure: ``reports``, the tasks' state files, tell
    a preemption Slurm accounts as FAILED) or FAIL; one whose job runs, RUNNING."""
    from torchx_forge.search import TrialState, finished_value  # noqa: PLC0415
    from torchx_forge.search.spec import RUNG_ALGORITHMS  # noqa: PLC0415

    view_of = _view_finder(rec, views, submission)
    out = []
    for t in trials:
        view = view_of(t) if t.state.active else None
        if view is not None:
            st = view.slurm_state
            if st is SlurmState.COMPLETED:
                short = (spec.algorithm in RUNG_ALGORITHMS and t.budget is not None and spec.max_budget is not None
                         and t.budget < spec.max_budget)
                paused = short and t.objective is not None
                t = replace(t, state=TrialState.PAUSED) if paused else finished_value(t, {}, spec.metric)
            elif st in AGAIN or stopped_from_outside(view, reports):
                t = replace(t, state=TrialState.ASKED, attempts=t.attempts + 1)
            elif st.final:
                t = replace(t, state=TrialState.FAIL)
            elif st is SlurmState.RUNNING:
                t = replace(t, state=TrialState.RUNNING)
        out.append(t)
    return out


def reask(trials: List[Any], rec: AppRecord, views: Sequence[Any], submission: str, states: Collection[str]) -> List[Any]:
    """``forge retry``: the FAIL trials whose job ended in one of ``states`` (Slurm's words, e.g.
    CANCELLED), ASKED again with one more attempt: the same number and parameters, resumed from
    their checkpoint (their files otherwise as they were)."""
    from torchx_forge.search import TrialState  # noqa: PLC0415

    view_of = _view_finder(rec, views, submission)
    out = []
    for t in trials:
        view = view_of(t)
        if t.state is TrialState.FAIL and (view is None or view.slurm_state.value in states):
            t = replace(t, state=TrialState.ASKED, attempts=t.attempts + 1, told=False)
        out.append(t)
    return out
