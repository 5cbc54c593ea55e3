"""slurm_forge from a laptop: every verb of an app sent to a cluster's login node over SSH.

With runopt ``login`` (or a named cluster whose configuration carries one) the laptop runs no
Slurm command and needs no munge. ``torchx run`` ships the workspace as a snapshot named by its
content (:mod:`torchx_forge.remote.snapshot`), ships the run tables the components wrote, rewrites
the app's laptop paths to the cluster's (the workspace to the snapshot, the laptop's interpreter
to the cluster's), and has the login node's torchx-forge submit it
(:mod:`torchx_forge.agent`). The app's id then names its login: ``<id>@<login>``, so
``torchx status``, ``log``, ``cancel`` and ``torchx forge retry`` from any laptop whose
``~/.ssh/config`` knows that login reach it. The laptop keeps a note of each app it submitted
(``<state dir>/remote/``) for ``torchx list``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from torchx.schedulers.api import DescribeAppResponse, ListAppResponse
from torchx.specs import AppDef, AppDryRunInfo, AppState, CfgVal, Role

from torchx_forge.compat import list_response
from torchx_forge.core.errors import ForgeError, LoginError
from torchx_forge.remote.appdef import RemoteRequest, cluster_app, cluster_tables, table_path
from torchx_forge.remote.client import Agent
from torchx_forge.remote.notes import Note, Notes
from torchx_forge.remote.ssh import Login, check_destination
from torchx_forge.remote.wire import app_to_json, describe_from_json
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.slurm.options import configured_clusters, configured_state_dir
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord
from torchx_forge.state.store import Store
from torchx_forge.torchx_errors import in_torchx_cli, install_cli_excepthook

if TYPE_CHECKING:  # imported where used: `torchx status` loads this module and needs neither
    from torchx_forge import results as rs

#: seconds the laptop keeps a login's answer to hello (its interpreter, state dir and snapshot dir)
HELLO_TTL = 3600
#: seconds the status a submission returned stands for the status `torchx run` shows right after
DESCRIBED_TTL = 5
#: the options that are the laptop's own: the agent gets the others
LAPTOP_OPTIONS = ("login", "python", "state_dir")


def split_remote_id(app_id: str) -> Tuple[str, str]:
    """``ID@LOGIN`` -> (ID, LOGIN); ("", "") for an app on this machine's cluster."""
    remote, at, login = app_id.partition("@")
    return (remote, login) if at else ("", "")


class LaptopScheduler(SlurmForgeScheduler):
    """slurm_forge with runopt ``login``: apps on clusters reached over SSH (see the module's text).
    Apps without a login go to :class:`~torchx_forge.scheduler.SlurmForgeScheduler` as before."""

    def __init__(self, session_name: str, **kwargs: Any) -> None:
        super().__init__(session_name, **kwargs)
        self._agents: Dict[Tuple[str, str, str], Agent] = {}
        self._workspace: Optional[str] = None
        self._described: Dict[str, Tuple[float, DescribeAppResponse]] = {}
        self._store: Optional[Store] = None

    # -- where an app goes -----------------------------------------------------------

    def agent(self, login: str, python: str = "", state_dir: str = "") -> Agent:
        """The agent of ``login``: with the interpreter and state dir given, else those this laptop
        used there last, else those its configuration names for that login, else the login's defaults."""
        known = self._settings(login)
        python, state_dir = python or known.get("python", ""), state_dir or known.get("state_dir", "")
        key = (login, python, state_dir)
        if key not in self._agents:
            self._agents[key] = Agent(Login(login), python or "python3", state_dir)
        return self._agents[key]

    def _laptop_store(self) -> Store:
        """This laptop's state dir (its notes, hello answers, the run tables its components wrote):
        made once per scheduler."""
        if self._store is None:
            self._store = Store(self._state_dir or configured_state_dir())
        return self._store

    def notes(self) -> Notes:
        return Notes(self._laptop_store())

    def _settings(self, login: str) -> Dict[str, str]:
        return self.notes().settings(login) or next(
            (conf for conf in configured_clusters().values() if conf.get("login") == login), {})

    @staticmethod
    def login_of(cfg: Mapping[str, CfgVal]) -> Tuple[str, str, str]:
        """(login, python, state_dir) ``cfg`` names: runopt login, else the named cluster's configuration."""
        login, python, state_dir = (str(cfg.get(k) or "") for k in ("login", "python", "state_dir"))
        cluster = str(cfg.get("cluster") or "")
        if not login and cluster and "," not in cluster:
            conf = configured_clusters().get(cluster, {})
            login = conf.get("login", "")
            python, state_dir = python or conf.get("python", ""), state_dir or conf.get("state_dir", "")
        return (check_destination(login), python, state_dir) if login else ("", "", "")

    # -- submission ------------------------------------------------------------------

    def build_workspace_and_update_role(self, role: Role, workspace: str, cfg: Mapping[str, CfgVal]) -> None:
        if self.login_of(cfg)[0]:  # shipped at submission, as a snapshot: nothing is copied here
            self._workspace = workspace.replace("file://", "", 1)
            return
        super().build_workspace_and_update_role(role, workspace, cfg)

    def build_workspaces(self, roles: List[Role], cfg: Mapping[str, CfgVal]) -> None:
        if self.login_of(cfg)[0]:
            ws = next((getattr(r, "workspace", None) for r in roles if getattr(r, "workspace", None)), None)
            projects = getattr(ws, "projects", None)
            self._workspace = next(iter(projects), None) if projects else (str(ws) if ws else None)
            if self._workspace:
                self._workspace = self._workspace.replace("file://", "", 1)
            return
        super().build_workspaces(roles, cfg)

    def _submit_dryrun(self, app: AppDef, cfg: Mapping[str, CfgVal]) -> AppDryRunInfo[Any]:  # type: ignore[override]
        several = self._soonest(app, cfg)
        if several:
            cfg = {**cfg, "cluster": several}
        login, python, state_dir = self.login_of(cfg)
        if not login:
            return super()._submit_dryrun(app, cfg)
        self.check_app(app)
        return AppDryRunInfo(self._remote_request(app, cfg, login, python, state_dir), self._preview)

    def _soonest(self, app: AppDef, cfg: Mapping[str, CfgVal]) -> str:
        """With ``cluster=a,b`` naming clusters of the configuration behind different logins (no shared
        slurmdbd for ``sbatch -M a,b`` to choose with): the one where Slurm expects the app to start
        soonest (``sbatch --test-only`` on each, nothing submitted); "" when cluster names no such list."""
        names = [n.strip() for n in str(cfg.get("cluster") or "").split(",") if n.strip()]
        conf = configured_clusters()
        if len(names) < 2 or cfg.get("login") or not all(conf.get(n, {}).get("login") for n in names):
            return ""
        starts: List[Tuple[float, str, str]] = []
        for name in names:
            login, python, state_dir = self.login_of({**cfg, "cluster": name})
            req = self._remote_request(app, {**cfg, "cluster": name}, login, python, state_dir)
            try:
                start = self.agent(login, python, state_dir).call("expected_start", app=app_to_json(req.app),
                                                                  cfg=req.cfg)["start"]
            except (LoginError, ForgeError) as e:
                self.cli.progress(f"cluster {name} (login {login}) not asked: {str(e).splitlines()[0]}")
                continue
            starts.append((start, name, login))
        if not starts:
            raise LoginError(f"runopt 'cluster': none of {', '.join(names)} answered: nothing submitted")
        start, name, login = min(starts)
        said = "; ".join(f"{n} ({lg}) {time.strftime('%H:%M:%S', time.localtime(t))}" for t, n, lg in starts)
        self.cli.progress(f"expected starts: {said}: submitting to {name}, the soonest; the whole app stays there")
        return name

    def _remote_request(self, app: AppDef, cfg: Mapping[str, CfgVal], login: str, python: str,
                        state_dir: str) -> RemoteRequest:
        """``app`` made the cluster's (:mod:`torchx_forge.remote.appdef`) with what ``login`` said of itself."""
        agent = self.agent(login, python, state_dir)
        there = self._hello(agent)
        python = python or there["python"]
        from torchx_forge.remote import snapshot  # noqa: PLC0415 (laptop submissions only)

        root = self._workspace or os.getcwd()
        tree = snapshot.scan(root)
        snap = f"{there['snapshots']}/{tree.digest[:snapshot.NAME_LENGTH]}"
        contents = cluster_tables(app, self._laptop_store().root, there["state_dir"], {root: snap})
        tables = {table_path(there["state_dir"], data): data for data in contents.values()}
        paths = {root: snap, **{local: table_path(there["state_dir"], data) for local, data in contents.items()}}
        runtime = str(cfg.get("container_runtime") or "none")
        sent = cluster_app(app, paths, python, snap if runtime == "none" else None)
        cfg_there: Dict[str, CfgVal] = {k: v for k, v in cfg.items() if k not in LAPTOP_OPTIONS and v is not None}
        if not cfg.get("login"):  # the cluster named a login of the configuration, not a Slurm cluster (-M)
            cfg_there.pop("cluster", None)
        cfg_there.update(python=python, state_dir=there["state_dir"])
        return RemoteRequest(login, python, there["state_dir"], sent, cfg_there, tree, snap, tables)

    def _preview(self, req: RemoteRequest) -> str:
        """The login's own dry run, asked only when it is shown (``torchx run --dryrun``)."""
        agent = self.agent(req.login, req.python, req.state_dir)
        req.preview = req.preview or agent.call("dryrun", app=app_to_json(req.app), cfg=req.cfg)["text"]
        return repr(req)

    def _hello(self, agent: Agent) -> Dict[str, Any]:
        """The login's answer to hello (its interpreter, state dir, snapshot dir, versions), kept an hour
        in the laptop's state dir: a submit from an unchanged workspace is then one call. Every request
        carries the protocol, so a login upgraded since still refuses a client it cannot serve."""
        key, rel = f"{agent.python}|{agent.state_dir}", f"remote/{agent.login.dest}/.hello.json"
        store = self._laptop_store()
        known = store.read_json(rel) or {}
        hit = known.get(key)
        if hit and time.time() - hit.get("at", 0) < HELLO_TTL:
            return dict(hit)
        found = {**agent.hello(), "at": time.time()}
        store.write_json(rel, {**known, key: found})
        return found

    def schedule(self, dryrun_info: AppDryRunInfo[Any]) -> str:  # type: ignore[override, unused-ignore]  # main types it SlurmBatchRequest
        req = dryrun_info.request
        if not isinstance(req, RemoteRequest):
            return super().schedule(dryrun_info)
        agent = self.agent(req.login, req.python, req.state_dir)
        note = Note.new(req.login, req.python, req.state_dir, req.app.name, req.snapshot_dir)
        self.notes().save(note)  # before the request leaves: a lost answer is found again by its token
        tables = {path.rsplit("/", 1)[1]: data.decode() for path, data in req.tables.items()}  # by name
        request: Dict[str, Any] = {"app": app_to_json(req.app), "cfg": req.cfg, "token": note.token, "snapshot": req.snapshot_dir,
                   "tables": tables}
        try:
            found = agent.call("submit", **request)
            if found.get("need_snapshot") and req.workspace is not None:  # a workspace the cluster has not seen
                from torchx_forge.remote import snapshot  # noqa: PLC0415

                snapshot.ship(agent.login, req.workspace, os.path.dirname(req.snapshot_dir), progress=self.cli.progress)
                found = agent.call("submit", **request)
        except LoginError as e:
            raise LoginError(f"{e}\nthe submission ({note.token}) may have gone through there: `torchx list -s"
                             f" slurm_forge` asks {req.login} and shows it") from None
        note.app_id = f"{found['app_id']}@{req.login}"
        self.notes().save(note)
        if found.get("describe"):  # `torchx run` shows the app's status next: the login said it with the id
            self._described[note.app_id] = (time.monotonic(), describe_from_json(found["describe"], note.app_id))
        return note.app_id

    # -- the other verbs -------------------------------------------------------------

    def describe(self, app_id: str) -> Optional[DescribeAppResponse]:
        remote, login = split_remote_id(app_id)
        if not login:
            return super().describe(app_id)
        fresh = self._described.pop(app_id, None)
        if fresh and time.monotonic() - fresh[0] < DESCRIBED_TTL:
            return fresh[1]
        found = self.agent(login).call("describe", app_ids=[remote])[remote]
        return describe_from_json(found, app_id) if found else None

    def cancel(self, app_id: str) -> None:
        remote, login = split_remote_id(app_id)
        if not login:
            return super().cancel(app_id)
        self.agent(login).call("cancel", app_id=remote)
        return None

    def retry(self, app_id: str, states: Optional[List[str]] = None) -> List[Tuple[str, List[str]]]:
        remote, login = split_remote_id(app_id)
        if not login:
            return super().retry(app_id, states)
        return [(str(j), list(t)) for j, t in self.agent(login).call("retry", app_id=remote, states=states)]

    def raise_budget(self, app_id: str, trials: int) -> Tuple[int, str]:
        remote, login = split_remote_id(app_id)
        if not login:
            return super().raise_budget(app_id, trials)
        before, job = self.agent(login).call("budget", app_id=remote, trials=trials)
        return int(before), str(job)

    def log_iter(self, app_id: str, role_name: str, k: int = 0, regex: Optional[str] = None,
                 since: Any = None, until: Any = None, should_tail: bool = False, streams: Any = None) -> Iterable[str]:
        remote, login = split_remote_id(app_id)
        if not login:
            return super().log_iter(app_id, role_name, k, regex, since, until, should_tail, streams)
        return self.agent(login).stream("log", app_id=remote, role=role_name, k=k, regex=regex,
                                        should_tail=should_tail, streams=getattr(streams, "name", None))

    def cancel_replicas(self, app_id: str, role: str, replicas: List[int]) -> List[str]:
        remote, login = split_remote_id(app_id)
        if not login:
            return super().cancel_replicas(app_id, role, replicas)
        return list(self.agent(login).call("cancel_replicas", app_id=remote, role=role, replicas=replicas))

    def poll(self, app_ids: Optional[Sequence[str]] = None) -> Tuple[List[Tuple[AppRecord, List[TaskView]]], List[str]]:
        """:meth:`SlurmForgeScheduler.poll`, with the apps on logins asked there (one call per login);
        no ids: this machine's apps that have not ended and every app this laptop sent to a login."""
        local: Optional[List[str]] = None  # every app of this machine's records that has not ended (a laptop has none)
        if app_ids is None:
            remote = [n.app_id for login in self.notes().logins() for n in self.notes().of(login) if n.app_id]
        else:
            local = [a for a in app_ids if not split_remote_id(a)[1]]
            remote = [a for a in app_ids if split_remote_id(a)[1]]
        found, notes = super().poll(local) if local is None or local else ([], [])
        by_login: Dict[str, List[str]] = {}
        for app_id in remote:
            rid, login = split_remote_id(app_id)
            by_login.setdefault(login, []).append(rid)
        for login, ids in by_login.items():
            answer = self.agent(login).call("poll", app_ids=ids, unfinished=app_ids is None)
            for item in answer["apps"]:
                rec = AppRecord.from_json(item["record"], f"{login}:{item['record'].get('app_id')}")
                rec.app_id = f"{rec.app_id}@{login}"
                found.append((rec, [TaskView.from_json(v) for v in item["views"]]))
            notes += answer["notes"]
        return found, notes

    def load_results(self, app_id: str, stage: Optional[str] = None) -> rs.Results:
        """The runs of an app with their parameters, states and metrics (`torchx forge results`)."""
        from torchx_forge import results as rs  # noqa: PLC0415 (torchx status needs none of it)

        remote, login = split_remote_id(app_id)
        if not login:
            return rs.load(self, app_id, stage)
        return rs.Results.from_json(self.agent(login).call("results", app_id=remote, stage=stage))

    def list_apps(self, state_dir: Optional[str] = None) -> List[ListAppResponse]:
        """The apps of this machine's records, and those this laptop sent to login nodes (their
        states in one call per login); a submission whose answer was lost is looked up there."""
        here = super().list_apps(state_dir)  # this machine's own records (none on a laptop: no Slurm call)
        out: List[Tuple[float, ListAppResponse]] = []
        for login in self.notes().logins():
            out += [(n.created, row) for n, row in self._listed(login)]
        out.sort(key=lambda x: x[0], reverse=True)
        return [r for _, r in out] + here

    def _listed(self, login: str) -> List[Tuple[Note, ListAppResponse]]:
        notes = self.notes().of(login)
        lost = [n.token for n in notes if not n.app_id and not n.outcome]
        try:
            found = self.agent(login).call("states", app_ids=[split_remote_id(n.app_id)[0] for n in notes if n.app_id],
                                           tokens=lost)
        except LoginError as e:
            self.cli.progress(str(e))
            found = {"apps": {}, "tokens": {}}
        for n in notes:
            claim = found["tokens"].get(n.token)
            if claim:
                self._settle(n, claim)
        rows = []
        for n in notes:
            if not n.app_id:
                continue
            rid = split_remote_id(n.app_id)[0]
            state = AppState[found["apps"][rid]["state"]] if rid in found["apps"] else AppState.UNKNOWN
            rows.append((n, list_response(n.app_id, state, n.name)))
        return rows

    def _settle(self, note: Note, claim: Mapping[str, Any]) -> None:
        """What became of a submission whose answer was lost, as its login says: said once, noted."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(note.created))
        if claim.get("app_id"):
            note.app_id = f"{claim['app_id']}@{note.login}"
            note.outcome = "submitted (its answer was lost)"
            self.cli.progress(f"the submission of {note.name!r} at {when} (answer lost on the way) went through on"
                              f" {note.login}: slurm_forge://torchx/{note.app_id}")
        elif claim.get("error"):
            note.outcome = f"failed: {claim['error']}"
            self.cli.progress(f"the submission of {note.name!r} at {when} failed on {note.login}: {claim['error']}")
        elif claim.get("state") == "unknown" and time.time() - note.created > 60:
            note.outcome = "never reached the login node"
            self.cli.progress(f"the submission of {note.name!r} at {when} never reached {note.login}: nothing was"
                              " submitted; run it again")
        else:
            return  # still being submitted there
        self.notes().save(note)


def create_scheduler(session_name: str, **kwargs: Any) -> LaptopScheduler:
    """Entry point for ``torchx.schedulers``: ``slurm_forge = torchx_forge.laptop:create_scheduler``.
    Inside the ``torchx`` program, forge's errors are then printed as one line (:mod:`torchx_forge.torchx_errors`)."""
    if in_torchx_cli():
        install_cli_excepthook()
    return LaptopScheduler(session_name, cli=kwargs.get("cli"), state_dir=kwargs.get("state_dir"))


__all__ = ["LaptopScheduler", "RemoteRequest", "create_scheduler", "split_remote_id"]
