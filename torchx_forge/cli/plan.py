"""``torchx forge plan``'s view: a pipeline's steps as a tree, and its critical path (pure)."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from torchx_forge.appdef.stages import StepInfo
from torchx_forge.core.slurm_time import format_duration
from torchx_forge.core.states import DepKind


def critical_path(steps: Dict[str, StepInfo], order: List[str]) -> Tuple[Optional[int], List[str], List[str]]:
    """(best-case seconds, the path, steps without a time limit) — queue time excluded.

    A step's runs are taken to run side by side, so a step lasts its time limit; the
    pipeline lasts the longest chain of steps. Unlimited steps make the estimate None.
    """
    finish: Dict[str, Tuple[int, int]] = {}  # (seconds, steps): ties go to the longer chain
    via: Dict[str, Optional[str]] = {}
    missing = [n for n in order if steps[n].seconds is None]
    for n in order:
        start, prev = (0, 0), None
        for d in steps[n].after:
            if finish[d] > start:
                start, prev = finish[d], d
        finish[n] = (start[0] + (steps[n].seconds or 0), start[1] + 1)
        via[n] = prev
    if not order:
        return 0, [], []
    end = max(order, key=lambda n: finish[n])
    path: List[str] = []
    cur: Optional[str] = end
    while cur is not None:
        path.append(cur)
        cur = via[cur]
    return (None if missing else finish[end][0]), list(reversed(path)), missing


def render_tree(name: str, steps: Dict[str, StepInfo], order: List[str]) -> str:
    """A tree of the plan: each step under the steps it waits for, with runs, resources and time."""
    children: Dict[str, List[str]] = {n: [] for n in order}
    roots = []
    for n in order:
        if steps[n].after:
            children[steps[n].after[-1]].append(n)
        else:
            roots.append(n)
    lines = [f"{name}"]

    def label(n: str) -> str:
        s = steps[n]
        waits = ""
        if len(s.after) > 1:
            waits = f"  (after {', '.join(s.after)})"
        kind = " per run" if s.per_run else ""
        when = "" if s.when is DepKind.AFTEROK else f" {s.when}"
        limit = s.time_limit or "no time limit"
        return f"{n}: {s.runs} run(s){kind}{when}, {s.resources}, {limit}{waits}"

    def walk(n: str, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label(n)}")
        kids = children[n]
        for i, k in enumerate(kids):
            walk(k, prefix + ("    " if last else "│   "), i == len(kids) - 1)

    for i, r in enumerate(roots):
        walk(r, "", i == len(roots) - 1)
    total, path, missing = critical_path(steps, order)
    if total is None:
        lines.append(f"critical path: {' -> '.join(path)}; no estimate: no time limit on {', '.join(missing)}")
    else:
        lines.append(f"critical path: {' -> '.join(path)} = {format_duration(total)} best case (queue time excluded)")
    return "\n".join(lines)
