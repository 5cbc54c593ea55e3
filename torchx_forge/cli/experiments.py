"""``torchx forge validate | preview | plan``: experiment and pipeline files, checked and shown
without submitting anything (files with a ``search:`` section: :mod:`.search`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import yaml

from torchx_forge.appdef.meta import ForgeMeta
from torchx_forge.appdef.pipeline import Pipeline
from torchx_forge.appdef.stages import StepInfo, build_pipeline
from torchx_forge.appdef.sweep import space_groups
from torchx_forge.cli.plan import render_tree
from torchx_forge.cli.search import cmd_preview_search, cmd_validate_search
from torchx_forge.core import runrow, runtable
from torchx_forge.core.spacelines import json_lines
from torchx_forge.experiment.source import Source, read_yaml
from torchx_forge.experiment.spec import Experiment, load_experiment
from torchx_forge.experiment.stages import is_pipeline_file
from torchx_forge.experiment.sweep import base_of, count_runs, space_of
from torchx_forge.state.store import Store
from torchx_forge.state.tables import read_table

#: preview prints its table of runs this many rows at a time (a 1,000,000-run sweep starts at once)
BLOCK = 1000


def overrides(args: argparse.Namespace) -> List[str]:
    return ([args.set_] if args.set_ else []) + list(args.overrides)


Parsed = Tuple[Dict[str, Any], Source]


def _load(args: argparse.Namespace, parsed: Optional[Parsed] = None) -> Experiment:
    return load_experiment(args.config, overrides(args), parsed)


def _read(path: str) -> Tuple[str, Parsed]:
    """The file's kind (pipeline, search: a ``search:`` section, or experiment) and what it holds
    (read once: a file listing 100,000 values takes a while to read)."""
    cfg, source = read_yaml(path)
    if is_pipeline_file(cfg):
        return "pipeline", (cfg, source)
    return ("search" if isinstance(cfg, dict) and "search" in cfg else "experiment"), (cfg, source)


def _pipeline(args: argparse.Namespace) -> Tuple[Pipeline, Dict[str, StepInfo]]:
    """Build a pipeline file's steps with throwaway run tables (nothing is submitted)."""
    with tempfile.TemporaryDirectory() as scratch:
        return build_pipeline(args.config, overrides(args), Store(scratch).put_table)


def cmd_validate(args: argparse.Namespace) -> None:
    kind, parsed = _read(args.config)
    if kind == "search":
        cmd_validate_search(args.config, overrides(args))
        return
    if kind == "pipeline":
        pipe, infos = _pipeline(args)
        steps = ", ".join(f"{n} ({infos[n].runs} run(s){' per run' if infos[n].per_run else ''})" for n in pipe.order)
        print(f"{args.config}: OK, a pipeline of {len(pipe.order)} step(s): {steps}")
        return
    exp = _load(args, parsed)
    n = count_runs(exp)
    shapes = len(space_groups(exp, space_of(exp)))
    print(f"{args.config}: OK, {n:,} run(s) in {shapes} resource shape(s) (one job array each on slurm_forge)")


def _print_runs(rows: Iterable[Dict[str, Any]], as_json: bool) -> int:
    """Print the runs (JSON lines, streamed, or a table); returns how many."""
    if as_json:
        n = 0
        write, dumps = sys.stdout.write, json.dumps
        for r in rows:
            r.pop("command")
            write(dumps(r) + "\n")
            n += 1
        return n
    table = [["RUN", "RUN ID", "CASE", "PARAMETERS", "COMMAND"]]
    widths = [0] * len(table[0])
    n = 0
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        run = (f"{r['stage']}/" if r.get("stage") else "") + str(r["index"])
        table.append([run, r["id"], r["case"] or "-", params, r["command"]()])
        n += 1
        if len(table) >= BLOCK:  # a big sweep prints as it goes, a block at a time
            print(_aligned(table, widths), flush=True)
            table = []
    if table:
        print(_aligned(table, widths))
    return n


def _aligned(rows: List[List[str]], widths: List[int]) -> str:
    """Rows as aligned columns, for one block of a table printed in blocks: columns widen, never narrow."""
    widths[:] = [max(w, *(len(r[i]) for r in rows)) for i, w in enumerate(widths)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _pipeline_rows(args: argparse.Namespace) -> Iterator[Dict[str, Any]]:
    pipe, _ = _pipeline(args)
    for name in pipe.order:
        for table in {ForgeMeta.from_role(r).table for r in pipe.steps[name].app.roles}:
            for run in runtable.iter_runs(read_table(table)):
                yield {"stage": name, "index": run.index, "id": run.run_id, "case": run.case,
                       "params": dict(run.params), "command": lambda run=run: shlex.join(run.argv)}


def _experiment_rows(exp: Experiment) -> Iterator[Dict[str, Any]]:
    """Every run of a plain experiment, computed one at a time (the command only when shown)."""
    base = base_of(exp)
    for p in space_of(exp):
        yield {"index": p.index, "id": p.run_id, "case": p.case, "params": dict(p.params),
               "command": lambda p=p: shlex.join(runrow.resolve(base, p.params).argv)}


def cmd_preview(args: argparse.Namespace) -> None:
    kind, parsed = _read(args.config)
    if kind == "search":
        cmd_preview_search(args.config, overrides(args), args.json)
        return
    if kind == "experiment" and args.json:  # the lines are written in batches
        for lines in json_lines(space_of(_load(args, parsed))):
            sys.stdout.write(lines)
        return
    rows = _pipeline_rows(args) if kind == "pipeline" else _experiment_rows(_load(args, parsed))
    n = _print_runs(rows, args.json)
    if not args.json:
        print(f"{n} run(s) from {args.config}")


def cmd_plan(args: argparse.Namespace) -> None:
    """The plan as a tree, with each step's runs, resources and time limit and the critical path."""
    kind, (cfg, _) = _read(args.config)
    if kind == "pipeline":
        pipe, infos = _pipeline(args)
        print(render_tree(pipe.name, infos, pipe.order))
        return
    # a plain experiment is a one-step plan
    name = str(cfg.get("name", "app"))
    wrapped = {"name": name, "stages": {name: {k: v for k, v in cfg.items() if k not in ("name", "description")}}}
    folder = os.path.dirname(os.path.abspath(args.config))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=folder, prefix=".plan-", delete=False) as tmp:
        yaml.safe_dump(wrapped, tmp)
    try:
        pipe, infos = _pipeline(argparse.Namespace(config=tmp.name, set_=args.set_, overrides=args.overrides))
        print(render_tree(pipe.name, infos, pipe.order))
    finally:
        os.unlink(tmp.name)
