"""The environment contract with the user's program (docs/contract.md; the variables are declared in
:mod:`torchx_forge.core.envvars`).

Every replica slurm_forge runs, and every sweep point on any scheduler, gets:

- ``FORGE_RUN_ID``: the sweep run's stable id, else ``<app_id>-<role>`` (one run per role: its
  replicas are the nodes of one distributed program and share the checkpoint directory)
- ``FORGE_ATTEMPT``: 0 on the first attempt, +1 on every retry (requeue or resubmission)
- ``FORGE_CHECKPOINT_DIR``: this run's checkpoint directory (local path or fsspec URL)
- ``FORGE_RESULT_DIR``: this run's result directory (summary.json, collected artifacts)
- ``FORGE_INITIAL_JOB_ID``: the Slurm job (``A_T`` for array tasks) of the first attempt
- ``FORGE_RESUME_FROM``: the checkpoint to resume from, when one exists
  (see :mod:`torchx_forge.node.checkpoint`); with ``FORGE_RESUME_ARG`` set (e.g.
  ``--resume_from_checkpoint``) it is also appended to the program's arguments.

Standard library only: imported by the launcher on every compute node.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

from torchx_forge.core import envvars, layout
from torchx_forge.node.checkpoint import latest_checkpoint

DEFAULT_RESUME_FLAG = "--resume_from_checkpoint"


def default_run_id(app_id: str, role: str, replica: int) -> str:
    """Outside a sweep: ``<app_id>-<role>``, shared by the role's replicas.

    TorchX's replicas of a role are the nodes of one distributed program (dist.ddp -j 2x2 is
    one role with 2 replicas), so they are one run with one checkpoint directory: whichever
    node hosts rank 0 after a restart finds the checkpoint. The replica is FORGE_REPLICA_ID.
    """
    return f"{app_id}-{role}"


def _fill(template: str, env: Mapping[str, str], run_id: str) -> str:
    stage = env.get(envvars.STAGE.name, "")
    values = {
        "state_dir": env.get(envvars.STATE_DIR.name) or os.path.join(os.path.expanduser("~"), ".torchx_forge"),
        "job_dir": env.get(envvars.JOB_DIR.name, ""),
        "app_id": env.get(envvars.APP_ID.name, ""),
        "app_name": env.get(envvars.APP_NAME.name, ""),
        "run_id": run_id,
        "role": env.get(envvars.ROLE.name, ""),
        "replica": env.get(envvars.REPLICA_ID.name, ""),
        # the defaults write "{stage}{run_id}": a step's directory when there is a step, nothing otherwise
        "stage": f"{stage}/" if stage and "{stage}{run_id}" in template else stage,
    }
    return os.path.expanduser(template.format(**values))


def checkpoint_dir(env: Mapping[str, str], run_id: str, template: Optional[str] = None) -> str:
    """Fill the checkpoint_dir template for one run (pipeline steps get a directory per step)."""
    template = template or env.get(envvars.CHECKPOINT_TEMPLATE.name) or (
        layout.JOB_DIR_CHECKPOINT_TEMPLATE if env.get(envvars.JOB_DIR.name) else layout.CHECKPOINT_TEMPLATE
    )
    return _fill(template, env, run_id)


def result_dir(env: Mapping[str, str], run_id: str) -> str:
    """Where a run's summary and collected artifacts go (FORGE_RESULT_DIR)."""
    return _fill(env.get(envvars.RESULT_TEMPLATE.name) or layout.RESULT_TEMPLATE, env, run_id)


def apply(env: Dict[str, str], run_id: str, template: Optional[str] = None) -> Optional[str]:
    """Set FORGE_RUN_ID, FORGE_CHECKPOINT_DIR and (if a checkpoint exists) FORGE_RESUME_FROM.

    Returns the checkpoint resumed from. Raises CheckpointError for an ambiguous directory.
    """
    env[envvars.RUN_ID.name] = run_id
    directory = checkpoint_dir(env, run_id, template)
    env[envvars.CHECKPOINT_DIR.name] = directory
    env[envvars.RESULT_DIR.name] = result_dir(env, run_id)
    for d in (directory, env[envvars.RESULT_DIR.name]):
        if "://" not in d:
            try:  # a convenience for the program; saving will report a real problem
                os.makedirs(d, exist_ok=True)
            except OSError:
                pass
    found = latest_checkpoint(directory)
    if found:
        env[envvars.RESUME_FROM.name] = found
    else:
        env.pop(envvars.RESUME_FROM.name, None)
    env.setdefault(envvars.ATTEMPT.name, "0")
    return found


def resume_argv(argv: List[str], env: Mapping[str, str]) -> List[str]:
    """``argv`` plus ``--resume_from_checkpoint PATH`` when the program opted in via FORGE_RESUME_ARG."""
    flag = env.get(envvars.RESUME_ARG.name, "").strip()
    resume = env.get(envvars.RESUME_FROM.name)
    if not flag or not resume:
        return argv
    if flag.lower() in ("1", "true", "yes"):
        flag = DEFAULT_RESUME_FLAG
    return argv + [flag, resume]
