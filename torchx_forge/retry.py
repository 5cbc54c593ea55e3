"""Retries that need no process on the login node.

Three paths bring a task back, each counted against its ``max_retries``:

- **Requeue in place** (same job id): the batch script asks ``decide`` after its
  tasks end; when they were warned before the time limit (or failed, with FAILED
  in ``retry_on``) it runs ``scontrol requeue`` on itself. Preemption and node
  failure are requeued by Slurm itself (the jobs are submitted ``--requeue``).
- **The companion job**: every job with retries gets a small job with
  ``--dependency=afternotok:<job> --kill-on-invalid-dep=yes``. It only runs if
  the job ends badly (a hard TIMEOUT, OUT_OF_MEMORY, a kill), reads sacct and
  resubmits just the tasks whose end state is in ``retry_on`` and that have
  retries left, linked to the same app (``apps/<app>/jobs/<new id>.json``),
  each with its own companion.
- **By hand**: ``torchx forge retry slurm_forge://SESSION/APP`` resubmits the
  failed or cancelled tasks of an app (``resubmit`` below).

Resubmitted tasks keep their replica ids (the same array task ids) and resume
from their checkpoint through the launcher; `torchx log` shows the logs of every
job that ran them.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from torchx_forge.policy import Outcome, RetryPolicy, decide, parse_retry_on

COMPANION_TIME = "00:10:00"
SACCT_WAIT = 180  # seconds the companion waits for sacct to show every task's end


def ranges(ids: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (an sbatch --array spec)."""
    out: List[str] = []
    ids = sorted(set(ids))
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)


def companion_argv(python: str, state_dir: str, app_id: str, job_id: str, log_dir: str, app_name: str,
                   flags: Sequence[str]) -> List[str]:
    """sbatch command of the companion of ``job_id``; ``flags`` are the job's partition/account/qos."""
    from torchx_forge.request import safe_name

    command = shlex.join([python, "-m", "torchx_forge.retry", "companion", "--state-dir", state_dir,
                          "--app", app_id, "--job", job_id])
    keep = [f for f in flags if f.split("=", 1)[0] in ("--partition", "--account", "--qos")]
    return [
        "sbatch", "--parsable", "--hold", f"--dependency=afternotok:{job_id}", "--kill-on-invalid-dep=yes",
        f"--job-name={safe_name(app_name)}-retry", f"--time={COMPANION_TIME}", "--nodes=1", "--ntasks=1",
        "--cpus-per-task=1", "--mem=256", "--no-requeue",
        f"--output={log_dir.replace('%', '%%')}/{safe_name(app_name)}-{job_id}.retry.log", *keep,
        f"--wrap={command}",
    ]


def clean_env() -> Dict[str, str]:
    """The environment for an sbatch run from inside a job: without the job's own SLURM_*/SBATCH_* vars."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}


def _resubmit_argv(argv: Sequence[str], app_id: str, tasks: Optional[List[int]], extra_retries: int,
                   dependency: Optional[str] = None) -> List[str]:
    drop = ("--hold", "--parsable", "--array", "--export", "--dependency")
    flags = [a for a in argv[1:-1] if a.split("=", 1)[0] not in drop]
    export = f"--export=ALL,FORGE_APP_ID={app_id}" + (f",FORGE_EXTRA_RETRIES={extra_retries}" if extra_retries else "")
    out = ["sbatch", "--parsable", "--hold", export]
    if tasks is not None:
        out.append(f"--array={ranges(tasks)}")
    if dependency:
        out.append(f"--dependency={dependency}")
    return out + flags + [argv[-1]]


def dependency_of(argv: Sequence[str]) -> str:
    """The --dependency expression of an sbatch command line ("" when none)."""
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--dependency=")), "")


def resubmit(cli, records, rec, job, tasks: Optional[List[int]], python: str, extra_retries: int = 0,  # type: ignore[no-untyped-def]
             dependency: Optional[str] = None):
    """Submit ``tasks`` of ``job`` again (all of it for a het job); returns the new JobRecord.

    ``dependency`` replaces the job's own (resubmitted dependents wait for the resubmitted jobs).
    """
    from torchx_forge.records import JobRecord

    if not job.argv or not os.path.exists(job.argv[-1]):
        raise RuntimeError(f"cannot resubmit job {job.job_id}: its script {job.argv[-1] if job.argv else '?'} is gone")
    env = clean_env()
    argv = _resubmit_argv(job.argv, rec.app_id, tasks if job.kind == "array" else None, extra_retries, dependency)
    new_id = cli.sbatch(argv, env=env)
    submitted = [new_id]
    try:
        companion = None
        if job.max_retries > 0:
            flags = [a for a in job.argv if a.startswith("--")]
            companion = cli.sbatch(
                companion_argv(python, records.store.url, rec.app_id, new_id, rec.log_dir, rec.name, flags), env=env
            )
            submitted.append(companion)
        new = JobRecord(
            job_id=new_id, kind=job.kind, script=job.script, components=job.components, role=job.role,
            offset=job.offset, size=job.size, nodes=job.nodes, argv=argv,
            tasks=list(tasks) if job.kind == "array" and tasks is not None else None,
            retry_of=job.job_id, companion=companion, max_retries=job.max_retries, retry_on=list(job.retry_on),
        )
        records.add_job(rec.app_id, new)
        cli.release(submitted)
    except BaseException:
        cli.cancel(submitted)
        raise
    return new


def follow_dependents(cli, records, rec, old: str, new, python: str) -> List[Any]:  # type: ignore[no-untyped-def]
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
        tasks = per_run[0].tasks if per_run and job.kind == "array" else None
        again = resubmit(cli, records, rec, job, tasks, python, dependency=new_dep)
        moved[job.job_id] = again
        out.append(again)
    return out


# -- in the batch script: requeue or not -------------------------------------------------


def cmd_decide(args: argparse.Namespace) -> int:
    """Exit 0 when the job should requeue itself; print why either way (into the batch log)."""
    from torchx_forge.launch import TaskState

    env = os.environ
    extra = int(env.get("FORGE_EXTRA_RETRIES", "0") or 0)
    policy = RetryPolicy(max_retries=int(env.get("FORGE_MAX_RETRIES", "0") or 0) + extra,
                         retry_on=parse_retry_on(env.get("FORGE_RETRY_ON")), warning=None)
    states = []
    outcomes, used = [], 1
    for task in args.task:
        role, _, replica = task.rpartition(":")
        st = TaskState(env.get("FORGE_STATE_DIR", ""), env.get("FORGE_APP_ID", ""), role, int(replica)).load()
        states.append(st)
        last = st.history[-1] if st.history else {}
        try:
            outcomes.append(Outcome(last.get("outcome")))
        except ValueError:
            outcomes.append(Outcome.FAILED)  # the launcher never reported an end
        used = max(used, int(last.get("attempt", 0)) + 1)
    d = decide(outcomes, used, policy)
    print(f"torchx-forge: {'requeueing' if d.requeue else 'not requeueing'} ({d.reason})", flush=True)
    if not d.requeue and d.reason.startswith("retries exhausted"):
        for st in states:
            if st.history:
                st.write({**st.history[-1], "note": d.reason})
    return 0 if d.requeue else 1


# -- the companion job ---------------------------------------------------------------------


def _wait_for_ends(cli, job, keys: List[str]):  # type: ignore[no-untyped-def]
    from torchx_forge.slurm_parse import FINAL_SLURM_STATES, group_attempts

    deadline = time.monotonic() + SACCT_WAIT
    while True:
        rows = cli.sacct([job.job_id])
        if rows is None:
            return None
        hist = group_attempts(rows)
        if all(k in hist and hist[k].last.state in FINAL_SLURM_STATES for k in keys) or time.monotonic() > deadline:
            return hist
        time.sleep(3)


def select_tasks(rec, job, hist, files: Dict[str, dict], cancelled: bool) -> Tuple[List[Tuple[str, int, int]], List[str]]:  # type: ignore[no-untyped-def]
    """(role, replica, array task) of the tasks to retry, and notes on those that will not be."""
    chosen, notes = [], []
    retry_on = tuple(job.retry_on)
    for key, role, replica, _stem in job.keys():
        f = files.get(f"{role}.{replica}", {})
        if hist is not None:
            state = hist[key].last.state if key in hist else "UNKNOWN"
        else:  # no accounting: a task killed from outside is taken for a TIMEOUT unless it was cancelled
            state = {"KILLED": "CANCELLED" if cancelled else "TIMEOUT", "RUNNING": "NODE_FAIL"}.get(f.get("state", ""), f.get("state", "UNKNOWN"))
        used = max(len(f.get("history") or []), 1)
        if state not in retry_on or f.get("outcome") in (Outcome.EXHAUSTED.value, Outcome.BAD_CHECKPOINT.value):
            continue
        if used > job.max_retries + int(os.environ.get("FORGE_EXTRA_RETRIES", "0") or 0):
            notes.append(f"{role}[{replica}] {state}: retries exhausted after {used} attempt(s)")
            continue
        task = int(key.rsplit("_", 1)[1]) if job.kind == "array" else -1
        chosen.append((role, replica, task))
    return chosen, notes


def cmd_companion(args: argparse.Namespace) -> int:
    from torchx_forge.records import Records, Store
    from torchx_forge.slurm_cli import SlurmCli

    records = Records(Store(args.state_dir))
    rec = records.load(args.app)
    if rec is None:
        print(f"torchx-forge: no record of app {args.app} in {args.state_dir}", file=sys.stderr)
        return 1
    job = next((j for j in rec.jobs if j.job_id == args.job), None)
    if job is None:
        print(f"torchx-forge: app {args.app} has no job {args.job}", file=sys.stderr)
        return 1
    cli = SlurmCli()
    keys = [k for k, _, _, _ in job.keys()]
    hist = _wait_for_ends(cli, job, keys)
    files = records.task_states(rec.app_id)
    chosen, notes = select_tasks(rec, job, hist, files, records.cancelled(rec.app_id))
    for note in notes:
        print(f"torchx-forge: {note}", flush=True)
        role, replica = note.split(" ", 1)[0].rstrip("]").split("[")
        _note(records, rec.app_id, role, int(replica), note.split(": ", 1)[1])
    if not chosen:
        print(f"torchx-forge: job {job.job_id}: nothing to retry", flush=True)
        return 0
    tasks = sorted({t for _, _, t in chosen}) if job.kind == "array" else None
    new = resubmit(cli, records, rec, job, tasks, sys.executable)
    what = ", ".join(f"{r}[{k}]" for r, k, _ in chosen)
    print(f"torchx-forge: resubmitted {what} as job {new.job_id} (companion {new.companion})", flush=True)
    for dep in follow_dependents(cli, records, rec, job.job_id, new, sys.executable):
        print(f"torchx-forge: resubmitted the dependent job {dep.retry_of} as {dep.job_id}", flush=True)
    return 0


def _note(records, app_id: str, role: str, replica: int, note: str) -> None:  # type: ignore[no-untyped-def]
    from torchx_forge.launch import TaskState

    st = TaskState(records.store.url, app_id, role, replica).load()
    if st.history:
        st.write({**st.history[-1], "note": note})


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m torchx_forge.retry")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decide", help="(batch script) should this job requeue itself?")
    d.add_argument("--task", action="append", default=[], help="ROLE:REPLICA of a task of this job")
    d.add_argument("--exit-code", type=int, default=0)
    c = sub.add_parser("companion", help="(companion job) resubmit the tasks of a job that ended badly")
    c.add_argument("--state-dir", required=True)
    c.add_argument("--app", required=True)
    c.add_argument("--job", required=True)
    args = p.parse_args(argv)
    sys.exit(cmd_decide(args) if args.cmd == "decide" else cmd_companion(args))


if __name__ == "__main__":
    main()
