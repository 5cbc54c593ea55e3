"""Sweeps bigger than what a user may have queued: cut into waves (pure planning).

Clusters cap how many jobs a user may have queued (``MaxSubmitJobs``; every array task counts)
and how many job records the controller holds (``MaxJobCount``). :func:`pack` cuts an app's
jobs into waves that each fit (splitting arrays where needed). ``torchx run`` submits the first
wave and a small **wave job**, held by ``--dependency=afterany`` on that wave's arrays; when they
have ended it runs on a compute node, submits the next wave and the wave job after it
(:mod:`torchx_forge.slurm.wavejob`). The waves are one app: the record lists the jobs of later
waves as *planned* (status shows their tasks pending), and each wave job links the jobs it
submits to the app, as retries do.
"""

from __future__ import annotations

import shlex
from collections import deque
from typing import List, Optional, Sequence

from torchx_forge.core import layout
from torchx_forge.core.options import SAME_PLACE
from torchx_forge.core.record import replace
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.request import ArraySpec, JobRequest

#: the module the wave jobs run
WAVE_MODULE = "torchx_forge.slurm.wavejob"
WAVE_TIME = "00:15:00"
#: job records a wave needs besides its tasks: the wave job running it and the one waiting after it
WAVE_OVERHEAD = 2


def cost(job: JobRequest) -> int:
    """Job records one job of the app takes: its tasks, plus its companion when it has retries."""
    tasks = job.array.size if job.array else len(job.components)
    return tasks + (1 if job.policy.enabled else 0)


def _template(job: JobRequest) -> JobRequest:
    return replace(job, index=0, array=None)


def _merged(jobs: Sequence[JobRequest]) -> List[JobRequest]:
    """Consecutive arrays of one role (cut only at MaxArraySize so far) as one, to be cut again."""
    out: List[JobRequest] = []
    for job in jobs:
        prev = out[-1] if out else None
        if (prev is not None and prev.array and job.array and _template(prev) == _template(job)
                and prev.array.offset + prev.array.size == job.array.offset):
            out[-1] = replace(prev, array=ArraySpec(prev.array.size + job.array.size, prev.array.offset, prev.array.throttle))
        else:
            out.append(job)
    return out


def pack(jobs: Sequence[JobRequest], per_wave: Optional[int], first_room: Optional[int] = None,
         max_array: Optional[int] = None) -> List[JobRequest]:
    """``jobs`` with their ``wave`` set, arrays cut again where needed (never above ``max_array``
    tasks), so that no wave needs more than ``per_wave`` job records (the first one: ``first_room``,
    when the user has jobs queued already).

    ``per_wave`` None: one wave. Raises ConfigError when not even one task fits, or when a job that
    cannot be cut (a heterogeneous job) needs more than a wave holds.
    """
    if per_wave is None:
        return [replace(j, index=i) for i, j in enumerate(jobs)]
    rest_room = per_wave - WAVE_OVERHEAD
    room = (per_wave if first_room is None else first_room) - WAVE_OVERHEAD
    out: List[JobRequest] = []
    wave = 0
    todo = deque(_merged(jobs))
    while todo:
        job = todo.popleft()
        companion = 1 if job.policy.enabled else 0
        if job.array is None:
            if cost(job) > rest_room:
                raise ConfigError(f"app {job.app_name!r}", f"one job needs {cost(job)} Slurm job records but the submit"
                                  f" limit lets a wave hold {per_wave} (with {WAVE_OVERHEAD} for the wave jobs); only"
                                  " job arrays (sweeps) can be cut into waves")
            if cost(job) <= room:
                out.append(replace(job, wave=wave))
                room -= cost(job)
                continue
        else:
            if rest_room < 1 + companion:
                raise ConfigError(f"app {job.app_name!r}", f"the submit limit ({per_wave}) leaves no room for a task")
            take = min(job.array.size, max_array or job.array.size, room - companion)
            if take >= 1:
                a = job.array
                out.append(replace(job, wave=wave, array=ArraySpec(take, a.offset, a.throttle)))
                room -= take + companion
                if take < a.size:
                    todo.appendleft(replace(job, array=ArraySpec(a.size - take, a.offset + take, a.throttle)))
                continue
        if wave == 0 and not out:
            raise ConfigError(f"app {job.app_name!r}", f"no room to submit: your jobs already queued leave"
                              f" {max(room + WAVE_OVERHEAD, 0)} of your {per_wave} (the submit limit); wait for some"
                              " to end, or cancel some")
        todo.appendleft(job)
        wave, room = wave + 1, rest_room
    return [replace(j, index=i) for i, j in enumerate(out)]


def wave_argv(python: str, state_dir: str, app_id: str, wave: int, log_dir: str, app_name: str,
              flags: Sequence[str], after: Sequence[str], begin: Optional[int] = None) -> List[str]:
    """sbatch command of the job that submits ``wave`` once the jobs ``after`` have ended (held, so
    the client releases it with the app's jobs; a wave job releases the next one itself)."""
    command = shlex.join([python, "-m", WAVE_MODULE, "--state-dir", state_dir, "--app", app_id, "--wave", str(wave)])
    keep = [f for f in flags if f.split("=", 1)[0] in SAME_PLACE]
    when = [f"--dependency=afterany:{':'.join(after)}"] if after else []
    if begin:
        when.append(f"--begin=now+{begin}")
    return [
        "sbatch", "--parsable", "--hold", *when, f"--job-name={layout.safe_name(app_name)}-wave{wave}",
        f"--time={WAVE_TIME}", "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=256", "--no-requeue",
        f"--output={layout.wave_log(log_dir.replace('%', '%%'), app_name, wave)}", *keep, f"--wrap={command}",
    ]
