"""The cluster's limits that decide how a submission must be cut: read from Slurm, cached briefly.

``scontrol show config`` gives MaxJobCount (job records the controller holds: every array task
counts), MaxArraySize and the Slurm version (which GPU flag ``gpu_flag=auto`` writes). They are
read at submit time only (dry runs make no Slurm call), once per ``CACHE_TTL`` seconds, kept in
the state dir (``cluster/limits.json``); a dry run reads the version from there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, Optional

from torchx_forge.errors import SlurmError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.state.store import Store

CACHE_TTL = 600.0
CACHE = "cluster/limits.json"


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


@dataclass(frozen=True)
class ClusterLimits:
    max_job_count: Optional[int] = None
    max_array_size: Optional[int] = None
    time: float = 0.0
    slurm_version: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> ClusterLimits:
        conf = parse_config(text)
        return cls(_int(conf.get("MaxJobCount")), _int(conf.get("MaxArraySize")), time.time(), conf.get("SLURM_VERSION"))

    @classmethod
    def known_version(cls, store: Store) -> Optional[str]:
        """The Slurm version the last submission read (any age: clusters are seldom upgraded), without a Slurm call."""
        try:
            cached = store.read_json(CACHE)
        except (OSError, ValueError):
            return None
        version = cached.get("slurm_version") if isinstance(cached, dict) else None
        return version if isinstance(version, str) else None

    @classmethod
    def read(cls, cli: SlurmCli, store: Store) -> ClusterLimits:
        """The limits, from the cache when fresh, else from Slurm (unknown if Slurm does not say)."""
        try:
            cached = store.read_json(CACHE)
        except (OSError, ValueError):
            cached = None
        if isinstance(cached, dict) and time.time() - float(cached.get("time", 0)) < CACHE_TTL:
            return cls(cached.get("max_job_count"), cached.get("max_array_size"), float(cached["time"]),
                       cached.get("slurm_version"))
        try:
            limits = cls.parse(cli.run(["scontrol", "show", "config"]))
        except SlurmError:
            return cls()  # unknown: sbatch will say what is wrong
        try:
            store.write_json(CACHE, asdict(limits))
        except OSError:
            pass
        return limits
