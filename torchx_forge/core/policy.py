"""The retry policy: which end states retry, how often, and the pre-timeout warning (pure).

A task is retried when it ends in one of ``retry_on`` (default TIMEOUT, PREEMPTED, NODE_FAIL;
FAILED and OUT_OF_MEMORY only when asked) and has attempts left: its **budget** is
``max_retries`` plus the extra retries a by-hand ``torchx forge retry`` grants, counted per task
across requeues and resubmissions. A program that was warned (``signal``, default ``USR1@90``: USR1
90 s before the time limit) and then exits non-zero, exits with :data:`REQUEUE_EXIT` (75) or
dies of the warning is *interrupted*: it retries from its last checkpoint like a TIMEOUT.

The policy reaches the compute nodes through the environment (:meth:`RetryPolicy.to_env` /
:meth:`RetryPolicy.from_env`), so the launcher, the batch script's decision, the companion job
and status all compute the budget with :attr:`RetryPolicy.budget`. Parsers raise ``ValueError``
with the reason; callers add where the value came from.
"""

from __future__ import annotations

import re
import signal as _signal
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

from torchx_forge.core import envvars
from torchx_forge.core.record import record
from torchx_forge.core.states import KILLED_FROM_OUTSIDE, Outcome, SlurmState

REQUEUE_EXIT = 75  # EX_TEMPFAIL: "saved, run me again"
RETRYABLE_STATES: Tuple[SlurmState, ...] = (
    SlurmState.TIMEOUT, SlurmState.PREEMPTED, SlurmState.NODE_FAIL, SlurmState.FAILED,
    SlurmState.OUT_OF_MEMORY, SlurmState.BOOT_FAIL, SlurmState.DEADLINE,
)
DEFAULT_RETRY_ON: Tuple[SlurmState, ...] = KILLED_FROM_OUTSIDE
DEFAULT_SIGNAL = "USR1@90"
MAX_SIGNAL_LEAD = 65535  # sbatch --signal: sig_time is 0..65535
#: a program warned by one of these was stopped from outside (preemption, cancel), not by its time limit
STOPPED_FROM_OUTSIDE = ("TERM", "INT", "HUP")
_SIG_RE = re.compile(r"^(?:SIG)?([A-Z0-9]+)@(\d+)$", re.IGNORECASE)
_OFF = ("", "off", "none", "no", "false")


class PolicyError(ValueError):
    """A bad retry setting; ``key`` names it (max_retries, retry_on, signal, grace)."""

    def __init__(self, key: str, msg: str) -> None:
        self.key = key
        super().__init__(msg)


@record
class Warning_:  # noqa: N801 (``Warning`` is a builtin)
    """The pre-timeout warning: signal name (no SIG prefix) and lead time in seconds."""

    name: str
    lead: int

    @property
    def sbatch_flag(self) -> str:
        # B: only the batch shell gets it; the script hands it to the program without killing
        # launchers such as torchrun (see torchx_forge.node.supervisor)
        return f"--signal=B:{self.name}@{self.lead}"

    @property
    def number(self) -> int:
        return int(getattr(_signal, f"SIG{self.name}"))

    def __str__(self) -> str:
        return f"{self.name}@{self.lead}"


def parse_signal(text: Optional[str]) -> Optional[Warning_]:
    """``USR1@90`` -> Warning_("USR1", 90); ``off``/``none`` -> None; None -> the default."""
    if text is None:
        text = DEFAULT_SIGNAL
    if str(text).strip().lower() in _OFF:
        return None
    m = _SIG_RE.match(str(text).strip())
    if not m:
        raise PolicyError("signal", f"got {text!r}; expected SIG@SECONDS such as USR1@90 (or 'off')")
    name, lead = m.group(1).upper(), int(m.group(2))
    if name.isdigit():
        try:
            name = _signal.Signals(int(name)).name[3:]
        except ValueError:
            raise PolicyError("signal", f"got {text!r}; {name} is not a signal number") from None
    if not hasattr(_signal, f"SIG{name}"):
        raise PolicyError("signal", f"got {text!r}; SIG{name} is not a signal")
    if name in ("KILL", "STOP", "TERM", "CONT"):
        raise PolicyError("signal", f"got {text!r}; SIG{name} cannot serve as a warning (use USR1 or USR2)")
    if lead <= 0:
        raise PolicyError("signal", f"got {text!r}; the lead time must be at least 1 second")
    if lead > MAX_SIGNAL_LEAD:
        raise PolicyError("signal", f"got {text!r}; Slurm takes a lead time of at most {MAX_SIGNAL_LEAD} s (about 18 h)")
    return Warning_(name, lead)


def parse_retry_on(text: Union[None, str, Sequence[object]]) -> Tuple[SlurmState, ...]:
    """``"TIMEOUT,FAILED"`` or a list -> a tuple of end states that may retry."""
    if text is None:
        return DEFAULT_RETRY_ON
    items = text if isinstance(text, (list, tuple)) else re.split(r"[,;\s]+", str(text))
    names = [str(i).strip().upper() for i in items if str(i).strip()]
    bad = [n for n in names if n not in {s.value for s in RETRYABLE_STATES}]
    if bad:
        raise PolicyError(
            "retry_on", f"got {', '.join(bad)}; expected end states among {', '.join(s.value for s in RETRYABLE_STATES)}"
        )
    return tuple(SlurmState(n) for n in names)


def check_lead_time(warning: Optional[Warning_], time_limit_s: Optional[int], time_text: str) -> None:
    """The warning must come before the time limit starts (a lead shorter than the limit)."""
    if warning and time_limit_s is not None and warning.lead >= time_limit_s:
        raise PolicyError(
            "signal",
            f"the warning {warning} comes {warning.lead} s before the end, but the time limit"
            f" {time_text} is only {time_limit_s} s: use a shorter lead (e.g. signal=USR1@{max(1, time_limit_s // 4)})"
            " or a longer time",
        )


@record
class RetryPolicy:
    """One job's retry policy. ``extra_retries`` come from a by-hand ``torchx forge retry``."""

    max_retries: int = 0
    retry_on: Tuple[SlurmState, ...] = DEFAULT_RETRY_ON
    warning: Optional[Warning_] = Warning_("USR1", 90)
    grace: int = 60
    extra_retries: int = 0

    def __post_init__(self) -> None:
        if not all(isinstance(s, SlurmState) for s in self.retry_on):  # states given as text
            object.__setattr__(self, "retry_on", parse_retry_on(list(self.retry_on)))

    @property
    def enabled(self) -> bool:
        """Retries are on: the job is requeueable, warned and watched by a companion job."""
        return self.max_retries > 0

    @property
    def budget(self) -> int:
        """Retries a task may use: the one number the node, the companion job and status share."""
        return self.max_retries + self.extra_retries

    def attempts_left(self, attempts_used: int) -> bool:
        """May a task that has used ``attempts_used`` attempts (1 = the first) run once more?"""
        return attempts_used <= self.budget

    def retries(self, state: SlurmState) -> bool:
        """Does an end in ``state`` call for a retry? A LOST task was killed from outside, cause unknown."""
        if state is SlurmState.LOST:
            return any(s in self.retry_on for s in KILLED_FROM_OUTSIDE)
        return state in self.retry_on

    def describe(self) -> str:
        """One line for status: ``max_retries=2 (+1 by hand) on TIMEOUT,PREEMPTED; warning USR1@90, grace 60 s``."""
        if not self.enabled and not self.extra_retries:
            return "off"
        extra = f" (+{self.extra_retries} by hand)" if self.extra_retries else ""
        warn = f"warning {self.warning}, grace {self.grace} s" if self.warning else "no warning"
        return f"max_retries={self.max_retries}{extra} on {','.join(s.value for s in self.retry_on)}; {warn}"

    def to_env(self) -> Mapping[str, str]:
        """The variables the batch script exports for the launcher and the requeue decision."""
        env = {envvars.MAX_RETRIES.name: str(self.max_retries), envvars.RETRY_ON.name: ",".join(s.value for s in self.retry_on)}
        if self.extra_retries:
            env[envvars.EXTRA_RETRIES.name] = str(self.extra_retries)
        if self.warning:
            env.update({envvars.WARN_SIGNAL.name: self.warning.name, envvars.GRACE.name: str(self.grace)})
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        """The policy a task runs under (no retries when the job was submitted without them)."""
        name = env.get(envvars.WARN_SIGNAL.name, "")
        return cls(
            max_retries=int(env.get(envvars.MAX_RETRIES.name) or 0),
            retry_on=parse_retry_on(env.get(envvars.RETRY_ON.name) or None),
            warning=Warning_(name, 0) if name and hasattr(_signal, f"SIG{name}") else None,
            grace=int(float(env.get(envvars.GRACE.name) or 60)),
            extra_retries=int(env.get(envvars.EXTRA_RETRIES.name) or 0),
        )


def retry_policy(max_retries: Optional[int], retry_on: Union[None, str, Sequence[object]], signal: Optional[str],
                 grace: Optional[int]) -> RetryPolicy:
    """A validated policy from its four settings (None: the default)."""
    warning = parse_signal(signal)
    if grace is None:
        g = min(60, max(1, warning.lead - 10)) if warning else 60
    else:
        g = int(grace)
        if warning and g >= warning.lead:
            raise PolicyError(
                "grace",
                f"got {g} s, but the warning {warning} leaves only {warning.lead} s before the"
                " time limit: the program must have stopped before that; use a smaller grace",
            )
    return RetryPolicy(max_retries=int(max_retries or 0), retry_on=parse_retry_on(retry_on), warning=warning, grace=g)


def outcome_of(exit_code: int, warned: bool, stopped_by: Optional[int], finished: bool = False,
               saved: bool = False) -> Outcome:
    """How an attempt ended, from the program's exit code and what the launcher saw.

    After the warning, any exit is "interrupted, resume it" (submitit and Lightning treat a warned
    job the same way), exit 0 included: a program that saved and exited 0 has not finished. Unless
    it said it finished (``finished``: runtime.finished() or $FORGE_DONE_FILE), or exited 0 without
    saving a checkpoint after the warning (``saved`` False): then there is nothing to resume from,
    and it finished inside the grace time.
    """
    if exit_code == 0:
        return Outcome.INTERRUPTED if warned and saved and not finished else Outcome.COMPLETED
    if exit_code == REQUEUE_EXIT or warned:
        return Outcome.INTERRUPTED
    if stopped_by is not None:
        return Outcome.STOPPED
    return Outcome.FAILED


@record
class Decision:
    requeue: bool
    reason: str


def decide(outcomes: Iterable[Outcome], attempts_used: int, policy: RetryPolicy, preempted: bool = False) -> Decision:
    """Requeue a job whose tasks ended like ``outcomes`` after ``attempts_used`` attempts (1 = first)?

    ``preempted``: the interrupted tasks were warned by SIGTERM (preemption), not by the pre-timeout warning.
    """
    outs = list(outcomes)
    if not outs or all(o == Outcome.COMPLETED for o in outs):
        return Decision(False, "all tasks completed")
    if any(o.refused for o in outs):
        return Decision(False, "a task could not start (see its log); not retrying")
    if Outcome.INTERRUPTED in outs:  # the warning comes before the time limit; SIGTERM with preemption
        cause = SlurmState.PREEMPTED if preempted else SlurmState.TIMEOUT
    elif Outcome.FAILED in outs:
        cause = SlurmState.FAILED
    else:
        return Decision(False, "stopped from outside (cancel, time limit or preemption): Slurm or the companion job decides")
    if not policy.retries(cause):
        return Decision(False, f"{cause} is not in retry_on ({','.join(s.value for s in policy.retry_on)})")
    if not policy.attempts_left(attempts_used):
        return Decision(False, exhausted_note(attempts_used, policy))
    return Decision(True, f"{cause}: retry {attempts_used} of {policy.budget}")


def exhausted_note(attempts_used: int, policy: RetryPolicy) -> str:
    """The note every side writes when a task has no retries left."""
    extra = f" + {policy.extra_retries} by hand" if policy.extra_retries else ""
    return f"retries exhausted: {attempts_used} attempt(s), max_retries={policy.max_retries}{extra}"
