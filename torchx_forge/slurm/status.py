"""Per-task status, asked: the sources gathered for many apps at once, and a settled answer written back.

:func:`gather` is the one place that asks Slurm for status: one squeue per cluster (and, for the
apps it does not tell everything, one sacct) for any number of apps, shared by ``describe``,
``list``, ``retry`` and ``watch``; it reads the launchers' task files where they are needed and
folds the sources with :mod:`torchx_forge.slurm.merge`. It writes nothing: :func:`write_back`, which the
scheduler calls after it, freezes the apps that settled into their records, so later status calls
need no Slurm call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from torchx_forge.core import layout
from torchx_forge.core.record import replace
from torchx_forge.errors import SlurmError
from torchx_forge.slurm import identity
from torchx_forge.slurm.cli import SlurmCli, local_cluster
from torchx_forge.slurm.limits import parse_config
from torchx_forge.slurm.merge import freeze, needs_reports, reported_end, settles, task_views, thaw
from torchx_forge.slurm.parse import JobRow
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord, Records
from torchx_forge.state.taskfile import TaskReport


@dataclass
class Gathered:
    """Task views by app id, what Slurm could not tell (shown in every app's status), and the apps
    whose answer is final now (:func:`write_back` freezes them into their records)."""

    views: Dict[str, List[TaskView]]
    notes: List[str]
    settled: List[AppRecord] = field(default_factory=list)
    booted: Dict[str, Optional[float]] = field(default_factory=dict)  # when each controller asked last started


def _ask(what: Callable[[], Optional[List[JobRow]]], fails: str, notes: List[str]) -> Tuple[bool, Optional[List[JobRow]]]:
    """(answered, rows) of one Slurm query; a failure becomes a note instead of an error."""
    try:
        return True, what()
    except SlurmError as e:
        notes.append(f"{fails} ({e.argv[0]}: {e.first_line})")
        return False, None


class Answers:
    """What sacct and squeue said of the apps' jobs, asked once per question for every app: one sacct
    for all clusters, one squeue per cluster (``squeue -M a,b`` does not say which rows are whose)."""

    def __init__(self, cli: SlurmCli, by_cluster: Mapping[str, List[AppRecord]], notes: List[str]) -> None:
        self.cli, self.by_cluster, self.notes = cli, by_cluster, notes
        self.complete, self.asked_live = True, False
        self.squeue_rows: Optional[List[JobRow]] = []
        self.several = len(by_cluster) > 1
        self.local = local_cluster() if self.several else ""
        self.owners: Dict[str, identity.Owner] = {}
        self.foreign: Dict[str, Set[str]] = {}
        self.boots: Dict[str, Optional[float]] = {}

    def ids(self, cluster: Optional[str] = None, only: Optional[Set[str]] = None) -> List[str]:
        """Job ids of the apps (of ``cluster``; of the apps ``only`` names)."""
        groups = [self.by_cluster[cluster]] if cluster is not None else list(self.by_cluster.values())
        return [j for recs in groups for r in recs if only is None or r.app_id in only for j in r.job_ids(companions=True)]

    def name(self, cluster: str) -> str:
        """A cluster's name as sacct -M prints it ("" is the local one)."""
        return cluster or self.local

    def accounting(self, only: Optional[Set[str]] = None) -> Optional[List[JobRow]]:
        """sacct of every app's jobs (of the apps ``only`` names), in one call; None without
        accounting (or when it failed)."""
        if not self.by_cluster:
            return []
        if self.cli.accounting is False:
            return None
        if self.several:
            clusters = [self.name(c) for c in self.by_cluster]
            ask = lambda: self.cli.sacct(self.ids(only=only), clusters)  # noqa: E731
        else:
            (cluster,) = self.by_cluster
            ask = lambda: self.cli.on(cluster).sacct(self.ids(only=only))  # noqa: E731
        answered, rows = _ask(ask, "accounting (slurmdbd) is unreachable: states come from squeue and the tasks'"
                              " state files", self.notes)
        self.complete &= answered
        return rows

    def live(self, notes: List[str]) -> None:
        """squeue, once per cluster; None when a controller did not answer."""
        self.asked_live = True
        said = len(notes)
        rows: Optional[List[JobRow]] = []
        for cluster in self.by_cluster:
            ids = self.ids(cluster)
            answered, got = _ask(lambda: self.cli.on(cluster).squeue(ids), "the Slurm controller did not answer:"  # noqa: B023
                                 " states come from accounting and the tasks' state files, and may be stale", notes)
            self.complete &= answered
            rows = None if got is None or rows is None else rows + [replace(r, cluster=self.name(cluster)) for r in got]
        notes[:] = notes[said:] + notes[:said]  # the controller's silence first: everything may be stale
        self.squeue_rows = rows

    def own(self, rec: AppRecord, rows: Optional[List[JobRow]]) -> Optional[List[JobRow]]:
        """The rows that are ``rec``'s own jobs: a job of another submission under a reused id is left
        out, with a note."""
        if rows is None:
            return None
        owner = self.owners.get(rec.app_id)
        if owner is None:
            owner = self.owners[rec.app_id] = identity.Owner(rec)
        found = identity.own_rows(owner, rows)
        self.foreign.setdefault(rec.app_id, set()).update(found.foreign)
        return found.rows

    def foreign_notes(self) -> List[str]:
        """One note per app whose ids Slurm gave to jobs of other submissions."""
        return [identity.foreign_note(app_id, ids) for app_id, ids in self.foreign.items() if ids]

    def booted(self, cluster: str) -> Optional[float]:
        """When the cluster's controller last started (asked once, and only when a job is missing)."""
        if cluster not in self.boots:
            try:
                config = parse_config(self.cli.on(cluster or None).run(
                    ["scontrol", *([f"--clusters={cluster}"] if cluster else []), "show", "config"]))
                self.boots[cluster] = identity.boot_time(config)
            except SlurmError:
                self.boots[cluster] = None
        return self.boots[cluster]

    def of(self, rec: AppRecord, rows: Optional[List[JobRow]]) -> Optional[List[JobRow]]:
        """The rows of ``rec``'s cluster (job ids collide between clusters)."""
        if rows is None or not self.several:
            return rows
        mine = self.name(rec.cluster)
        return [r for r in rows if r.cluster == mine]


def live_alone(rec: AppRecord, live: Optional[Sequence[JobRow]]) -> bool:
    """Does squeue alone (``live``: its rows of ``rec``'s jobs) tell everything of ``rec``? Every task
    is listed, queued or running, in its first attempt: no retries (a requeue's earlier attempts
    and their causes are in sacct), no resubmission, no later wave, not a search. Then sacct has
    nothing to add, and the tasks' state files are not read either."""
    if live is None or rec.meta.search or rec.resubmitted:
        return False
    if any(j.planned or j.max_retries > 0 or j.extra_retries or j.companion for j in rec.jobs):
        return False
    queued = {r.key: r for r in live}
    return all(key in queued and not queued[key].state.final for key, _, _, _ in rec.tasks())


def gather(cli: SlurmCli, records: Records, recs: Sequence[AppRecord], one_call: bool = False) -> Gathered:
    """The task views of every app in ``recs``, in one or two Slurm calls for all of them.

    squeue first, the live truth (one call per cluster, an array's pending tasks in one row): for an
    app whose every task it lists as queued or running (:func:`live_alone`), that is the one call;
    for the others, sacct too (one call), for the tasks squeue no longer lists and for earlier
    attempts. ``one_call`` (``torchx forge watch``) never asks a second time: sacct only, or squeue
    only on a cluster without accounting. Apps that settled before are answered from their records
    (no Slurm call); apps that settle now are listed in ``settled``, for :func:`write_back`. When
    squeue or sacct fails (a daemon down, a network fault), the answer comes from what is left
    (sacct or squeue, and the tasks' state files), is not final, and says so in ``notes``. Nothing
    is written.
    """
    pending = [r for r in recs if not r.final]
    notes: List[str] = []
    by_cluster: Dict[str, List[AppRecord]] = {}
    for rec in pending:
        by_cluster.setdefault(rec.cluster, []).append(rec)
    answers = Answers(cli, by_cluster, notes)
    if one_call:
        accounted = answers.accounting()
        if by_cluster and accounted is None:
            answers.live(notes)
    elif by_cluster:
        answers.live(notes)
    # each app's own squeue rows, once (empty where squeue was not asked)
    lives = {r.app_id: answers.own(r, answers.of(r, answers.squeue_rows)) for r in pending}
    alone: Set[str] = set()
    if not one_call:  # sacct only for the apps squeue does not tell everything of
        alone = {r.app_id for r in pending if live_alone(r, lives[r.app_id])}
        rest = {r.app_id for r in pending} - alone
        accounted = answers.accounting(rest) if rest else []
    asked_live, complete = answers.asked_live, answers.complete
    out: Dict[str, List[TaskView]] = {}
    settled: List[AppRecord] = []
    for rec in recs:
        if rec.final:
            out[rec.app_id] = thaw(rec.final)
            continue
        live = lives[rec.app_id]
        if rec.app_id in alone:  # every task queued or running in its first attempt: squeue says it all
            out[rec.app_id] = task_views(rec, live, None, {})
            continue
        history = answers.own(rec, answers.of(rec, accounted))
        # squeue not asked (one call only): a task's absence from it means nothing
        unseen = identity.unseen(rec, live if asked_live else None, history)
        reports: Mapping[str, TaskReport] = {}
        cancelled = False
        if (asked_live and live is None) or unseen or needs_reports(rec, history):  # the reports are the freshest
            try:
                reports = records.task_reports(rec.app_id)
                cancelled = records.cancelled(rec.app_id)
            except OSError as e:  # a state dir that does not answer: Slurm's view alone, not frozen
                notes.append(f"the tasks' state files cannot be read ({e}): states come from Slurm alone")
                complete = False
        lost: Dict[str, str] = {}
        if unseen:
            task_of = {k: layout.task_key(role, replica) for k, role, replica, _ in rec.tasks()}
            ended = [k for k, _ in unseen if k in task_of and reported_end(reports.get(task_of[k]))]
            candidates = identity.unaccounted(unseen, ended)
            lost = identity.lost(candidates, answers.booted(rec.cluster)) if candidates else {}
            if lost and not cancelled:
                notes.append(identity.lost_note(rec.app_id, lost))
        views = out[rec.app_id] = task_views(rec, live if asked_live else None, history, reports, cancelled, lost)
        if settles(rec, views, history, asked_live, complete):
            settled.append(rec)
    return Gathered(out, notes + answers.foreign_notes(), settled, answers.boots)


def own_queued(cli: SlurmCli, rec: AppRecord, job_ids: Sequence[str]) -> List[str]:
    """The ids among ``job_ids`` that squeue lists as ``rec``'s own jobs (one squeue): what a cancel
    may touch. An id Slurm gave to another submission after losing the app's job is left alone."""
    owner = identity.Owner(rec)
    wanted = set(job_ids)
    mine = {r.base for r in cli.squeue(job_ids) if owner(r)}
    return [j for j in job_ids if j in mine and j in wanted]


def write_back(records: Records, found: Gathered) -> None:
    """Freeze the answer of every app that settled into its record (``final``): later status calls
    answer from there, with no Slurm call. A record that cannot be written is frozen next time:
    this answer is right all the same."""
    for rec in found.settled:
        rec.final = freeze(found.views[rec.app_id])
        try:
            records.save(rec)
        except OSError:
            pass
