"""Submitting a ForgeBatchRequest atomically: held, recorded, released together.

Every sbatch call is made with ``--hold``; once all jobs are in and the app record is written,
one ``scontrol release`` lets them run. If any step fails, every job already submitted is
cancelled, so a failed submission leaves nothing in the queue and the user sees Slurm's own
message.
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
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.request import ForgeBatchRequest, JobRequest
from torchx_forge.slurm.resubmit import companion_argv
from torchx_forge.state.codeversion import code_version
from torchx_forge.state.files import private_makedirs
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


def submit(cli: SlurmCli, records: Records, req: ForgeBatchRequest) -> AppRecord:
    """Submit every job of ``req``; return the saved record (its app id is the first job's id)."""
    submission = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    sdir = _script_dir(records, submission)
    private_makedirs(req.opts.logs)
    submitted: List[str] = []
    jobs: List[JobRecord] = []
    try:
        for job in req.jobs:
            path = os.path.join(sdir, f"job-{job.index}.sh")
            with open(path, "w") as f:
                f.write(job.materialize())
            os.chmod(path, 0o600)
            argv = job.argv(path, hold=True, ids=[j.job_id for j in jobs] or None)
            job_id = cli.sbatch(argv)
            submitted.append(job_id)
            if len(req.jobs) > 1 or job.array:
                what = f"array of {job.array.size} task(s)" if job.array else f"{len(job.components)} component(s)"
                log.info(f"submitted job {job.index + 1}/{len(req.jobs)} ({job.stage or job.components[0].command.role}:"
                         f" {what}) as {job_id}, held")
            companion = None
            if job.policy.enabled:
                companion = cli.sbatch(companion_argv(
                    req.opts.python, records.store.url, submitted[0], job_id, req.opts.logs, req.app_name, argv
                ))
                submitted.append(companion)
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
        cli.release(submitted)
        if len(submitted) > 1:
            log.info(f"released {len(submitted)} job(s) of app {rec.app_id} together")
    except BaseException:
        if submitted:
            try:
                cli.cancel(submitted)
            except Exception:  # the original error is the one worth showing
                pass
        raise
    return rec
