"""A search as the user's commands see it: its summary in ``torchx status``, a decision job brought
back when none is left, and ``torchx forge retry``.

**No decision job left** (:func:`revive`, from every status of a search not over): a search moves
only when a decision job runs, and each trial job has its own. A decision killed for good (its job
cancelled, or killed more times than it runs again) before it submitted the decision job of a trial
it had just submitted, or the last decision killed before it wrote the trials' ends, leaves a
search that no job will move. When none of the search's decision jobs may still run while its
trial files say it is not over (trials not all asked and ended, no failure cap reached), the
status submits one decision job for the whole search and says so.

**Retry** (:func:`retry_search`, ``torchx forge retry`` of a search): the search is no longer
cancelled, and one decision job for the whole search asks its trials that ended in the given
Slurm states (by default any but COMPLETED: cancelled, failed, timed out ...) again, one more
attempt each, with their number and parameters (they resume from their checkpoint), then goes on
as every decision does. A search stopped by its failure cap goes on too: its failed trials are
asked again, so they no longer count as failures.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from torchx_forge.core import envvars, layout
from torchx_forge.core.states import SlurmState
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.parse import tag_in
from torchx_forge.slurm.resubmit import LIVE
from torchx_forge.slurm.search import open_search
from torchx_forge.slurm.search_budget import write_budget
from torchx_forge.slurm.search_reconcile import reask, reconcile
from torchx_forge.slurm.status import Gathered
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord, Records


def read_search(records: Records, rec: AppRecord) -> Tuple[Any, List[Any]]:
    """(the SearchSpec, every trial in number order, reports folded in) of a search app, from its
    files as the last decision left them; FileNotFoundError without a spec.json."""
    search, _, _ = open_search(SlurmCli(), records, rec)
    return search.spec, search.trials()


def over(spec: Any, trials: Sequence[Any]) -> bool:
    """Do the trial files say the search has ended: every trial asked and ended, or the failure cap reached?"""
    from torchx_forge.search.engine import failure_stop  # noqa: PLC0415

    return bool(failure_stop(spec, trials)) or (len(trials) >= spec.trials and all(t.state.finished for t in trials))


def hold_open(records: Records, recs: Sequence[AppRecord], found: Gathered) -> None:
    """A search is over only once its decision jobs have taken every trial's end: a trial job that
    ended COMPLETED while the trial's file says it still runs may yet be promoted (asha: a new job)
    or be the best, and the status would go from SUCCEEDED back to RUNNING. Its view is pending
    until a decision has taken the end, and the app is not frozen. Read only when every task of a
    search has ended (before, the app runs anyway)."""
    for rec in recs:
        views = found.views.get(rec.app_id, [])
        if (not rec.meta.search or rec.final is not None or not views
                or not all(v.final and not v.retry_pending for v in views)
                or not any(v.slurm_state is SlurmState.COMPLETED for v in views)):
            continue
        try:
            if records.cancelled(rec.app_id):
                continue
            spec, trials = read_search(records, rec)
        except (ForgeError, OSError, ValueError, KeyError):  # status answers anyway, from Slurm's ends
            continue
        if over(spec, trials):
            continue
        by_number = {t.number: t for t in trials}
        waiting = [v for v in views if v.slurm_state is SlurmState.COMPLETED
                   and v.replica in by_number and not by_number[v.replica].state.finished]
        for v in waiting:
            v.retry_pending = True
            v.reason = "COMPLETED: the search's decision job takes its end next (decision job pending)"
        if waiting:
            found.settled = [r for r in found.settled if r.app_id != rec.app_id]


def deciding(cli: SlurmCli, rec: AppRecord) -> bool:
    """May one of the search's decision jobs still run (pending, running, requeued)? One squeue: its
    live decision and relay jobs, by their names and the search's tag (a decision job a trial's
    script submitted links itself to the app only as it starts: the record does not know it yet)."""
    names = {f"forge-{kind}-{layout.safe_name(rec.app_id)}" for kind in ("search", "relay")}
    out = cli.run(cli.on_cluster(["squeue", "--noheader", f"--states={LIVE}", f"--user={os.getuid()}", "--format=%i|%j|%k"]))
    for line in out.splitlines():
        _, name, comment = (line.split("|", 2) + ["", ""])[:3]
        if name in names and tag_in(comment, f"{rec.submission}-", prefix=True):
            return True
    return False


def revive(cli: SlurmCli, records: Records, rec: AppRecord) -> Optional[str]:
    """Submit a decision job for the whole search of ``rec`` when none may still run and its trials
    say it is not over (see the module docstring); returns the note to show, or None."""
    if not rec.meta.search or rec.final is not None:
        return None
    try:
        if records.cancelled(rec.app_id):
            return None
        if deciding(cli, rec):
            return None
        search, template, python = open_search(cli, records, rec)
        if over(search.spec, search.trials()):
            return None
        job_id = search.submit_decision(rec, template, python, f"{rec.submission}-again-{uuid.uuid4().hex[:8]}d")
    except (ForgeError, OSError, ValueError, KeyError) as e:  # status answers anyway; the next one tries again
        return f"search {rec.app_id} has no decision job left, and a new one could not be submitted ({e})"
    return (f"search {rec.app_id} had no decision job left (one was killed before it finished): submitted decision"
            f" job {job_id}, which goes on where it stopped")


def revived(cli: SlurmCli, records: Records, recs: Sequence[AppRecord]) -> Tuple[List[AppRecord], List[str]]:
    """:func:`revive` for every search among ``recs``: the records (those given a decision job read
    again) and the notes to show."""
    out, notes = [], []
    for rec in recs:
        note = revive(cli.on(rec.cluster or None), records, rec) if rec.meta.search else None
        out.append(records.load(rec.app_id) or rec if note else rec)
        notes += [note] if note else []
    return out, notes


def retry_search(cli: SlurmCli, records: Records, rec: AppRecord, views: Sequence[TaskView], states: Iterable[str],
                 python: str = "") -> List[Tuple[str, List[str]]]:
    """``torchx forge retry`` of a search: not cancelled any more, and one decision job that asks
    the trials that ended in ``states`` again and goes on. Returns [(decision job, what it asks
    again)], or [] when no trial ended so and the search has ended or goes on by itself (nothing submitted)."""
    states = list(states)
    try:
        search, template, python = open_search(cli, records, rec)  # (the decision runs with the search's python)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ForgeError(f"search {rec.app_id}: cannot read its files ({e}); nothing was retried: is"
                         f" ${envvars.STATE_DIR.name} the state dir it was submitted with?") from None
    trials = reconcile(search.spec, search.trials(), rec, views, rec.submission, records.task_reports(rec.app_id))
    again = [t.number for t, a in zip(trials, reask(trials, rec, views, rec.submission, states), strict=True)
             if a.state is not t.state]
    cancelled = records.cancelled(rec.app_id)
    if not again and (over(search.spec, trials) or not cancelled and deciding(cli, rec)):
        return []  # ended well, or going on by itself
    if cancelled:  # before the decision job: it decides nothing while cancelled
        records.store.remove(layout.cancelled(rec.app_id))
    job_id = search.submit_decision(rec, template, python, f"{rec.submission}-retry-{uuid.uuid4().hex[:8]}d",
                                    reask=",".join(states))
    role = rec.roles[0].name if rec.roles else rec.name
    what = ", ".join(f"{role}[{n}]" for n in again) or "the trials not asked yet"
    return [(job_id, [f"{what} (asked again by the search's decision job)"])]


def search_summary(records: Records, rec: AppRecord) -> str:
    """The search's lines for ``torchx status`` (progress, best trial, rungs), or why there are none."""
    from torchx_forge.search import summary  # noqa: PLC0415

    try:
        text = summary(*read_search(records, rec))
    except Exception as e:  # status must answer anyway
        return f"search: cannot read its trials ({type(e).__name__}: {e})"
    return "\n".join(f"{line}: nothing more starts; once its program is fixed, `torchx forge retry` asks the failed"
                     " trials again" if line.startswith("search stopped: ") else line for line in text.splitlines())



def raise_budget(cli: SlurmCli, records: Records, rec: AppRecord, trials: int) -> Tuple[int, str]:
    """``torchx forge budget APP --trials N``: the search of ``rec`` may ask up to ``trials`` trials
    (see :mod:`~torchx_forge.slurm.search_budget`). Returns (the budget before, the decision job
    submitted); ForgeError naming what to do when it cannot be raised so."""
    if not rec.meta.search:
        raise ForgeError(f"app {rec.app_id} is not a search (forge.search): its runs are fixed at submit")
    if records.cancelled(rec.app_id):
        raise ForgeError(f"search {rec.app_id} was cancelled: `torchx forge retry` it first, then raise its budget")
    try:
        search, template, python = open_search(cli, records, rec)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise ForgeError(f"search {rec.app_id}: cannot read its files ({e}); the budget is unchanged") from None
    spec = search.spec
    if trials <= spec.trials:
        raise ForgeError(f"search {rec.app_id} has a budget of {spec.trials} trials already: give more (--trials N)")
    if trials > spec.ceiling:
        raise ForgeError(f"search {rec.app_id} was submitted for at most {spec.ceiling} trials (search.max_trials):"
                         f" give --trials {spec.ceiling} or less, or submit a new search with max_trials: {trials}")
    write_budget(records, rec, template, spec.trials, trials)
    return spec.trials, search.submit_decision(rec, template, python, f"{rec.submission}-budget{trials}d")

