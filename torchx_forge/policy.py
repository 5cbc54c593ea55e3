"""Retry policy: which end states retry, how often, and the pre-timeout warning (pure).

A task is retried when it ends in one of ``retry_on`` (default TIMEOUT,
PREEMPTED, NODE_FAIL; FAILED and OUT_OF_MEMORY only when asked) and has used
fewer than ``max_retries`` retries, counted per task across requeues and
resubmissions. A program that was warned (``signal``, default ``USR1@90``:
USR1 90 s before the time limit) and then exits non-zero, exits with
``REQUEUE_EXIT`` (75) or dies of the warning is *interrupted*: it retries from
its last checkpoint like a TIMEOUT, not like a FAILED.

Standard library only (the launcher imports it on every compute node); the
ConfigError raised for bad input is imported where it is raised.
"""

from __future__ import annotations

import re
import signal as _signal
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Optional, Tuple

REQUEUE_EXIT = 75  # EX_TEMPFAIL: "saved, run me again"
RETRYABLE_STATES = ("TIMEOUT", "PREEMPTED", "NODE_FAIL", "FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
DEFAULT_RETRY_ON = ("TIMEOUT", "PREEMPTED", "NODE_FAIL")
DEFAULT_SIGNAL = "USR1@90"
_SIG_RE = re.compile(r"^(?:SIG)?([A-Z0-9]+)@(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Warning_:
    """The pre-timeout warning: signal name (no SIG prefix) and lead time in seconds."""

    name: str
    lead: int

    @property
    def sbatch_flag(self) -> str:
        # B: -> only the batch shell gets it; the script hands it to the tasks without
        # killing launchers such as torchrun (see torchx_forge.launch)
        return f"--signal=B:{self.name}@{self.lead}"

    @property
    def number(self) -> int:
        return int(getattr(_signal, f"SIG{self.name}"))


def parse_signal(text: Optional[str], where: str = "runopt 'signal'") -> Optional[Warning_]:
    """``USR1@90`` -> Warning_("USR1", 90); ``off``/``none`` -> None."""
    from torchx_forge.errors import ConfigError

    if text is None:
        text = DEFAULT_SIGNAL
    if str(text).strip().lower() in ("", "off", "none", "no", "false"):
        return None
    m = _SIG_RE.match(str(text).strip())
    if not m:
        raise ConfigError(where, f"got {text!r}; expected SIG@SECONDS such as USR1@90 (or 'off')")
    name, lead = m.group(1).upper(), int(m.group(2))
    if name.isdigit():
        try:
            name = _signal.Signals(int(name)).name[3:]
        except ValueError:
            raise ConfigError(where, f"got {text!r}; {name} is not a signal number") from None
    if not hasattr(_signal, f"SIG{name}"):
        raise ConfigError(where, f"got {text!r}; SIG{name} is not a signal")
    if name in ("KILL", "STOP", "TERM", "CONT"):
        raise ConfigError(where, f"got {text!r}; SIG{name} cannot serve as a warning (use USR1 or USR2)")
    if lead <= 0:
        raise ConfigError(where, f"got {text!r}; the lead time must be at least 1 second")
    return Warning_(name, lead)


def parse_retry_on(text: Optional[object], where: str = "runopt 'retry_on'") -> Tuple[str, ...]:
    """``"TIMEOUT,FAILED"`` or a list -> a tuple of known end states."""
    from torchx_forge.errors import ConfigError

    if text is None:
        return DEFAULT_RETRY_ON
    items = text if isinstance(text, (list, tuple)) else re.split(r"[,;\s]+", str(text))
    states = tuple(str(i).strip().upper() for i in items if str(i).strip())
    bad = [s for s in states if s not in RETRYABLE_STATES]
    if bad:
        raise ConfigError(where, f"got {', '.join(bad)}; expected end states among {', '.join(RETRYABLE_STATES)}")
    return states


def check_lead_time(warning: Optional[Warning_], time_limit_s: Optional[int], where: str, time_text: str) -> None:
    from torchx_forge.errors import ConfigError

    if warning and time_limit_s is not None and warning.lead >= time_limit_s:
        raise ConfigError(
            where,
            f"the warning {warning.name}@{warning.lead} comes {warning.lead} s before the end, but the time limit"
            f" {time_text} is only {time_limit_s} s: use a shorter lead (e.g. signal=USR1@{max(1, time_limit_s // 4)})"
            " or a longer time",
        )


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    retry_on: Tuple[str, ...] = DEFAULT_RETRY_ON
    warning: Optional[Warning_] = Warning_("USR1", 90)
    grace: int = 60

    @property
    def enabled(self) -> bool:
        return self.max_retries > 0


class Outcome(str, Enum):
    """How one attempt of a task ended, as its launcher saw it."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"  # warned (or REQUEUE_EXIT): resume from the last checkpoint
    FAILED = "failed"
    STOPPED = "stopped"  # SIGTERM from outside: cancel, time limit or preemption
    EXHAUSTED = "exhausted"  # refused to start: no retries left
    BAD_CHECKPOINT = "bad_checkpoint"


def outcome_of(exit_code: int, warned: bool, stopped_by: Optional[int]) -> Outcome:
    if exit_code == 0:
        return Outcome.COMPLETED
    if exit_code == REQUEUE_EXIT or warned:
        return Outcome.INTERRUPTED
    if stopped_by is not None:
        return Outcome.STOPPED
    return Outcome.FAILED


@dataclass(frozen=True)
class Decision:
    requeue: bool
    reason: str


def decide(outcomes: Iterable[Outcome], attempts_used: int, policy: RetryPolicy) -> Decision:
    """Requeue a job whose tasks ended like ``outcomes`` after ``attempts_used`` attempts (1 = first)?"""
    outs = list(outcomes)
    if not outs or all(o == Outcome.COMPLETED for o in outs):
        return Decision(False, "all tasks completed")
    if any(o in (Outcome.EXHAUSTED, Outcome.BAD_CHECKPOINT) for o in outs):
        return Decision(False, "a task could not start (see its log); not retrying")
    if Outcome.INTERRUPTED in outs:
        cause = "TIMEOUT"  # the warning comes before the time limit
    elif Outcome.FAILED in outs:
        cause = "FAILED"
    else:
        return Decision(False, "stopped from outside (cancel, time limit or preemption): Slurm or the companion job decides")
    if cause not in policy.retry_on:
        return Decision(False, f"{cause} is not in retry_on ({','.join(policy.retry_on)})")
    if attempts_used > policy.max_retries:
        return Decision(False, f"retries exhausted: {attempts_used} attempt(s), max_retries={policy.max_retries}")
    return Decision(True, f"{cause}: retry {attempts_used} of {policy.max_retries}")


def retry_policy(
    max_retries: Optional[int], retry_on: Optional[object], signal: Optional[str], grace: Optional[int], where: str = "runopt"
) -> RetryPolicy:
    from torchx_forge.errors import ConfigError

    warning = parse_signal(signal, f"{where} 'signal'")
    if grace is None:
        g = min(60, max(1, warning.lead - 10)) if warning else 60
    else:
        g = int(grace)
        if warning and g >= warning.lead:
            raise ConfigError(
                f"{where} 'grace'",
                f"got {g} s, but the warning {warning.name}@{warning.lead} leaves only {warning.lead} s before the"
                " time limit: the program must have stopped before that; use a smaller grace",
            )
    return RetryPolicy(
        max_retries=int(max_retries or 0),
        retry_on=parse_retry_on(retry_on, f"{where} 'retry_on'"),
        warning=warning,
        grace=g,
    )
