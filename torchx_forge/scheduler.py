"""The ``slurm_forge`` TorchX scheduler.

A subclass of TorchX's ``SlurmScheduler`` that keeps its contract (one
heterogeneous job per AppDef, a component per role replica, the app id is the
Slurm job id) and adds what it lacks: arrays for sweeps, every argument and env
value delivered unchanged, status that works for pending, running and long
finished jobs with or without accounting, logs from any directory, clean
errors. Usage::

    $ torchx run --scheduler slurm_forge utils.echo --msg hello
    slurm_forge://torchx/1234
    $ torchx status slurm_forge://torchx/1234
    $ torchx log slurm_forge://torchx/1234

Records of submitted apps live in the state dir (``~/.torchx_forge`` by
default; ``FORGE_STATE_DIR`` or ``[slurm_forge] state_dir`` in .torchxconfig).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, cast

from torchx.schedulers.api import (
    DescribeAppResponse,
    ListAppResponse,
    Stream,
    filter_regex,
    split_lines_iterator,
)
from torchx.schedulers.slurm_scheduler import SlurmScheduler
from torchx.specs import (
    AppDef,
    AppDryRunInfo,
    CfgVal,
    is_terminal,
    runopts,
)

from torchx_forge.compat import SchedulerCompat, list_response, set_dryrun_app
from torchx_forge.core import envvars, layout
from torchx_forge.core.storage import StoreError
from torchx_forge.errors import ConfigError, SlurmError, UnknownAppError
from torchx_forge.slurm.cancel import cancel_app, cancel_tasks, check_answering
from torchx_forge.slurm.cli import SlurmCli, local_cluster
from torchx_forge.slurm.held import release_held
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.limits import ClusterLimits
from torchx_forge.slurm.logs import LogTail
from torchx_forge.slurm.lost import retry_lost
from torchx_forge.slurm.merge import app_state, task_views_from_rows
from torchx_forge.slurm.options import BACKEND, ForgeOpts, build_runopts, configured_state_dir, state_dir_error
from torchx_forge.slurm.preview import masked_app
from torchx_forge.slurm.recover import recover_stale
from torchx_forge.slurm.report import describe_response
from torchx_forge.slurm.request import ForgeBatchRequest
from torchx_forge.slurm.resubmit import RETRY_BY_HAND, retry_by_hand
from torchx_forge.slurm.search import spec_of
from torchx_forge.slurm.search_status import hold_open, raise_budget, retry_search, revived, search_summary
from torchx_forge.slurm.search_submit import submit_search
from torchx_forge.slurm.status import Gathered, gather, write_back
from torchx_forge.slurm.submit import submit
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord, Records
from torchx_forge.state.store import Store
from torchx_forge.torchx_errors import in_torchx_cli, install_cli_excepthook, torchx_verb

log = logging.getLogger("torchx_forge")

DESCRIBE_TTL = 1.0  #: how long a describe result is reused (the CLI's log threads ask many times a second)


class SlurmForgeScheduler(SchedulerCompat, SlurmScheduler):
    """TorchX scheduler for Slurm with arrays, sweeps, retries and durable job records.

    The same on torchx 0.7 and TorchX main: :class:`~torchx_forge.compat.SchedulerCompat` adapts
    the methods whose signatures differ and calls :meth:`check_app`, :meth:`list_apps` and
    :meth:`check_workspace`.

    Args:
        session_name: TorchX session name (part of the app handle).
        cli: the Slurm command runner (inject a fake one in unit tests).
        state_dir: where app records live; by default from the env/.torchxconfig.
    """

    def __init__(self, session_name: str, cli: Optional[SlurmCli] = None, state_dir: Optional[str] = None) -> None:
        super().__init__(session_name)
        self.backend = BACKEND  # SlurmScheduler.__init__ hard-codes "slurm"
        self.cli = cli or SlurmCli()
        self._state_dir = state_dir
        self._records: Dict[str, Records] = {}
        self._cache: Dict[str, Tuple[float, DescribeAppResponse, List[TaskView]]] = {}
        self._lock = threading.Lock()
        self._recorded: Set[str] = set()  # app ids whose record `torchx log` found

    # -- options and records -------------------------------------------------------------

    def _run_opts(self) -> runopts:
        return build_runopts()

    def run_opts(self) -> runopts:
        return self._run_opts()  # includes job_dir; the workspace mixin adds nothing

    def records(self, state_dir: Optional[str] = None) -> Records:
        """The records in ``state_dir`` (default: the configured one). The first time a state dir
        is used, submissions a killed client left unfinished there are finished or rolled back."""
        url = state_dir or self._state_dir or configured_state_dir()
        if url not in self._records:
            self._records[url] = Records(Store(url))
            self._recover(self._records[url])
        return self._records[url]

    def _recover(self, records: Records) -> None:
        try:
            done = recover_stale(self.cli, records)
        except (OSError, SlurmError) as e:  # the next command tries again; never block this one
            log.warning(f"could not check for interrupted submissions in {records.store.url}: {e}")
            return
        for line in done:
            log.warning(line)

    # -- submission ----------------------------------------------------------------------

    def check_app(self, app: AppDef) -> None:
        """Raise ConfigError for an app no sbatch call could run (called by TorchX's ``_validate`` too)."""
        if not app.roles:
            raise ConfigError(f"app {app.name!r}", "has no roles; nothing to run")
        seen = set()
        for role in app.roles:
            where = f"app {app.name!r} role {role.name!r}"
            if not role.name or "/" in role.name or role.name in seen:
                raise ConfigError(where, "role names must be unique, non-empty and contain no '/'")
            seen.add(role.name)
            if role.num_replicas < 1:
                raise ConfigError(where, f"num_replicas is {role.num_replicas}; expected at least 1")
            if not role.entrypoint:
                raise ConfigError(where, "has no entrypoint (the program to run)")

    def submit_dryrun(  # type: ignore[override, unused-ignore]  # TorchX main types it AppDryRunInfo[Any, SlurmOpts]
        self, app: AppDef, cfg: Any
    ) -> AppDryRunInfo[ForgeBatchRequest]:
        """TorchX's dry run; the AppDef it keeps (and ``torchx run --dryrun`` prints) has secret-looking
        env values masked, like the script it shows."""
        info = cast("AppDryRunInfo[ForgeBatchRequest]", super().submit_dryrun(app, cfg))
        set_dryrun_app(info, masked_app(app))
        return info

    def _submit_dryrun(  # type: ignore[override]  # forge's own request type and options
        self, app: AppDef, cfg: Mapping[str, CfgVal]
    ) -> AppDryRunInfo[ForgeBatchRequest]:
        self.check_app(app)
        opts = ForgeOpts.from_cfg(cfg)
        opts.check_python()
        # no Slurm call: the cluster's limits as last read (submit reads them again and cuts again if they
        # changed); gpu_flag=auto is shown for the Slurm version last seen
        limits = ClusterLimits.cached(Store(opts.state_dir))
        req = build_request(app, opts, limits)
        version = limits.slurm_version if limits else None
        return AppDryRunInfo(req, lambda r: repr(r.for_slurm(version)))

    def schedule(self, dryrun_info: AppDryRunInfo[ForgeBatchRequest]) -> str:  # type: ignore[override]
        req = dryrun_info.request
        if (spec := spec_of(req.app)) is not None:  # an adaptive search: first trials, each with its decision job
            return submit_search(self.cli, self.records(req.opts.state_dir), req, spec).app_id
        return submit(self.cli, self.records(req.opts.state_dir), req).app_id

    def check_workspace(self, cfg: Mapping[str, CfgVal]) -> None:
        """TorchX copies the workspace into ``job_dir``, which must not exist yet."""
        job_dir = cfg.get("job_dir")
        if job_dir and os.path.exists(str(job_dir)):
            raise ConfigError(
                "runopt 'job_dir'", f"{job_dir!r} already exists; the workspace is copied into a new directory, pick another"
            )

    # -- status --------------------------------------------------------------------------

    def describe(self, app_id: str) -> Optional[DescribeAppResponse]:
        if torchx_verb() == "log" and app_id not in self._recorded:
            # `torchx log` asks for the app's state until it gets one (an app without a record: for ever),
            # then shows the roles' logs, which only the record names: without one, say why at once
            self._record_for_logs(app_id)
            self._recorded.add(app_id)
        found = self._describe(app_id)
        return found[0] if found else None

    def task_views(self, app_id: str) -> Optional[List[TaskView]]:
        """Per-task status (state, exit code, host, attempts) of an app, or None if unknown."""
        found = self._describe(app_id)
        return found[1] if found else None

    def _describe(self, app_id: str, ttl: float = DESCRIBE_TTL) -> Optional[Tuple[DescribeAppResponse, List[TaskView]]]:
        with self._lock:  # one Slurm query at a time; concurrent callers share its result
            hit = self._cache.get(app_id)
            if hit and (is_terminal(hit[1].state) or time.monotonic() - hit[0] < ttl):
                return hit[1], hit[2]
            found = self._describe_uncached(app_id)
            if found:
                self._cache[app_id] = (time.monotonic(), *found)
            return found

    def _gather(self, records: Records, recs: Sequence[AppRecord], one_call: bool = False,
                retry: bool = True) -> Gathered:
        """The task views of ``recs`` (one or two Slurm calls for all of them: :func:`~torchx_forge.slurm.status.gather`),
        then the write-back: the apps whose answer is final now are frozen into their records; and
        (``retry``) tasks Slurm lost that their retry policy takes back are resubmitted (:mod:`~torchx_forge.slurm.lost`),
        tasks Slurm held after a failed launch released (:mod:`~torchx_forge.slurm.held`), searches
        with no decision job left given one, first (:mod:`~torchx_forge.slurm.search_status`)."""
        recs, revived_notes = revived(self.cli, records, recs) if retry else (recs, [])  # searches no job moves
        found = gather(self.cli, records, recs, one_call=one_call)
        found.notes += revived_notes
        hold_open(records, recs, found)  # (a search ends once its decisions took every trial's end)
        write_back(records, found)
        for rec in recs if retry else ():
            views = found.views.get(rec.app_id, [])
            if any(v.source == "lost" for v in views):
                found.notes += retry_lost(self.cli.on(rec.cluster or None), records, rec, views,
                                          sys.executable, found.booted.get(rec.cluster))
            found.notes += release_held(self.cli.on(rec.cluster or None), records, rec, views)
        return found

    def load(self, app_id: str) -> Optional[AppRecord]:
        """The record of ``app_id`` (``ID`` or ``CLUSTER:ID``): an app sent to the local cluster by
        name (``-cfg cluster=forge``) is found by its plain id too, as handles of old versions are."""
        records = self.records()
        rec = records.load(app_id)
        if rec is None and ":" not in app_id and local_cluster():
            rec = records.load(layout.app_id_of(app_id, local_cluster()))
        return rec

    def _describe_uncached(self, app_id: str) -> Optional[Tuple[DescribeAppResponse, List[TaskView]]]:
        records = self.records()
        try:
            rec = self.load(app_id)
        except StoreError as e:  # a state dir whose store does not answer: what Slurm alone knows, and why
            alone = self._describe_unrecorded(app_id, f"{e}: shown from Slurm alone until it answers again")
            if alone is None:
                raise
            return alone
        if rec is None:
            return self._describe_unrecorded(app_id)
        found = self._gather(records, [rec])
        views = found.views[rec.app_id]
        resp = describe_response(rec, views, found.notes)
        resp.msg = f"{search_summary(records, rec)}\n{resp.msg}".strip() if rec.meta.search else resp.msg
        return resp, views

    def _describe_unrecorded(self, app_id: str, why: str = "") -> Optional[Tuple[DescribeAppResponse, List[TaskView]]]:
        """A job slurm_forge did not submit (or whose record is gone or unreachable: ``why``): what Slurm knows of it."""
        cluster, job_id = layout.split_app_id(app_id)
        if not job_id.isdigit():
            return None
        cli = self.cli.on(cluster or None)
        rows = cli.squeue([job_id]) or (cli.sacct([job_id]) or [])
        if not rows:
            return None
        rec = AppRecord(app_id=app_id, name=rows[0].name or app_id, jobs=[], roles=[], log_dir="", cluster=cluster)
        views = task_views_from_rows(rows)
        note = why or (f"slurm_forge has no record of app {app_id} in {self.records().store.url} (submitted with another"
                       " state dir, or not by slurm_forge): shown from Slurm alone; roles are job names, replicas are array"
                       " task ids or het components, and logs are not known")
        return describe_response(rec, views, [note]), views

    # -- cancel and list -----------------------------------------------------------------

    def cancel(self, app_id: str) -> None:
        """Cancel every job of the app (its companions and pipeline steps too); an app neither the
        records nor Slurm know is an error, as it is for ``torchx status``."""
        if self.describe(app_id) is None:
            raise UnknownAppError(
                f"no app {app_id!r} to cancel: no slurm_forge record of it in {self.records().store.url}"
                f" and Slurm knows no job {app_id} (see `torchx list -s slurm_forge`)"
            )
        self._cancel_existing(app_id)

    def _cancel_existing(self, app_id: str) -> None:
        rec = self.load(app_id)
        if rec is None:
            cluster, job_id = layout.split_app_id(app_id)
            check_answering(self.cli.on(cluster or None), app_id)
            self.cli.on(cluster or None).cancel([job_id], ended_ok=True)
            return
        cancel_app(self.cli.on(rec.cluster or None), self.records(), rec)
        self._cache.pop(app_id, None)

    def cancel_replicas(self, app_id: str, role: str, replicas: List[int]) -> List[str]:
        """Cancel single runs of a sweep (array tasks); returns the Slurm ids cancelled."""
        rec = self._known(app_id)
        ids = cancel_tasks(self.cli.on(rec.cluster or None), rec, role, replicas)
        self._cache.pop(app_id, None)
        return ids

    def retry(self, app_id: str, states: Optional[List[str]] = None) -> List[Tuple[str, List[str]]]:
        """Resubmit the ended, unsuccessful tasks of an app (by default every end state but COMPLETED).

        Each resumes from its checkpoint and gets one more attempt whatever its budget;
        the new jobs are linked to the same app id. Returns (new job id, tasks) pairs.
        """
        records, rec = self.records(), self._known(app_id)
        views = self._gather(records, [rec], retry=False).views[rec.app_id]
        again = retry_search if rec.meta.search else retry_by_hand  # a search: its decision job asks trials again
        out = again(self.cli.on(rec.cluster or None), records, rec, views, states or RETRY_BY_HAND, sys.executable)
        self._cache.pop(app_id, None)
        return out

    def raise_budget(self, app_id: str, trials: int) -> Tuple[int, str]:
        """``torchx forge budget``: a running search may ask up to ``trials`` trials (within its
        max_trials). Returns (the budget before, the decision job that goes on with it)."""
        rec = self._known(app_id)
        out = raise_budget(self.cli.on(rec.cluster or None), self.records(), rec, trials)
        self._cache.pop(app_id, None)
        return out

    def _known(self, app_id: str) -> AppRecord:
        rec = self.load(app_id)
        if rec is None:
            raise UnknownAppError(f"no slurm_forge record of app {app_id!r} in {self.records().store.url}"
                                  " (see `torchx list -s slurm_forge`)")
        return rec

    def list_apps(self, state_dir: Optional[str] = None) -> List[ListAppResponse]:
        """Apps this user submitted through slurm_forge (from the records in ``state_dir``), newest first."""
        records = self.records(state_dir)
        try:  # a state dir that is not there and cannot be made lists nothing: an error, not an empty table
            records.store.make_root()
        except OSError as e:
            raise state_dir_error(records.store.url, e) from None
        recs = [r for r in (records.load(i) for i in records.app_ids()) if r is not None]
        recs.sort(key=lambda r: r.created, reverse=True)
        views = self._gather(records, recs).views
        return [list_response(rec.app_id, app_state(views[rec.app_id]), rec.name) for rec in recs]

    def poll(self, app_ids: Optional[Sequence[str]] = None) -> Tuple[List[Tuple[AppRecord, List[TaskView]]], List[str]]:
        """Per-task status of the named apps (default: every app in the state dir that has not
        ended), in **one** Slurm call for all of them (``torchx forge watch``). Unknown ids are an error."""
        records = self.records()
        recs = ([r for r in (records.load(i) for i in records.app_ids()) if r is not None and r.final is None]
                if app_ids is None else [self._known(app_id) for app_id in app_ids])
        found = self._gather(records, recs, one_call=True)
        return [(rec, found.views[rec.app_id]) for rec in recs], found.notes

    # -- logs ----------------------------------------------------------------------------

    def _record_for_logs(self, app_id: str) -> AppRecord:
        """The record of ``app_id``, which names its logs; UnknownAppError without one, the store's
        error (naming its URL) when it cannot be read."""
        rec = self.load(app_id)
        if rec is None:
            raise UnknownAppError(
                f"no logs of app {app_id!r}: slurm_forge has no record of it in {self.records().store.url}"
                f" (submitted with another state dir? set ${envvars.STATE_DIR.name}; see `torchx list -s slurm_forge`)"
            )
        return rec

    def log_iter(
        self,
        app_id: str,
        role_name: str,
        k: int = 0,
        regex: Optional[str] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        should_tail: bool = False,
        streams: Optional[Stream] = None,
    ) -> Iterable[str]:
        """Lines of replica ``k`` of ``role_name``: stdout and stderr unless ``streams`` picks one."""
        rec = self._record_for_logs(app_id)
        kinds = {Stream.STDOUT: ["out"], Stream.STDERR: ["err"]}.get(streams, ["out", "err"])  # type: ignore[arg-type]
        try:
            paths = [p for kind in kinds for p in rec.log_paths(role_name, k, kind)]
        except KeyError:
            valid = ", ".join(f"{r.name}/0..{r.num_replicas - 1}" for r in rec.roles)
            raise UnknownAppError(f"app {app_id} has no replica {role_name}/{k}; it has {valid}") from None

        def current_paths() -> List[str]:  # a later wave (or a retry) adds log files
            latest = self.records().load(rec.app_id) or rec
            return [p for kind in kinds for p in latest.log_paths(role_name, k, kind)]

        def done() -> bool:
            views = self.task_views(app_id) or []
            mine = [v for v in views if v.role == role_name and v.replica == k]
            return not mine or is_terminal(mine[0].state)

        lines: Iterable[str] = split_lines_iterator(LogTail(current_paths if should_tail else paths, done,
                                                            should_tail=should_tail))
        if regex:
            lines = filter_regex(regex, lines)
        return lines


def create_scheduler(session_name: str, **kwargs: Any) -> SlurmForgeScheduler:
    """Entry point for ``torchx.schedulers``: ``slurm_forge = torchx_forge.scheduler:create_scheduler``.
    Inside the ``torchx`` program, forge's errors are then printed as one line (:mod:`torchx_forge.torchx_errors`)."""
    if in_torchx_cli():
        install_cli_excepthook()
    return SlurmForgeScheduler(session_name=session_name, cli=kwargs.get("cli"), state_dir=kwargs.get("state_dir"))
