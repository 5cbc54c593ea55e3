"""A metric against a swept parameter, one colour per case, saved as an image (matplotlib, an
optional extra: ``pip install 'torchx-forge[plot]'``). Everything but :func:`plot` is pure."""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge.errors import ForgeError
from torchx_forge.results.export import fmt
from torchx_forge.results.metrics import METRICS_CSV, METRICS_JSON
from torchx_forge.results.runs import Results

PLOT_HINT = "pip install 'torchx-forge[plot]'"


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


def figure() -> Any:
    """A blank matplotlib figure drawn with Agg (ForgeError naming the extra to install without matplotlib)."""
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
    fig = figure()
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
