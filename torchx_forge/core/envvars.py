"""Every ``FORGE_*`` environment variable, declared once: its name, what it means, who sets it.

Code everywhere uses these constants (``env[envvars.RUN_ID.name]``), never the name as a string;
docs/contract.md documents each of them with who sets it (tests/unit/core/test_envvars.py checks
both). Three parties set them:

- the **submit side**: the batch script slurm_forge writes (``export FORGE_...``), the ``--export``
  of a job submitted later, or the role env of an AppDef forge builds;
- the **launcher** on the compute node (:mod:`torchx_forge.node.launch`, and the sweep-point runner
  :mod:`torchx_forge.node.task`, which plays its part on other schedulers such as local_cwd);
- the **user**: in the environment forge commands run in (it reaches the jobs) or a role's env.

*Internal* variables carry settings from the submit side to the launcher: the program sees them
too, but they are no part of its contract and may change.

Standard library only: imported on every node and by :mod:`torchx_forge.runtime` in users' programs.
"""

from __future__ import annotations

import enum
from typing import Dict, Tuple

from torchx_forge.core.record import record

PREFIX = "FORGE_"


class SetBy(str, enum.Enum):
    """Who sets a variable (the value is how docs/contract.md says it)."""

    SUBMIT = "submit side"
    LAUNCHER = "launcher"
    USER = "user"


@record
class EnvVar:
    """One ``FORGE_*`` variable.

    Args:
        name: the variable's name (``FORGE_...``).
        meaning: what it holds, in one line.
        set_by: who sets it (several parties for some: the user chooses, the submit side passes it on).
        internal: submit side -> launcher plumbing, no part of the contract with the program.
    """

    name: str
    meaning: str
    set_by: Tuple[SetBy, ...]
    internal: bool = False


_SUBMIT = (SetBy.SUBMIT,)
_LAUNCHER = (SetBy.LAUNCHER,)
_USER = (SetBy.USER,)

# -- the contract with the program -------------------------------------------------------------------

APP_ID = EnvVar("FORGE_APP_ID", "the app id (the first Slurm job id of the app; CLUSTER:ID on a named cluster)",
                (SetBy.SUBMIT, SetBy.LAUNCHER))
ROLE = EnvVar("FORGE_ROLE", "the TorchX role of this replica", _LAUNCHER)
REPLICA_ID = EnvVar("FORGE_REPLICA_ID", "the replica of the role (for a sweep role: the run's position in the role)",
                    (SetBy.SUBMIT, SetBy.LAUNCHER))
RUN_ID = EnvVar("FORGE_RUN_ID", "a sweep run's stable id, else <app_id>-<role> (a role's replicas are one run)", _LAUNCHER)
RUN_INDEX = EnvVar("FORGE_RUN_INDEX", "sweeps: the run's index", _LAUNCHER)
RUN_CASE = EnvVar("FORGE_RUN_CASE", "sweeps: the run's case name", _LAUNCHER)
RUN_PARAMS = EnvVar("FORGE_RUN_PARAMS", "pipelines: the run's parameters as a JSON object", _LAUNCHER)
ATTEMPT = EnvVar("FORGE_ATTEMPT", "0 on the first attempt, +1 on every retry (requeue or resubmission)", _LAUNCHER)
INITIAL_JOB_ID = EnvVar("FORGE_INITIAL_JOB_ID", "the Slurm job (A_T for an array task) of the first attempt", _LAUNCHER)
CHECKPOINT_DIR = EnvVar("FORGE_CHECKPOINT_DIR", "this run's checkpoint directory (a local path or fsspec URL)", _LAUNCHER)
RESUME_FROM = EnvVar("FORGE_RESUME_FROM", "the checkpoint to resume from, when one exists", _LAUNCHER)
RESULT_DIR = EnvVar("FORGE_RESULT_DIR", "this run's result directory (summary.json, metrics, artifacts)", _LAUNCHER)
RANK0_HOST = EnvVar("FORGE_RANK0_HOST", "the first node of the allocation (TorchX's rank0_env)", _LAUNCHER)
RDZV_PORT = EnvVar("FORGE_RDZV_PORT", "a rendezvous port derived from the Slurm job id (15000-29999)", _LAUNCHER)
WARN_SIGNAL = EnvVar("FORGE_WARN_SIGNAL", "the pre-timeout warning's signal (e.g. USR1) when retries are on", _SUBMIT)
DONE_FILE = EnvVar("FORGE_DONE_FILE", "with retries on: the file the program creates to say it finished", _LAUNCHER)
STAGE = EnvVar("FORGE_STAGE", "pipelines: the step this run belongs to", _SUBMIT)
UPSTREAM_RUNS_OK = EnvVar("FORGE_UPSTREAM_RUNS_OK", "pipelines: indices of the upstream runs that succeeded", _LAUNCHER)
UPSTREAM_RUNS_FAILED = EnvVar("FORGE_UPSTREAM_RUNS_FAILED", "pipelines: indices of the upstream runs that failed",
                              _LAUNCHER)
UPSTREAM_RESULT_DIRS = EnvVar("FORGE_UPSTREAM_RESULT_DIRS", "pipelines: result dirs of the upstream runs that succeeded",
                              _LAUNCHER)
INPUT_CHECKPOINT = EnvVar("FORGE_INPUT_CHECKPOINT", "per-run pipeline steps: the upstream run's checkpoint", _LAUNCHER)
SEARCH_REPORT = EnvVar("FORGE_SEARCH_REPORT", "searches: the file runtime.report() writes a trial's intermediate metrics to",
                       _SUBMIT)
SEARCH_TRIAL = EnvVar("FORGE_SEARCH_TRIAL", "searches: the trial's file (its parameters), read by the sweep task", _SUBMIT)
SEARCH_BUDGET = EnvVar("FORGE_SEARCH_BUDGET", "searches: the step at which the trial stops now (its rung's budget)", _SUBMIT)

# -- what the user may set ---------------------------------------------------------------------------

STATE_DIR = EnvVar("FORGE_STATE_DIR", "the state dir (default ~/.torchx_forge; any fsspec URL)", (SetBy.USER, SetBy.SUBMIT))
STORE_WAIT = EnvVar("FORGE_STORE_WAIT", "seconds the node side waits for an object store that does not answer (120)", _USER)
STORE_TIMEOUT = EnvVar("FORGE_STORE_TIMEOUT", "seconds one call to an object store may take (20; 0: no bound)", _USER)
RESUME_ARG = EnvVar("FORGE_RESUME_ARG", "also pass FORGE_RESUME_FROM as this argument (1: --resume_from_checkpoint)",
                    (SetBy.USER, SetBy.LAUNCHER))
ARTIFACTS = EnvVar("FORGE_ARTIFACTS", "globs (separated by ;) of files collected into the result dir", _USER)
RESULT_TEMPLATE = EnvVar("FORGE_RESULT_TEMPLATE", "the template of FORGE_RESULT_DIR", _USER)
SWEEP_LIMIT = EnvVar("FORGE_SWEEP_LIMIT", "the most runs a sweep (values an axis, samples a random search) may have"
                     " (1000000)", _USER)
HOLD_LIMIT = EnvVar("FORGE_HOLD_LIMIT", "seconds a held job may outlive a submitting client that died (300)", _USER)

# -- internal: from the submit side to the launcher --------------------------------------------------

APP_NAME = EnvVar("FORGE_APP_NAME", "the app's name (the {app_name} of templates)", _SUBMIT, internal=True)
JOB_DIR = EnvVar("FORGE_JOB_DIR", "runopt job_dir, absolute (the {job_dir} of templates)", _SUBMIT, internal=True)
LOG_DIR = EnvVar("FORGE_LOG_DIR", "the log dir (the launcher checks it did not fill up)", _SUBMIT, internal=True)
CHECKPOINT_TEMPLATE = EnvVar("FORGE_CHECKPOINT_TEMPLATE", "runopt checkpoint_dir: the template of FORGE_CHECKPOINT_DIR",
                             _SUBMIT, internal=True)
WARN_FILE = EnvVar("FORGE_WARN_FILE", "the flag file the batch script creates when the warning arrives", _SUBMIT,
                   internal=True)
MAX_RETRIES = EnvVar("FORGE_MAX_RETRIES", "the job's retry budget", _SUBMIT, internal=True)
RETRY_ON = EnvVar("FORGE_RETRY_ON", "the end states retried, comma separated", _SUBMIT, internal=True)
GRACE = EnvVar("FORGE_GRACE", "seconds between the warning and the stop", _SUBMIT, internal=True)
EXTRA_RETRIES = EnvVar("FORGE_EXTRA_RETRIES", "retries granted by hand (torchx forge retry)", _SUBMIT, internal=True)
SEARCH_DECIDE = EnvVar("FORGE_SEARCH_DECIDE", "searches, local state dir: the script a trial's batch script runs as its"
                       " tasks end, which submits the decision job that takes the trial's end", _SUBMIT, internal=True)
SEARCH_TAG = EnvVar("FORGE_SEARCH_TAG", "searches: the trial job's tag (its decision job's is the same with dr)", _SUBMIT,
                    internal=True)
SUBMISSION = EnvVar("FORGE_SUBMISSION", "the submission of an app of one job, sent without a hold (the launcher"
                    " checks the record is its own)", _SUBMIT, internal=True)

#: every variable, in the order above
ALL: Tuple[EnvVar, ...] = tuple(v for v in globals().values() if isinstance(v, EnvVar))
BY_NAME: Dict[str, EnvVar] = {v.name: v for v in ALL}
