"""Which runs an app has, and how each ended: one :class:`RunResult` per run of an app (or of one
pipeline step), from its record, its run tables, the scheduler's task views and each run's result dir.

Rows come from the app's run tables (one row per sweep point, with the swept parameters as
dot-path columns such as ``run.args.lr``); a plain AppDef has no table and gets one row per
role. States, attempts and exit codes come from the scheduler's task views, or from each run's
``summary.json`` when Slurm has nothing to say. A search (``forge.search``) has one row per trial
asked instead, with the trial's parameters, state, rung, steps and value from its trial file
(:func:`with_trials`; :attr:`Results.search` says what it optimises and its best trial).
Everything but :func:`load` and :func:`collect` (which read the store) is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from torchx_forge.core import envvars, runtable
from torchx_forge.core.record import fields
from torchx_forge.core.storage import StoreError
from torchx_forge.errors import ForgeError, SlurmError, SlurmNotFoundError, UnknownAppError
from torchx_forge.node import contract
from torchx_forge.node.summary import RunSummary, read_summary
from torchx_forge.results.metrics import read_metrics
from torchx_forge.search import Trial, best
from torchx_forge.slurm.search_status import read_search
from torchx_forge.state.records import AppRecord, RoleRecord
from torchx_forge.state.tables import read_table as read_run_table


@dataclass
class RunResult:
    """One run (or replica) of an app: what it was given, how it ended, what it reported."""

    index: int
    run_id: str
    case: str
    params: List[Tuple[str, Any]]
    role: str
    replica: int
    result_dir: str
    state: str = "UNKNOWN"
    attempts: Optional[int] = None
    exit_code: Optional[int] = None
    metrics: Dict[str, Any] = field(default_factory=dict)
    # a search's trial (run ``index`` is trial ``index``): its rung, the step it may run to, its last reported step
    rung: Optional[int] = None
    budget: Optional[int] = None
    last_step: Optional[int] = None


@dataclass
class SearchInfo:
    """What a search app optimises, and its best trial so far (its runs are its trials)."""

    algorithm: str
    metric: str
    mode: str
    trials: int
    best: Optional[int] = None
    #: the search's spec and trial files as JSON (what ``--optuna`` rebuilds the study from)
    spec: Optional[Dict[str, Any]] = None
    trial_files: Optional[List[Dict[str, Any]]] = None


@dataclass
class Results:
    """The rows of one app (one step of a pipeline), plus problems worth telling the user."""

    app_id: str
    name: str
    stage: str
    runs: List[RunResult]
    notes: List[str] = field(default_factory=list)
    search: Optional[SearchInfo] = None

    def params(self) -> List[str]:
        """Parameter dot paths, in the order the runs list them."""
        seen: Dict[str, None] = {}
        for r in self.runs:
            seen.update((k, None) for k, _ in r.params)
        return list(seen)

    def metrics(self) -> List[str]:
        """Every metric any run reported, sorted by name."""
        return sorted({m for r in self.runs for m in r.metrics})

    @property
    def title(self) -> str:
        return f"{self.name} ({self.app_id})" + (f", step {self.stage}" if self.stage else "")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Results:
        """Results from their JSON (``dataclasses.asdict``, as the agent sends them); keys this
        version does not know (a newer agent's) are left out."""
        known = {f.name for f in fields(RunResult)}
        runs = [RunResult(**{**{k: v for k, v in r.items() if k in known}, "params": [tuple(p) for p in r["params"]]})
                for r in obj["runs"]]
        found = obj.get("search")
        search = SearchInfo(**{k: v for k, v in found.items() if k in {f.name for f in fields(SearchInfo)}}) if found else None
        return cls(obj["app_id"], obj["name"], obj["stage"], runs, list(obj.get("notes") or []), search)


# -- which runs: tables, steps, replicas ------------------------------------------------------


def table_ref(role: RoleRecord, tables: Sequence[str]) -> Optional[Tuple[str, str]]:
    """(table path, role key in that table) of a sweep role, read from its ``--table T --role R`` args."""
    args = list(role.args)
    if "--table" in args and "--role" in args:
        t, k = args.index("--table") + 1, args.index("--role") + 1
        if t < len(args) and k < len(args) and args[t] in tables:
            return args[t], args[k]
    return None


def choose_stage(rec: AppRecord, wanted: Optional[str]) -> str:
    """The step to show: ``wanted``, else the last step with a run table ('' for non-pipelines)."""
    stages = rec.stages()
    tables = list(rec.tables)
    if not stages:
        if wanted:
            raise ForgeError(f"--stage is for pipelines; app {rec.app_id} ({rec.name}) has no steps")
        return ""
    names = [s for s, _ in stages]
    if wanted:
        if wanted not in names:
            raise ForgeError(f"app {rec.app_id} has no step {wanted!r}; its steps: {', '.join(names)}")
        return wanted
    roles = {r.name: r for r in rec.roles}
    with_table = [s for s, rs in stages if any(r in roles and table_ref(roles[r], tables) for r in rs)]
    return (with_table or names)[-1]


def result_dir_of(rec: AppRecord, role: RoleRecord, stage: str, state_dir: str, run_id: str) -> str:
    """Where the launcher put this run's results: the same template, filled with the same env."""
    env = {**role.env, envvars.STATE_DIR.name: state_dir, envvars.APP_ID.name: rec.app_id}
    if stage:
        env.setdefault(envvars.STAGE.name, stage)
    return contract.result_dir(env, run_id)


def planned_runs(
    rec: AppRecord, stage: str, state_dir: str, read_table: Callable[[str], runtable.RunTable]
) -> List[RunResult]:
    """Every run of the step (or app): table rows for sweep roles, one row per role otherwise
    (a role's replicas are one distributed run; replica 0 stands for it)."""
    names = dict(rec.stages()).get(stage) if stage else None
    roles = [r for r in rec.roles if names is None or r.name in names]
    tables = list(rec.tables)
    out: List[RunResult] = []
    plain = 0
    for role in roles:
        ref = table_ref(role, tables)
        if ref:
            out += _table_runs(rec, role, stage, state_dir, _load_table(read_table, ref[0]), ref[1])
            continue
        run_id = contract.default_run_id(rec.app_id, role.name, 0)
        out.append(RunResult(plain, run_id, "", [], role.name, 0, result_dir_of(rec, role, stage, state_dir, run_id)))
        plain += 1
    return sorted(out, key=lambda r: r.index)


def _load_table(read_table: Callable[[str], runtable.RunTable], path: str) -> runtable.RunTable:
    try:
        return read_table(path)
    except StoreError:
        raise
    except (OSError, ValueError) as e:
        raise ForgeError(f"cannot read the run table {path} (removed from the state dir?): {e}") from None


def _table_runs(
    rec: AppRecord, role: RoleRecord, stage: str, state_dir: str, table: runtable.RunTable, key: str
) -> List[RunResult]:
    out = []
    for k, pos in enumerate(runtable.role_positions(table, key)):
        point = runtable.point_at(table, pos)
        out.append(RunResult(point.index, point.run_id, point.case, list(point.params), role.name, k,
                             result_dir_of(rec, role, stage, state_dir, point.run_id)))
    return out


# -- how each ended ----------------------------------------------------------------------------


def status_of(view: Any, summary: Optional[RunSummary]) -> Tuple[str, Optional[int], Optional[int]]:
    """(state, attempts, exit code): the task view when it knows, else the run's summary.json."""
    if view is not None and view.slurm_state != "UNKNOWN":
        code = view.exit_code
        if code is None and view.final and summary:
            code = summary.exit_code
        return ("PENDING" if view.retry_pending else view.slurm_state), view.attempts, code
    s = summary or RunSummary()
    return str(s.state or "UNKNOWN"), s.attempts, s.exit_code


def collect(rec: AppRecord, state_dir: str, views: Optional[Iterable[Any]], stage: Optional[str] = None,
            read_table: Optional[Callable[[str], runtable.RunTable]] = None) -> Results:
    """Results of one app from its record, its task views (None: Slurm unavailable) and its result dirs."""
    chosen = choose_stage(rec, stage)
    runs = planned_runs(rec, chosen, state_dir, read_table or read_run_table)
    by_task = {(v.role, v.replica): v for v in views or []}
    res = Results(rec.app_id, rec.name, chosen, runs)
    for r in runs:
        r.state, r.attempts, r.exit_code = status_of(by_task.get((r.role, r.replica)), read_summary(r.result_dir))
        r.metrics, problem = read_metrics(r.result_dir)
        if problem:
            res.notes.append(problem)
    return res


def load(sched: Any, app_id: str, stage: Optional[str] = None) -> Results:
    """Results of an app slurm_forge submitted, looked up in the scheduler's state dir."""
    records = sched.records()
    rec = sched.load(app_id)
    if rec is None:
        raise UnknownAppError(
            f"no record of app {app_id!r} in state dir {records.store.url}"
            f" (submitted with another state_dir? set {envvars.STATE_DIR.name})"
        )
    notes = []
    try:
        views = sched.task_views(app_id)
    except (SlurmError, SlurmNotFoundError) as e:
        views = None
        notes.append(f"Slurm did not answer ({str(e).splitlines()[0]}); states are from the runs' summary.json")
    res = collect(rec, records.store.url, views, stage)
    res.notes[:0] = notes
    if rec.meta.search:
        try:
            spec, trials = read_search(records, rec)
        except StoreError:
            raise
        except (OSError, ValueError) as e:
            res.notes.append(f"cannot read the search's trials ({e}): one row per planned run instead")
            return res
        top = best(spec, trials)
        info = SearchInfo(spec.algorithm, spec.metric, spec.mode, spec.trials, top.number if top else None,
                          spec.to_json(), [t.to_json() for t in trials])
        return with_trials(res, info, trials)
    return res


# -- a search: one row per trial ----------------------------------------------------------------


def with_trials(res: Results, info: SearchInfo, trials: Sequence[Trial]) -> Results:
    """The results of a search: one row per trial asked so far, in number order, with its
    parameters, state, rung and steps; its value of the search's metric (the last reported one for
    a trial stopped early) among the metrics its run wrote. Trial k is replica k of the app's run."""
    by_replica = {r.replica: r for r in res.runs}
    runs = []
    for t in sorted(trials, key=lambda t: t.number):
        run = by_replica.get(t.number) or RunResult(t.number, "", "", [], "", t.number, "")
        state = t.state.value
        if state == "ASKED" and run.state == "RUNNING":  # the files change at decisions; Slurm knows sooner
            state = "RUNNING"
        metrics = dict(run.metrics)
        if t.objective is not None:
            metrics[info.metric] = t.objective
        runs.append(RunResult(t.number, run.run_id, "", sorted(t.params.items()), run.role, t.number, run.result_dir,
                              state, run.attempts, run.exit_code, metrics, t.rung, t.budget, t.last_step))
    notes = list(res.notes)
    if len(runs) < info.trials:
        notes.append(f"{info.trials - len(runs)} of the search's {info.trials} trials not asked (yet)")
    return Results(res.app_id, res.name, res.stage, runs, notes, info)


