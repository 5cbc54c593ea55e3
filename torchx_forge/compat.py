"""Every difference between the TorchX versions torchx-forge runs on, in one place.

torchx-forge supports torchx 0.7 and TorchX main (published as ``torchx-nightly``). The rest of
forge is written against one neutral API; this module maps it onto whichever TorchX is installed,
by looking at what that TorchX has (never by comparing version numbers):

- ``Scheduler.list()`` became ``list(cfg=None)``, and ``_validate(app, scheduler)`` gained ``cfg``:
  :class:`SchedulerCompat` accepts both and calls forge's :meth:`~SchedulerCompat.list_apps` and
  :meth:`~SchedulerCompat.check_app`.
- main turns the cfg into the ``SlurmOpts`` dataclass before ``_submit_dryrun``, keeping options
  it does not declare (all of forge's own) only through a dict shim marked for removal:
  :meth:`SchedulerCompat._opts_type` opts out, so forge gets the plain dict on both.
- main's ``SlurmScheduler`` is a ``MultiWorkspaceMixin`` that builds workspaces through
  ``build_workspaces`` instead of calling ``build_workspace_and_update_role``: both lead to
  :meth:`~SchedulerCompat.check_workspace`.
- main casts ``.torchxconfig`` values with ``runopt.cast_to_type``, which knows only built-in
  types; 0.7 calls the option's type: :func:`add_option` makes both casts forge's lenient one.
- the dry run's AppDef is ``AppDryRunInfo._app`` in 0.7, ``.app`` in main (:func:`set_dryrun_app`);
  ``ListAppResponse`` has a ``name`` only in main (:func:`list_response`); the component finder's
  ``find()`` takes ``validators`` in main (:func:`component_names`).
- plugins: 0.7 reads ``torchx.schedulers`` entry points, and any of them hides its built-in
  schedulers, so forge registers every 0.7 built-in again next to ``slurm_forge``. main lists its
  built-ins itself, has deleted six of those modules, deprecates entry points and reads a
  ``torchx_plugins`` namespace package first; ``torchx_plugins/schedulers/slurm_forge.py``
  registers there (:func:`plugin_scheduler`), and forge's entry points are withdrawn from main's
  view (:func:`withdraw_forge_entry_points`): main sees ``slurm_forge`` once and no dead built-in.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import warnings
from dataclasses import fields
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Set, TypeVar

try:
    import torchx
except ImportError:  # pragma: no cover - an install without the [torchx] or [nightly] extra
    raise ImportError(
        "torchx-forge needs TorchX and none is installed: pip install 'torchx-forge[torchx]' (torchx 0.7)"
        " or 'torchx-forge[nightly]' (TorchX main, torchx-nightly)"
    ) from None
from torchx.schedulers.api import ListAppResponse
from torchx.specs import AppDef, AppDryRunInfo, AppState, CfgVal, Role, runopt, runopts
from torchx.specs.finder import ModuleComponentsFinder

if TYPE_CHECKING:  # at run time the scheduler mixes this in before SlurmScheduler (importing it is slow)
    from torchx.schedulers.slurm_scheduler import SlurmScheduler as _SlurmBase
else:
    _SlurmBase = object

#: The oldest TorchX release forge works with.
OLDEST = (0, 7)
#: The entry-point group of schedulers (both versions), and the distribution that is forge.
SCHEDULERS_GROUP = "torchx.schedulers"
DISTRIBUTION = "torchx-forge"
BACKEND = "slurm_forge"
#: TorchX main's plugin registry (``torchx.plugins``) is installed.
HAS_PLUGIN_REGISTRY = importlib.util.find_spec("torchx.plugins") is not None

F = TypeVar("F", bound=Callable[..., Any])


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def torchx_distributions() -> Dict[str, str]:
    """The installed distributions that provide the ``torchx`` module: {name: version}."""
    found = {}
    for name in ("torchx", "torchx-nightly"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _check_installed() -> None:
    """Refuse a TorchX older than 0.7; warn when torchx and torchx-nightly are both installed."""
    release = tuple(int(p) for p in re.findall(r"\d+", torchx.__version__)[:2])
    if release < OLDEST:
        raise ImportError(
            f"torchx-forge needs torchx >= 0.7 and found torchx {torchx.__version__}:"
            " pip install 'torchx-forge[torchx]' (torchx 0.7) or 'torchx-forge[nightly]' (TorchX main)"
        )
    dists = torchx_distributions()
    if len(dists) > 1:
        both = " and ".join(f"{n} {v}" for n, v in dists.items())
        warnings.warn(
            f"{both} are both installed and share the `torchx` module (now {torchx.__version__}): uninstall one"
            " (pip uninstall torchx, to keep the nightly)", RuntimeWarning, stacklevel=2,
        )


_check_installed()


# -- the scheduler -------------------------------------------------------------------------


class SchedulerCompat(_SlurmBase):
    """TorchX's scheduler methods whose shape differs between versions, forwarded to forge's own.

    Mixed in before ``SlurmScheduler``: ``class SlurmForgeScheduler(SchedulerCompat, SlurmScheduler)``.
    Subclasses implement :meth:`check_app`, :meth:`list_apps` and :meth:`check_workspace`.
    """

    @classmethod
    def _opts_type(cls) -> None:
        """None: TorchX main then hands ``_submit_dryrun`` the resolved cfg as a dict, not as ``SlurmOpts``."""

    def _validate(self, app: AppDef, scheduler: str, cfg: Optional[Mapping[str, CfgVal]] = None) -> None:
        self.check_app(app)

    def list(self, cfg: Optional[Mapping[str, CfgVal]] = None) -> List[ListAppResponse]:
        """``torchx list -s slurm_forge`` (main passes the cfg: ``-cfg state_dir=...`` picks the records)."""
        state_dir = (cfg or {}).get("state_dir")
        return self.list_apps(state_dir if isinstance(state_dir, str) and state_dir else None)

    def build_workspace_and_update_role(self, role: Role, workspace: str, cfg: Mapping[str, CfgVal]) -> None:
        """torchx 0.7's runner copies the workspace through this method."""
        self.check_workspace(cfg)
        super().build_workspace_and_update_role(role, workspace, cfg)

    def build_workspaces(self, roles: List[Role], cfg: Mapping[str, CfgVal]) -> None:
        """TorchX main's runner builds the roles' workspaces through this method."""
        if any(getattr(role, "workspace", None) for role in roles):  # torchx 0.7's Role has no workspace
            self.check_workspace(cfg)
        getattr(super(), "build_workspaces")(roles, cfg)  # noqa: B009  # torchx 0.7 has no such method

    def check_app(self, app: AppDef) -> None:
        """Raise if ``app`` cannot run on this scheduler."""
        raise NotImplementedError

    def list_apps(self, state_dir: Optional[str] = None) -> List[ListAppResponse]:
        """The apps this scheduler knows, newest first."""
        raise NotImplementedError

    def check_workspace(self, cfg: Mapping[str, CfgVal]) -> None:
        """Raise if the workspace cannot be built with ``cfg`` (called before TorchX builds it)."""


def set_dryrun_app(info: AppDryRunInfo[Any], app: AppDef) -> None:
    """Make ``app`` the AppDef a dry run shows (``torchx run --dryrun`` prints it)."""
    setattr(info, "_app" if hasattr(info, "_app") else "app", app)  # noqa: B010


_LIST_HAS_NAME = "name" in {f.name for f in fields(ListAppResponse)}


def list_response(app_id: str, state: AppState, name: str) -> ListAppResponse:
    """A ``torchx list`` row; the app's name is shown where TorchX has the column (main)."""
    row = ListAppResponse(app_id=app_id, state=state)
    if _LIST_HAS_NAME:
        setattr(row, "name", name)  # noqa: B010
    return row


# -- run options ---------------------------------------------------------------------------


class _LenientRunopt(runopt):
    """A runopt whose text cast is its type's (forge's lenient types never fail)."""

    def cast_to_type(self, value: str) -> CfgVal:
        """TorchX main casts ``.torchxconfig`` values here; its own cast asserts on any type but a built-in."""
        convert: Callable[[str], CfgVal] = self.opt_type  # type: ignore[assignment]
        return convert(value)


def add_option(opts: runopts, name: str, type_: type, help: str, default: CfgVal) -> None:  # noqa: A002
    """``opts.add(...)`` whose value, from ``-cfg`` or ``.torchxconfig``, is cast by ``type_`` on every TorchX."""
    opts.add(name, type_=type_, help=help, default=default)
    added = opts._opts[name]
    opts._opts[name] = _LenientRunopt(**{f.name: getattr(added, f.name) for f in fields(added)})


# -- plugins -------------------------------------------------------------------------------


def plugin_scheduler(name: str) -> Callable[[F], F]:
    """TorchX main's ``@torchx.plugins.register.scheduler(name)``; without that registry, no change."""
    if not HAS_PLUGIN_REGISTRY:
        return lambda fn: fn
    register: Callable[[F], F] = importlib.import_module("torchx.plugins").register.scheduler(name)
    return register


def forge_entry_points(group: str = SCHEDULERS_GROUP) -> Set[str]:
    """Names in ``group`` whose entry point (the last one of that name, as TorchX reads them) is forge's."""
    winner: Dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        winner[ep.name] = ep
    return {name for name, ep in winner.items() if ep.dist is not None and _dist_name(ep.dist.name) == DISTRIBUTION}


def _namespace_plugins_read() -> bool:
    """TorchX main reads the ``torchx_plugins`` namespace package (``TORCHX_PLUGINS_SOURCE`` 1 or 3, the default)."""
    try:
        return bool(int(os.environ.get("TORCHX_PLUGINS_SOURCE", "3")) & 1)
    except ValueError:
        return True  # TorchX itself refuses the value, with a message that says so


def withdraw_forge_entry_points() -> None:
    """Hide forge's ``torchx.schedulers`` entry points from TorchX main, which has its own registry.

    They exist for torchx 0.7: ``slurm_forge`` and its ten built-ins, registered again because 0.7
    hides its built-ins from any plugin. main lists its built-ins itself (six of the ten modules are
    gone there) and reads the ``torchx_plugins`` namespace package, which registers ``slurm_forge``,
    before the entry points; an entry point of the same name would make it warn about a double
    registration. So main is shown no forge re-registration of a built-in, and no ``slurm_forge``
    entry point unless the namespace package is not read (``TORCHX_PLUGINS_SOURCE=2``).

    Called by the namespace package and by forge's CLI module (loaded by every ``torchx`` command
    before it reads schedulers). No effect on torchx 0.7.
    """
    if not HAS_PLUGIN_REGISTRY:
        return
    entrypoints = importlib.import_module("torchx.util.entrypoints")
    original = entrypoints.load_group
    if getattr(original, "_forge_withdraws", False):
        return

    def load_group(group: str, *args: Any, **kwargs: Any) -> Any:
        found = original(group, *args, **kwargs)
        if group == SCHEDULERS_GROUP and found:
            keep = set() if _namespace_plugins_read() else {BACKEND}
            for name in forge_entry_points(group) - keep:
                found.pop(name, None)
        return found

    load_group._forge_withdraws = True  # type: ignore[attr-defined]
    setattr(entrypoints, "load_group", load_group)  # noqa: B010


def component_names(module: str) -> List[str]:
    """The valid components in ``module`` (``utils.echo``, ...), as TorchX's component finder sees them."""
    find: Callable[..., List[Any]] = ModuleComponentsFinder(module, "").find
    found = find(None) if "validators" in inspect.signature(find).parameters else find()
    return sorted(c.name for c in found if not c.validation_errors)
