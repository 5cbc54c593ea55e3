"""slurm_forge's run options: declared once, parsed leniently, validated strictly.

torchx 0.7 casts ``-cfg`` and ``.torchxconfig`` values itself, before any
scheduler code runs: ``exclusive=yes`` silently became False and ``nodes=two``
raised a traceback. Options here therefore use lenient types whose cast never
fails (a bad value is kept as text), and :class:`ForgeRunopts.resolve` checks
every value and raises :class:`ConfigError` naming the option, the value and
what is allowed; ``torchx run`` prints that as one line and exits 1.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from torchx.specs import CfgVal, runopt, runopts

from torchx_forge.errors import ConfigError
from torchx_forge.files import is_url, local_path
from torchx_forge.slurm_time import parse_slurm_time

BACKEND = "slurm_forge"


class _Unparsed(str):
    """A value a lenient cast could not convert; resolve() reports it."""


class _LenientMeta(type):
    """isinstance(3, LenientInt) is True, so torchx's own type checks still work."""

    def __instancecheck__(cls, obj: Any) -> bool:
        base = cls._base  # type: ignore[attr-defined]
        return isinstance(obj, base) and not (base is int and isinstance(obj, bool))


def _lenient(name: str, base: type, convert: Callable[[str], Any]) -> type:
    def __new__(cls: type, value: Any) -> Any:  # noqa: N807
        if not isinstance(value, str):
            return value
        try:
            return convert(value)
        except (TypeError, ValueError):
            return _Unparsed(value)

    # named like the builtin so `torchx runopts` prints "int" / "bool"
    return _LenientMeta(name, (), {"__new__": __new__, "__module__": "builtins", "_base": base})


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


LenientInt = _lenient("int", int, lambda s: int(s.strip()))
LenientBool = _lenient("bool", bool, _to_bool)

GPU_FLAGS = ("gpus-per-node", "gres", "gpus-per-task")
DEPENDENCY_TYPES = ("after", "afterany", "afterburstbuffer", "aftercorr", "afternotok", "afterok")
_DEP_ITEM = re.compile(r"^(?:singleton|(?:%s)(?::\d+(?:_\d+)?(?:\+\d+)?)+)$" % "|".join(DEPENDENCY_TYPES))

#: sbatch flags slurm_forge sets itself; passing them through sbatch_args would break it.
RESERVED_SBATCH_FLAGS = (
    "--array", "-a", "--output", "-o", "--error", "-e", "--open-mode", "--parsable",
    "--hold", "-H", "--job-name", "-J", "--export", "--wrap", "--chdir", "-D",
)


def default_state_dir() -> str:
    return os.environ.get("FORGE_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".torchx_forge")


def absolute_url(url: str) -> str:
    """A local path made absolute (tasks run in another directory); URLs are kept."""
    return url if is_url(url) else os.path.abspath(local_path(url))


def configured_state_dir() -> str:
    """State dir for verbs that get no runopts: $FORGE_STATE_DIR, .torchxconfig, then ~/.torchx_forge."""
    if os.environ.get("FORGE_STATE_DIR"):
        return os.environ["FORGE_STATE_DIR"]
    from torchx.runner.config import find_configs

    for path in find_configs():
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        if parser.has_option(BACKEND, "state_dir"):
            return parser.get(BACKEND, "state_dir")
    return default_state_dir()


@dataclass(frozen=True)
class _Opt:
    name: str
    type_: Any
    help: str
    default: CfgVal = None


_OPTS: Tuple[_Opt, ...] = (
    _Opt("partition", str, "Partition to run in (default: the cluster's default partition)."),
    _Opt("time", str, "Time limit per job: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."),
    _Opt("account", str, "Slurm account to charge (sbatch --account)."),
    _Opt("qos", str, "Quality of service (sbatch --qos)."),
    _Opt("exclusive", LenientBool, "Whole nodes for each job (sbatch --exclusive): true or false.", False),
    _Opt("constraint", str, "Node features required (sbatch --constraint), e.g. 'a100|h100'."),
    _Opt(
        "gpu_flag",
        str,
        "How GPU requests are written: gpus-per-node (default; Slurm >= 19.05), gres"
        " (--gres=gpu:N, the oldest form) or gpus-per-task (with --ntasks-per-node=1).",
        "gpus-per-node",
    ),
    _Opt(
        "nodes",
        LenientInt,
        "Nodes per replica (default 1). TorchX's convention is one node per replica, so a"
        " role with num_replicas=R uses R nodes; with nodes=N each replica spans N nodes and"
        " runs one task per node (srun --nodes=N --ntasks-per-node=1): R x N nodes per role.",
    ),
    _Opt(
        "dependency",
        str,
        "Slurm dependency for every job of the app, e.g. afterok:123:456 or"
        " afterok:123,afterany:456 (',' = all of, '?' = any of).",
    ),
    _Opt(
        "sbatch_args",
        str,
        "Extra sbatch flags, as one shell-quoted string, e.g. '--exclude=n1,n2 --reservation=x'."
        " Written the same way in -cfg and .torchxconfig.",
    ),
    _Opt(
        "array_parallelism",
        LenientInt,
        "Sweeps: at most this many tasks of each job array run at once (sbatch --array=0-N%K)."
        " An experiment file's cluster.array_parallelism takes precedence.",
    ),
    _Opt(
        "max_array_size",
        LenientInt,
        "Sweeps: the cluster's MaxArraySize (scontrol show config); bigger sweeps are split"
        " into several arrays under one app id.",
        1001,
    ),
    _Opt(
        "max_retries",
        LenientInt,
        "Retries per task (default: the role's max_retries, 0 for most components). Counted across"
        " requeues and resubmissions; when they run out the task ends FAILED and status says so.",
    ),
    _Opt(
        "retry_on",
        str,
        "End states that trigger a retry, comma separated (default TIMEOUT,PREEMPTED,NODE_FAIL;"
        " add FAILED and/or OUT_OF_MEMORY to retry those too).",
    ),
    _Opt(
        "signal",
        str,
        "Pre-timeout warning SIG@SECONDS delivered to the program (not to launchers such as torchrun)"
        " when retries are on; the program may save and exit, then the task requeues itself. 'off' disables."
        " Default USR1@90.",
    ),
    _Opt("grace", LenientInt, "Seconds the program gets after the warning before it is stopped (default: min(60, lead - 10))."),
    _Opt(
        "checkpoint_dir",
        str,
        "Template of each run's FORGE_CHECKPOINT_DIR; fields {state_dir} {job_dir} {app_id} {app_name}"
        " {run_id} {role} {replica} (default {job_dir}/checkpoints/{run_id} with job_dir, else"
        " {state_dir}/checkpoints/{app_id}/{run_id}). May be an fsspec URL.",
    ),
    _Opt(
        "container_runtime",
        str,
        "Run each program in a container: apptainer or singularity (the program runs under"
        " `apptainer exec IMAGE`, the forge launcher stays on the host) or pyxis (srun"
        " --container-image; the whole task runs inside, so the image needs Python with"
        " torchx-forge). The image is container_image, else the role's image. Default: none.",
    ),
    _Opt("container_image", str, "Container image for every role (default: each role's image)."),
    _Opt("container_mounts", str, "Bind mounts for the container, SRC:DST[,SRC:DST...] (apptainer --bind / pyxis --container-mounts)."),
    _Opt("comment", str, "Comment to set on the Slurm jobs."),
    _Opt("mail-user", str, "User to mail on job events."),
    _Opt("mail-type", str, "Job events to mail on (e.g. END,FAIL)."),
    _Opt("nomem", LenientBool, "Do not request memory (--mem); for partitions without memory accounting.", False),
    _Opt(
        "job_dir",
        str,
        "Directory to copy the workspace into and run in (must not exist). Logs go to"
        " JOB_DIR/logs unless log_dir is set.",
    ),
    _Opt("log_dir", str, "Directory for job logs (default: JOB_DIR/logs, else STATE_DIR/logs)."),
    _Opt(
        "state_dir",
        str,
        "Where app records live (default $FORGE_STATE_DIR or ~/.torchx_forge; any fsspec URL)."
        " describe/log/cancel read it too: set it in .torchxconfig or the env var, not only -cfg.",
    ),
    _Opt(
        "python",
        str,
        "Python interpreter on the compute nodes that has torchx_forge installed"
        " (default: the one running torchx).",
    ),
)


class ForgeRunopts(runopts):
    """runopts whose string parsing never raises and whose resolve() validates everything."""

    def cfg_from_str(self, cfg_str: str) -> Dict[str, CfgVal]:
        """Parse ``-cfg`` text, splitting only before known option names.

        ``sbatch_args=--exclude=n1,n2,qos=high`` gives sbatch_args ``--exclude=n1,n2``
        and qos ``high``: values may hold ``=`` and ``,``. Unknown options are
        kept so that resolve() can name them.
        """
        out: Dict[str, CfgVal] = {}
        for key, text in split_cfg_str(cfg_str, [k for k, _ in self]).items():
            opt = self.get(key)
            out[key] = _cast(opt, text) if opt else text
        return out

    def resolve(self, cfg: Mapping[str, CfgVal]) -> Dict[str, CfgVal]:
        known = {k for k, _ in self}
        unknown = sorted(k for k in cfg if k not in known)
        if unknown:
            raise ConfigError(
                f"runopt {unknown[0]!r}",
                f"slurm_forge has no such option; valid options: {', '.join(sorted(known))}"
                " (see `torchx runopts slurm_forge`)",
            )
        resolved: Dict[str, CfgVal] = {}
        for key, opt in self:
            val = cfg.get(key)
            resolved[key] = opt.default if val is None else _validate(key, opt, val)
        return resolved


def _cast(opt: runopt, text: str) -> CfgVal:
    caster = opt.opt_type
    return caster(text) if caster in (LenientInt, LenientBool) else text


def split_cfg_str(cfg_str: str, keys: List[str]) -> Dict[str, str]:
    """Split ``k1=v1,k2=v2`` at ``,``/``;`` that precede a known key (or any ``word=``)."""
    cfg_str = (cfg_str or "").strip()
    if not cfg_str:
        return {}
    known = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    # a boundary is the start, or a delimiter followed by a known key or an identifier, then '='
    boundary = re.compile(r"(?:^|[,;])\s*(%s|[A-Za-z_][A-Za-z0-9_]*)\s*=" % known)
    matches = list(boundary.finditer(cfg_str))
    if not matches or matches[0].start() != 0:
        raise ConfigError("-cfg", f"expected key=value[,key=value...], got {cfg_str!r}")
    out: Dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(cfg_str)
        value = cfg_str[m.end():end].strip()
        out[m.group(1)] = "" if value in ('""', "''") else value
    return out


def _validate(key: str, opt: runopt, val: CfgVal) -> CfgVal:
    where = f"runopt {key!r}"
    if opt.opt_type is LenientBool:
        if isinstance(val, bool):
            return val
        if isinstance(val, str) and not isinstance(val, _Unparsed):
            try:
                return _to_bool(val)
            except ValueError:
                pass
        raise ConfigError(where, f"got {val!r}; expected true or false (also yes/no, 1/0, on/off)")
    if opt.opt_type is LenientInt:
        if isinstance(val, bool) or not isinstance(val, (int, str)):
            raise ConfigError(where, f"got {val!r}; expected a whole number")
        try:
            number = int(val)
        except ValueError:
            raise ConfigError(where, f"got {val!r}; expected a whole number") from None
        return _check_int(key, number)
    if not isinstance(val, str):
        raise ConfigError(where, f"got {val!r} ({type(val).__name__}); expected text")
    return _check_str(key, val)


_MIN_INT = {"nodes": 1, "array_parallelism": 1, "max_array_size": 1, "max_retries": 0, "grace": 1}


def _check_int(key: str, number: int) -> int:
    low = _MIN_INT.get(key, 0)
    if number < low:
        raise ConfigError(f"runopt {key!r}", f"got {number}; expected a whole number >= {low}")
    return number


def _check_str(key: str, val: str) -> str:
    where = f"runopt {key!r}"
    if key == "time":
        try:
            parse_slurm_time(val)
        except ValueError as e:
            raise ConfigError(where, str(e)) from None
    elif key == "gpu_flag" and val not in GPU_FLAGS:
        raise ConfigError(where, f"got {val!r}; expected one of {', '.join(GPU_FLAGS)}")
    elif key == "dependency":
        check_dependency(val, where)
    elif key == "sbatch_args":
        parse_sbatch_args(val, where)
    elif key == "signal":
        from torchx_forge.policy import parse_signal

        parse_signal(val, where)
    elif key == "retry_on":
        from torchx_forge.policy import parse_retry_on

        parse_retry_on(val, where)
    elif key == "checkpoint_dir":
        check_template(val, where)
    elif key == "container_runtime" and val not in CONTAINER_RUNTIMES:
        raise ConfigError(where, f"got {val!r}; expected one of {', '.join(CONTAINER_RUNTIMES)}")
    return val


CONTAINER_RUNTIMES = ("none", "apptainer", "singularity", "pyxis")


TEMPLATE_FIELDS = ("state_dir", "job_dir", "app_id", "app_name", "run_id", "role", "replica", "stage")


def check_template(text: str, where: str) -> str:
    """Validate a checkpoint_dir template: only known {fields}, and {run_id} (or {replica}) present."""
    fields = re.findall(r"\{([^{}]*)\}", text)
    unknown = [f for f in fields if f not in TEMPLATE_FIELDS]
    if unknown:
        raise ConfigError(where, f"unknown field {{{unknown[0]}}} in {text!r}; fields: {', '.join(TEMPLATE_FIELDS)}")
    if "run_id" not in fields and "replica" not in fields:
        raise ConfigError(where, f"{text!r} must contain {{run_id}}, or every run would share one checkpoint dir")
    return text


def check_dependency(expr: str, where: str) -> str:
    """Validate a Slurm --dependency expression; returns it unchanged."""
    items = [i for i in re.split(r"[,?]", expr.strip())]
    if not expr.strip() or not all(_DEP_ITEM.match(i) for i in items):
        raise ConfigError(
            where,
            f"got {expr!r}; expected TYPE:JOBID[:JOBID...] joined by ',' (all) or '?' (any),"
            f" TYPE one of {', '.join(DEPENDENCY_TYPES)}, or 'singleton'",
        )
    if "," in expr and "?" in expr:
        raise ConfigError(where, f"got {expr!r}; Slurm does not allow mixing ',' and '?'")
    return expr.strip()


def parse_sbatch_args(text: str, where: str = "runopt 'sbatch_args'") -> List[str]:
    """Split extra sbatch flags shell-style and refuse the ones slurm_forge manages."""
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise ConfigError(where, f"cannot split {text!r}: {e}") from None
    if tokens and not tokens[0].startswith("-"):
        raise ConfigError(where, f"got {text!r}; expected sbatch flags such as --exclude=n1")
    for tok in tokens:
        flag = reserved_flag(tok)
        if flag:
            raise ConfigError(
                where, f"{flag} is set by slurm_forge itself and cannot be passed through; see `torchx runopts slurm_forge`"
            )
    return tokens


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


def build_runopts() -> ForgeRunopts:
    opts = ForgeRunopts()
    for o in _OPTS:
        opts.add(o.name, type_=o.type_, help=o.help, default=o.default)
    return opts


@dataclass(frozen=True)
class ForgeOpts:
    """Resolved options, typed. Built from a resolved cfg by :meth:`from_cfg`."""

    partition: Optional[str] = None
    time: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    exclusive: bool = False
    constraint: Optional[str] = None
    gpu_flag: str = "gpus-per-node"
    nodes: Optional[int] = None
    dependency: Optional[str] = None
    sbatch_args: Tuple[str, ...] = ()
    array_parallelism: Optional[int] = None
    max_array_size: int = 1001
    max_retries: Optional[int] = None
    retry_on: Optional[str] = None
    signal: Optional[str] = None
    grace: Optional[int] = None
    checkpoint_dir: Optional[str] = None
    container_runtime: str = "none"
    container_image: Optional[str] = None
    container_mounts: Optional[str] = None
    comment: Optional[str] = None
    mail_user: Optional[str] = None
    mail_type: Optional[str] = None
    nomem: bool = False
    job_dir: Optional[str] = None
    log_dir: Optional[str] = None
    state_dir: str = field(default_factory=configured_state_dir)
    python: str = field(default_factory=lambda: sys.executable or "python3")

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", absolute_url(self.state_dir))

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, CfgVal]) -> "ForgeOpts":
        """Typed options from a cfg already passed through :meth:`ForgeRunopts.resolve` (unset -> default)."""
        kwargs: Dict[str, Any] = {}
        for f in fields(cls):
            val = cfg.get(f.name.replace("mail_", "mail-"))
            if val is None:
                continue
            if f.name == "sbatch_args":
                val = tuple(parse_sbatch_args(str(val)))
            elif f.type in ("bool",):
                val = bool(val)
            kwargs[f.name] = val
        return cls(**kwargs)

    @property
    def logs(self) -> str:
        """Directory the job logs go to (a local path: Slurm writes them)."""
        if self.log_dir:
            return os.path.abspath(os.path.expanduser(self.log_dir))
        if self.job_dir:
            return os.path.join(os.path.abspath(self.job_dir), "logs")
        if is_url(self.state_dir):
            raise ConfigError(
                "runopt 'log_dir'",
                f"state_dir {self.state_dir!r} is not a local path and Slurm can only write logs to"
                " a file system: set log_dir (or job_dir) to a directory the compute nodes share",
            )
        return os.path.join(os.path.abspath(local_path(self.state_dir)), "logs")


_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW(OR)?D", re.IGNORECASE)
MASK = "****"


def is_secret(name: str) -> bool:
    """Env names that look like credentials (*KEY*, *TOKEN*, *SECRET*, *PASSWORD*) are masked in output."""
    return bool(_SECRET.search(name))
