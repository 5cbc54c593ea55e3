"""Submitting an adaptive search (:func:`submit_search`, from ``torchx run``): the spec and the
first trials written, each trial held with its relay job (see
:meth:`~torchx_forge.slurm.search.Search.decide_argv`), the record, one release; or, on any
error, everything cancelled and the record forgotten. The trials' script ends with
:func:`~torchx_forge.slurm.search_end.epilogue` (:mod:`~torchx_forge.slurm.jobs`): a trial whose
tasks ended submits its decision job itself."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, List

from torchx_forge.core import layout
from torchx_forge.core.record import replace
from torchx_forge.core.states import JobKind
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.request import ForgeBatchRequest
from torchx_forge.slurm.scripts import save as save_script
from torchx_forge.slurm.scripts import sbatch_script
from torchx_forge.slurm.search import Search
from torchx_forge.slurm.search_reconcile import trial_tag
from torchx_forge.state.records import AppRecord, JobRecord, Records


def submit_search(cli: SlurmCli, records: Records, req: ForgeBatchRequest, spec: Any) -> AppRecord:
    """Submit a search: its spec and first trials written, each trial held with its decision job,
    the record, one release (or everything cancelled)."""
    from torchx_forge.search import apply, decide  # noqa: PLC0415
    from torchx_forge.slurm.submit import _job_record, _role_records, check, fitted  # noqa: PLC0415
    from torchx_forge.state.codeversion import code_version  # noqa: PLC0415

    cli = cli.on(req.opts.cluster)
    req = fitted(cli, records, req)
    check(req)
    if len(req.jobs) != 1 or req.jobs[0].array is None:
        raise ConfigError(f"search {req.app_name!r}", "a search runs its trials as tasks of one job array: give every"
                          " trial the same resources, and a max_array_size of at least search.trials")
    job = replace(req.jobs[0], wave=0)
    submission = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    sdir = f"searches/{submission}"
    path = save_script(records.store, submission, 0, job.materialize())
    template = replace(_job_record(job, "template", path, job.argv(path, hold=True), None), max_retries=0, companion=None)
    search = Search(cli, records, sdir, submission, spec)
    search.write_spec(template, req.opts.python)
    first = apply([], decide(spec, [], 0))
    for t in first:  # the trial files before any sbatch
        search.write_trial(t)
    submitted: List[str] = []
    jobs: List[JobRecord] = [replace(template, job_id="search.planned", planned=True, argv=[], tasks=None)]
    app_id = ""
    try:
        for t in first:
            tag = trial_tag(submission, t)
            argv = search.trial_argv(template, app_id or None, t, hold=True)
            job_id = sbatch_script(cli, argv, tag=tag)
            submitted.append(job_id)
            app_id = app_id or layout.app_id_of(job_id, (cli.cluster or "") if req.opts.cluster else "")
            jobs.append(replace(template, job_id=job_id, argv=argv, tasks=[t.number], tag=tag))
        for t, trial_job in zip(first, jobs[1:], strict=True):
            argv = search.decide_argv(req.app_name, req.opts.logs, app_id, trial_job.job_id, req.opts.python,
                                      template.argv, hold=True, relay=f"{trial_tag(submission, t)}dr")
            decision = cli.sbatch(argv, tag=f"{trial_tag(submission, t)}d")
            submitted.append(decision)
            jobs.append(JobRecord(job_id=decision, kind=JobKind.DECIDE.value, argv=argv, tag=f"{trial_tag(submission, t)}d"))
        search.write_decide_script(req.app_name, req.opts.logs, app_id, req.opts.python, template.argv)
        rec = AppRecord(app_id=app_id, cluster=(cli.cluster or "") if req.opts.cluster else "", name=req.app_name,
                        jobs=jobs, roles=_role_records(req), log_dir=req.opts.logs, job_dir=req.opts.job_dir,
                        submission=submission,
                        meta=replace(req.meta(), code=code_version(os.getcwd(), records.store), search=sdir))
        records.save(rec)
        cli.release(submitted)
    except BaseException:
        if submitted:
            cli.cancel(submitted, ended_ok=True)
        if app_id:
            records.forget(app_id)
        raise
    return rec
