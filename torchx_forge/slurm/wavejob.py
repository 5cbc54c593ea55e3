"""The wave job: submits the next wave of a sweep from a compute node (see :mod:`torchx_forge.slurm.waves`).

    python -m torchx_forge.slurm.wavejob --state-dir DIR --app APP --wave K

It submits wave K's planned jobs (each tagged, so a retried sbatch never makes two), links each
to the app as it goes, then the wave job of wave K + 1, held by ``--dependency=afterany`` on
this wave's arrays. A wave job that meets a limit anyway (other jobs of the user took the room)
submits what fits, then a copy of itself that starts :data:`RETRY_AFTER` seconds later.
Cancelling the app cancels the waiting wave job and marks the app cancelled, which every wave
job checks before it submits anything.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import List, Optional, Sequence

from torchx_forge.core import envvars
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.core.record import replace
from torchx_forge.core.states import JobKind
from torchx_forge.core.storage import StoreError, store_wait
from torchx_forge.errors import SlurmError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.resubmit import clean_env, companion_argv
from torchx_forge.slurm.scripts import ScriptMissingError, sbatch_script
from torchx_forge.slurm.waves import WAVE_MODULE, wave_argv
from torchx_forge.state.files import be_patient
from torchx_forge.state.records import AppRecord, JobRecord, Records
from torchx_forge.state.store import Store

#: seconds a wave job that met a limit waits before it tries again
RETRY_AFTER = 60
#: Slurm's words when a submit limit or the controller's job table is full
LIMIT_HIT = ("qosmaxsubmitjobperuserlimit", "assocmaxsubmitjoblimit", "job submit limit", "maxsubmitjobs",
             "invalid job array specification", "temporarily unable to accept job", "resource temporarily unavailable")


def limit_hit(e: SlurmError) -> bool:
    low = (e.stderr + e.stdout).lower()
    return any(w in low for w in LIMIT_HIT)


class WaveJob:
    """What one wave job does: submit its wave's planned jobs, then the next wave job."""

    def __init__(self, cli: SlurmCli, records: Records, rec: AppRecord, wave: int, python: str) -> None:
        self.cli, self.records, self.rec, self.wave, self.python = cli, records, rec, wave, python
        self.env = clean_env()
        self.added: List[str] = []

    def say(self, text: str) -> None:
        print(f"torchx-forge: {time.strftime('%H:%M:%S')} wave {self.wave + 1} of {self.rec.waves}: {text}", flush=True)

    def submitted(self) -> List[str]:
        """Placeholder ids of this app's planned jobs that a wave job has submitted already."""
        return [j.replaces for j in self.rec.jobs if j.replaces]

    def run(self) -> int:
        done = set(self.submitted())
        todo = [j for j in self.rec.jobs if j.planned and j.wave == self.wave and j.job_id not in done]
        ids = [j.job_id for j in self.rec.jobs if j.wave == self.wave and j.replaces and not j.planned]
        for job in todo:
            if self.records.cancelled(self.rec.app_id):
                self.say("the app was cancelled; submitting nothing more")
                return 0
            try:
                ids.append(self.submit(job))
            except SlurmError as e:
                if not limit_hit(e):
                    raise
                self.say(f"a limit was hit ({e.first_line}); trying again in {RETRY_AFTER} s")
                return self.again(ids)
        self.say(f"submitted {len(todo)} job(s) ({sum(j.size for j in todo):,} task(s))")
        if self.wave + 1 < self.rec.waves:
            self.next_wave(ids)
        if self.records.cancelled(self.rec.app_id):  # cancelled while this ran: take back what it added
            self.cli.cancel(self.added, ended_ok=True)
            self.say("the app was cancelled meanwhile; cancelled what this wave submitted")
        return 0

    def submit(self, planned: JobRecord) -> str:
        """One planned job, and its companion; linked to the app as it goes."""
        argv = [*planned.argv[:2], f"--export=ALL,{envvars.APP_ID.name}={self.rec.app_id}", *planned.argv[2:]]
        tag = f"{self.rec.submission}-{planned.job_id}"
        job_id = sbatch_script(self.cli, argv, env=self.env, tag=tag)  # its script, from the state dir
        self.added.append(job_id)
        companion = None
        if planned.max_retries > 0:
            flags = [a for a in planned.argv if a.startswith("--")]
            companion = self.cli.sbatch([a for a in companion_argv(
                self.python, self.records.store.url, self.rec.app_id, job_id, self.rec.log_dir, self.rec.name, flags,
            ) if a != "--hold"], env=self.env, tag=f"{tag}c")
            self.added.append(companion)
        self.records.add_job(self.rec.app_id, replace(
            planned, job_id=job_id, argv=argv, planned=False, replaces=planned.job_id, companion=companion,
            created=time.time(), tag=tag,
        ))
        return job_id

    def _wave_job(self, wave: int, after: Sequence[str], begin: Optional[int] = None) -> str:
        flags = next((j.argv for j in self.rec.jobs if j.planned), [])
        argv = wave_argv(self.python, self.records.store.url, self.rec.app_id, wave, self.rec.log_dir, self.rec.name,
                         flags, after, begin)
        tag = f"{self.rec.submission}-wave{wave}-{uuid.uuid4().hex[:6]}"
        job_id = self.cli.sbatch([a for a in argv if a != "--hold"], env=self.env, tag=tag)
        self.added.append(job_id)
        self.records.add_job(self.rec.app_id, JobRecord(job_id=job_id, kind=JobKind.WAVE.value, argv=argv, wave=wave, tag=tag))
        return job_id

    def next_wave(self, ids: Sequence[str]) -> None:
        job_id = self._wave_job(self.wave + 1, ids)
        self.say(f"wave {self.wave + 2} will be submitted by job {job_id} once these have ended")

    def again(self, ids: Sequence[str]) -> int:
        job_id = self._wave_job(self.wave, [], begin=RETRY_AFTER)
        self.say(f"the rest of this wave will be submitted by job {job_id}")
        return 0


def run_wave(state_dir: str, app_id: str, wave: int) -> int:
    records = Records(Store(state_dir))
    try:
        rec = records.load(app_id)
        if rec is None:
            print(f"torchx-forge: no record of app {app_id} in {state_dir}", file=sys.stderr)
            return 1
        return WaveJob(SlurmCli(cluster=rec.cluster or None), records, rec, wave, sys.executable).run()
    except (StoreError, ScriptMissingError, NewerFormatError) as e:  # one line in the wave log; `torchx forge retry` submits it
        print(f"torchx-forge: wave {wave + 1} of app {app_id}: {e}", file=sys.stderr, flush=True)
        return 1


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m {WAVE_MODULE}", description="(wave job) submit the next wave of a sweep")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--wave", required=True, type=int)
    args = p.parse_args(argv)
    be_patient(store_wait())  # on a compute node: ride out a short outage of an object-store state dir
    sys.exit(run_wave(args.state_dir, args.app, args.wave))


if __name__ == "__main__":
    main()
