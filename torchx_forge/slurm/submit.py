"""Submitting a ForgeBatchRequest: fitted, checked, recoverable, held, recorded, released together.

Before any sbatch: the request is cut again if the cluster's limits (MaxArraySize, the user's
submit limit, MaxJobCount: :mod:`torchx_forge.slurm.limits`) differ from what the dry run knew,
the state dir must take the submission's intent (:mod:`torchx_forge.state.intents`) and the log
dir must be writable with room to spare. Then a guard job (:mod:`torchx_forge.slurm.recover`) and
every job of the first wave are submitted with ``--hold``,
each tagged in its ``--comment`` so a retried sbatch never makes a second job. Once the app record
is written, one ``scontrol release`` lets them run and the guard is cancelled. If any step fails,
every job already submitted is cancelled, so a failed submission leaves nothing in the queue and
the user sees Slurm's own message; if the client is killed, the guard (or the next forge command)
finishes or rolls back what it left (:class:`Submission` names each step). Jobs of later waves
are recorded as planned, their scripts written, and the first wave job is submitted with the
first wave (:mod:`torchx_forge.slurm.waves`).
An app of one job (one array, or one heterogeneous job, without a companion or later waves) has
nothing to hold together: it is one sbatch, not held, tagged, after an intent that carries its
record; a client killed before the record leaves a job that the next forge command adopts
(:func:`torchx_forge.slurm.recover.adopt`).
Every script is kept in the state dir, local or on an object store (:mod:`torchx_forge.slurm.scripts`),
so a companion job, a wave job or ``torchx forge retry`` can submit it again from anywhere.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import List, Optional, Tuple

from torchx_forge.core import envvars, layout
from torchx_forge.core.record import replace
from torchx_forge.core.secrets import masked
from torchx_forge.core.states import JobKind
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.limits import SMALL_APP, ClusterLimits, jobs_in_use
from torchx_forge.slurm.options import logs_origin, state_dir_error
from torchx_forge.slurm.recover import guard_argv
from torchx_forge.slurm.request import ForgeBatchRequest, JobRequest
from torchx_forge.slurm.resubmit import companion_argv
from torchx_forge.slurm.scripts import again_while_taken, submit_script
from torchx_forge.slurm.scripts import save as save_script
from torchx_forge.slurm.waves import cost, wave_argv
from torchx_forge.state.codeversion import code_version
from torchx_forge.state.files import dir_problem
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.records import AppMeta, AppRecord, JobRecord, Records, RoleRecord

log = logging.getLogger("torchx_forge")


def _job_record(job: JobRequest, job_id: str, script: str, argv: List[str], companion: Optional[str],
                planned: bool = False, tag: str = "") -> JobRecord:
    p = job.policy
    rec = JobRecord(
        job_id=job_id, kind=job.kind.value, script=script, argv=argv, companion=companion, max_retries=p.max_retries,
        retry_on=[s.value for s in p.retry_on], signal=str(p.warning) if p.warning else "", grace=p.grace,
        extra_retries=p.extra_retries, wave=job.wave, planned=planned, tag=tag,
    )
    if job.array:
        comp = job.components[0]
        return replace(rec, role=comp.command.role, offset=job.array.offset, size=job.array.size, nodes=comp.nodes)
    return replace(rec, components=[[c.command.role, c.command.replica] for c in job.components],
                   nodes=max(c.nodes for c in job.components))


def _what(job: JobRequest) -> str:
    size = f"array of {job.array.size} task(s)" if job.array else f"{len(job.components)} component(s)"
    return f"{job.stage or job.components[0].command.role}: {size}"


def _role_records(req: ForgeBatchRequest) -> List[RoleRecord]:
    retries = dict(req.role_retries)
    out = []
    for role in req.roles:
        res = role.resource
        out.append(
            RoleRecord(
                name=role.name,
                num_replicas=role.num_replicas,
                image=role.image,
                entrypoint=role.entrypoint,
                args=list(role.args),
                env=masked(role.env),
                resource={"cpu": res.cpu, "gpu": res.gpu, "memMB": res.memMB},
                max_retries=retries.get(role.name, role.max_retries),
            )
        )
    return out


def check(req: ForgeBatchRequest) -> None:
    """Refuse what cannot work before anything is submitted: a log dir Slurm cannot write to."""
    problem = dir_problem(req.opts.logs)
    if problem:
        raise ConfigError(
            f"log dir {req.opts.logs}", f"{problem}; it comes from {logs_origin(req.opts)}: pick a writable directory"
            " with room for the logs, on a file system the compute nodes share",
        )


def fitted(cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> ForgeBatchRequest:
    """``req`` cut for the cluster's limits as they are now (:meth:`ClusterLimits.read`) and the
    jobs the user has queued already (counted only when a submit limit applies, to an app bigger
    than ``SMALL_APP`` job records or under the runopt ``max_submit_jobs``)."""
    need, qos = sum(cost(j) for j in req.jobs), req.opts.get("qos")
    limits = ClusterLimits.read(cli, records.store, need=need, qos=qos)
    if req.app is None:
        return req.for_slurm(limits.slurm_version)
    in_use = 0
    counted = need > SMALL_APP or req.opts.max_submit_jobs is not None
    if counted and limits.override(max_submit_jobs=req.opts.max_submit_jobs).max_submit(qos) is not None:
        in_use = jobs_in_use(cli, qos, limits.default_qos)
    again = build_request(req.app, req.opts, limits, in_use).for_slurm(limits.slurm_version)
    if again.waves > 1:
        total = sum(cost(j) for j in again.jobs)
        log.info(f"{req.app_name}: {total:,} job records (every array task counts) are more than you may have queued"
                 f" at once: submitting them in {again.waves} waves, each by a small Slurm job once the one before"
                 " has ended")
    return again


def submit(cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> AppRecord:
    """Submit every job of ``req`` (the first wave, when it is cut in waves); return the saved
    record (its app id is the first job's id, ``CLUSTER:ID`` on a named cluster).

    With several clusters (``cluster=a,b``) the first job goes to ``sbatch -M a,b``, which puts it
    where it starts soonest; every other job of the app (its guard, companions, later waves and
    pipeline steps: Slurm dependencies do not cross clusters) then goes to that cluster.
    """
    sub = Submission.begin(cli, records, req)  # the intent written, the request checked: nothing queued yet
    try:
        if sub.direct:
            sub.submit_direct()
            rec = sub.write_record()
        else:
            sub.submit_held()
            rec = sub.write_record()
            sub.release()
    except BaseException as e:
        sub.roll_back()
        if isinstance(e, OSError):  # the state dir (scripts, record): nothing is left queued, and one line says why
            raise state_dir_error(records.store.url, e) from None
        raise
    sub.finish()
    return rec


class Submission:
    """One app's submission in flight, a transaction in four steps: :meth:`begin` (the intent, written
    before any sbatch), :meth:`submit_held` (the guard and every job of the first wave, held),
    :meth:`write_record` (from here on the app exists) and :meth:`release`; or :meth:`roll_back`
    (cancel whatever was submitted, clear the intent).

    Its state: the request and the Slurm runner (both pinned to one cluster once Slurm has chosen
    it, with ``cluster=a,b``), the intent (every job id submitted so far, the guard), and the records
    of the jobs submitted so far, the first of which gives the app its id.
    """

    def __init__(self, cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> None:
        self.cli = cli.on(req.opts.cluster)
        self.records = records
        self.req = fitted(self.cli, records, req)
        #: Slurm picks the cluster from a list: the first job's answer says which
        self.several = "," in (self.req.opts.cluster or "")
        self.intents = Intents(records.store)
        self.intent = Intent(f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}", self.req.app_name,
                             records.store.url, self.req.opts.logs, cluster=self.req.opts.cluster or "")
        self.jobs: List[JobRecord] = []
        self.app_id = ""
        self._meta: Optional[AppMeta] = None

    @property
    def submission(self) -> str:
        return self.intent.submission

    @property
    def direct(self) -> bool:
        """One job and nothing around it (no companion, no later wave, one cluster): one sbatch, not held."""
        return self.req.one_job

    # -- the steps -------------------------------------------------------------------------------

    @classmethod
    def begin(cls, cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> Submission:
        """The request fitted to the cluster's limits, its intent durable, and checked: ready for the first sbatch."""
        sub = cls(cli, records, req)
        try:
            sub.intents.save(sub.intent)
        except OSError as e:
            raise state_dir_error(records.store.url, e) from None
        try:
            check(sub.req)
        except BaseException:
            sub._forget()
            raise
        return sub

    def submit_held(self) -> None:
        """The guard, then every job of the first wave with ``--hold``, each followed by its companion;
        then the later waves' scripts and planned records, and the held job that submits wave 2.
        With several clusters the first job goes first: the guard and the rest follow it to its cluster."""
        first, *rest = [i for i, job in enumerate(self.req.jobs) if not job.wave]
        if self.several:
            self._submit_first_and_place(first)
        else:
            self._submit_guard()
            self._submit_job(first)
        for index in rest:
            self._submit_job(index)
        if self.req.waves > 1:
            self.jobs += _plan_later_waves(self.cli, self.records, self.req, self.intent, self.jobs, self.app_id)
            self.intents.save(self.intent)

    def submit_direct(self) -> None:
        """The app's one job, not held: its record goes into the intent first (the next forge command
        adopts the job if this client dies before writing it); a job id an app of this state dir has
        already is cancelled and submitted again (its tasks refuse to run under that app's record)."""
        job = self.req.jobs[0]
        path = save_script(self.records.store, self.submission, job.index, job.materialize())
        argv, tag = job.argv(path, hold=False), f"{self.submission}-{job.index}"
        self.jobs = [_job_record(job, "", path, argv, None, tag=tag)]
        self.intent.direct, self.intent.record = True, self._record().to_json()
        self.intents.save(self.intent)
        env = {**os.environ, envvars.SUBMISSION.name: self.submission}
        job_id, where = submit_script(self.cli, argv, env=env, tag=tag)
        self.intent.jobs.append(job_id)  # kept in memory only: recovery finds the job by its tag
        job_id, where, tag = again_while_taken(self.cli, argv, tag, (job_id, where), self._names_an_app, env=env,
                                               replaced=self._replaced)
        self.app_id = self._app_id(job_id, where)
        self.jobs = [replace(self.jobs[0], job_id=job_id, tag=tag)]
        if job.array:
            log.info(f"submitted job 1/1 ({_what(job)}) as {job_id}")

    def _record(self) -> AppRecord:
        if self._meta is None:
            self._meta = replace(self.req.meta(), code=code_version(os.getcwd(), self.records.store))
        return AppRecord(
            app_id=self.app_id,
            cluster=(self.cli.cluster or "") if self.req.opts.cluster else "",
            name=self.req.app_name,
            jobs=self.jobs,
            roles=_role_records(self.req),
            log_dir=self.req.opts.logs,
            job_dir=self.req.opts.job_dir,
            submission=self.submission,
            meta=self._meta,
        )

    def write_record(self) -> AppRecord:
        """The app record: from here on the app exists, and finishing an interrupted submission means releasing it."""
        rec = self._record()
        self.records.save(rec)
        self.intent.app_id = rec.app_id
        if not self.intent.direct:  # a direct submission's recovery finds the record by its job's tag
            self.intents.save(self.intent)
        return rec

    def release(self) -> None:
        """One ``scontrol release`` lets every held job run."""
        self.cli.release(self.intent.jobs)
        if len(self.intent.jobs) > 1:
            log.info(f"released {len(self.intent.jobs)} job(s) of app {self.app_id} together")

    def finish(self) -> None:
        """The submission went through: its guard is not needed any more, nor its intent."""
        if self.intent.guard:
            try:
                self.cli.cancel([self.intent.guard])
            except Exception:  # the guard finds no intent and exits: harmless
                pass
        self._forget()

    def roll_back(self) -> None:
        """A step failed: take back the record if it was written (a rolled-back app is not listed),
        cancel every job submitted so far (the guard too), and clear the intent. When the cancel
        fails too (the controller is down), the intent stays: the guard job, or the next forge
        command, rolls the submission back once Slurm answers (no record: it cancels, never releases)."""
        if self.intent.app_id:
            try:
                self.records.forget(self.intent.app_id)
                self.intent.app_id = ""
                self.intents.save(self.intent)
            except OSError:
                pass
        ids = self.intent.jobs + ([self.intent.guard] if self.intent.guard else [])
        if ids:
            try:
                self.cli.cancel(ids, ended_ok=True)
            except Exception:  # the original error is the one worth showing; the guard rolls back later
                return
        self._forget()

    # -- inside submit_held ----------------------------------------------------------------------

    def _submit_guard(self) -> None:
        """The guard job, which finishes or rolls back this submission if its client dies."""
        self.intent.guard = self.cli.sbatch(
            guard_argv(self.req.opts.python, self.records.store.url, self.submission, self.req.opts.logs,
                       self.req.app_name, self.req.jobs[0].argv("x")), tag=f"{self.submission}-guard")
        self.intents.save(self.intent)

    def _submit_first_and_place(self, index: int) -> None:
        """Several clusters: ``sbatch -M a,b`` puts the first job where it starts soonest; the rest of
        the app goes there too, starting with its guard, and the first job's own command (kept to
        resubmit it) names that cluster."""
        path, _, job_id, where, tag = self._sbatch_held(self.req.jobs[index])
        self.req, self.cli = self.req.on_cluster(where), self.cli.on(where)
        self.intent.cluster = where
        self._submit_guard()
        log.info(f"Slurm chose cluster {where} for app {self.req.app_name!r}: all its jobs go there")
        placed = self.req.jobs[index]
        self._with_companion(placed, job_id, path, placed.argv(path, hold=True), tag)

    def _submit_job(self, index: int) -> None:
        job = self.req.jobs[index]
        path, argv, job_id, _, tag = self._sbatch_held(job)
        self._with_companion(job, job_id, path, argv, tag)

    def _sbatch_held(self, job: JobRequest) -> Tuple[str, List[str], str, str, str]:
        """Its script saved in the state dir and the job submitted held: (script, argv, job id, the
        cluster it went to, its tag). The first job gives the app its id: one an app of this state
        dir has already (Slurm gave it again after losing that app's job) is not taken."""
        path = save_script(self.records.store, self.submission, job.index, job.materialize())
        argv = job.argv(path, hold=True, ids=[j.job_id for j in self.jobs] or None, app_id=self.app_id or None)
        tag = f"{self.submission}-{job.index}"
        job_id, where = submit_script(self.cli, argv, tag=tag)
        self._submitted(job_id)
        if not self.jobs:
            job_id, where, tag = again_while_taken(self.cli, argv, tag, (job_id, where), self._names_an_app,
                                                   replaced=self._replaced)
            self.app_id = self._app_id(job_id, where)
        return path, argv, job_id, where, tag

    def _app_id(self, job_id: str, where: str) -> str:
        return layout.app_id_of(job_id, where if self.req.opts.cluster else "")

    def _names_an_app(self, job_id: str, where: str) -> bool:
        return self.records.store.exists(layout.record(self._app_id(job_id, where)))

    def _replaced(self, old: str, new: str) -> None:
        log.info(f"Slurm gave job id {old} again (an app of this state dir had it before Slurm lost its job):"
                 f" submitted this app's first job once more, as {new}, for an id of its own")
        self.intent.jobs.remove(old)
        self._submitted(new)

    def _with_companion(self, job: JobRequest, job_id: str, path: str, argv: List[str], tag: str) -> None:
        """Its companion job (when it may be retried), then its record."""
        if len(self.req.jobs) > 1 or job.array:
            log.info(f"submitted job {job.index + 1}/{len(self.req.jobs)} ({_what(job)}) as {job_id}, held")
        companion = None
        if job.policy.enabled:
            companion = self.cli.sbatch(companion_argv(
                self.req.opts.python, self.records.store.url, self.app_id, job_id, self.req.opts.logs, self.req.app_name,
                argv), tag=f"{self.submission}-{job.index}c")
            self._submitted(companion)
        self.jobs.append(_job_record(job, job_id, path, argv, companion, tag=tag))

    def _submitted(self, job_id: str) -> None:
        """A job is in the queue: the intent says so before the next sbatch."""
        self.intent.jobs.append(job_id)
        self.intents.save(self.intent)

    def _forget(self) -> None:
        try:
            self.intents.done(self.intent)
        except OSError:  # the guard finds the jobs gone (or released) and only removes it
            pass


def _plan_later_waves(cli: SlurmCli, records: Records, req: ForgeBatchRequest, intent: Intent, wave0: List[JobRecord],
                      app_id: str) -> List[JobRecord]:
    """Scripts and planned records of the jobs of later waves, and the held job that submits wave 2."""
    planned = []
    for job in (j for j in req.jobs if j.wave > 0):
        path = save_script(records.store, intent.submission, job.index, job.materialize())
        planned.append(_job_record(job, f"wave{job.wave}.{job.index}", path, job.argv(path, hold=False), None,
                                   planned=True))
    after = [j.job_id for j in wave0]
    argv = wave_argv(req.opts.python, records.store.url, app_id, 1, req.opts.logs, req.app_name, req.jobs[0].argv("x"),
                     after)
    tag = f"{intent.submission}-wave1"
    wave_job = cli.sbatch(argv, tag=tag)
    intent.jobs.append(wave_job)
    log.info(f"wave 2 of {req.waves} will be submitted by job {wave_job} once the {len(wave0)} job(s) of wave 1 have ended")
    return [JobRecord(job_id=wave_job, kind=JobKind.WAVE.value, argv=argv, wave=1, tag=tag), *planned]
