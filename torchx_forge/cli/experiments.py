"""``torchx forge validate | preview | plan``: experiment and pipeline files, checked and shown
without submitting anything."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from typing import Any, Dict, List, Tuple

import yaml

from torchx_forge.appdef.meta import ForgeMeta
from torchx_forge.appdef.pipeline import Pipeline
from torchx_forge.appdef.stages import StepInfo, build_pipeline
from torchx_forge.appdef.sweep import shape_of
from torchx_forge.cli.plan import render_tree
from torchx_forge.experiment.source import read_yaml
from torchx_forge.experiment.spec import Experiment, load_experiment
from torchx_forge.experiment.stages import is_pipeline_file
from torchx_forge.experiment.sweep import count_runs, expand, resolve
from torchx_forge.slurm.report import format_table
from torchx_forge.state.store import Store
from torchx_forge.state.tables import read_table


def overrides(args: argparse.Namespace) -> List[str]:
    return ([args.set_] if args.set_ else []) + list(args.overrides)


def _load(args: argparse.Namespace) -> Experiment:
    return load_experiment(args.config, overrides(args))


def _is_pipeline(path: str) -> bool:
    cfg, _ = read_yaml(path)
    return is_pipeline_file(cfg)


def _pipeline(args: argparse.Namespace) -> Tuple[Pipeline, Dict[str, StepInfo]]:
    """Build a pipeline file's steps with throwaway run tables (nothing is submitted)."""
    with tempfile.TemporaryDirectory() as scratch:
        return build_pipeline(args.config, overrides(args), Store(scratch).put_table)


def cmd_validate(args: argparse.Namespace) -> None:
    if _is_pipeline(args.config):
        pipe, infos = _pipeline(args)
        steps = ", ".join(f"{n} ({infos[n].runs} run(s){' per run' if infos[n].per_run else ''})" for n in pipe.order)
        print(f"{args.config}: OK, a pipeline of {len(pipe.order)} step(s): {steps}")
        return
    exp = _load(args)
    n = count_runs(exp)
    shapes = {shape_of(resolve(exp, r)) for r in expand(exp)}
    print(f"{args.config}: OK, {n} run(s) in {len(shapes)} resource shape(s) (one job array each on slurm_forge)")


def _print_runs(rows: List[Dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    table = [["RUN", "RUN ID", "CASE", "PARAMETERS", "COMMAND"]]
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        run = (f"{r['stage']}/" if r.get("stage") else "") + str(r["index"])
        table.append([run, r["id"], r["case"] or "-", params, r["command"]])
    print(format_table(table))


def cmd_preview(args: argparse.Namespace) -> None:
    rows = []
    if _is_pipeline(args.config):
        pipe, _ = _pipeline(args)
        for name in pipe.order:
            for table in {ForgeMeta.from_role(r).table for r in pipe.steps[name].app.roles}:
                for run in read_table(table)["runs"]:
                    rows.append({"stage": name, "index": run["index"], "id": run["run_id"], "case": run["case"],
                                 "params": dict(run["params"]), "command": shlex.join(run["argv"])})
    else:
        exp = _load(args)
        for r in expand(exp):
            rows.append({"index": r.index, "id": r.run_id, "case": r.case, "params": dict(r.params),
                         "command": shlex.join(resolve(exp, r).argv)})
    if args.json:
        _print_runs([{k: v for k, v in r.items() if k != "command"} for r in rows], True)
        return
    _print_runs(rows, False)
    print(f"{len(rows)} run(s) from {args.config}")


def cmd_plan(args: argparse.Namespace) -> None:
    """The plan as a tree, with each step's runs, resources and time limit and the critical path."""
    if _is_pipeline(args.config):
        pipe, infos = _pipeline(args)
        print(render_tree(pipe.name, infos, pipe.order))
        return
    cfg, _ = read_yaml(args.config)  # a plain experiment is a one-step plan
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
