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
finishes or rolls back what it left. Jobs of later waves are recorded as planned, their scripts
written, and the first wave job is submitted with the first wave (:mod:`torchx_forge.slurm.waves`).
Every script is kept in the state dir, local or on an object store (:mod:`torchx_forge.slurm.scripts`),
so a companion job, a wave job or ``torchx forge retry`` can submit it again from anywhere.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import replace
from typing import List, Optional, Tuple

from torchx_forge.core import layout
from torchx_forge.core.secrets import masked
from torchx_forge.core.states import JobKind
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.limits import ClusterLimits, jobs_in_use
from torchx_forge.slurm.options import logs_origin, state_dir_error
from torchx_forge.slurm.recover import guard_argv
from torchx_forge.slurm.request import ForgeBatchRequest, JobRequest
from torchx_forge.slurm.resubmit import companion_argv
from torchx_forge.slurm.scripts import save as save_script
from torchx_forge.slurm.scripts import submit_script
from torchx_forge.slurm.waves import cost, wave_argv
from torchx_forge.state.codeversion import code_version
from torchx_forge.state.files import dir_problem
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord

log = logging.getLogger("torchx_forge")


def _job_record(job: JobRequest, job_id: str, script: str, argv: List[str], companion: Optional[str],
                planned: bool = False) -> JobRecord:
    p = job.policy
    rec = JobRecord(
        job_id=job_id, kind=job.kind.value, script=script, argv=argv, companion=companion, max_retries=p.max_retries,
        retry_on=[s.value for s in p.retry_on], signal=str(p.warning) if p.warning else "", grace=p.grace,
        extra_retries=p.extra_retries, wave=job.wave, planned=planned,
    )
    if job.array:
        comp = job.components[0]
        return replace(rec, role=comp.command.role, offset=job.array.offset, size=job.array.size, nodes=comp.nodes)
    return replace(rec, components=[[c.command.role, c.command.replica] for c in job.components],
                   nodes=max(c.nodes for c in job.components))


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
    """``req`` cut for the cluster's limits as they are now (read at most every 10 minutes) and the
    jobs the user has queued already (counted only when a submit limit applies)."""
    limits = ClusterLimits.read(cli, records.store)
    if req.app is None:
        return req.for_slurm(limits.slurm_version)
    qos = req.opts.get("qos")
    in_use = 0
    if limits.override(max_submit_jobs=req.opts.max_submit_jobs).max_submit(qos) is not None:
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
    cli = cli.on(req.opts.cluster)
    req = fitted(cli, records, req)
    several = "," in (req.opts.cluster or "")
    submission = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    intents = Intents(records.store)
    intent = Intent(submission, req.app_name, records.store.url, req.opts.logs, cluster=req.opts.cluster or "")
    try:
        intents.save(intent)  # durable before the first sbatch
    except OSError as e:
        raise state_dir_error(records.store.url, e) from None
    try:
        check(req)
    except BaseException:
        _forget(intents, intent)
        raise
    jobs: List[JobRecord] = []
    app_id = ""
    try:
        if not several:
            intent.guard = cli.sbatch(guard_argv(req.opts.python, records.store.url, submission, req.opts.logs,
                                                 req.app_name, req.jobs[0].argv("x")), tag=f"{submission}-guard")
            intents.save(intent)
        for index in range(len(req.jobs)):
            job = req.jobs[index]
            if job.wave:
                continue
            path = save_script(records.store, submission, job.index, job.materialize())
            argv = job.argv(path, hold=True, ids=[j.job_id for j in jobs] or None, app_id=app_id or None)
            job_id, where = submit_script(cli, argv, tag=f"{submission}-{job.index}")
            intent.jobs.append(job_id)
            intents.save(intent)
            if not jobs:  # the first job: the app has its id, and its cluster
                app_id = layout.app_id_of(job_id, where if req.opts.cluster else "")
                if several:
                    req, cli, job, argv = _placed(cli, records, req, intent, where, path)
            if len(req.jobs) > 1 or job.array:
                what = f"array of {job.array.size} task(s)" if job.array else f"{len(job.components)} component(s)"
                log.info(f"submitted job {job.index + 1}/{len(req.jobs)} ({job.stage or job.components[0].command.role}:"
                         f" {what}) as {job_id}, held")
            companion = None
            if job.policy.enabled:
                companion = cli.sbatch(companion_argv(
                    req.opts.python, records.store.url, app_id, job_id, req.opts.logs, req.app_name, argv
                ), tag=f"{submission}-{job.index}c")
                intent.jobs.append(companion)
                intents.save(intent)
            jobs.append(_job_record(job, job_id, path, argv, companion))
        if req.waves > 1:
            jobs += _plan_later_waves(cli, records, req, intent, jobs, app_id)
            intents.save(intent)
        rec = AppRecord(
            app_id=app_id,
            cluster=(cli.cluster or "") if req.opts.cluster else "",
            name=req.app_name,
            jobs=jobs,
            roles=_role_records(req),
            log_dir=req.opts.logs,
            job_dir=req.opts.job_dir,
            submission=submission,
            meta=replace(req.meta(), code=code_version(os.getcwd(), records.store)),
        )
        records.save(rec)
        intent.app_id = rec.app_id
        intents.save(intent)
        cli.release(intent.jobs)
        if len(intent.jobs) > 1:
            log.info(f"released {len(intent.jobs)} job(s) of app {rec.app_id} together")
    except OSError as e:  # the state dir (scripts, record): nothing is left queued, and one line says why
        _roll_back(cli, intent)
        _forget(intents, intent)
        raise state_dir_error(records.store.url, e) from None
    except BaseException:
        _roll_back(cli, intent)
        _forget(intents, intent)
        raise
    _finish(cli, intents, intent)
    return rec


def _placed(cli: SlurmCli, records: Records, req: ForgeBatchRequest, intent: Intent, cluster: str,
            path: str) -> Tuple[ForgeBatchRequest, SlurmCli, JobRequest, List[str]]:
    """Slurm put the first job on ``cluster`` (one of several): the rest of the app goes there too,
    starting with its guard; the first job's own command (kept to resubmit it) names that cluster."""
    req, cli = req.on_cluster(cluster), cli.on(cluster)
    intent.cluster = cluster
    intent.guard = cli.sbatch(guard_argv(req.opts.python, records.store.url, intent.submission, req.opts.logs,
                                         req.app_name, req.jobs[0].argv("x")), tag=f"{intent.submission}-guard")
    log.info(f"Slurm chose cluster {cluster} for app {req.app_name!r}: all its jobs go there")
    return req, cli, req.jobs[0], req.jobs[0].argv(path, hold=True)


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
    wave_job = cli.sbatch(argv, tag=f"{intent.submission}-wave1")
    intent.jobs.append(wave_job)
    log.info(f"wave 2 of {req.waves} will be submitted by job {wave_job} once the {len(wave0)} job(s) of wave 1 have ended")
    return [JobRecord(job_id=wave_job, kind=JobKind.WAVE.value, argv=argv, wave=1), *planned]


def _roll_back(cli: SlurmCli, intent: Intent) -> None:
    ids = intent.jobs + ([intent.guard] if intent.guard else [])
    if ids:
        try:
            cli.cancel(ids)
        except Exception:  # the original error is the one worth showing; the guard cleans up later
            pass


def _finish(cli: SlurmCli, intents: Intents, intent: Intent) -> None:
    """The submission went through: its guard is not needed any more, nor its intent."""
    try:
        cli.cancel([intent.guard])
    except Exception:  # the guard finds no intent and exits: harmless
        pass
    _forget(intents, intent)


def _forget(intents: Intents, intent: Intent) -> None:
    try:
        intents.done(intent)
    except OSError:  # the guard finds the jobs gone (or released) and only removes it
        pass
