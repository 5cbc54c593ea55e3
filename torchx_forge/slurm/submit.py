"""Submitting a ForgeBatchRequest: checked, recoverable, held, recorded, released together.

Before any sbatch: the state dir must take the submission's intent (:mod:`torchx_forge.state.intents`),
the log dir must be writable with room to spare, and the jobs must fit the cluster's MaxJobCount.
Then a guard job (:mod:`torchx_forge.slurm.recover`) and every job are submitted with ``--hold``,
each tagged in its ``--comment`` so a retried sbatch never makes a second job. Once the app record
is written, one ``scontrol release`` lets them run and the guard is cancelled. If any step fails,
every job already submitted is cancelled, so a failed submission leaves nothing in the queue and
the user sees Slurm's own message; if the client is killed, the guard (or the next forge command)
finishes or rolls back what it left.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from dataclasses import replace
from typing import List, Optional

from torchx_forge.core import layout
from torchx_forge.core.secrets import masked
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.limits import ClusterLimits
from torchx_forge.slurm.options import logs_origin, state_dir_error
from torchx_forge.slurm.recover import guard_argv
from torchx_forge.slurm.request import ForgeBatchRequest, JobRequest
from torchx_forge.slurm.resubmit import companion_argv
from torchx_forge.state.codeversion import code_version
from torchx_forge.state.files import dir_problem, private_makedirs
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord

log = logging.getLogger("torchx_forge")


def _job_record(job: JobRequest, job_id: str, script: str, argv: List[str], companion: Optional[str]) -> JobRecord:
    p = job.policy
    rec = JobRecord(
        job_id=job_id, kind=job.kind.value, script=script, argv=argv, companion=companion, max_retries=p.max_retries,
        retry_on=[s.value for s in p.retry_on], signal=str(p.warning) if p.warning else "", grace=p.grace,
        extra_retries=p.extra_retries,
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


def _script_dir(records: Records, submission: str) -> str:
    """A local directory for the scripts (sbatch reads a file); the state dir when it is local."""
    if records.store.local:
        path = records.store.path(layout.SUBMISSIONS, submission)
        private_makedirs(path)
        return path
    return tempfile.mkdtemp(prefix=f"forge-{submission}-")


def job_records_needed(req: ForgeBatchRequest) -> int:
    """Slurm job records the submission takes: one per array task, het component, companion and guard."""
    tasks = sum(j.array.size if j.array else len(j.components) for j in req.jobs)
    return tasks + sum(1 for j in req.jobs if j.policy.enabled) + 1


def check(cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> ClusterLimits:
    """Refuse what cannot work before anything is submitted: the log dir and the cluster's job table.
    Returns the cluster's limits (read from Slurm, or the state dir's cache)."""
    problem = dir_problem(req.opts.logs)
    if problem:
        raise ConfigError(
            f"log dir {req.opts.logs}", f"{problem}; it comes from {logs_origin(req.opts)}: pick a writable directory"
            " with room for the logs, on a file system the compute nodes share",
        )
    limits = ClusterLimits.read(cli, records.store)
    limit = limits.max_job_count
    needed = job_records_needed(req)
    if limit and needed > limit:
        raise ConfigError(
            f"app {req.app_name!r}",
            f"needs {needed:,} Slurm job records (every array task counts), more than the cluster's MaxJobCount"
            f" of {limit:,} (scontrol show config): Slurm would stall, then refuse it. Submit fewer runs at once"
            " (sweep.max_runs, or split the sweep), or ask the admins to raise MaxJobCount",
        )
    return limits


def submit(cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> AppRecord:
    """Submit every job of ``req``; return the saved record (its app id is the first job's id)."""
    submission = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    intents = Intents(records.store)
    intent = Intent(submission, req.app_name, records.store.url, req.opts.logs)
    try:
        intents.save(intent)  # durable before the first sbatch
    except OSError as e:
        raise state_dir_error(records.store.url, e) from None
    try:
        req = req.for_slurm(check(cli, records, req).slurm_version)
    except BaseException:
        _forget(intents, intent)
        raise
    sdir = _script_dir(records, submission)
    jobs: List[JobRecord] = []
    try:
        first = req.jobs[0].argv("x")
        intent.guard = cli.sbatch(guard_argv(req.opts.python, records.store.url, submission, req.opts.logs, req.app_name,
                                             first), tag=f"{submission}-guard")
        intents.save(intent)
        for job in req.jobs:
            path = os.path.join(sdir, f"job-{job.index}.sh")
            with open(path, "w") as f:
                f.write(job.materialize())
            os.chmod(path, 0o600)
            argv = job.argv(path, hold=True, ids=[j.job_id for j in jobs] or None)
            job_id = cli.sbatch(argv, tag=f"{submission}-{job.index}")
            intent.jobs.append(job_id)
            intents.save(intent)
            if len(req.jobs) > 1 or job.array:
                what = f"array of {job.array.size} task(s)" if job.array else f"{len(job.components)} component(s)"
                log.info(f"submitted job {job.index + 1}/{len(req.jobs)} ({job.stage or job.components[0].command.role}:"
                         f" {what}) as {job_id}, held")
            companion = None
            if job.policy.enabled:
                companion = cli.sbatch(companion_argv(
                    req.opts.python, records.store.url, intent.jobs[0], job_id, req.opts.logs, req.app_name, argv
                ), tag=f"{submission}-{job.index}c")
                intent.jobs.append(companion)
                intents.save(intent)
            jobs.append(_job_record(job, job_id, path, argv, companion))
        rec = AppRecord(
            app_id=jobs[0].job_id,
            name=req.app_name,
            jobs=jobs,
            roles=_role_records(req),
            log_dir=req.opts.logs,
            job_dir=req.opts.job_dir,
            submission=submission,
            meta={**req.meta(), "code": code_version(os.getcwd(), records.store)},
        )
        records.save(rec)
        intent.app_id = rec.app_id
        intents.save(intent)
        cli.release(intent.jobs)
        if len(intent.jobs) > 1:
            log.info(f"released {len(intent.jobs)} job(s) of app {rec.app_id} together")
    except BaseException:
        _roll_back(cli, intent)
        _forget(intents, intent)
        raise
    _finish(cli, intents, intent)
    return rec


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
