"""The cluster's limits that decide how a submission is cut: read from Slurm, cached briefly.

- ``MaxArraySize`` (``scontrol show config``): the largest array (task ids 0 .. size - 1).
- ``SLURM_VERSION``: which GPU flag ``gpu_flag=auto`` writes.
- ``MaxJobCount``: job records the controller holds, every array task counting once it starts.
- ``MaxSubmitJobs``: how many jobs this user may have queued or running, every array task
  counting (``sacctmgr``: the user's association, and ``MaxSubmitJobsPerUser`` of the QOS the
  jobs run under). Enforced by Slurm only with ``AccountingStorageEnforce=limits``.

They are read at submit time only (dry runs make no Slurm call; they use what the runopts say,
else the last limits read, else the defaults), with three calls at most, and kept in the state
dir per cluster and user (``cluster/limits-<user>.json``, ``cluster/<name>/limits-<user>.json``: a
:class:`ClusterLimits` of format 2; a cache a newer torchx-forge wrote is taken for a missing one;
format 1, ``cluster/limits.json``, still gives a dry run the Slurm version). The controller's
limits are read again after ``CACHE_TTL`` seconds. The submit limits (two ``sacctmgr`` calls,
about 0.45 s) are asked only when they may matter: never for an app of at most ``SMALL_APP`` job
records (sbatch says so if a limit is hit), and for a bigger one again only after ``CACHE_TTL``
when it comes within half of the limit last read, else after ``SUBMIT_TTL``. The runopts
``max_array_size``, ``max_job_count`` and ``max_submit_jobs`` override what Slurm says.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional

from torchx_forge.core import formats
from torchx_forge.core.record import replace
from torchx_forge.errors import SlurmError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.state.store import Store

CACHE_TTL = 600.0
#: seconds the submit limits last read stand for an app far below them
SUBMIT_TTL = 86400.0
#: job records (array tasks) an app may have before the submit limits are worth asking for
SMALL_APP = 100
#: the cache of format 1, shared by every user of the state dir (still read for the Slurm version)
CACHE = "cluster/limits.json"
#: MaxArraySize when nothing else is known (Slurm's own default)
DEFAULT_ARRAY_SIZE = 1001


def parse_config(text: str) -> Dict[str, str]:
    """``scontrol show config`` lines ``Name = value`` -> {Name: value}."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(str(text).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def parse_qos(text: str) -> Dict[str, int]:
    """``sacctmgr -n -P show qos format=name,maxsubmitjobsperuser`` -> {qos: limit} (limited ones only)."""
    out = {}
    for line in text.splitlines():
        name, _, limit = line.strip().partition("|")
        value = _int(limit)
        if name and value is not None:
            out[name] = value
    return out


def parse_assoc(text: str, cluster: str) -> Dict[str, Any]:
    """``sacctmgr -n -P show assoc where user=U format=cluster,account,maxsubmit,defaultqos`` ->
    the smallest MaxSubmitJobs of the user's associations on ``cluster``, and its default QOS."""
    limits: List[int] = []
    default_qos = ""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or (cluster and parts[0] != cluster):
            continue
        value = _int(parts[2])
        if value is not None:
            limits.append(value)
        default_qos = default_qos or parts[3]
    return {"max_submit": min(limits) if limits else None, "default_qos": default_qos}


@dataclass(frozen=True)
class ClusterLimits:
    """What this user may submit, as far as Slurm says (None: no limit known).

    Args:
        max_job_count: MaxJobCount (job records the controller holds).
        max_array_size: MaxArraySize.
        assoc_max_submit: MaxSubmitJobs of the user's association.
        qos_max_submit: MaxSubmitJobsPerUser of each QOS that has one.
        default_qos: the QOS jobs get when they name none.
        time: when they were read (seconds since the epoch).
        slurm_version: the controller's Slurm version (``22.05.8``).
        submit_time: when the submit limits were read (0: not read).
    """

    FORMAT: ClassVar[int] = 2
    KIND: ClassVar[str] = "cluster limits cache"

    max_job_count: Optional[int] = None
    max_array_size: Optional[int] = None
    assoc_max_submit: Optional[int] = None
    qos_max_submit: Dict[str, int] = field(default_factory=dict)
    default_qos: str = ""
    time: float = 0.0
    slurm_version: Optional[str] = None
    submit_time: float = 0.0
    format: int = FORMAT  # of the cache file (see torchx_forge.core.formats)

    def max_submit(self, qos: Optional[str]) -> Optional[int]:
        """How many jobs (array tasks) the user may have queued under ``qos`` (None: unlimited)."""
        found = [v for v in (self.assoc_max_submit, self.qos_max_submit.get(qos or self.default_qos or "normal"))
                 if v is not None]
        return min(found) if found else None

    def override(self, max_array_size: Optional[int] = None, max_job_count: Optional[int] = None,
                 max_submit_jobs: Optional[int] = None) -> ClusterLimits:
        """These limits with the runopts' on top (a runopt wins over Slurm)."""
        out = self
        if max_array_size is not None:
            out = replace(out, max_array_size=max_array_size)
        if max_job_count is not None:
            out = replace(out, max_job_count=max_job_count)
        if max_submit_jobs is not None:
            out = replace(out, assoc_max_submit=max_submit_jobs, qos_max_submit={})
        return out

    @property
    def array_size(self) -> int:
        return self.max_array_size or DEFAULT_ARRAY_SIZE

    def submit_limits_do(self, need: int, qos: Optional[str] = None) -> bool:
        """Do the submit limits these hold stand for an app of ``need`` job records under ``qos`` (no
        sacctmgr call)? Far below its limit (that of its QOS and the user's association), an app
        takes them for a day."""
        if need <= SMALL_APP:
            return True
        if not self.submit_time:
            return False
        age = time.time() - self.submit_time
        limit = self.max_submit(qos)
        far = limit is None or need <= limit // 2
        return age < CACHE_TTL or (far and age < SUBMIT_TTL)

    def to_json(self) -> Dict[str, Any]:
        return formats.dump(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "") -> ClusterLimits:
        """The limits read from ``where`` (NewerFormatError when a newer torchx-forge wrote them)."""
        formats.format_of(obj, cls.KIND, where, cls.FORMAT)
        version = obj.get("slurm_version")
        return cls(obj.get("max_job_count"), obj.get("max_array_size"), obj.get("assoc_max_submit"),
                   dict(obj.get("qos_max_submit") or {}), str(obj.get("default_qos") or ""), float(obj.get("time", 0)),
                   version if isinstance(version, str) else None, float(obj.get("submit_time") or 0))

    @classmethod
    def cached(cls, store: Store, ttl: Optional[float] = None, cluster: Optional[str] = None) -> Optional[ClusterLimits]:
        """The limits read last for this user (fresher than ``ttl`` seconds, if given), else those of
        format 1, shared by the state dir's users, without a Slurm call. A dry run takes them at any
        age (clusters seldom change their limits or their Slurm version)."""
        for rel in (cache_path(cluster), legacy_cache_path(cluster)):
            try:
                obj = store.read_json(rel)
                found = cls.from_json(obj, store.url_of(rel)) if isinstance(obj, dict) else None
            except (OSError, ValueError, formats.NewerFormatError):  # a newer one: asked again, written as this one reads it
                found = None
            if found is not None:
                return found if ttl is None or time.time() - found.time < ttl else None
        return None

    @classmethod
    def parse(cls, text: str) -> ClusterLimits:
        """The limits ``scontrol show config`` gives (MaxJobCount, MaxArraySize, the version)."""
        conf = parse_config(text)
        return cls(_int(conf.get("MaxJobCount")), _int(conf.get("MaxArraySize")), time=time.time(),
                   slurm_version=conf.get("SLURM_VERSION"))

    @classmethod
    def known_version(cls, store: Store) -> Optional[str]:
        """The Slurm version the last submission read (any age), without a Slurm call."""
        found = cls.cached(store)
        return found.slurm_version if found else None

    @classmethod
    def read(cls, cli: SlurmCli, store: Store, need: int = SMALL_APP + 1, qos: Optional[str] = None) -> ClusterLimits:
        """The limits of the cluster(s) ``cli`` sends commands to for an app of ``need`` job records
        under ``qos`` (None: the default one), from the cache when it stands, else from Slurm (a
        limit Slurm does not give is None). For several clusters (``a,b``: Slurm picks one), each
        limit is the smallest of theirs."""
        names = (cli.cluster or "").split(",")
        found = [cls._read_one(cli.on(name or None), store, need, qos) for name in names]
        return found[0] if len(found) == 1 else combined(found)

    @classmethod
    def _read_one(cls, cli: SlurmCli, store: Store, need: int, qos: Optional[str]) -> ClusterLimits:
        hit = cls.cached(store, None, cli.cluster)
        fresh = hit is not None and time.time() - hit.time < CACHE_TTL
        if hit is not None and fresh and hit.submit_limits_do(need, qos):
            return hit
        try:
            text = cli.run(["scontrol", *([f"--clusters={cli.cluster}"] if cli.cluster else []), "show", "config"])
        except SlurmError:
            return cls()  # unknown: sbatch will say what is wrong
        conf = parse_config(text)
        limits = cls.parse(text)
        if "limits" in conf.get("AccountingStorageEnforce", ""):  # otherwise Slurm enforces no submit limit
            if hit is not None and hit.submit_limits_do(need, qos):
                limits = replace(limits, assoc_max_submit=hit.assoc_max_submit, qos_max_submit=hit.qos_max_submit,
                                 default_qos=hit.default_qos, submit_time=hit.submit_time)
            elif need > SMALL_APP:
                limits = _with_submit_limits(cli, limits, conf.get("ClusterName", ""))
        try:
            store.write_json(cache_path(cli.cluster), limits.to_json())
        except OSError:
            pass
        return limits


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def cache_path(cluster: Optional[str]) -> str:
    """Where this user's limits of ``cluster`` (None: the local one) are kept in the state dir: the
    submit limits are the user's own, and a state dir may be shared."""
    return f"cluster/{cluster + '/' if cluster else ''}limits-{_user()}.json"


def legacy_cache_path(cluster: Optional[str]) -> str:
    """Where format 1 kept the limits of ``cluster``, for every user of the state dir."""
    return CACHE if not cluster else f"cluster/{cluster}/limits.json"


def combined(found: List[ClusterLimits]) -> ClusterLimits:
    """The limits a submission that may land on any of these clusters must keep."""
    def least(values: List[Optional[int]]) -> Optional[int]:
        known = [v for v in values if v is not None]
        return min(known) if known else None

    qos: Dict[str, int] = {}
    for limits in found:
        for name, value in limits.qos_max_submit.items():
            qos[name] = min(value, qos.get(name, value))
    return ClusterLimits(least([f.max_job_count for f in found]), least([f.max_array_size for f in found]),
                         least([f.assoc_max_submit for f in found]), qos, found[0].default_qos,
                         min(f.time for f in found), found[0].slurm_version, min(f.submit_time for f in found))


def _with_submit_limits(cli: SlurmCli, limits: ClusterLimits, cluster: str) -> ClusterLimits:
    user = _user()
    try:
        assoc = parse_assoc(cli.run(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}",
                                     *([f"cluster={cluster}"] if cluster else []),
                                     "format=cluster,account,maxsubmit,defaultqos"]), cluster)
        qos = parse_qos(cli.run(["sacctmgr", "-n", "-P", "show", "qos", "format=name,maxsubmitjobsperuser"]))
    except SlurmError:  # slurmdbd unreachable: no submit limit known (sbatch says if one is hit)
        return limits
    return replace(limits, assoc_max_submit=assoc["max_submit"], qos_max_submit=qos, default_qos=assoc["default_qos"],
                   submit_time=time.time())


def jobs_in_use(cli: SlurmCli, qos: Optional[str], default_qos: str) -> int:
    """How many of this user's jobs (every array task) count against the submit limit of ``qos``
    (on the most loaded of the clusters ``cli`` names)."""
    if "," in (cli.cluster or ""):
        return max(jobs_in_use(cli.on(name), qos, default_qos) for name in (cli.cluster or "").split(","))
    where = [f"--clusters={cli.cluster}"] if cli.cluster else []
    out = cli.run(["squeue", *where, "--noheader", "--array", f"--user={os.getuid()}", "--format=%q"])
    want = qos or default_qos or "normal"
    return sum(1 for line in out.splitlines() if line.strip() == want)
