"""One task's status as forge shows it (:class:`TaskView`): pure data, frozen into records as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from torchx_forge.core.record import fields
from torchx_forge.core.states import SlurmState
from torchx_forge.slurm.parse import app_states

if TYPE_CHECKING:
    from torchx.specs import AppState

#: end states after which a search runs a trial again (one more attempt, from its checkpoint): not a failure
SEARCH_AGAIN = (SlurmState.TIMEOUT, SlurmState.PREEMPTED, SlurmState.NODE_FAIL, SlurmState.BOOT_FAIL)


@dataclass
class TaskView:
    """What we know about one replica (one Slurm task)."""

    role: str
    replica: int
    key: str
    slurm_state: SlurmState
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    host: str = ""
    attempts: int = 1
    reason: str = ""
    source: str = ""
    resumed_from: str = ""
    retry_pending: bool = False
    causes: List[str] = field(default_factory=list)  # what ended each earlier attempt, oldest first

    def __post_init__(self) -> None:
        if not isinstance(self.slurm_state, SlurmState):  # a state as Slurm prints it
            self.slurm_state = SlurmState.parse(str(self.slurm_state))

    @property
    def state(self) -> AppState:
        states = app_states()
        return states[SlurmState.PENDING] if self.retry_pending else states[self.slurm_state]

    @property
    def final(self) -> bool:
        return self.slurm_state.final

    def to_json(self) -> Dict[str, Any]:
        out = {f: getattr(self, f) for f in _VIEW_FIELDS}  # not asdict(): its deep copies cost seconds at 100,000
        out["slurm_state"] = self.slurm_state.value
        out["causes"] = list(self.causes)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TaskView:
        return cls(**obj)


_VIEW_FIELDS = tuple(f.name for f in fields(TaskView))
