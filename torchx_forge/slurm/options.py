"""slurm_forge's run options, generated from the option table: parsed leniently, validated strictly.

TorchX casts ``-cfg`` and ``.torchxconfig`` values itself, before any scheduler code runs: in
torchx 0.7 ``exclusive=yes`` silently became False and ``nodes=two`` raised a traceback, and
TorchX main's cast asserts on any type but a built-in one. Options here therefore use lenient
types whose cast never fails (a bad value is kept as text) on both versions
(:func:`torchx_forge.compat.add_option`), and
:meth:`ForgeRunopts.resolve` checks every value against its row of
:data:`torchx_forge.core.options.OPTIONS`, raising :class:`ConfigError` naming the option, the
value and what is allowed; ``torchx run`` prints that as one line and exits 1.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from torchx.runner.config import find_configs
from torchx.specs import CfgVal, runopts

from torchx_forge.compat import add_option
from torchx_forge.core import envvars, layout
from torchx_forge.core.options import BY_FIELD, BY_NAME, OPTIONS, Option, sbatch_flag, split_sbatch_args
from torchx_forge.core.record import fields, replace
from torchx_forge.core.storage import StoreError, StoreUnreachableError
from torchx_forge.errors import ConfigError
from torchx_forge.state.files import absolute, is_url, local_path

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
_LENIENT = {int: LenientInt, bool: LenientBool}


def default_state_dir() -> str:
    return os.environ.get(envvars.STATE_DIR.name) or os.path.join(os.path.expanduser("~"), ".torchx_forge")


def _configs() -> Iterator[Tuple[str, configparser.ConfigParser]]:
    """The .torchxconfig files TorchX reads (the working directory's, then ~/.torchxconfig), parsed;
    one that does not parse is left out, as TorchX's own reading of it says."""
    for path in find_configs():
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        yield path, parser


def configured_state_dir() -> str:
    """State dir for verbs that get no runopts: $FORGE_STATE_DIR, .torchxconfig, then ~/.torchx_forge."""
    if os.environ.get(envvars.STATE_DIR.name):
        return os.environ[envvars.STATE_DIR.name]
    for _, parser in _configs():
        if parser.has_option(BACKEND, "state_dir"):
            return parser.get(BACKEND, "state_dir")
    return default_state_dir()


def configured_clusters() -> Dict[str, Dict[str, str]]:
    """Named clusters of .torchxconfig (the working directory's, then ~/.torchxconfig), each a
    ``[slurm_forge.cluster.NAME]`` section with ``login`` and optionally ``python`` and ``state_dir``
    (the cluster-side ones): ``-cfg cluster=NAME`` alone then reaches it over SSH."""
    found: Dict[str, Dict[str, str]] = {}
    prefix = f"{BACKEND}.cluster."
    for _, parser in _configs():
        for section in parser.sections():
            if section.startswith(prefix):
                found.setdefault(section[len(prefix):], dict(parser.items(section)))
    return found


def state_dir_origin(url: str) -> str:
    """Which setting chose the state dir ``url`` (for error messages)."""
    if os.environ.get(envvars.STATE_DIR.name) and absolute(os.environ[envvars.STATE_DIR.name]) == absolute(url):
        return f"${envvars.STATE_DIR.name}"
    for path, parser in _configs():
        if parser.has_option(BACKEND, "state_dir") and absolute(parser.get(BACKEND, "state_dir")) == absolute(url):
            return f"[{BACKEND}] state_dir in {path}"
    if absolute(url) == absolute(default_state_dir()):
        return f"the default (~/.torchx_forge; set ${envvars.STATE_DIR.name} or [{BACKEND}] state_dir in .torchxconfig)"
    return "runopt 'state_dir'"


def state_dir_error(url: str, e: OSError) -> ConfigError:
    """The one-line error for a state dir forge cannot write to (or whose store does not answer)."""
    if isinstance(e, StoreUnreachableError):
        return ConfigError(
            f"state dir {url}", f"{e.problem} at {e.url}; it comes from {state_dir_origin(url)}: check the"
            " endpoint and credentials (AWS_ENDPOINT_URL, AWS_PROFILE, ~/.aws/config for s3://) and try again",
        )
    if isinstance(e, StoreError):
        return ConfigError(f"state dir {url}", f"{e.problem}; it comes from {state_dir_origin(url)}")
    return ConfigError(
        f"state dir {url}", f"cannot write there ({e.strerror or e}); it comes from {state_dir_origin(url)}:"
        " point it at a writable directory (shared with the compute nodes) or URL",
    )


def table_sink(state_dir: Optional[str] = None) -> Callable[[Any], str]:
    """Where run tables go: the state dir (default: the configured one), where the compute nodes
    read them; a clear error if it cannot take them."""
    from torchx_forge.state.store import Store  # noqa: PLC0415 (fsspec: only when a table is written)

    store = Store(state_dir or configured_state_dir())

    def put(table: Any) -> str:
        try:
            return store.put_table(table)
        except OSError as e:
            raise state_dir_error(store.url, e) from None

    return put


def logs_origin(opts: ForgeOpts) -> str:
    """Which setting chose the log dir (for error messages)."""
    if opts.log_dir:
        return "runopt 'log_dir'"
    if opts.job_dir:
        return "runopt 'job_dir' (JOB_DIR/logs; set runopt log_dir to put them elsewhere)"
    return f"the state dir ({state_dir_origin(opts.state_dir)}; set runopt log_dir to put them elsewhere)"


def _typed(opt: Option, val: Any) -> Any:
    """A -cfg/.torchxconfig value in the row's Python type, where the text allows (else kept as is)."""
    if isinstance(val, _Unparsed) or not isinstance(val, str) or opt.type_ is str:
        return val
    try:
        return _to_bool(val) if opt.type_ is bool else int(val.strip())
    except ValueError:
        return val


class ForgeRunopts(runopts):
    """runopts whose string parsing never raises and whose resolve() validates everything."""

    def cfg_from_str(self, cfg_str: str) -> Dict[str, CfgVal]:
        """Parse ``-cfg`` text, splitting only before known option names.

        ``sbatch_args=--exclude=n1,n2,qos=high`` gives sbatch_args ``--exclude=n1,n2``
        and qos ``high``: values may hold ``=`` and ``,``. Unknown options are
        kept so that resolve() can name them.
        """
        out: Dict[str, CfgVal] = {}
        for key, text in split_cfg_str(cfg_str, list(BY_NAME)).items():
            opt = BY_NAME.get(key)
            out[key] = _LENIENT[opt.type_](text) if opt and opt.type_ in _LENIENT else text
        return out

    def resolve(self, cfg: Mapping[str, CfgVal], *, ignore_unknown: bool = False) -> Dict[str, CfgVal]:
        """Every option checked and typed, defaults filled in; an unknown option is an error unless
        ``ignore_unknown`` (TorchX main's flag for schedulers that pass options on), then it is kept as is."""
        unknown = sorted(k for k in cfg if k not in BY_NAME)
        if unknown and not ignore_unknown:
            raise ConfigError(
                f"runopt {unknown[0]!r}",
                f"slurm_forge has no such option; valid options: {', '.join(sorted(BY_NAME))}"
                " (see `torchx runopts slurm_forge`)",
            )
        resolved: Dict[str, CfgVal] = {name: cfg[name] for name in unknown}
        for opt in OPTIONS:
            val = cfg.get(opt.name)
            if val is None:
                resolved[opt.name] = opt.default
                continue
            try:
                resolved[opt.name] = opt.validate(_typed(opt, val))
            except ValueError as e:
                raise ConfigError(f"runopt {opt.name!r}", str(e)) from None
        return resolved


def split_cfg_str(cfg_str: str, keys: List[str]) -> Dict[str, str]:
    """Split ``k1=v1,k2=v2`` at ``,``/``;`` that precede a known key (or any ``word=``)."""
    cfg_str = (cfg_str or "").strip()
    if not cfg_str:
        return {}
    known = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    # a boundary is the start, or a delimiter followed by a known key or an identifier, then '='
    boundary = re.compile(rf"(?:^|[,;])\s*({known}|[A-Za-z_][A-Za-z0-9_]*)\s*=")
    matches = list(boundary.finditer(cfg_str))
    if not matches or matches[0].start() != 0:
        raise ConfigError("-cfg", f"expected key=value[,key=value...], got {cfg_str!r}")
    out: Dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(cfg_str)
        value = cfg_str[m.end():end].strip()
        out[m.group(1)] = "" if value in ('""', "''") else value
    return out


def parse_sbatch_args(text: str, where: str = "runopt 'sbatch_args'") -> List[str]:
    """Extra sbatch flags split shell-style; the ones slurm_forge manages are refused."""
    try:
        return split_sbatch_args(text)
    except ValueError as e:
        raise ConfigError(where, str(e)) from None


def build_runopts() -> ForgeRunopts:
    """``torchx runopts slurm_forge``: one runopt per row of the option table."""
    opts = ForgeRunopts()
    for o in OPTIONS:
        add_option(opts, o.name, _LENIENT.get(o.type_, o.type_), o.help, o.default)
    return opts


@dataclass(frozen=True)
class ForgeOpts:
    """Resolved options, typed: a field for each option forge's code reads; the options that only
    become sbatch flags (partition, account, mail-user, ...) are in ``passthrough`` by runopt name.
    Built from a resolved cfg by :meth:`from_cfg`; :meth:`get` reads any option by its runopt name."""

    cluster: Optional[str] = None
    time: Optional[str] = None
    gpu_flag: str = "auto"
    nodes: Optional[int] = None
    dependency: Optional[str] = None
    sbatch_args: Tuple[str, ...] = ()
    array_parallelism: Optional[int] = None
    max_array_size: Optional[int] = None
    max_submit_jobs: Optional[int] = None
    max_job_count: Optional[int] = None
    max_retries: Optional[int] = None
    retry_on: Optional[str] = None
    signal: Optional[str] = None
    grace: Optional[int] = None
    checkpoint_dir: Optional[str] = None
    container_runtime: str = "none"
    container_image: Optional[str] = None
    container_mounts: Optional[str] = None
    nomem: bool = False
    job_dir: Optional[str] = None
    log_dir: Optional[str] = None
    login: Optional[str] = None
    state_dir: str = field(default_factory=configured_state_dir)
    python: str = field(default_factory=lambda: sys.executable or "python3")
    passthrough: Tuple[Tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", absolute(self.state_dir))
        object.__setattr__(self, "python", os.path.expanduser(self.python))  # the batch script quotes it: no ~ there

    def check_python(self) -> None:
        """Refuse runopt ``python`` where this machine can tell no task could start: a path (the
        compute nodes see the file system this one does) that is missing or not an executable
        file. A bare name (``python3.11``) is looked up on the nodes' PATH, which may differ from
        this one's (modules, conda): the batch script checks it there, and if it is missing every
        task's log says so. With pyxis the interpreter is the container image's: not checked."""
        python = self.python
        if "/" not in python or not os.path.isabs(python) or self.container_runtime == "pyxis":
            return
        if not os.path.exists(python):
            problem = "does not exist"
        elif os.path.isdir(python) or not os.access(python, os.X_OK):
            problem = "is not an executable file"
        else:
            return
        raise ConfigError("runopt 'python'", f"{python} {problem} (on this machine, which shares its file system with"
                                             " the compute nodes); give the path of a Python that has torchx_forge"
                                             " installed, or leave python unset for the one running torchx")

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, CfgVal]) -> ForgeOpts:
        """Typed options from a cfg already passed through :meth:`ForgeRunopts.resolve` (unset -> default)."""
        typed, passthrough = _by_field(cfg)
        return cls(**typed, passthrough=tuple(passthrough.items()))

    @classmethod
    def of(cls, **values: Any) -> ForgeOpts:
        """Options from Python names (``partition="gpu"``, ``mail_user=...``): typed or passthrough alike."""
        unknown = sorted(k for k in values if k not in BY_FIELD)
        if unknown:
            raise TypeError(f"ForgeOpts.of() got unknown option(s) {unknown}; options: {sorted(BY_FIELD)}")
        return cls.from_cfg({BY_FIELD[k].name: v for k, v in values.items()})

    def get(self, name: str) -> Any:
        """The value of the option ``name`` (a runopt name such as ``mail-user``)."""
        opt = BY_NAME[name]
        return getattr(self, opt.field) if opt.field in TYPED_FIELDS else dict(self.passthrough).get(name)

    def overlay(self, values: Mapping[str, Any]) -> ForgeOpts:
        """These options with ``values`` (by runopt name; None = unchanged) on top: an experiment
        shape's cluster settings over the app's runopts. Extra sbatch flags are added, not replaced."""
        typed, passthrough = _by_field(values)
        for name in typed:
            if BY_FIELD[name].accumulates:
                typed[name] = getattr(self, name) + typed[name]
        return replace(self, **typed, passthrough=tuple({**dict(self.passthrough), **passthrough}.items()))

    def sbatch_flags(self) -> List[str]:
        """The job-wide flags of every option with an sbatch form (partition, time, account, ...)."""
        return [f for f in (sbatch_flag(o, self.get(o.name)) for o in OPTIONS) if f]

    @property
    def logs(self) -> str:
        """Directory the job logs go to (a local path: Slurm writes them)."""
        if self.log_dir:
            return os.path.abspath(os.path.expanduser(self.log_dir))
        if self.job_dir:
            return os.path.join(os.path.abspath(self.job_dir), layout.LOGS)
        if is_url(self.state_dir):
            raise ConfigError(
                "runopt 'log_dir'",
                f"state_dir {self.state_dir!r} is not a local path and Slurm can only write logs to"
                " a file system: set log_dir (or job_dir) to a directory the compute nodes share",
            )
        return os.path.join(os.path.abspath(local_path(self.state_dir)), layout.LOGS)


#: the options ForgeOpts has a typed field for
TYPED_FIELDS = frozenset(f.name for f in fields(ForgeOpts) if f.name != "passthrough")


def _by_field(values: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Split option values (by runopt name; None skipped) into typed fields and passthrough options."""
    typed: Dict[str, Any] = {}
    passthrough: Dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        opt = BY_NAME[name]
        if opt.name == "sbatch_args":  # one shell-quoted string, or (in Python) its words
            text = shlex.join(value) if isinstance(value, (list, tuple)) else str(value)
            typed[opt.field] = tuple(parse_sbatch_args(text))
        elif opt.field in TYPED_FIELDS:
            typed[opt.field] = value
        else:
            passthrough[name] = value
    return typed, passthrough
