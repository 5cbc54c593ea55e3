"""App records: what was submitted, kept where describe, log and cancel find it from any directory.

An :class:`AppRecord` lists the app's Slurm jobs (:class:`JobRecord`, one per sbatch call) and
roles; jobs added later by retries live in files of their own next to it, so a companion job and
the client never write the same file. Paths come from :mod:`torchx_forge.core.layout`.

Each file carries its format (:mod:`torchx_forge.core.formats`): ``record.json`` is an
:class:`AppRecord`, ``jobs/<id>.json`` a :class:`JobRecord`, ``cancelled.json`` a
:class:`CancelMark`, all format 1 (the files written before formats were numbered).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Tuple

from torchx_forge.core import formats, layout
from torchx_forge.core.policy import RetryPolicy, parse_retry_on, parse_signal
from torchx_forge.core.record import asdict, fields, replace
from torchx_forge.core.states import JobKind
from torchx_forge.state.store import Store
from torchx_forge.state.taskfile import TaskReport

#: the ``version`` every record has carried (kept as it was; the ``format`` field is what readers check)
RECORD_VERSION = 1


def _object(obj: Any, kind: str, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{kind} {where}: expected a JSON object, got {type(obj).__name__}")
    return obj


@functools.lru_cache(maxsize=256)
def _policy(max_retries: int, retry_on: Tuple[str, ...], signal: str, grace: int, extra_retries: int) -> RetryPolicy:
    """A job's retry policy from its recorded fields (made once per distinct policy: status asks for
    it once per task)."""
    return RetryPolicy(
        max_retries=max_retries,
        retry_on=parse_retry_on(list(retry_on)) if retry_on else parse_retry_on(None),
        warning=parse_signal(signal or "off"),
        grace=grace,
        extra_retries=extra_retries,
    )


@dataclass
class JobRecord:
    """One sbatch call of an app.

    ``kind`` is ``het`` (components listed in ``components`` as [role, replica], one per het
    offset), ``array`` (role ``role``, replicas ``offset`` .. ``offset + size - 1`` are array
    tasks 0 .. size-1) or ``wave`` (the job that submits wave ``wave`` of a sweep; no tasks).
    A *planned* job belongs to a wave not submitted yet: its ``job_id`` is a placeholder
    (``wave<k>.<n>``) that no Slurm command is given; the job that submits it ``replaces`` it.
    A job added after the submission has a file of its own (``apps/<app>/jobs/<id>.json``), which
    carries ``format``; in the record's list of jobs, the record's format is theirs.
    """

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "job record"

    job_id: str
    kind: str
    script: str = ""  # where its batch script lives: a path, or a URL in an object-store state dir
    components: List[List[Any]] = field(default_factory=list)
    role: str = ""
    offset: int = 0
    size: int = 0
    nodes: int = 1
    argv: List[str] = field(default_factory=list)  # the sbatch command (for resubmission); last word: the script
    tasks: Optional[List[int]] = None  # array task ids, when only some were (re)submitted
    retry_of: Optional[str] = None  # the job this one re-runs tasks of
    companion: Optional[str] = None  # the afternotok job that resubmits failed tasks
    max_retries: int = 0
    retry_on: List[str] = field(default_factory=list)
    extra_retries: int = 0  # granted by a by-hand `torchx forge retry`
    signal: str = ""  # the warning (e.g. USR1@90), "" when off
    grace: int = 60
    created: float = field(default_factory=time.time)
    wave: int = 0  # the wave it belongs to (sweeps too big to be queued at once)
    planned: bool = False  # not submitted yet: job_id is a placeholder
    replaces: Optional[str] = None  # the planned job this one is the submission of
    linked: bool = False  # added after the submission (a retry, a later wave): kept in a file of its own
    tag: str = ""  # the tag in its --comment (forge:<tag>): the job's identity, since Slurm may give its id again
    format: int = FORMAT  # the layout of its own file (see torchx_forge.core.formats)

    def to_json(self) -> Dict[str, Any]:
        """The job as it is listed in its app record (no format: the record's is; no tag for a job
        submitted before jobs kept theirs, so such a record reads and writes the same)."""
        out = asdict(self)
        del out[formats.KEY]
        if not out["tag"]:
            del out["tag"]
        return out

    def to_file(self) -> Dict[str, Any]:
        """The job as its own file holds it (jobs added after the submission)."""
        return {**self.to_json(), formats.KEY: self.FORMAT}

    @classmethod
    def from_file(cls, obj: Any, where: str) -> JobRecord:
        """A job from its own file at ``where`` (NewerFormatError when a newer torchx-forge wrote it)."""
        formats.format_of(_object(obj, cls.KIND, where), cls.KIND, where, cls.FORMAT)
        return formats.known_fields(cls, obj)

    @property
    def job_kind(self) -> JobKind:
        return JobKind(self.kind)

    def policy(self) -> RetryPolicy:
        """The retry policy this job was submitted with (its budget is what status counts against)."""
        return _policy(self.max_retries, tuple(self.retry_on), self.signal, self.grace, self.extra_retries)

    def task_ids(self) -> List[int]:
        return list(self.tasks) if self.tasks is not None else list(range(self.size))

    def task_keys(self) -> Iterator[Tuple[str, str, int, str]]:
        """(slurm key, role, replica, log stem) of every task of this job."""
        if self.job_kind in (JobKind.WAVE, JobKind.DECIDE):
            return
        if self.job_kind is JobKind.ARRAY:
            for t in self.task_ids():
                key = f"{self.job_id}_{t}"
                yield key, self.role, self.offset + t, key
        elif len(self.components) == 1:
            role, replica = self.components[0]
            yield self.job_id, role, int(replica), self.job_id
        else:  # a het job: component k is "<id>+<k>"
            for k, (role, replica) in enumerate(self.components):
                yield f"{self.job_id}+{k}", role, int(replica), self.job_id


@dataclass
class RoleRecord:
    name: str
    num_replicas: int
    image: str = ""
    entrypoint: str = ""
    args: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)  # secret-looking values masked
    resource: Dict[str, Any] = field(default_factory=dict)
    max_retries: int = 0  # the effective max_retries of the role's jobs


@dataclass(frozen=True)
class CodeVersion:
    """The git commit an app was submitted from, and where the diff of a dirty tree is kept."""

    commit: str
    dirty: bool = False
    diff: str = ""  # the content-addressed patch in the state dir, when dirty

    def to_json(self) -> Dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty, **({"diff": self.diff} if self.diff else {})}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Optional[CodeVersion]:
        return cls(str(obj["commit"]), bool(obj.get("dirty")), str(obj.get("diff") or "")) if obj.get("commit") else None


@dataclass
class AppMeta:
    """What the record keeps of the submission beyond its jobs and roles."""

    tables: List[str] = field(default_factory=list)  # the run tables of the app's sweep roles
    stages: List[Tuple[str, List[str]]] = field(default_factory=list)  # a pipeline's steps: (step, role names)
    code: Optional[CodeVersion] = None  # None outside a git work tree
    search: str = ""  # an adaptive search: its directory in the state dir (searches/<submission>)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"tables": list(self.tables), "code": self.code.to_json() if self.code else {}}
        if self.stages:
            out["stages"] = [[s, list(r)] for s, r in self.stages]  # a list: records sort dict keys
        if self.search:
            out["search"] = self.search
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AppMeta:
        raw = obj.get("stages") or []
        items = raw.items() if isinstance(raw, dict) else raw  # early records kept a dict
        return cls([str(t) for t in obj.get("tables") or []], [(str(s), [str(r) for r in roles]) for s, roles in items],
                   CodeVersion.from_json(obj.get("code") or {}), str(obj.get("search") or ""))


@dataclass
class AppRecord:
    """Everything needed to describe, log and cancel an app later, from any directory."""

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "app record"

    app_id: str
    name: str
    jobs: List[JobRecord]
    roles: List[RoleRecord]
    log_dir: str
    job_dir: Optional[str] = None
    created: float = field(default_factory=time.time)
    user: str = field(default_factory=lambda: os.environ.get("USER", ""))
    submission: str = ""
    cfg: Dict[str, Any] = field(default_factory=dict)
    meta: AppMeta = field(default_factory=AppMeta)
    final: Optional[Dict[str, Any]] = None  # a settled status, as torchx_forge.slurm.status freezes it
    version: int = RECORD_VERSION
    cluster: str = ""  # the Slurm cluster every job of the app runs on ("" for the local one)
    format: int = FORMAT  # see torchx_forge.core.formats

    def to_json(self) -> Dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(jobs=[j.to_json() for j in self.jobs], roles=[asdict(r) for r in self.roles], meta=self.meta.to_json(),
                   cfg=dict(self.cfg), format=self.FORMAT)
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "") -> AppRecord:
        """The record read from ``where`` (NewerFormatError when a newer torchx-forge wrote it)."""
        formats.format_of(_object(obj, cls.KIND, where), cls.KIND, where, cls.FORMAT)
        rec = formats.known_fields(cls, obj)
        rec.jobs = [formats.known_fields(JobRecord, j) for j in obj.get("jobs", [])]
        rec.roles = [formats.known_fields(RoleRecord, r) for r in obj.get("roles", [])]
        rec.meta = AppMeta.from_json(obj.get("meta") or {})
        return rec

    @property
    def tables(self) -> List[str]:
        """The run tables of the app's sweep roles."""
        return self.meta.tables

    def job_ids(self, companions: bool = False) -> List[str]:
        """Slurm ids of the app's jobs (wave jobs included; planned jobs, not submitted yet, are not),
        and with ``companions`` their companion jobs."""
        ids = [j.job_id for j in self.jobs if not j.planned]
        return ids + [j.companion for j in self.jobs if j.companion] if companions else ids

    @property
    def waves(self) -> int:
        """How many waves the app is submitted in (1 for an app queued at once)."""
        return max((j.wave for j in self.jobs), default=0) + 1

    def unsubmitted_waves(self) -> List[int]:
        """The waves with planned jobs no wave job has submitted yet."""
        done = {j.replaces for j in self.jobs if j.replaces}
        return sorted({j.wave for j in self.jobs if j.planned and j.job_id not in done})

    @property
    def resubmitted(self) -> bool:
        """Some replica has (or will have) a job after its first: a retry or a later wave."""
        return any(j.retry_of or j.replaces or j.planned for j in self.jobs)

    def tasks(self) -> Iterator[Tuple[str, str, int, JobRecord]]:
        """(slurm key, role, replica, job) of the latest job of every replica (retries replace earlier jobs)."""
        order = {r.name: i for i, r in enumerate(self.roles)}
        if not self.resubmitted:  # every replica in one job: no newer job to look for
            found = [(key, role, replica, job) for job in self.jobs for key, role, replica, _ in job.task_keys()]
            found.sort(key=lambda t: (order.get(t[1], len(order)), t[2]))  # in job order already, mostly: linear
            yield from found
            return
        latest: Dict[Tuple[str, int], Tuple[str, JobRecord]] = {}
        for job in self.jobs:
            for key, role, replica, _ in job.task_keys():
                latest.pop((role, replica), None)  # re-insert so the order follows the newest job
                latest[(role, replica)] = (key, job)
        for (role, replica), (key, job) in sorted(latest.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1])):
            yield key, role, replica, job

    def all_keys(self) -> Dict[Tuple[str, int], List[str]]:
        """Every Slurm key each replica ever had, oldest first (attempts across resubmissions)."""
        out: Dict[Tuple[str, int], List[str]] = {}
        for job in self.jobs:
            for key, role, replica, _ in job.task_keys():
                out.setdefault((role, replica), []).append(key)
        return out

    def stages(self) -> List[Tuple[str, List[str]]]:
        """A pipeline's steps as (step, role names) in pipeline order; empty for other apps."""
        return list(self.meta.stages)

    def log_path(self, role: str, replica: int, stream: str) -> str:
        """Where replica ``replica`` of ``role`` writes ``stream`` ("out" or "err") in its first job."""
        return self.log_paths(role, replica, stream)[0]

    def log_paths(self, role: str, replica: int, stream: str) -> List[str]:
        """Every log file of the replica, oldest job first: a requeue appends to the same file, a
        resubmission (a new job id) writes a new one; none yet for a task of a wave not submitted yet.
        KeyError when the app has no such replica."""
        paths = [layout.task_log(self.log_dir, self.name, stem, role, replica, stream)
                 for job in self.jobs if not job.planned for _, r, k, stem in job.task_keys() if r == role and k == replica]
        if not paths and any(r == role and k == replica for job in self.jobs for _, r, k, _ in job.task_keys()):
            return []  # a wave not submitted yet: no log so far
        if not paths:
            raise KeyError(f"{role}/{replica}")
        return list(dict.fromkeys(paths))


class Records:
    """App records in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, rec: AppRecord) -> None:
        """Write the app record (jobs added later by retries live in their own files)."""
        obj = rec.to_json()
        obj["jobs"] = [j for j in obj["jobs"] if not (j.get("retry_of") or j.get("linked"))]
        self.store.write_json(layout.record(rec.app_id), obj)

    def add_job(self, app_id: str, job: JobRecord) -> None:
        """Link a job to its app after the submission (a resubmission, a later wave): written by
        whoever submits it (the client, a companion or a wave job), in a file of its own."""
        self.store.write_json(layout.added_job(app_id, job.job_id), replace(job, linked=True).to_file())

    def load(self, app_id: str) -> Optional[AppRecord]:
        """The app's record with the jobs added since (None when there is none; NewerFormatError
        naming the file when a newer torchx-forge wrote one)."""
        if not layout.valid_app_id(app_id):
            return None
        obj = self.store.read_json(layout.record(app_id))
        if obj is None:
            return None
        rec = AppRecord.from_json(obj, self.store.url_of(layout.record(app_id)))
        added = [JobRecord.from_file(j, self.store.url_of(layout.added_job(app_id, name)))
                 for name, j in self.store.read_many_json(layout.added_jobs(app_id)).items()]
        if added:
            added.sort(key=lambda j: j.created)
            rec.jobs.extend(added)
            if rec.final and max(j.created for j in added) > float(rec.final.get("time", 0)):
                rec.final = None  # a retry came after the app had settled
        return rec

    def forget(self, app_id: str) -> None:
        """Remove the app's record (a submission rolled back): the app is no longer listed or known."""
        if layout.valid_app_id(app_id):
            self.store.remove(layout.record(app_id))

    def app_ids(self) -> List[str]:
        return self.store.listdir(layout.APPS)

    def task_reports(self, app_id: str) -> Dict[str, TaskReport]:
        """What the launchers wrote, by ``<role>.<replica>`` (see :func:`layout.task_key`)."""
        raw = self.store.read_many_json(layout.task_files(app_id))
        out = {}
        for key, obj in raw.items():
            try:
                out[key] = TaskReport.from_json(obj, self.store.url_of(f"{layout.task_files(app_id)}/{key}.json"))
            except (ValueError, TypeError):  # not a task state file: as if missing (NewerFormatError is raised)
                continue
        return out

    def mark_cancelled(self, app_id: str) -> None:
        self.store.write_json(layout.cancelled(app_id), CancelMark().to_json())

    def cancelled(self, app_id: str) -> bool:
        return self.store.exists(layout.cancelled(app_id))


@dataclass(frozen=True)
class CancelMark:
    """``cancelled.json``: the app was cancelled (for clusters without accounting). Only its
    existence is read."""

    FORMAT: ClassVar[int] = 1

    time: float = field(default_factory=time.time)
    format: int = FORMAT

    def to_json(self) -> Dict[str, Any]:
        return {"time": self.time, formats.KEY: self.FORMAT}
