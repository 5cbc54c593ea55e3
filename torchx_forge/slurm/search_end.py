"""A trial's end taken at once: the decision job submitted from the trial's own batch script.

Every trial job has a relay job (``afterany:<trial>``) that submits a decision job once the trial
job has ended: a Slurm scheduling cycle for the relay to start, and a Python start, before the
decision job is even queued. A search whose state dir is local also has
``searches/<submission>/decide.sh`` (:func:`decide_script`), and its trials' batch script ends
with :func:`epilogue`: once the tasks have ended for good (not when the job is requeued), one
``sbatch`` from bash submits the decision job, tagged as the relay would tag it
(``<trial tag>dr``). The relay, when it runs, finds that tag and submits nothing; it stays for a
trial whose script never reached its end (cancelled, its time limit, its node lost) or was
stopped by Slurm meanwhile (SIGTERM: a preemption that requeues it, a cancel). The
decision job links itself to the app when it starts (:func:`record_self`).

The decision job may start while Slurm still counts the trial job as running (its script's last
lines): that decision leaves the trial as it is, and the relay's decision takes its end.
"""

from __future__ import annotations

import os
import shlex
from typing import List, Sequence

from torchx_forge.core import envvars
from torchx_forge.core.states import JobKind
from torchx_forge.state.records import JobRecord, Records

#: where a trial's tag goes in decide.sh's sbatch command line
PLACEHOLDER = "@TAG@"
#: the suffix of the tag of a decision job that takes a trial job's end (the relay's is "d")
DECISION_SUFFIX = "dr"
#: seconds the trial's script waits for decide.sh (a controller that does not answer: the relay decides)
WAIT = 30


def decide_sh_rel(sdir: str) -> str:
    return f"{sdir}/decide.sh"


def decide_script(argv: Sequence[str]) -> str:
    """decide.sh: the sbatch command line ``argv`` of a decision job, with :data:`PLACEHOLDER`
    where the tag goes, run with ``$1dr`` in its place ($1: the trial's tag, checked) and without
    the trial job's SLURM_*, SBATCH_* and SRUN_* variables (SLURM_CONF stays), as a relay submits it."""
    words = " ".join(shlex.quote(a) for a in argv)
    return "\n".join([
        "#!/bin/bash",
        "# torchx-forge: run by a search's trial job once its tasks have ended for good, with the trial's tag;",
        "# submits the decision job that takes the trial's end (the trial's relay job then submits none)",
        'case "${1:-}" in',
        "    '' | *[!A-Za-z0-9_-]*) echo \"torchx-forge: $0: a trial's tag expected, got '${1:-}'\" >&2; exit 2 ;;",
        "esac",
        "for forge_v in $(compgen -e); do",
        '    case "$forge_v" in SLURM_CONF) ;; SLURM_* | SBATCH_* | SRUN_*) unset "$forge_v" ;; esac',
        "done",
        f"forge_argv=({words})",
        f'exec "${{forge_argv[@]//{PLACEHOLDER}/${{1}}{DECISION_SUFFIX}}}"',
        "",
    ])


def epilogue() -> List[str]:
    """The last lines of a search's trial script, before its exit (see the module docstring)."""
    script, tag = envvars.SEARCH_DECIDE.name, envvars.SEARCH_TAG.name
    return [
        "# a search's trial whose tasks ended: the decision job that takes its end, now (the relay job is for",
        "# a trial killed before this line, or stopped by Slurm: a preemption requeues it, a cancel ends it)",
        f'if [ -n "${{{script}:-}}" ] && [ -f "${script}" ] && [ "${{forge_stopped:-0}}" = 0 ]; then',
        f'    forge_decision=$(timeout {WAIT} bash "${script}" "${{{tag}:-}}") \\',
        '        || forge_decision="not submitted (exit $?): the relay job submits it"',
        '    echo "torchx-forge: $(date +%T) the trial ended: decision job $forge_decision"',
        "fi",
    ]


def record_self(records: Records, app_id: str, tag: str) -> None:
    """(a decision job decide.sh submitted, as it starts) Link this job to the app under ``tag``,
    once: cancel, status and the next decisions then see it like any other."""
    job_id = os.environ.get("SLURM_JOB_ID", "")
    rec = records.load(app_id)
    if job_id and rec is not None and not any(j.job_id == job_id for j in rec.jobs):
        records.add_job(app_id, JobRecord(job_id=job_id, kind=JobKind.DECIDE.value, argv=[], tag=tag))
