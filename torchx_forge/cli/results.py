"""``torchx forge results``: one row per run of an app, with its parameters, state and metrics.

The metrics convention: a run writes ``$FORGE_RESULT_DIR/metrics.json``, a flat
JSON object such as ``{"val_loss": 0.31, "acc": 0.9}`` (nested objects become
dotted names, ``{"val": {"loss": 1}}`` -> ``val.loss``). Without that file the
last row of ``$FORGE_RESULT_DIR/metrics.csv`` counts (its header row names the
metrics), so a program can append one row per epoch and the final one is shown.

Rows come from the app's run tables (one row per sweep point, with the swept
parameters as dot-path columns such as ``run.args.lr``); a plain AppDef has no
table and gets one row per replica. States, attempts and exit codes come from
the scheduler's task views, or from each run's ``summary.json`` when Slurm has
nothing to say. Everything but :func:`load`, the ``read_*``/``write_*``
functions and :func:`plot` is pure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from torchx_forge.core import envvars, runtable
from torchx_forge.core.storage import StoreError
from torchx_forge.errors import ForgeError, SlurmError, SlurmNotFoundError, UnknownAppError
from torchx_forge.node import contract
from torchx_forge.node.summary import RunSummary, read_summary
from torchx_forge.state.files import read_file
from torchx_forge.state.records import AppRecord, RoleRecord
from torchx_forge.state.tables import read_table as read_run_table

METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
#: Shown in the table for a value a run did not report.
MISSING = "-"
#: Columns every row has; a metric with one of these names is exported as ``metric.<name>``.
FIXED = ("index", "run_id", "case", "state", "attempts", "exit_code", "result_dir")
PLOT_HINT = "pip install 'torchx-forge[plot]'"


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


@dataclass
class Results:
    """The rows of one app (one step of a pipeline), plus problems worth telling the user."""

    app_id: str
    name: str
    stage: str
    runs: List[RunResult]
    notes: List[str] = field(default_factory=list)

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


# -- state and metrics ------------------------------------------------------------------------


def status_of(view: Any, summary: Optional[RunSummary]) -> Tuple[str, Optional[int], Optional[int]]:
    """(state, attempts, exit code): the task view when it knows, else the run's summary.json."""
    if view is not None and view.slurm_state != "UNKNOWN":
        code = view.exit_code
        if code is None and view.final and summary:
            code = summary.exit_code
        return ("PENDING" if view.retry_pending else view.slurm_state), view.attempts, code
    s = summary or RunSummary()
    return str(s.state or "UNKNOWN"), s.attempts, s.exit_code


def flatten(obj: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"val": {"loss": 1}}`` -> ``{"val.loss": 1}``; lists are kept as values."""
    out: Dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def number(text: str) -> Any:
    """A CSV cell as int or float when it is one, else the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_metrics_json(text: str) -> Dict[str, Any]:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object of metric: value, got {type(obj).__name__}")
    return flatten(obj)


def parse_metrics_csv(text: str) -> Dict[str, Any]:
    """The last non-empty row of a CSV file, keyed by the header row."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {h.strip(): number(v.strip()) for h, v in zip(header, last, strict=False) if h.strip() and v.strip()}


def _read_text(path: str) -> Optional[str]:
    """The text of a local file or URL; None when it is missing or not text. A store that does
    not answer is an error (StoreError, naming the URL), not a run without metrics."""
    try:
        return read_file(path).decode()
    except StoreError:
        raise
    except (OSError, UnicodeDecodeError):
        return None


def read_metrics(result_dir: str) -> Tuple[Dict[str, Any], str]:
    """(metrics, problem) of one run: metrics.json, else the last row of metrics.csv."""
    for name, parse in ((METRICS_JSON, parse_metrics_json), (METRICS_CSV, parse_metrics_csv)):
        path = f"{result_dir.rstrip('/')}/{name}"
        text = _read_text(path)
        if text is None:
            continue
        try:
            return parse(text), ""
        except (ValueError, csv.Error) as e:
            return {}, f"{path}: unreadable ({e})"
    return {}, ""


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
    return res


# -- columns and output -----------------------------------------------------------------------


def select_metrics(res: Results, metric: Optional[str]) -> List[str]:
    """The metric columns: ``metric`` alone, or every metric found when it is None."""
    found = res.metrics()
    if metric is None:
        return found
    if found and metric not in found:
        raise ForgeError(f"no run reported metric {metric!r}; metrics found: {', '.join(found)}")
    return [metric]


def export_name(metric: str, params: Sequence[str]) -> str:
    return f"metric.{metric}" if metric in FIXED or metric in params else metric


def rows_of(res: Results, metrics: Sequence[str]) -> List[Dict[str, Any]]:
    """One flat dict per run (the CSV and JSON rows); a missing value is None."""
    params = res.params()
    out = []
    for r in res.runs:
        given = dict(r.params)
        row: Dict[str, Any] = {"index": r.index, "run_id": r.run_id, "case": r.case}
        row.update((p, given.get(p)) for p in params)
        row.update(state=r.state, attempts=r.attempts, exit_code=r.exit_code)
        row.update((export_name(m, params), r.metrics.get(m)) for m in metrics)
        row["result_dir"] = r.result_dir
        out.append(row)
    return out


def fmt(value: Any, short: bool = False) -> str:
    """A cell of the readable table, missing values as '-'; ``short``: floats to 6 significant digits."""
    if value is None or value == "":
        return MISSING
    if short and isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def table_rows(res: Results, metrics: Sequence[str]) -> List[List[str]]:
    """Header plus one row per run, for :func:`torchx_forge.slurm.report.format_table`."""
    params = res.params()
    rows = [["RUN", "RUN ID", "CASE", *params, "STATE", "ATTEMPTS", "EXIT", *metrics]]
    for r in res.runs:
        given = dict(r.params)
        rows.append([str(r.index), r.run_id, fmt(r.case), *(fmt(given.get(p)) for p in params), r.state,
                     fmt(r.attempts), fmt(r.exit_code), *(fmt(r.metrics.get(m), short=True) for m in metrics)])
    return rows


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def write_csv(path: str, rows: List[Dict[str, Any]]) -> None:
    """A CSV file with a header row; missing values are empty cells."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if rows:
            w.writerow(list(rows[0]))
            w.writerows([_csv_cell(v) for v in r.values()] for r in rows)


def write_json(path: str, rows: List[Dict[str, Any]]) -> None:
    """A JSON list with one object per run; missing values are null."""
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
        f.write("\n")


# -- plot -------------------------------------------------------------------------------------


def plot_metric(res: Results, metric: Optional[str]) -> str:
    """The one metric a plot shows: ``metric``, or the only one found."""
    found = res.metrics()
    if metric:
        if metric not in found:
            raise ForgeError(f"cannot plot {metric!r}: no run reported it; metrics found: {', '.join(found) or 'none'}")
        return metric
    if not found:
        raise ForgeError(f"nothing to plot: no run of {res.title} has written {METRICS_JSON} or {METRICS_CSV} yet")
    if len(found) > 1:
        raise ForgeError(f"a plot shows one metric; pick one with --metric: {', '.join(found)}")
    return found[0]


def check_param(res: Results, x: str) -> None:
    params = res.params()
    if x not in params:
        valid = ", ".join(params) if params else "none (these runs have no swept parameters)"
        raise ForgeError(f"--x {x!r} is not a parameter of these runs; parameters: {valid}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_points(res: Results, metric: str, x: str) -> Dict[str, List[Tuple[Any, float]]]:
    """(x, metric) per case, sorted by x; runs without a numeric metric value are left out.

    x values are numbers when every run's is one, else text (a categorical axis).
    """
    found = [(r.case, dict(r.params).get(x), r.metrics.get(metric)) for r in res.runs]
    points = [(c, xv, float(y)) for c, xv, y in found if y is not None and _is_number(y) and xv is not None]
    numeric = all(_is_number(xv) for _, xv, _ in points)
    out: Dict[str, List[Tuple[Any, float]]] = {}
    for case, xv, y in points:
        out.setdefault(case, []).append((xv if numeric else fmt(xv), y))
    return {c: sorted(p, key=lambda t: t[0]) if numeric else p for c, p in out.items()}


def log_x(xs: Sequence[Any]) -> bool:
    """A log x axis pays off when every x is positive and they span more than two decades."""
    nums = [v for v in xs if _is_number(v)]
    return len(nums) == len(xs) > 0 and min(nums) > 0 and max(nums) / min(nums) > 100


def _figure() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 (an optional extra)
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        raise ForgeError(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}") from None
    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)  # Agg, whatever backend the user's matplotlibrc names
    return fig


def plot(res: Results, metric: str, x: str, path: str) -> int:
    """Save ``metric`` against parameter ``x`` (one colour per case) to ``path``; returns the points drawn."""
    points = plot_points(res, metric, x)
    n = sum(len(p) for p in points.values())
    if not n:
        raise ForgeError(f"nothing to plot: no run of {res.title} has a numeric {metric!r} yet")
    fig = _figure()
    ax = fig.add_subplot()
    for i, (case, pts) in enumerate(points.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=f"C{i}", label=case or "runs", alpha=0.85)
    if log_x([p[0] for pts in points.values() for p in pts]):
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.set_title(f"{res.title}: {metric} vs {x}")
    ax.grid(True, alpha=0.3)
    if any(points):
        ax.legend(title="case")
    fig.tight_layout()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path)
    return n
