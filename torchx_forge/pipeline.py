"""Pipelines: steps wired with Slurm dependencies, as one AppDef (pure).

In Python, steps nest in sequential and parallel groups (planit's Chain/Parallel)::

    from torchx_forge.pipeline import Par, Pipeline, Seq, Step
    pipe = Pipeline("exp", Seq(Step("prepare", prep_app), Par(Step("a", a_app), Step("b", b_app)), Step("join", j_app)))
    app = pipe.to_appdef()          # run it with any scheduler; slurm_forge wires the dependencies

In an experiment file, ``stages:`` maps step names to a run (optionally with its own
sweep), ``after:`` lists the steps it waits for, ``per_run: true`` makes a step
follow a sweep run by run (its run i has training run i's FORGE_RUN_INDEX and
FORGE_RUN_ID; on Slurm an ``aftercorr`` array), ``when:`` picks how a join waits
(``all_ok``, the default, or ``any_done``). Every step's Slurm options come from
the file's defaults plus its own keys only, never from another step.

Each role carries ``metadata["forge"]["stage"]`` and ``["after"]``: a list of
``{"stage": S, "type": "afterok"|"afterany"|"afternotok", "per_run": bool}`` or
``{"job": "12345", "type": ...}`` for jobs outside the pipeline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from torchx import specs

from torchx_forge.errors import ConfigError
from torchx_forge.slurm_time import format_duration, parse_slurm_time

DEP_TYPES = ("afterok", "afterany", "afternotok")
META_KEY = "forge"


@dataclass
class Step:
    """One step: an AppDef (any component's), what it waits for and how."""

    name: str
    app: specs.AppDef
    after: List[str] = field(default_factory=list)
    when: str = "afterok"
    per_run: bool = False
    external: List[str] = field(default_factory=list)  # Slurm job ids outside the pipeline


Node = Union[Step, "Seq", "Par"]


@dataclass
class Seq:
    """Children run one after the other."""

    children: Tuple[Node, ...]

    def __init__(self, *children: Node) -> None:
        self.children = children


@dataclass
class Par:
    """Children run side by side, after the same parents."""

    children: Tuple[Node, ...]

    def __init__(self, *children: Node) -> None:
        self.children = children


def _wire(node: Node, parents: List[str], steps: List[Step]) -> List[str]:
    """Add ``parents`` as dependencies of the node's first steps; return its last steps."""
    if isinstance(node, Step):
        node.after = list(dict.fromkeys(node.after + parents))
        steps.append(node)
        return [node.name]
    if isinstance(node, Seq):
        for child in node.children:
            parents = _wire(child, parents, steps)
        return parents
    leaves: List[str] = []
    for child in node.children:
        leaves += _wire(child, parents, steps)
    return leaves


class Pipeline:
    """A DAG of steps. Build it from nested Seq/Par, or from a list of steps with ``after``."""

    def __init__(self, name: str, root: Union[Node, Sequence[Step]]) -> None:
        self.name = name
        steps: List[Step] = []
        if isinstance(root, (Step, Seq, Par)):
            _wire(copy.deepcopy(root), [], steps)
        else:
            steps = list(root)
        self.steps: Dict[str, Step] = {}
        for s in steps:
            if s.name in self.steps:
                raise ConfigError(f"pipeline {name!r}", f"two steps are named {s.name!r}; step names must be unique")
            self.steps[s.name] = s
        self.order = topological_order({s.name: s.after for s in steps}, f"pipeline {name!r}")
        for s in steps:
            if s.when not in DEP_TYPES:
                raise ConfigError(f"step {s.name!r}", f"when {s.when!r}: expected one of {', '.join(DEP_TYPES)}")
            if s.per_run and len(s.after) != 1:
                raise ConfigError(f"step {s.name!r}", "per_run follows exactly one step (the sweep it evaluates)")

    def to_appdef(self) -> specs.AppDef:
        """One AppDef: every step's roles, renamed ``<step>`` / ``<step>.<role>``, tagged with their dependencies."""
        roles: List[specs.Role] = []
        for name in self.order:
            step = self.steps[name]
            for role in step.app.roles:
                r = copy.deepcopy(role)
                if role.name != name and not role.name.startswith(f"{name}-"):  # experiment steps are named already
                    r.name = name if len(step.app.roles) == 1 else f"{name}.{role.name}"
                meta = dict(r.metadata.get(META_KEY) or {}) if isinstance(r.metadata, dict) else {}
                deps = [{"stage": a, "type": step.when, "per_run": step.per_run} for a in step.after]
                deps += [{"job": j, "type": step.when} for j in step.external]
                meta.update(stage=name, after=deps, pipeline=True)
                r.metadata = {**(r.metadata or {}), META_KEY: meta}
                roles.append(r)
        return specs.AppDef(name=self.name, roles=roles, metadata={"forge/pipeline": ",".join(self.order)})


def topological_order(after: Dict[str, List[str]], where: str) -> List[str]:
    """Steps in an order where every step comes after those it waits for; errors on cycles and unknown names."""
    for name, deps in after.items():
        for d in deps:
            if d not in after:
                raise ConfigError(f"{where} step {name!r}", f"waits for {d!r}, which is not a step; steps: {', '.join(after)}")
    order: List[str] = []
    state: Dict[str, int] = {}

    def visit(n: str, path: List[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n):] + [n]
            raise ConfigError(f"{where}", f"steps wait for each other in a cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for d in after[n]:
            visit(d, path + [n])
        state[n] = 2
        order.append(n)

    for n in after:
        visit(n, [])
    return order


# -- the plan preview ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepInfo:
    """What the preview shows of a step: its size, resources and time limit."""

    name: str
    after: Tuple[str, ...]
    runs: int
    resources: str
    time_limit: Optional[str]
    per_run: bool = False
    when: str = "afterok"

    @property
    def seconds(self) -> Optional[int]:
        return parse_slurm_time(self.time_limit) if self.time_limit else None


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
    path, cur = [], end
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
        when = "" if s.when == "afterok" else f" {s.when}"
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
