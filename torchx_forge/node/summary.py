"""A run's ``summary.json`` in its result directory (FORGE_RESULT_DIR): the one writer.

Written after every attempt by whatever ran the program (the slurm_forge launcher, or the
sweep-point runner outside slurm_forge); read by later pipeline steps (:mod:`.handoff`) and by
``torchx forge results``. It is a :class:`RunSummary` (format 1: the layout of the summaries
written before formats were numbered; see :mod:`torchx_forge.core.formats`); ``state`` is a task
file state (COMPLETED, FAILED, KILLED, INTERRUPTED) or CANCELLED for a pipeline run skipped because
its upstream failed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, ClassVar, Dict, List, Mapping, Optional

from torchx_forge.core import envvars, formats
from torchx_forge.core.record import field, record
from torchx_forge.core.runrow import RunRow
from torchx_forge.core.storage import StoreError
from torchx_forge.node.artifacts import collect, globs_from_env
from torchx_forge.state.files import read_file, write_file

SUMMARY = "summary.json"


@record
class RunSummary:
    """How a run ended, and what it was: its ``summary.json``."""

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "run summary"

    state: Optional[str] = None  # None: not known (no end written)
    exit_code: Optional[int] = None
    attempts: Optional[int] = None
    run_id: str = ""
    index: int = 0
    case: str = ""
    stage: str = ""
    role: str = ""
    replica: int = 0
    params: Dict[str, Any] = field(default_factory=dict)
    job: str = ""  # the Slurm job of the attempt (A_T for an array task)
    app_id: str = ""
    note: str = ""
    artifacts: List[str] = field(default_factory=list)  # collected into the result dir's artifacts/
    format: int = FORMAT  # see torchx_forge.core.formats

    def to_json(self) -> Dict[str, Any]:
        return formats.dump(self)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Optional[RunSummary]:
        """The summary read from ``where`` (None when it is none; NewerFormatError when a newer
        torchx-forge wrote it)."""
        if not isinstance(obj, dict):
            return None
        formats.format_of(obj, cls.KIND, where, cls.FORMAT)
        return formats.known_fields(cls, obj)


def write_summary(directory: str, summary: RunSummary) -> None:
    """Atomically write ``summary.json`` into a result directory (a local path or URL)."""
    payload = json.dumps(summary.to_json(), indent=1, sort_keys=True).encode()
    write_file(f"{directory.rstrip('/')}/{SUMMARY}", payload, mode=0o644)


def read_summary(directory: str) -> Optional[RunSummary]:
    """The summary of the run whose result directory this is; None when missing or unreadable.
    A store that does not answer is an error (StoreError), not a missing summary; so is one a
    newer torchx-forge wrote (NewerFormatError)."""
    path = f"{directory.rstrip('/')}/{SUMMARY}"
    try:
        data = json.loads(read_file(path))
    except StoreError:
        raise
    except (OSError, ValueError):
        return None
    try:
        return RunSummary.from_json(data, path)
    except (ValueError, TypeError):
        return None


def job_key(env: Mapping[str, str]) -> str:
    """``A_T`` for an array task, else the Slurm job id ("" outside Slurm)."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


def report_run(env: Mapping[str, str], row: Optional[RunRow], run_id: str, role: str, replica: int,
               state: str, exit_code: Optional[int], note: str = "") -> None:
    """Collect the run's artifacts and write its summary; a problem is a warning, never a failure.

    Args:
        env: the program's environment (FORGE_RESULT_DIR, FORGE_ATTEMPT, FORGE_STAGE, ...).
        row: the run's row of its run table (None for a plain AppDef's role).
    """
    directory = env.get(envvars.RESULT_DIR.name)
    if not directory:
        return
    globs = list(row.artifacts if row else ()) + globs_from_env(env.get(envvars.ARTIFACTS.name, ""))
    try:
        artifacts = collect(globs, (row.workdir if row else "") or os.getcwd(), directory) if globs else []
        write_summary(directory, RunSummary(
            state=state, exit_code=exit_code, attempts=int(env.get(envvars.ATTEMPT.name, "0") or 0) + 1, run_id=run_id,
            index=row.index if row else replica, case=row.case if row else "", stage=env.get(envvars.STAGE.name, ""),
            role=role, replica=replica, params=dict(row.params if row else ()), job=job_key(env),
            app_id=env.get(envvars.APP_ID.name, ""), note=note, artifacts=artifacts,
        ))
    except OSError as e:
        print(f"torchx-forge: warning: cannot write the run summary: {e}", file=sys.stderr)
