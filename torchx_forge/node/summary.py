"""A run's ``summary.json`` in its result directory (FORGE_RESULT_DIR): the one writer.

Written after every attempt by whatever ran the program (the slurm_forge launcher, or the
sweep-point runner outside slurm_forge); read by later pipeline steps (:mod:`.handoff`) and by
``torchx forge results``. Keys: ``run_id index case stage role replica params state exit_code
attempts job app_id note artifacts``; ``state`` is a task file state (COMPLETED, FAILED, KILLED,
INTERRUPTED) or CANCELLED for a pipeline run skipped because its upstream failed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Mapping, Optional

from torchx_forge.core import envvars
from torchx_forge.core.runtable import RunRow
from torchx_forge.core.storage import StoreError
from torchx_forge.node.artifacts import collect, globs_from_env
from torchx_forge.state.files import read_file, write_file

SUMMARY = "summary.json"


def write_summary(directory: str, summary: Mapping[str, Any]) -> None:
    """Atomically write ``summary.json`` into a result directory (a local path or URL)."""
    payload = json.dumps(dict(summary), indent=1, sort_keys=True).encode()
    write_file(f"{directory.rstrip('/')}/{SUMMARY}", payload, mode=0o644)


def read_summary(directory: str) -> Optional[Dict[str, Any]]:
    """The summary of the run whose result directory this is; None when missing or unreadable.
    A store that does not answer is an error (StoreError), not a missing summary."""
    try:
        data = json.loads(read_file(f"{directory.rstrip('/')}/{SUMMARY}"))
    except StoreError:
        raise
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
        write_summary(directory, {
            "artifacts": artifacts, "run_id": run_id, "index": row.index if row else replica, "case": row.case if row else "",
            "stage": env.get(envvars.STAGE.name, ""), "role": role, "replica": replica, "params": dict(row.params if row else ()),
            "state": state, "exit_code": exit_code, "attempts": int(env.get(envvars.ATTEMPT.name, "0") or 0) + 1,
            "job": job_key(env), "app_id": env.get(envvars.APP_ID.name, ""), "note": note,
        })
    except OSError as e:
        print(f"torchx-forge: warning: cannot write the run summary: {e}", file=sys.stderr)
