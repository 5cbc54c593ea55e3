"""Job records: what was submitted, kept where describe/log/cancel can find it from any directory.

Layout under the state dir (local path or any fsspec URL)::

    apps/<app_id>/record.json      the AppRecord (jobs, roles, log paths, options)
    apps/<app_id>/tasks/<role>.<replica>.json   written by the task launcher on the node
    apps/<app_id>/cancelled.json   written by cancel(), for clusters without accounting
    submissions/<uuid>/job-<i>.sh  the exact scripts given to sbatch
    tables/<sha256>.json           content-addressed, read-only run tables of sweeps

Every write is atomic (temporary file + rename, or a single PUT on object
stores) and, on a local file system, readable only by the user (0600 files,
0700 directories): a client that crashes mid-write never leaves half a record.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import fsspec
from fsspec.implementations.local import LocalFileSystem

from torchx_forge.files import atomic_write

RECORD_VERSION = 1


def private_makedirs(path: str) -> None:
    """``mkdir -p`` with 0700 on every directory it creates (os.makedirs skips intermediates)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        private_makedirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


class Store:
    """A directory (local or fsspec URL) holding records, written atomically."""

    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(os.path.expanduser(url))
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _ensure_dir(self, path: str) -> None:
        if self.local:
            private_makedirs(path)
        else:
            self.fs.makedirs(path, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes, mode: int = 0o600) -> str:
        """Atomically write ``data`` to ``rel``; returns the full path."""
        path = self.path(rel)
        parent = path.rsplit("/", 1)[0]
        self._ensure_dir(parent)
        if not self.local:
            self.fs.pipe_file(path, data)
            return path
        atomic_write(path, data, mode)
        return path

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_bytes(rel, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def read_bytes(self, rel: str) -> Optional[bytes]:
        try:
            with self.fs.open(self.path(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def read_json(self, rel: str) -> Optional[Any]:
        data = self.read_bytes(rel)
        return None if data is None else json.loads(data)

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def listdir(self, rel: str) -> List[str]:
        """Names directly under ``rel`` (empty if it does not exist)."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def read_many_json(self, rel_dir: str) -> Dict[str, Any]:
        """Every ``*.json`` directly under ``rel_dir``, by file stem.

        The files come in one batched ``cat`` (fetched concurrently by fsspec's async file systems
        such as s3/gcs): a 1,000-task sweep is not 1,000 round trips per status on an object store.
        """
        names = [n for n in self.listdir(rel_dir) if n.endswith(".json") and not n.startswith(".")]
        got = self.fs.cat([self.path(rel_dir, n) for n in names], on_error="omit") if names else {}
        data = {str(path).rsplit("/", 1)[-1]: blob for path, blob in got.items()}
        return {n[: -len(".json")]: json.loads(blob) for n, blob in sorted(data.items())}

    def put_content_addressed(self, subdir: str, data: bytes, suffix: str = ".json") -> Tuple[str, str]:
        """Store ``data`` under its sha256 (read-only, written once); returns (digest, path)."""
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{subdir}/{digest}{suffix}"
        if not self.exists(rel):
            self.write_bytes(rel, data, mode=0o400)
        return digest, self.path(rel)


@dataclass
class JobRecord:
    """One sbatch call of an app.

    ``kind`` is ``"het"`` (components listed in ``components`` as [role, replica],
    one per het offset) or ``"array"`` (role ``role``, replicas ``offset`` ..
    ``offset + size - 1`` are array tasks 0 .. size-1).
    """

    job_id: str
    kind: str
    script: str = ""
    components: List[List[Any]] = field(default_factory=list)
    role: str = ""
    offset: int = 0
    size: int = 0
    nodes: int = 1
    argv: List[str] = field(default_factory=list)  # the exact sbatch command (for resubmission)
    tasks: Optional[List[int]] = None  # array task ids, when only some were (re)submitted
    retry_of: Optional[str] = None  # the job this one re-runs tasks of
    companion: Optional[str] = None  # the afternotok job that resubmits failed tasks
    max_retries: int = 0
    retry_on: List[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def task_ids(self) -> List[int]:
        return list(self.tasks) if self.tasks is not None else list(range(self.size))

    def keys(self) -> Iterator[Tuple[str, str, int, str]]:
        """(slurm key, role, replica, log stem) of every task of this job."""
        if self.kind == "array":
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
    max_retries: int = 0


@dataclass
class AppRecord:
    """Everything needed to describe, log and cancel an app later, from any directory."""

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
    meta: Dict[str, Any] = field(default_factory=dict)
    final: Optional[Dict[str, Any]] = None
    version: int = RECORD_VERSION

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Dict[str, Any]) -> "AppRecord":
        obj = dict(obj)
        obj["jobs"] = [JobRecord(**j) for j in obj.get("jobs", [])]
        obj["roles"] = [RoleRecord(**r) for r in obj.get("roles", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in obj.items() if k in known})

    def job_ids(self, companions: bool = False) -> List[str]:
        ids = [j.job_id for j in self.jobs]
        return ids + [j.companion for j in self.jobs if j.companion] if companions else ids

    def tasks(self) -> Iterator[Tuple[str, str, int, JobRecord]]:
        """(slurm key, role, replica, job) of the latest job of every replica (retries replace earlier jobs)."""
        latest: Dict[Tuple[str, int], Tuple[str, JobRecord]] = {}
        for job in self.jobs:
            for key, role, replica, _ in job.keys():
                latest.pop((role, replica), None)  # re-insert so the order follows the newest job
                latest[(role, replica)] = (key, job)
        for (role, replica), (key, job) in sorted(latest.items(), key=lambda kv: (self._role_order(kv[0][0]), kv[0][1])):
            yield key, role, replica, job

    def all_keys(self) -> Dict[Tuple[str, int], List[str]]:
        """Every Slurm key each replica ever had, oldest first (attempts across resubmissions)."""
        out: Dict[Tuple[str, int], List[str]] = {}
        for job in self.jobs:
            for key, role, replica, _ in job.keys():
                out.setdefault((role, replica), []).append(key)
        return out

    def _role_order(self, role: str) -> int:
        names = [r.name for r in self.roles]
        return names.index(role) if role in names else len(names)

    def log_path(self, role: str, replica: int, stream: str) -> str:
        """Where replica ``replica`` of ``role`` writes ``stream`` ("out" or "err") in its first job."""
        return self.log_paths(role, replica, stream)[0]

    def log_paths(self, role: str, replica: int, stream: str) -> List[str]:
        """Every log file of the replica, oldest job first: a requeue appends to the same file, a
        resubmission (a new job id) writes a new one. KeyError when the app has no such replica."""
        paths = [log_file(self.log_dir, self.name, stem, role, replica, stream)
                 for job in self.jobs for _, r, k, stem in job.keys() if r == role and k == replica]
        if not paths:
            raise KeyError(f"{role}/{replica}")
        return list(dict.fromkeys(paths))


def log_file(log_dir: str, app_name: str, stem: str, role: str, replica: int, stream: str) -> str:
    """Log file of one task: ``<app>-<job>-<role>-<replica>.<out|err>`` in ``log_dir``.

    ``<job>`` is the job id, or for array tasks ``<array job id>_<task>`` (Slurm's ``%A_%a``).
    """
    from torchx_forge.request import safe_name

    return os.path.join(log_dir, f"{safe_name(app_name)}-{stem}-{role}-{replica}.{stream}")


class Records:
    """App records in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def save(self, rec: AppRecord) -> None:
        """Write the app record (jobs added later by retries live in their own files)."""
        obj = rec.to_json()
        obj["jobs"] = [j for j in obj["jobs"] if not j.get("retry_of")]
        self.store.write_json(f"apps/{rec.app_id}/record.json", obj)

    def add_job(self, app_id: str, job: JobRecord) -> None:
        """Link a resubmission to its app: written by whoever resubmits (client or companion job)."""
        self.store.write_json(f"apps/{app_id}/jobs/{job.job_id}.json", asdict(job))

    def load(self, app_id: str) -> Optional[AppRecord]:
        if not app_id or "/" in app_id or app_id.startswith("."):
            return None
        obj = self.store.read_json(f"apps/{app_id}/record.json")
        if obj is None:
            return None
        rec = AppRecord.from_json(obj)
        added = [JobRecord(**j) for j in self.store.read_many_json(f"apps/{app_id}/jobs").values()]
        if added:
            added.sort(key=lambda j: j.created)
            rec.jobs.extend(added)
            if rec.final and max(j.created for j in added) > float(rec.final.get("time", 0)):
                rec.final = None  # a retry came after the app had settled
        return rec

    def app_ids(self) -> List[str]:
        return self.store.listdir("apps")

    def task_states(self, app_id: str) -> Dict[str, Any]:
        """Task state files the launchers wrote, by ``<role>.<replica>``."""
        return self.store.read_many_json(f"apps/{app_id}/tasks")

    def mark_cancelled(self, app_id: str) -> None:
        self.store.write_json(f"apps/{app_id}/cancelled.json", {"time": time.time()})

    def cancelled(self, app_id: str) -> bool:
        return self.store.exists(f"apps/{app_id}/cancelled.json")
