"""Finishing or rolling back submissions whose client died between ``sbatch --hold`` and the release.

Every submission writes an intent before its first sbatch (:mod:`torchx_forge.state.intents`) and
submits a small **guard job** first, not held, that starts ``FORGE_HOLD_LIMIT`` seconds later
(default 300). A client that gets through cancels its guard. If the client dies, whichever comes
first recovers the submission: any later forge command that finds the intent stale, or the guard
job. The app record was written: the held jobs are released (the submission finishes). It was
not: they are cancelled (it rolls back). So a held job outlives its client by at most the hold
limit, plus the time the guard job waits for a free CPU.

An app of one job is sent without a hold and without a guard: its job runs whatever becomes of its
client, and a client killed before the record leaves the record in the intent; :func:`adopt`
writes it with the job id Slurm gave (found by the job's tag in squeue, or, once the job has left
squeue, in the claim its first task wrote).

    python -m torchx_forge.slurm.recover --state-dir DIR --submission ID     (the guard job)
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import List, Optional, Sequence

from torchx_forge.core import envvars, layout
from torchx_forge.core.options import SAME_PLACE
from torchx_forge.core.storage import StoreUnreachableError, store_wait
from torchx_forge.errors import SlurmError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.state.files import be_patient
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.records import AppRecord, Records
from torchx_forge.state.store import Store

MODULE = "torchx_forge.slurm.recover"
#: seconds a held job may outlive its client (the guard job's start delay)
HOLD_LIMIT = int(os.environ.get(envvars.HOLD_LIMIT.name, "300"))
#: an intent nobody touched for this long has lost its client (longer than an sbatch may retry)
STALE_AFTER = min(HOLD_LIMIT, 180)


def guard_argv(python: str, state_dir: str, submission: str, log_dir: str, app_name: str,
               flags: Sequence[str]) -> List[str]:
    """sbatch command of a submission's guard job; ``flags``: the first job's partition/account/qos."""
    command = shlex.join([python, "-m", MODULE, "--state-dir", state_dir, "--submission", submission])
    keep = [f for f in flags if f.split("=", 1)[0] in SAME_PLACE]
    return [
        "sbatch", "--parsable", f"--begin=now+{HOLD_LIMIT}", f"--job-name={layout.safe_name(app_name)}-guard",
        "--time=00:15:00", "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=128", "--no-requeue",
        f"--output={layout.guard_log(log_dir.replace('%', '%%'), app_name, submission)}", *keep, f"--wrap={command}",
    ]


def recover(cli: SlurmCli, records: Records, intents: Intents, intent: Intent, cancel_guard: bool = True) -> str:
    """Finish ``intent`` (release its jobs) when its record was written, else roll it back."""
    rec = records.load(intent.app_id) if intent.app_id else None
    if intent.direct:
        what = adopt(cli, records, intent)
    elif rec is not None:
        try:
            cli.release(rec.job_ids(companions=True))
        except SlurmError as e:  # released already (the client died right after), or ended
            if not any(w in e.stderr.lower() for w in ("already", "invalid job id", "completed")):
                raise
        what = f"finished: released app slurm_forge://torchx/{rec.app_id} ({intent.app_name})"
    else:
        ids = sorted(set(intent.jobs) | set(cli.find_tagged(intent.tag, prefix=True)) - {intent.guard}, key=int)
        cli.cancel(ids)
        what = f"rolled back: cancelled {', '.join(ids) or 'nothing'} ({intent.app_name} never got an app id)"
    if cancel_guard and intent.guard:
        cli.cancel([intent.guard])
    intents.done(intent)
    return f"submission {intent.submission}, whose client stopped before it ended, {what}"


def adopt(cli: SlurmCli, records: Records, intent: Intent) -> str:
    """A direct submission whose client died before its record: the record the intent carries, for
    the job Slurm gave (the newest tagged job whose id no other app of the state dir has: a taken
    one is cancelled, its tasks never ran), or nothing when no sbatch went through."""
    cluster = str(intent.record.get("cluster", ""))
    found = [layout.app_id_of(j, cluster) for j in intent.jobs or cli.find_tagged(intent.tag, prefix=True)]
    found = found or Intents(records.store).claimed(intent)
    owners = {a: records.load(a) for a in found}
    mine = [a for a, rec in owners.items() if rec is not None and rec.submission == intent.submission]
    if mine:  # the client died after writing the record
        return f"finished: app slurm_forge://torchx/{mine[0]} ({intent.app_name}) was recorded"
    free = [a for a in found if owners[a] is None]
    taken = [layout.split_app_id(a)[1] for a in found if a not in free]
    if taken:
        cli.cancel(taken, ended_ok=True)
    if not free or not intent.record:
        return f"rolled back: nothing of it is queued ({intent.app_name} never got an app id)"
    app_id = free[-1]
    obj = dict(intent.record, app_id=app_id)
    obj["jobs"] = [dict(obj["jobs"][0], job_id=layout.split_app_id(app_id)[1])]
    records.save(AppRecord.from_json(obj, records.store.url_of(layout.intent(intent.submission))))
    return f"adopted: app slurm_forge://torchx/{app_id} ({intent.app_name}), which was running without its record"


def recover_stale(cli: SlurmCli, records: Records, after: float = STALE_AFTER) -> List[str]:
    """Recover every stale submission in the state dir; returns what was done, one line each.
    A state dir whose store does not answer is left for the next command: the command that
    asked says what is wrong with it."""
    intents = Intents(records.store)
    try:
        pending = intents.pending()
    except StoreUnreachableError:
        return []
    return [recover(cli.on(i.cluster or None), records, intents, i) for i in pending if i.stale(after)]


def guard(state_dir: str, submission: str, poll: float = 10.0, limit: float = 600.0) -> int:
    """The guard job: wait while the client still works on the submission, then recover it."""
    records = Records(Store(state_dir))
    intents = Intents(records.store)
    deadline = time.monotonic() + limit
    while True:
        intent = intents.load(submission)
        if intent is None:
            print(f"torchx-forge: submission {submission} ended normally; nothing to do", flush=True)
            return 0
        if intent.stale(STALE_AFTER) or time.monotonic() > deadline:
            cli = SlurmCli(cluster=intent.cluster or None)
            print(f"torchx-forge: {recover(cli, records, intents, intent, cancel_guard=False)}", flush=True)
            return 0
        time.sleep(poll)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--submission", required=True)
    args = p.parse_args(argv)
    be_patient(store_wait())  # on a compute node: ride out a short outage of an object-store state dir
    sys.exit(guard(args.state_dir, args.submission))


if __name__ == "__main__":
    main()
