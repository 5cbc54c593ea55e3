"""The typed metadata forge components put on a role (``role.metadata["forge"]``).

:class:`ForgeMeta` is the one owner of that dict: components build one and write it with
:meth:`ForgeMeta.apply`; slurm_forge reads it with :meth:`ForgeMeta.from_role`. Other
schedulers ignore it. It says whether the role is a sweep shape (one job array, replica k =
run k of the shape), its run table, its Slurm options, the retry policy it asks for (whole: the
count and everything else travel together) and, in pipelines, its step and what it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from torchx import specs

from torchx_forge.core.states import DepKind

META_KEY = "forge"


@dataclass(frozen=True)
class Dependency:
    """A role waits for a step of its pipeline (``stage``) or for a Slurm job outside it (``job``)."""

    kind: DepKind = DepKind.AFTEROK
    stage: str = ""
    job: str = ""
    per_run: bool = False  # run i waits for run i of ``stage`` only (Slurm's aftercorr)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": self.kind.value}
        if self.job:
            out["job"] = self.job
        else:
            out.update(stage=self.stage, per_run=self.per_run)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Dependency:
        return cls(DepKind(str(obj.get("type", "afterok"))), str(obj.get("stage", "")), str(obj.get("job", "")),
                   bool(obj.get("per_run")))


@dataclass(frozen=True)
class RetrySpec:
    """The retry settings a role asks for; None leaves a setting to the runopts or the default."""

    max_retries: Optional[int] = None
    retry_on: Optional[Tuple[str, ...]] = None
    signal: Optional[str] = None
    grace: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key in ("max_retries", "retry_on", "signal", "grace"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "retry_on" else value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RetrySpec:
        retry_on = obj.get("retry_on")
        return cls(
            max_retries=int(obj["max_retries"]) if obj.get("max_retries") is not None else None,
            retry_on=tuple(str(s) for s in retry_on) if isinstance(retry_on, (list, tuple)) else (
                tuple(str(retry_on).split(",")) if retry_on else None),
            signal=str(obj["signal"]) if obj.get("signal") is not None else None,
            grace=int(obj["grace"]) if obj.get("grace") is not None else None,
        )

    @classmethod
    def from_section(cls, retry: Mapping[str, Any]) -> RetrySpec:
        """From an experiment file's validated ``retry:`` section."""
        return cls.from_json(retry)


@dataclass(frozen=True)
class ForgeMeta:
    """What slurm_forge needs to know about a role beyond TorchX's fields."""

    array: bool = False  # a sweep shape: one job array per shape, replica k = run k
    table: str = ""  # the shape's run table (see torchx_forge.core.runtable)
    nodes: int = 1  # nodes per run
    sbatch: Tuple[Tuple[str, Any], ...] = ()  # the shape's Slurm options, by runopt name (partition, time, ...)
    retry: RetrySpec = field(default_factory=RetrySpec)
    stage: str = ""  # pipelines: the step this role belongs to
    after: Tuple[Dependency, ...] = ()  # pipelines: what it waits for

    def to_metadata(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.array:
            out.update(array=True, table=self.table, nodes=self.nodes, sbatch=dict(self.sbatch))
        retry = self.retry.to_json()
        if retry:
            out["retry"] = retry
        if self.stage:
            out.update(stage=self.stage, after=[d.to_json() for d in self.after], pipeline=True)
        return out

    @classmethod
    def from_role(cls, role: specs.Role) -> ForgeMeta:
        """The role's forge metadata (the defaults for a plain TorchX role)."""
        raw = role.metadata.get(META_KEY) if isinstance(role.metadata, dict) else None
        obj: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        return cls(
            array=bool(obj.get("array")),
            table=str(obj.get("table") or ""),
            nodes=int(obj.get("nodes") or 1),
            sbatch=tuple((str(k), v) for k, v in (obj.get("sbatch") or {}).items()),
            retry=RetrySpec.from_json(obj.get("retry") or {}),
            stage=str(obj.get("stage") or ""),
            after=tuple(Dependency.from_json(d) for d in obj.get("after") or []),
        )

    def max_retries(self, role: specs.Role) -> int:
        """The retries ``role`` asks for: this metadata's, else TorchX's ``Role.max_retries``."""
        return self.retry.max_retries if self.retry.max_retries is not None else role.max_retries

    def apply(self, role: specs.Role) -> specs.Role:
        """Write this metadata onto ``role`` (in place; also returned), keeping TorchX's ``max_retries`` in step."""
        role.metadata = {**(role.metadata or {}), META_KEY: self.to_metadata()}
        if self.retry.max_retries is not None:
            role.max_retries = self.retry.max_retries
        return role


def tables_of(roles: Sequence[specs.Role]) -> Tuple[str, ...]:
    """The run tables of an app's sweep roles, sorted."""
    return tuple(sorted({m.table for m in (ForgeMeta.from_role(r) for r in roles) if m.array and m.table}))
