"""Where things live: the state dir's layout and the names of log files (the one owner of both).

Under the state dir (a local path or any fsspec URL)::

    apps/<app_id>/record.json                  the app record (jobs, roles, log paths, options);
                                               <app_id> is the first job's id, CLUSTER:ID on a named cluster
    apps/<app_id>/jobs/<job_id>.json           jobs added later (retries), one file each
    apps/<app_id>/tasks/<role>.<replica>.json  a task's state file, written by its launcher
    apps/<app_id>/cancelled.json               written by cancel (for clusters without accounting)
    submissions/<id>/job-<i>.sh                the exact scripts given to sbatch
    intents/<id>.json                          a submission in flight (gone once its jobs are released)
    tables/<sha256>.json                       content-addressed, read-only run tables of sweeps
    diffs/<sha256>.patch                       uncommitted changes an app was submitted with
    checkpoints/<app_id>/[<step>/]<run_id>/    a run's checkpoints (default template)
    results/<app_id>/[<step>/]<run_id>/        a run's summary.json, metrics and artifacts
    logs/                                      job logs, when neither log_dir nor job_dir is set

Log files (in the log dir, a local path Slurm writes to)::

    <app>-<job>-<role>-<replica>.out|err       a task's output (<job>: Slurm's %j, or %A_%a in arrays)
    <app>-<job>.batch.log                      the batch script's own lines
    <app>-<job>.retry.log                      the companion job's lines
    <app>-wave<k>-<job>.log                    the lines of the job that submits wave k
    .forge-warn/<job>                          the pre-timeout warning, handed to the launcher
"""

from __future__ import annotations

import re

APPS = "apps"
TABLES = "tables"
DIFFS = "diffs"
SUBMISSIONS = "submissions"
INTENTS = "intents"
LOGS = "logs"
RECORD = "record.json"
CANCELLED = "cancelled.json"
WARN_DIR = ".forge-warn"

#: FORGE_CHECKPOINT_DIR when no template is given; ``{stage}`` is ``<step>/`` in pipelines.
CHECKPOINT_TEMPLATE = "{state_dir}/checkpoints/{app_id}/{stage}{run_id}"
#: the same under job_dir, when the app has one
JOB_DIR_CHECKPOINT_TEMPLATE = "{job_dir}/checkpoints/{stage}{run_id}"
#: FORGE_RESULT_DIR
RESULT_TEMPLATE = "{state_dir}/results/{app_id}/{stage}{run_id}"


def app_id_of(job_id: str, cluster: str = "") -> str:
    """An app's id: its first job's Slurm id, named ``CLUSTER:ID`` when the app was sent to a named
    cluster (job ids collide between clusters: each counts from 1)."""
    return f"{cluster}:{job_id}" if cluster else job_id


def split_app_id(app_id: str) -> tuple[str, str]:
    """``forge2:1000003`` -> (``forge2``, ``1000003``); ``12`` -> ("", ``12``)."""
    cluster, sep, job_id = app_id.rpartition(":")
    return (cluster, job_id) if sep else ("", app_id)


def valid_app_id(app_id: str) -> bool:
    """An id that names a directory under apps/ (no path tricks)."""
    return bool(app_id) and "/" not in app_id and not app_id.startswith(".")


def app_dir(app_id: str) -> str:
    return f"{APPS}/{app_id}"


def record(app_id: str) -> str:
    return f"{APPS}/{app_id}/{RECORD}"


def added_jobs(app_id: str) -> str:
    """The directory of the job files retries add to an app."""
    return f"{APPS}/{app_id}/jobs"


def added_job(app_id: str, job_id: str) -> str:
    return f"{added_jobs(app_id)}/{job_id}.json"


def task_files(app_id: str) -> str:
    """The directory of an app's task state files."""
    return f"{APPS}/{app_id}/tasks"


def task_key(role: str, replica: int) -> str:
    """The stem of a task's state file: ``<role>.<replica>``."""
    return f"{role}.{replica}"


def task_file(app_id: str, role: str, replica: int) -> str:
    return f"{task_files(app_id)}/{task_key(role, replica)}.json"


def cancelled(app_id: str) -> str:
    return f"{APPS}/{app_id}/{CANCELLED}"


def submission_script(submission: str, index: int) -> str:
    return f"{SUBMISSIONS}/{submission}/job-{index}.sh"


def intent(submission: str) -> str:
    return f"{INTENTS}/{submission}.json"


def intent_claim(submission: str) -> str:
    """The job id an unheld job of ``submission`` wrote on starting before its record existed."""
    return f"{INTENTS}/{submission}.claim"


def join(root: str, rel: str) -> str:
    """``root/rel`` for a local path or a URL (no os.path: URLs keep their slashes)."""
    return f"{root.rstrip('/')}/{rel}"


# -- log files -------------------------------------------------------------------------------


def safe_name(text: str) -> str:
    """A file and job name friendly version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "app"


def log_prefix(log_dir: str, app_name: str) -> str:
    """``<log_dir>/<app>-``: every log file of an app starts with it."""
    return f"{log_dir}/{safe_name(app_name)}-"


def task_log(log_dir: str, app_name: str, stem: str, role: str, replica: int, stream: str) -> str:
    """Log file of one task: ``<app>-<job>-<role>-<replica>.<out|err>``.

    ``stem`` is the job id, or for array tasks ``<array job id>_<task>`` (Slurm's ``%A_%a``).
    """
    return f"{log_prefix(log_dir, app_name)}{stem}-{role}-{replica}.{stream}"


def batch_log(log_dir: str, app_name: str, stem: str) -> str:
    return f"{log_prefix(log_dir, app_name)}{stem}.batch.log"


def companion_log(log_dir: str, app_name: str, job_id: str) -> str:
    return f"{log_prefix(log_dir, app_name)}{job_id}.retry.log"


def wave_log(log_dir: str, app_name: str, wave: int) -> str:
    """The lines of the jobs that submit wave ``wave`` (1, 2, ...) of a sweep."""
    return f"{log_prefix(log_dir, app_name)}wave{wave}-%j.log"


def guard_log(log_dir: str, app_name: str, submission: str) -> str:
    return f"{log_prefix(log_dir, app_name)}guard-{submission}.log"


def warn_file(log_dir: str) -> str:
    """The directory of warning flag files (one per Slurm job id)."""
    return f"{log_dir}/{WARN_DIR}/"
