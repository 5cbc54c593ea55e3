"""Pipelines in Python: steps wired with Slurm dependencies, as one AppDef (pure).

Steps nest in sequential and parallel groups (planit's Chain/Parallel)::

    from torchx_forge.appdef.pipeline import Par, Pipeline, Seq, Step
    pipe = Pipeline("exp", Seq(Step("prepare", prep_app), Par(Step("a", a_app), Step("b", b_app)), Step("join", j_app)))
    app = pipe.to_appdef()          # run it with any scheduler; slurm_forge wires the dependencies

A step waits for the steps before it with ``when`` (``afterok``, the default, ``afterany`` or
``afternotok``); ``per_run=True`` makes a step follow a sweep run by run (on Slurm an
``aftercorr`` array). Pipeline files (``stages:``) become the same :class:`Pipeline`
(:mod:`torchx_forge.appdef.stages`). Each role of the AppDef carries its step and what it waits
for in its :class:`~torchx_forge.appdef.meta.ForgeMeta`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple, Union

from torchx import specs

from torchx_forge.appdef.meta import Dependency, ForgeMeta
from torchx_forge.core.record import replace
from torchx_forge.core.states import STEP_DEP_KINDS, DepKind
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.stages import topological_order


@dataclass
class Step:
    """One step: an AppDef (any component's), what it waits for and how."""

    name: str
    app: specs.AppDef
    after: List[str] = field(default_factory=list)
    when: str = DepKind.AFTEROK.value
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
        kinds = [k.value for k in STEP_DEP_KINDS]
        for s in steps:
            if s.when not in kinds:
                raise ConfigError(f"step {s.name!r}", f"when {s.when!r}: expected one of {', '.join(kinds)}")
            if s.per_run and len(s.after) != 1:
                raise ConfigError(f"step {s.name!r}", "per_run follows exactly one step (the sweep it evaluates)")

    def to_appdef(self) -> specs.AppDef:
        """One AppDef: every step's roles, renamed ``<step>`` / ``<step>.<role>``, tagged with their dependencies."""
        roles: List[specs.Role] = []
        for name in self.order:
            step = self.steps[name]
            kind = DepKind(step.when)
            deps = tuple(Dependency(kind, stage=a, per_run=step.per_run) for a in step.after) + tuple(
                Dependency(kind, job=j) for j in step.external)
            for role in step.app.roles:
                r = copy.deepcopy(role)
                if role.name != name and not role.name.startswith(f"{name}-"):  # experiment steps are named already
                    r.name = name if len(step.app.roles) == 1 else f"{name}.{role.name}"
                roles.append(replace(ForgeMeta.from_role(role), stage=name, after=deps).apply(r))
        return specs.AppDef(name=self.name, roles=roles, metadata={"forge/pipeline": ",".join(self.order)})
