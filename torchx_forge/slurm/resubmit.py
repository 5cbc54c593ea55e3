"""Resubmitting tasks, with no process on the login node.

Three paths bring a task back, each counted against its retry budget
(:attr:`~torchx_forge.core.policy.RetryPolicy.budget`):

- **Requeue in place** (same job id): the batch script asks :mod:`torchx_forge.node.decide`
  after its tasks end; when they were warned before the time limit (or failed, with FAILED in
  ``retry_on``) it runs ``scontrol requeue`` on itself. Preemption and node failure are requeued
  by Slurm itself (the jobs are submitted ``--requeue``).
- **The companion job** (here): every job with retries gets a small job with
  ``--dependency=afternotok:<job> --kill-on-invalid-dep=yes``. It only runs if the job ends
  badly (a hard TIMEOUT, OUT_OF_MEMORY, a kill), reads sacct and resubmits just the tasks whose
  end state is in ``retry_on`` and that have retries left, linked to the same app
  (``apps/<app>/jobs/<new id>.json``), each with its own companion.
- **By hand**: ``torchx forge retry slurm_forge://SESSION/APP`` resubmits the failed or
  cancelled tasks of an app (:func:`retry_by_hand`, :func:`resubmit`), granting each one more attempt.

Resubmitted tasks keep their replica ids (the same array task ids) and resume from their
checkpoint through the launcher; ``torchx log`` shows the logs of every job that ran them.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
import uuid
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from torchx_forge.core import envvars, layout
from torchx_forge.core.options import SAME_PLACE
from torchx_forge.core.policy import exhausted_note
from torchx_forge.core.record import replace
from torchx_forge.core.states import JobKind, SlurmState
from torchx_forge.core.storage import store_wait
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.identity import Owner
from torchx_forge.slurm.parse import TaskHistory, group_attempts
from torchx_forge.slurm.scripts import ScriptMissingError, again_while_taken, submit_script
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.files import be_patient
from torchx_forge.state.records import AppRecord, JobRecord, Records
from torchx_forge.state.store import Store
from torchx_forge.state.taskfile import TaskFile, TaskReport

MODULE = "torchx_forge.slurm.resubmit"
COMPANION_TIME = "00:10:00"
SACCT_WAIT = 180  # seconds the companion waits for sacct to show every task's end
#: End states `torchx forge retry` resubmits by default.
RETRY_BY_HAND = tuple(s.value for s in SlurmState if s.final and s is not SlurmState.COMPLETED)


def ranges(ids: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (an sbatch --array spec)."""
    out: List[str] = []
    ordered = sorted(set(ids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def companion_argv(python: str, state_dir: str, app_id: str, job_id: str, log_dir: str, app_name: str,
                   flags: Sequence[str]) -> List[str]:
    """sbatch command of the companion of ``job_id``; ``flags`` are the job's partition/account/qos."""
    command = shlex.join([python, "-m", MODULE, "companion", "--state-dir", state_dir, "--app", app_id, "--job", job_id])
    keep = [f for f in flags if f.split("=", 1)[0] in SAME_PLACE]
    return [
        "sbatch", "--parsable", "--hold", f"--dependency=afternotok:{job_id}", "--kill-on-invalid-dep=yes",
        f"--job-name={layout.safe_name(app_name)}-retry", f"--time={COMPANION_TIME}", "--nodes=1", "--ntasks=1",
        "--cpus-per-task=1", "--mem=256", "--no-requeue",
        f"--output={layout.companion_log(log_dir.replace('%', '%%'), app_name, job_id)}", *keep,
        f"--wrap={command}",
    ]


def clean_env() -> Dict[str, str]:
    """The environment for an sbatch run from inside a job: without the job's own SLURM_*/SBATCH_*
    vars (SLURM_CONF, the cluster's configuration, stays)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_")) or k == "SLURM_CONF"}


def _resubmit_argv(argv: Sequence[str], app_id: str, tasks: Optional[List[int]], extra_retries: int,
                   dependency: Optional[str] = None) -> List[str]:
    drop = ("--hold", "--parsable", "--array", "--export", "--dependency")
    flags = [a for a in argv[1:-1] if a.split("=", 1)[0] not in drop]
    export = f"--export=ALL,{envvars.APP_ID.name}={app_id}" + (
        f",{envvars.EXTRA_RETRIES.name}={extra_retries}" if extra_retries else "")
    out = ["sbatch", "--parsable", "--hold", export]
    if tasks is not None:
        out.append(f"--array={ranges(tasks)}")
    if dependency:
        out.append(f"--dependency={dependency}")
    return out + flags + [argv[-1]]


def dependency_of(argv: Sequence[str]) -> str:
    """The --dependency expression of an sbatch command line ("" when none)."""
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--dependency=")), "")


class SupersededError(Exception):
    """Another forge command made the same resubmission (``once``) first: this one took its own back."""


def resubmit(cli: SlurmCli, records: Records, rec: AppRecord, job: JobRecord, tasks: Optional[List[int]], python: str,
             extra_retries: int = 0, dependency: Optional[str] = None, once: Optional[str] = None) -> JobRecord:
    """Submit ``tasks`` of ``job`` again (all of it for a het job); returns the new JobRecord.

    ``extra_retries`` raise the tasks' budget (a by-hand retry grants the attempts they used);
    ``dependency`` replaces the job's own (resubmitted dependents wait for the resubmitted jobs).
    ``once``: a tag prefix several processes may race for (:mod:`torchx_forge.slurm.lost`): of the
    held jobs that carry it, the oldest is kept, and a younger one is cancelled (:class:`SupersededError`).
    """
    if not job.argv:
        raise ScriptMissingError(f"cannot resubmit job {job.job_id}: its record has no sbatch command")
    env = clean_env()
    extra = extra_retries or job.extra_retries
    argv = _resubmit_argv(job.argv, rec.app_id, tasks if job.job_kind is JobKind.ARRAY else None, extra, dependency)
    tag = f"{once or rec.app_id + '-again'}-{uuid.uuid4().hex[:8]}"  # a retried sbatch must not resubmit twice
    first = submit_script(cli, argv, env=env, tag=tag, job=job.job_id)  # the script kept in the state dir
    submitted = [first[0]]
    try:
        taken = set(rec.job_ids(companions=True))  # an id this app had, lost in a crash, would mix up its records
        new_id, _, job_tag = again_while_taken(cli, argv, tag, first, lambda j, _: j in taken, env, job.job_id,
                                               replaced=lambda old, new: submitted.__setitem__(0, new))
        if once is not None and any(int(j) < int(new_id) for j in _rivals(cli, once, submitted)):
            raise SupersededError(once)
        companion = None
        if job.max_retries > 0:
            flags = [a for a in job.argv if a.startswith("--")]
            companion = cli.sbatch(
                companion_argv(python, records.store.url, rec.app_id, new_id, rec.log_dir, rec.name, flags), env=env,
                tag=f"{tag}c",
            )
            submitted.append(companion)
        new = replace(
            job, job_id=new_id, argv=argv, tasks=list(tasks) if job.job_kind is JobKind.ARRAY and tasks is not None else None,
            retry_of=job.job_id, companion=companion, extra_retries=extra, created=time.time(), tag=job_tag,
        )
        records.add_job(rec.app_id, new)
        cli.release(submitted)
    except BaseException:
        cli.cancel(submitted, ended_ok=True)
        raise
    return new


#: squeue states of a job that may still run (a cancelled rival does not count)
LIVE = "PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING,REQUEUED,REQUEUE_HOLD,REQUEUE_FED,RESIZING"


def live_tagged(cli: SlurmCli, prefix: str) -> List[str]:
    """Ids of this user's jobs that may still run and carry a tag ``<prefix>-...``, oldest first."""
    return cli.find_tagged(f"{prefix}-", prefix=True, states=LIVE)


def _rivals(cli: SlurmCli, once: str, mine: Sequence[str]) -> List[str]:
    return [j for j in live_tagged(cli, once) if j not in mine]


def follow_dependents(cli: SlurmCli, records: Records, rec: AppRecord, old: str, new: JobRecord,
                      python: str) -> List[JobRecord]:
    """Pipelines: steps that waited (afterok/aftercorr) for ``old`` were cancelled by Slurm when it
    failed (--kill-on-invalid-dep); submit them again waiting for ``new`` instead, transitively,
    so a run that succeeds on retry is still evaluated and the join still runs."""
    moved = {old: new}
    out = []
    for job in rec.jobs:
        dep = dependency_of(job.argv)
        if job.job_id in moved or not dep:
            continue
        waits = [(kind, i) for kind, ids in re.findall(r"(afterok|aftercorr):([\d:]+)", dep) for i in ids.split(":")]
        hit = [(kind, i) for kind, i in waits if i in moved]
        if not hit:
            continue  # afterany/afternotok steps ran (or will run) anyway
        new_dep = re.sub(r"\b\d+\b", lambda m: moved[m.group()].job_id if m.group() in moved else m.group(), dep)
        per_run = [moved[i] for kind, i in hit if kind == "aftercorr"]
        tasks = per_run[0].tasks if per_run and job.job_kind is JobKind.ARRAY else None
        again = resubmit(cli, records, rec, job, tasks, python, dependency=new_dep)
        moved[job.job_id] = again
        out.append(again)
    return out


# -- the companion job ---------------------------------------------------------------------


def retry_by_hand(cli: SlurmCli, records: Records, rec: AppRecord, views: Sequence[TaskView], states: Iterable[str],
                  python: str) -> List[Tuple[str, List[str]]]:
    """``torchx forge retry``: resubmit the tasks of ``rec`` that ended (``views``: their status) in
    one of ``states``, job by job, each granted one more attempt whatever its budget, and the
    pipeline steps that wait for them. Returns (new job id, tasks) pairs."""
    wanted = set(states)
    by_key = {(v.role, v.replica): v for v in views}
    out = []
    followed: Set[str] = set()
    for job in list(rec.jobs):
        if job.job_id in followed:  # already resubmitted behind the step it waits for
            continue
        picked = [(role, k, key) for key, role, k, j in rec.tasks()
                  if j is job and by_key[(role, k)].final and by_key[(role, k)].slurm_state.value in wanted]
        if not picked:
            continue
        used = max(by_key[(r, k)].attempts for r, k, _ in picked)
        tasks = sorted(int(key.rsplit("_", 1)[1]) for _, _, key in picked) if job.job_kind is JobKind.ARRAY else None
        new = resubmit(cli, records, rec, job, tasks, python, extra_retries=used)
        out.append((new.job_id, [f"{r}[{k}]" for r, k, _ in picked]))
        for dep in follow_dependents(cli, records, rec, job.job_id, new, python):
            followed.add(dep.retry_of or "")
            out.append((dep.job_id, [f"{dep.role or dep.components[0][0]} (waits for {new.job_id})"]))
    return out


def _wait_for_ends(cli: SlurmCli, rec: AppRecord, job: JobRecord, keys: List[str]) -> Optional[Dict[str, TaskHistory]]:
    """The job's attempts as accounting has them once every task's end is there (or after SACCT_WAIT);
    only rows of the app's own jobs (an id Slurm gave again is another job's)."""
    deadline = time.monotonic() + SACCT_WAIT
    owner = Owner(rec)
    while True:
        rows = cli.sacct([job.job_id])
        if rows is None:
            return None
        hist = group_attempts(r for r in rows if owner(r))
        if all(k in hist and hist[k].last.state.final for k in keys) or time.monotonic() > deadline:
            return hist
        time.sleep(3)


def select_tasks(job: JobRecord, hist: Optional[Mapping[str, TaskHistory]], reports: Mapping[str, TaskReport],
                 cancelled: bool) -> Tuple[List[Tuple[str, int, int]], List[Tuple[str, int, str]]]:
    """(role, replica, array task) of the tasks to retry, and (role, replica, note) of those that will not be."""
    policy = job.policy()
    chosen: List[Tuple[str, int, int]] = []
    notes: List[Tuple[str, int, str]] = []
    for key, role, replica, _stem in job.task_keys():
        report = reports.get(layout.task_key(role, replica))
        if hist is not None:
            state = hist[key].last.state if key in hist else SlurmState.UNKNOWN
        elif report is not None and report.state is not None:
            state = report.state.as_slurm(cancelled, report.stopped_by)[0]  # no accounting: the launcher's report
        else:
            state = SlurmState.UNKNOWN
        if not policy.retries(state) or (report is not None and report.outcome is not None and report.outcome.refused):
            continue
        used = max(report.attempts if report else 1, 1)
        if not policy.attempts_left(used):
            notes.append((role, replica, f"{state.value}: {exhausted_note(used, policy)}"))
            continue
        task = int(key.rsplit("_", 1)[1]) if job.job_kind is JobKind.ARRAY else -1
        chosen.append((role, replica, task))
    return chosen, notes


def companion(state_dir: str, app_id: str, job_id: str) -> int:
    """The companion job of ``job_id``: resubmit its tasks that ended badly and have retries left."""
    records = Records(Store(state_dir))
    try:
        return _companion(records, state_dir, app_id, job_id)
    except ForgeError as e:  # a state dir that stayed unreachable, a script gone: one line in its log
        print(f"torchx-forge: companion of job {job_id}: {e}", file=sys.stderr, flush=True)
        return 1


def _companion(records: Records, state_dir: str, app_id: str, job_id: str) -> int:
    rec = records.load(app_id)
    if rec is None:
        print(f"torchx-forge: no record of app {app_id} in {state_dir}", file=sys.stderr)
        return 1
    job = next((j for j in rec.jobs if j.job_id == job_id), None)
    if job is None:
        print(f"torchx-forge: app {app_id} has no job {job_id}", file=sys.stderr)
        return 1
    if records.cancelled(rec.app_id):
        print(f"torchx-forge: app {rec.app_id} was cancelled; nothing to retry", flush=True)
        return 0
    cli = SlurmCli(cluster=rec.cluster or None)
    print(f"torchx-forge: job {job.job_id} ended badly; retry policy {job.policy().describe()}", flush=True)
    hist = _wait_for_ends(cli, rec, job, [k for k, _, _, _ in job.task_keys()])
    chosen, notes = select_tasks(job, hist, records.task_reports(rec.app_id), records.cancelled(rec.app_id))
    for role, replica, note in notes:
        print(f"torchx-forge: {role}[{replica}] {note}", flush=True)
        TaskFile(records.store.url, rec.app_id, role, replica).load().note(note.split(": ", 1)[1])
    if not chosen:
        print(f"torchx-forge: job {job.job_id}: nothing to retry", flush=True)
        return 0
    tasks = sorted({t for _, _, t in chosen}) if job.job_kind is JobKind.ARRAY else None
    new = resubmit(cli, records, rec, job, tasks, sys.executable)
    what = ", ".join(f"{r}[{k}]" for r, k, _ in chosen)
    print(f"torchx-forge: resubmitted {what} as job {new.job_id} (companion {new.companion})", flush=True)
    added = [new] + follow_dependents(cli, records, rec, job.job_id, new, sys.executable)
    for dep in added[1:]:
        print(f"torchx-forge: resubmitted the dependent job {dep.retry_of} as {dep.job_id}", flush=True)
    if records.cancelled(rec.app_id):  # cancelled while this ran: take back what it added
        cli.cancel([i for j in added for i in (j.job_id, j.companion) if i], ended_ok=True)
        print(f"torchx-forge: app {rec.app_id} was cancelled meanwhile; cancelled the resubmitted jobs", flush=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("companion", help="(companion job) resubmit the tasks of a job that ended badly")
    c.add_argument("--state-dir", required=True)
    c.add_argument("--app", required=True)
    c.add_argument("--job", required=True)
    args = p.parse_args(argv)
    be_patient(store_wait())  # on a compute node: ride out a short outage of an object-store state dir
    sys.exit(companion(args.state_dir, args.app, args.job))


if __name__ == "__main__":
    main()
