"""One trial of a search: its parameters, where it stands, what it reported (pure data, JSON round trip).

One :class:`Trial` is one JSON file, written by the decision step only (the study's one writer);
the trial's own job writes nothing but its report file (``$FORGE_SEARCH_REPORT``, read with
:func:`with_report`) and its ``metrics.json``. A trial moves through::

    ASKED --(job starts)--> RUNNING --(ends)--> COMPLETE | FAIL
                                      \\--(reached its rung's budget, saved, exited 0)--> PAUSED
    PAUSED --(promoted: budget raised)--> ASKED (resumes from its checkpoint) | --(pruned)--> PRUNED

A preempted or timed-out trial goes back to ASKED with ``attempts + 1``: that is no failure.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Mapping, Optional

from torchx_forge.core import formats, search_report
from torchx_forge.core.record import replace


class TrialState(str, enum.Enum):
    """Where a trial stands (the value is what its file holds)."""

    ASKED = "ASKED"  # decided and written, not started yet (its job may be pending)
    RUNNING = "RUNNING"  # its job runs
    PAUSED = "PAUSED"  # reached its rung's budget, saved a checkpoint, stopped: waits for promote or prune
    COMPLETE = "COMPLETE"  # ran its full length: ``value`` is its result
    PRUNED = "PRUNED"  # stopped early by the search
    FAIL = "FAIL"  # its program failed (not preempted: a preempted trial is ASKED again)

    @property
    def finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

    @property
    def active(self) -> bool:
        """Holds a slot: asked or running."""
        return self in (TrialState.ASKED, TrialState.RUNNING)


@dataclass(frozen=True)
class Trial:
    """One configuration tried by a search.

    Args:
        number: its number, 0, 1, 2 ... in the order asked (also optuna's trial number).
        params: dot-path key -> value, e.g. ``{"run.args.lr": 0.01}``.
        state: see :class:`TrialState`.
        budget: the step it may run to now (``$FORGE_SEARCH_BUDGET``); None: to its end.
        rung: asha/hyperband: how many times it was promoted (its rung in its bracket).
        intermediate: step -> the metric's value it reported at that step.
        value: its final result (COMPLETE).
        attempts: Slurm attempts so far (preemptions and timeouts included).
        told: the decision step has taken its end into account (:attr:`Decision.told`).
    """

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "search trial"

    number: int
    params: Dict[str, Any]
    state: TrialState = TrialState.ASKED
    budget: Optional[int] = None
    rung: int = 0
    intermediate: Dict[int, float] = field(default_factory=dict)
    value: Optional[float] = None
    attempts: int = 0
    told: bool = False
    format: int = FORMAT  # of its file (see torchx_forge.core.formats)

    @property
    def last_step(self) -> Optional[int]:
        return max(self.intermediate) if self.intermediate else None

    @property
    def objective(self) -> Optional[float]:
        """Its value, else (a PRUNED or PAUSED trial) its last reported one."""
        if self.value is not None:
            return self.value
        last = self.last_step
        return self.intermediate[last] if last is not None else None

    def to_json(self) -> Dict[str, Any]:
        """The trial's file: JSON-ready (steps as text keys, the state as its name)."""
        out = formats.dump(self)
        out["state"] = self.state.value
        out["intermediate"] = {str(k): v for k, v in sorted(self.intermediate.items())}
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], path: str = "<trial>") -> Trial:
        """A trial from its file's JSON; ValueError naming ``path`` for a broken file,
        NewerFormatError for one a newer torchx-forge wrote."""
        formats.format_of(obj, cls.KIND, path, cls.FORMAT)
        try:
            trial = formats.known_fields(cls, obj)
            inter = {int(k): float(v) for k, v in (obj.get("intermediate") or {}).items()}
            value = None if obj.get("value") is None else float(obj["value"])
            return replace(trial, state=TrialState(obj.get("state", "ASKED")), intermediate=inter, value=value,
                           params=dict(obj["params"]), format=cls.FORMAT)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{cls.KIND} {path}: not a trial file ({type(e).__name__}: {e})") from None


def with_report(trial: Trial, report_text: str, metric: str, path: str = "<report>") -> Trial:
    """``trial`` with the values of ``metric`` from its report file (``$FORGE_SEARCH_REPORT``) added to
    ``intermediate``: what the decision step does when a trial's job stops (or at any time: steps
    already known are kept, the file's win)."""
    values = search_report.values_of(search_report.loads(report_text, path), metric)
    return replace(trial, intermediate={**trial.intermediate, **values})


def finished_value(trial: Trial, metrics: Mapping[str, Any], metric: str) -> Trial:
    """``trial`` ended with exit code 0 and ``metrics`` (its ``metrics.json``, flattened): COMPLETE with
    the metric's value, else its last reported value; FAIL when it has neither."""
    raw = metrics.get(metric)
    value = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else trial.objective
    if value is None or math.isnan(value):
        return replace(trial, state=TrialState.FAIL)
    return replace(trial, state=TrialState.COMPLETE, value=value)
