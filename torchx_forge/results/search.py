"""The results of a search (:attr:`Results.search <torchx_forge.results.runs.Results.search>` set):
one row per trial with its state, rung, steps, metrics and parameters, the best trial marked, and
the objective by trial with the best so far (matplotlib). Everything but :func:`plot_trials` is pure.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge.errors import ForgeError
from torchx_forge.results.export import fmt
from torchx_forge.results.plot import figure
from torchx_forge.results.runs import Results, RunResult, SearchInfo

#: ``--x trial``: a search's metric against the trial number (the order the trials were asked in)
TRIAL_X = "trial"
#: the columns every trial row has; a metric of one of these names is exported as ``metric.<name>``
TRIAL_FIXED = ("trial", "state", "rung", "steps", "best", "run_id", "result_dir")
#: how the best trial is marked in the table
BEST_MARK = "*"


def _info(res: Results) -> SearchInfo:
    if res.search is None:
        raise ForgeError(f"{res.title} is not a search")
    return res.search


def search_metrics(res: Results, metric: Optional[str]) -> List[str]:
    """The metric columns of a search: ``metric`` alone, else the search's metric first, then every
    other metric the trials' runs wrote, sorted."""
    info = _info(res)
    found = res.metrics()
    if metric is not None:
        if metric != info.metric and metric not in found:
            raise ForgeError(f"no trial reported metric {metric!r}; metrics found: {', '.join(found) or 'none'}")
        return [metric]
    return [info.metric, *(m for m in found if m != info.metric)]


def best_run(res: Results) -> Optional[RunResult]:
    """The best trial's row (the search's best COMPLETE trial), None before any."""
    number = _info(res).best
    return next((r for r in res.runs if r.index == number), None) if number is not None else None


def _name(metric: str, params: Sequence[str]) -> str:
    return f"metric.{metric}" if metric in TRIAL_FIXED or metric in params else metric


def trial_table(res: Results, metrics: Sequence[str]) -> List[List[str]]:
    """Header plus one row per trial, the best one marked, for :func:`torchx_forge.slurm.report.format_table`."""
    params = res.params()
    top = best_run(res)
    rows = [["", "TRIAL", "STATE", "RUNG", "STEPS", *metrics, *params]]
    for r in res.runs:
        given = dict(r.params)
        rows.append([BEST_MARK if r is top else "", str(r.index), str(r.state), fmt(r.rung), fmt(r.last_step),
                     *(fmt(r.metrics.get(m), short=True) for m in metrics), *(fmt(given.get(p), short=True) for p in params)])
    return rows


def trial_rows_of(res: Results, metrics: Sequence[str]) -> List[Dict[str, Any]]:
    """One flat dict per trial (the CSV and JSON rows): the table's columns, ``best`` true for the
    best trial, then its run id and result dir; a missing value is None."""
    params = res.params()
    top = best_run(res)
    out = []
    for r in res.runs:
        given = dict(r.params)
        row: Dict[str, Any] = {"trial": r.index, "state": str(r.state), "rung": r.rung, "steps": r.last_step}
        row.update((_name(m, params), r.metrics.get(m)) for m in metrics)
        row.update((p, given.get(p)) for p in params)
        row.update(best=r is top, run_id=r.run_id, result_dir=r.result_dir)
        out.append(row)
    return out


def best_line(res: Results) -> str:
    """``best: trial 7, loss 0.12 (run.args.lr=0.01)``, or why there is none yet."""
    info = _info(res)
    top = best_run(res)
    if top is None:
        return "best: none complete yet"
    params = ", ".join(f"{k}={fmt(v, short=True)}" for k, v in top.params)
    return f"best ({BEST_MARK}): trial {top.index}, {info.metric} {fmt(top.metrics.get(info.metric), short=True)} ({params})"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def trial_points(res: Results, metric: str) -> List[Tuple[int, float, str]]:
    """(trial, value, state) of every trial with a numeric value of ``metric``, in trial order."""
    return [(r.index, float(r.metrics[metric]), str(r.state)) for r in res.runs if _number(r.metrics.get(metric))]


def best_so_far(points: Sequence[Tuple[int, float, str]], mode: str) -> List[Tuple[int, float]]:
    """(trial, the best value of the COMPLETE trials up to it) at each COMPLETE trial, in trial order
    (a trial stopped early reported a value of a shorter run: it is drawn, not counted)."""
    out: List[Tuple[int, float]] = []
    for number, value, state in points:
        if state != "COMPLETE":
            continue
        if not out or (value < out[-1][1] if mode == "min" else value > out[-1][1]):
            out.append((number, value))
        else:
            out.append((number, out[-1][1]))
    return out


def plot_trials(res: Results, metric: str, path: str) -> int:
    """Save ``metric`` by trial number (one colour per state) with the best so far (the search's own
    metric) to ``path``; returns the points drawn."""
    info = _info(res)
    points = trial_points(res, metric)
    if not points:
        raise ForgeError(f"nothing to plot: no trial of {res.title} has a numeric {metric!r} yet")
    fig = figure()
    ax = fig.add_subplot()
    for i, state in enumerate(sorted({s for _, _, s in points}, key=lambda s: (s != "COMPLETE", s))):
        mine = [(n, v) for n, v, s in points if s == state]
        ax.plot([n for n, _ in mine], [v for _, v in mine], "o", color=f"C{i}", label=state.lower(), alpha=0.85)
    if metric == info.metric:
        line = best_so_far(points, info.mode)
        if line:
            last = points[-1][0]
            ax.step([n for n, _ in line] + [last], [v for _, v in line] + [line[-1][1]], where="post", color="k",
                    linewidth=1.2, label=f"best so far ({info.mode})")
        top = best_run(res)
        if top is not None and _number(top.metrics.get(metric)):
            ax.plot([top.index], [float(top.metrics[metric])], "*", color="k", markersize=14, label=f"best: trial {top.index}")
    ax.xaxis.get_major_locator().set_params(integer=True)  # trial numbers: no 0.25
    ax.set_xlabel(f"{TRIAL_X} (the order asked)")
    ax.set_ylabel(metric)
    ax.set_title(f"{res.title}: {metric} by trial ({info.algorithm})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return len(points)


def export_optuna(res: Results, path: str) -> str:
    """Write the search's study (every trial with its parameters, state, intermediate and final
    values) to the SQLite file ``path`` for ``optuna-dashboard sqlite:///PATH``: a copy made now,
    read-only as far as the search is concerned (its decisions never read it). A study of the same
    name already in the file is replaced; other studies there are kept. Returns the storage URL."""
    from optuna import create_study, delete_study  # noqa: PLC0415 (the search extra)
    from optuna.exceptions import DuplicatedStudyError  # noqa: PLC0415
    from optuna.study import StudyDirection  # noqa: PLC0415

    from torchx_forge.search import SearchSpec, Trial  # noqa: PLC0415
    from torchx_forge.search.study import rebuild  # noqa: PLC0415

    info = _info(res)
    if info.spec is None or info.trial_files is None:
        raise ForgeError(f"{res.title}: the search's trials did not come with the results (an older agent?)")
    spec = SearchSpec.from_json(info.spec)
    study = rebuild(spec, [Trial.from_json(t) for t in info.trial_files])
    url = f"sqlite:///{os.path.abspath(path)}"
    name = f"{res.name}-{res.app_id}"
    direction = StudyDirection.MINIMIZE if spec.mode == "min" else StudyDirection.MAXIMIZE
    try:
        out = create_study(storage=url, study_name=name, direction=direction)
    except DuplicatedStudyError:
        delete_study(study_name=name, storage=url)
        out = create_study(storage=url, study_name=name, direction=direction)
    out.set_user_attr("metric", spec.metric)
    out.set_user_attr("algorithm", spec.algorithm)
    out.add_trials(study.trials)
    return url
