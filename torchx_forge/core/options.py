"""The option table: every setting of slurm_forge, declared once.

Each :class:`Option` row says what a setting is called in ``-cfg``/``.torchxconfig`` (the runopt),
its type, default and help, how its value is checked, whether it becomes an sbatch flag, and
what it is called in an experiment file's ``cluster:`` section. From this table come:

- the runopts (``torchx runopts slurm_forge``) and their validation
  (:mod:`torchx_forge.slurm.options`);
- the typed options the submit side reads (``ForgeOpts``);
- the ``cluster:`` schema of experiment files (:mod:`torchx_forge.experiment.schema`);
- the job-wide sbatch flags (:mod:`torchx_forge.slurm.request`).

A new sbatch flag is one row with ``sbatch=`` set (and ``cluster=`` to allow it in experiment
files). Checks raise ``ValueError`` with the reason; callers add where the value came from.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from torchx_forge.core import envvars
from torchx_forge.core.policy import parse_retry_on, parse_signal
from torchx_forge.core.slurm_time import parse_slurm_time
from torchx_forge.core.states import DepKind

#: sbatch flags a job's helpers (companion, guard, wave, decision jobs) take from it, to run where it runs
SAME_PLACE = ("--partition", "--account", "--qos", "--clusters")

GPU_FLAGS = ("auto", "gpus-per-node", "gres", "gpus-per-task")
#: The first Slurm release with --gpus-per-node (select/cons_tres).
GPUS_PER_NODE_SINCE = (19, 5)
CONTAINER_RUNTIMES = ("none", "apptainer", "singularity", "pyxis")
TEMPLATE_FIELDS = ("state_dir", "job_dir", "app_id", "app_name", "run_id", "role", "replica", "stage")
_DEP_KINDS = "|".join(k.value for k in DepKind)
_DEP_ITEM = re.compile(rf"^(?:singleton|(?:{_DEP_KINDS})(?::\d+(?:_\d+)?(?:\+\d+)?)+)$")

#: sbatch flags slurm_forge sets itself; passing them through sbatch_args would break it.
RESERVED_SBATCH_FLAGS = (
    "--array", "-a", "--output", "-o", "--error", "-e", "--open-mode", "--parsable",
    "--hold", "-H", "--job-name", "-J", "--export", "--wrap", "--chdir", "-D",
)


# -- checks: value -> normalised value, ValueError with the reason -------------------------


def check_time(text: str) -> str:
    parse_slurm_time(text)
    return text


def _choice(choices: Tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError(f"got {text!r}; expected one of {', '.join(choices)}")
        return text

    return check


def check_dependency(expr: str) -> str:
    """A Slurm --dependency expression, returned stripped."""
    items = re.split(r"[,?]", expr.strip())
    if not expr.strip() or not all(_DEP_ITEM.match(i) for i in items):
        raise ValueError(
            f"got {expr!r}; expected TYPE:JOBID[:JOBID...] joined by ',' (all) or '?' (any),"
            f" TYPE one of {', '.join(k.value for k in DepKind)}, or 'singleton'"
        )
    if "," in expr and "?" in expr:
        raise ValueError(f"got {expr!r}; Slurm does not allow mixing ',' and '?'")
    return expr.strip()


def reserved_flag(token: str) -> Optional[str]:
    """The reserved sbatch flag ``token`` sets, if any: ``-ofile``, ``--outp=x`` (abbreviated) included."""
    if token.startswith("--"):
        name = token.split("=", 1)[0]
        if len(name) > 2:
            for flag in RESERVED_SBATCH_FLAGS:
                if flag.startswith("--") and flag.startswith(name):  # sbatch accepts unambiguous prefixes
                    return flag
        return None
    if token.startswith("-") and len(token) >= 2:
        short = token[:2]
        return short if short in RESERVED_SBATCH_FLAGS else None
    return None


def split_sbatch_args(text: str) -> List[str]:
    """Extra sbatch flags split shell-style; the ones slurm_forge manages are refused."""
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"cannot split {text!r}: {e}") from None
    if tokens and not tokens[0].startswith("-"):
        raise ValueError(f"got {text!r}; expected sbatch flags such as --exclude=n1")
    for tok in tokens:
        flag = reserved_flag(tok)
        if flag:
            raise ValueError(
                f"{flag} is set by slurm_forge itself and cannot be passed through; see `torchx runopts slurm_forge`"
            )
    return tokens


def gpu_flag_for(slurm_version: Optional[str]) -> str:
    """The GPU flag ``gpu_flag=auto`` means on a cluster running ``slurm_version`` (``22.05.8``; None: unknown).

    Forge runs one task per node, so ``--gpus-per-node`` says exactly what is meant on every Slurm
    that has it (TorchX main switches to it on 24.11, where select/linear refuses per-task GPUs);
    before 19.05 only ``--gres=gpu:N`` exists. An unknown version is taken to be a recent one.
    """
    numbers = re.findall(r"\d+", slurm_version or "")
    if len(numbers) >= 2 and (int(numbers[0]), int(numbers[1])) < GPUS_PER_NODE_SINCE:
        return "gres"
    return "gpus-per-node"


def check_sbatch_args(text: str) -> str:
    split_sbatch_args(text)
    return text


def check_template(text: str) -> str:
    """A checkpoint_dir template: only known {fields}, and {run_id} (or {replica}) present."""
    found = re.findall(r"\{([^{}]*)\}", text)
    unknown = [f for f in found if f not in TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {{{unknown[0]}}} in {text!r}; fields: {', '.join(TEMPLATE_FIELDS)}")
    if "run_id" not in found and "replica" not in found:
        raise ValueError(f"{text!r} must contain {{run_id}}, or every run would share one checkpoint dir")
    return text


_CLUSTERS = re.compile(r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$")


def check_clusters(text: str) -> str:
    """A cluster name, or several separated by ','."""
    if not _CLUSTERS.match(text.strip()):
        raise ValueError(f"got {text!r}; expected a Slurm cluster name, or several separated by ',' (e.g. gpu,cpu)")
    return text.strip()


def check_signal(text: str) -> str:
    parse_signal(text)
    return text


def check_retry_on(text: str) -> str:
    parse_retry_on(text)
    return text


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One setting.

    Args:
        name: the runopt name (``-cfg name=...``, ``[slurm_forge] name = ...``).
        type_: ``str``, ``int`` or ``bool``.
        help: what ``torchx runopts slurm_forge`` prints.
        default: the value when unset.
        minimum: for ints, the smallest allowed value.
        check: for text, validates and normalises the value (raises ValueError).
        sbatch: the sbatch flag it becomes (``--<sbatch>=<value>``; a bool: ``--<sbatch>`` when true).
        cluster: its key in an experiment file's ``cluster:`` section (per resource shape).
        cluster_list: in experiment files the value is a list of words (joined shell-quoted).
        accumulates: a shape's value is added to the app's (extra flags), not put in its place.
    """

    name: str
    type_: type
    help: str
    default: Any = None
    minimum: Optional[int] = None
    check: Optional[Callable[[str], str]] = None
    sbatch: Optional[str] = None
    cluster: Optional[str] = None
    cluster_list: bool = False
    accumulates: bool = False

    @property
    def field(self) -> str:
        """The Python name (``mail-user`` -> ``mail_user``)."""
        return self.name.replace("-", "_")

    def validate(self, value: Any) -> Any:
        """The checked value of an already typed value (raises ValueError with the reason)."""
        if self.type_ is bool:
            if not isinstance(value, bool):
                raise ValueError(f"got {value!r}; expected true or false (also yes/no, 1/0, on/off)")
            return value
        if self.type_ is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"got {value!r}; expected a whole number")
            low = self.minimum if self.minimum is not None else 0
            if value < low:
                raise ValueError(f"got {value}; expected a whole number >= {low}")
            return value
        if not isinstance(value, str):
            raise ValueError(f"got {value!r} ({type(value).__name__}); expected text")
        return self.check(value) if self.check else value


OPTIONS: Tuple[Option, ...] = (
    Option(
        "cluster", str,
        "Slurm cluster to run on (sbatch -M), or several separated by ',': Slurm then submits where the"
        " app starts soonest, and forge keeps every job of the app there. The handle names the cluster"
        " (slurm_forge://SESSION/CLUSTER:ID). Default: the local cluster (no -M).",
        check=check_clusters, sbatch="clusters", cluster="clusters",
    ),
    Option("partition", str, "Partition to run in (default: the cluster's default partition).",
           sbatch="partition", cluster="partition"),
    Option("time", str, "Time limit per job: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.",
           check=check_time, sbatch="time", cluster="time_limit"),
    Option("account", str, "Slurm account to charge (sbatch --account).", sbatch="account", cluster="account"),
    Option("qos", str, "Quality of service (sbatch --qos).", sbatch="qos", cluster="qos"),
    Option("exclusive", bool, "Whole nodes for each job (sbatch --exclusive): true or false.", False,
           sbatch="exclusive", cluster="exclusive"),
    Option("constraint", str, "Node features required (sbatch --constraint), e.g. 'a100|h100'.",
           sbatch="constraint", cluster="constraint"),
    Option(
        "gpu_flag", str,
        "How GPU requests are written: auto (default: from the cluster's Slurm version, read at submit"
        " time with the other cluster limits and cached: gpus-per-node on Slurm >= 19.05, gres before),"
        " gpus-per-node, gres (--gres=gpu:N, the oldest form) or gpus-per-task (with --ntasks-per-node=1).",
        "auto", check=_choice(GPU_FLAGS),
    ),
    Option(
        "nodes", int,
        "Nodes per replica (default 1). TorchX's convention is one node per replica, so a"
        " role with num_replicas=R uses R nodes; with nodes=N each replica spans N nodes and"
        " runs one task per node (srun --nodes=N --ntasks-per-node=1): R x N nodes per role.",
        minimum=1,
    ),
    Option(
        "dependency", str,
        "Slurm dependency for every job of the app, e.g. afterok:123:456 or"
        " afterok:123,afterany:456 (',' = all of, '?' = any of).",
        check=check_dependency,
    ),
    Option(
        "sbatch_args", str,
        "Extra sbatch flags, as one shell-quoted string, e.g. '--exclude=n1,n2 --reservation=x'."
        " Written the same way in -cfg and .torchxconfig.",
        check=check_sbatch_args, cluster="extra_sbatch_args", cluster_list=True, accumulates=True,
    ),
    Option(
        "array_parallelism", int,
        "Sweeps: at most this many tasks of each job array run at once (sbatch --array=0-N%K)."
        " An experiment file's cluster.array_parallelism takes precedence.",
        minimum=1, cluster="array_parallelism",
    ),
    Option(
        "max_array_size", int,
        "Sweeps: the largest job array (default: the cluster's MaxArraySize, read at submit time);"
        " bigger sweeps are split into several arrays under one app id.",
        minimum=1,
    ),
    Option(
        "max_submit_jobs", int,
        "Sweeps: how many jobs (every array task counts) you may have queued at once (default: the"
        " smaller of your association's MaxSubmitJobs and your QOS's MaxSubmitJobsPerUser, read at submit"
        " time). A bigger sweep is submitted in waves that each fit, the next submitted by a small Slurm job"
        " when the one before has ended.",
        minimum=2,
    ),
    Option(
        "max_job_count", int,
        "Sweeps: the cluster's MaxJobCount, the job records it holds (default: read at submit time);"
        " waves never need more.",
        minimum=2,
    ),
    Option(
        "max_retries", int,
        "Retries per task (default: the role's max_retries, 0 for most components). Counted across"
        " requeues and resubmissions; when they run out the task ends FAILED and status says so.",
    ),
    Option(
        "retry_on", str,
        "End states that trigger a retry, comma separated (default TIMEOUT,PREEMPTED,NODE_FAIL;"
        " add FAILED and/or OUT_OF_MEMORY to retry those too).",
        check=check_retry_on,
    ),
    Option(
        "signal", str,
        "Pre-timeout warning SIG@SECONDS delivered to the program (not to launchers such as torchrun)"
        " when retries are on; the program may save and exit, then the task requeues itself. 'off' disables."
        " Default USR1@90.",
        check=check_signal,
    ),
    Option("grace", int, "Seconds the program gets after the warning before it is stopped (default: min(60, lead - 10)).",
           minimum=1),
    Option(
        "checkpoint_dir", str,
        f"Template of each run's {envvars.CHECKPOINT_DIR.name};"
        " fields {state_dir} {job_dir} {app_id} {app_name}"
        " {run_id} {role} {replica} (default {job_dir}/checkpoints/{run_id} with job_dir, else"
        " {state_dir}/checkpoints/{app_id}/{run_id}). May be an fsspec URL.",
        check=check_template,
    ),
    Option(
        "container_runtime", str,
        "Run each program in a container: apptainer or singularity (the program runs under"
        " `apptainer exec IMAGE`, the forge launcher stays on the host) or pyxis (srun"
        " --container-image; the whole task runs inside, so the image needs Python with"
        " torchx-forge). The image is container_image, else the role's image. Default: none.",
        check=_choice(CONTAINER_RUNTIMES),
    ),
    Option("container_image", str, "Container image for every role (default: each role's image)."),
    Option("container_mounts", str,
           "Bind mounts for the container, SRC:DST[,SRC:DST...] (apptainer --bind / pyxis --container-mounts)."),
    Option("reservation", str, "Run in this reservation (sbatch --reservation).", sbatch="reservation",
           cluster="reservation"),
    Option("comment", str, "Comment to set on the Slurm jobs.", sbatch="comment"),
    Option("mail-user", str, "User to mail on job events.", sbatch="mail-user"),
    Option("mail-type", str, "Job events to mail on (e.g. END,FAIL).", sbatch="mail-type"),
    Option("nomem", bool, "Do not request memory (--mem); for partitions without memory accounting.", False),
    Option(
        "job_dir", str,
        "Directory to copy the workspace into and run in (must not exist). Logs go to"
        " JOB_DIR/logs unless log_dir is set.",
    ),
    Option("log_dir", str, "Directory for job logs (default: JOB_DIR/logs, else STATE_DIR/logs)."),
    Option(
        "state_dir", str,
        f"Where app records live (default ${envvars.STATE_DIR.name} or ~/.torchx_forge; any fsspec URL)."
        " describe/log/cancel read it too: set it in .torchxconfig or the env var, not only -cfg."
        " With login: the state dir on the cluster (default: the one the cluster's torchx-forge is configured with).",
    ),
    Option(
        "login", str,
        "Submit from anywhere: the SSH destination of the cluster's login node (a Host alias of"
        " ~/.ssh/config, or user@host). Every Slurm command then runs there over one multiplexed"
        " OpenSSH connection, the workspace is shipped as a snapshot, and python names the cluster's"
        " interpreter (default python3 on the login's PATH). See docs/laptop.md.",
        check=lambda v: v.strip(),
    ),
    Option(
        "python", str,
        "Python interpreter on the compute nodes that has torchx_forge installed"
        " (default: the one running torchx). An absolute path is checked before anything is submitted"
        " (the nodes share this file system); a bare name is looked up on the nodes' PATH, and if it is"
        " not there every task fails with a line naming it in its log. With login: the interpreter on the"
        " cluster (default: python3 on the login's PATH), asked for its torchx-forge before anything is submitted.",
    ),
)

BY_NAME: Dict[str, Option] = {o.name: o for o in OPTIONS}
#: Python name (``mail_user``) -> option
BY_FIELD: Dict[str, Option] = {o.field: o for o in OPTIONS}
#: experiment ``cluster:`` key -> option
BY_CLUSTER_KEY: Dict[str, Option] = {o.cluster: o for o in OPTIONS if o.cluster}


def sbatch_flag(opt: Option, value: Any) -> Optional[str]:
    """The sbatch flag of ``opt`` set to ``value`` (None when unset or false)."""
    if opt.sbatch is None or value is None or value is False or value == "":
        return None
    return f"--{opt.sbatch}" if value is True else f"--{opt.sbatch}={value}"
