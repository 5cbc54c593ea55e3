"""``torchx forge ...``: forge's own subcommands, added through the ``torchx.cli.cmds`` entry point.

    torchx forge validate --config exp.yaml [--set 'a=1;b=2'] [KEY=VALUE ...]
    torchx forge preview  --config exp.yaml [--json]
    torchx forge plan     --config pipe.yaml
    torchx forge cancel   slurm_forge://SESSION/APP_ID/ROLE/3,4
    torchx forge retry    slurm_forge://SESSION/APP_ID [--states FAILED,TIMEOUT]

TorchX's own verbs (run, status, log, cancel, list) are left as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Callable, Dict

from torchx.cli.cmd_base import SubCommand

from torchx_forge.errors import ForgeError


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment YAML file")
    p.add_argument("--set", dest="set_", default=None, help="overrides separated by ';', e.g. 'run.args.lr=0.1;sweep.max_runs=4'")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more overrides, typed as YAML")


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from torchx_forge.experiment import load_experiment

    return load_experiment(args.config, ([args.set_] if args.set_ else []) + list(args.overrides))


def cmd_validate(args: argparse.Namespace) -> None:
    from torchx_forge.appdefs import shape_of
    from torchx_forge.sweep import count_runs, expand, resolve

    exp = _load(args)
    n = count_runs(exp)
    shapes = {shape_of(resolve(exp, r)) for r in expand(exp)}
    print(f"{args.config}: OK, {n} run(s) in {len(shapes)} resource shape(s) (one job array each on slurm_forge)")


def cmd_preview(args: argparse.Namespace) -> None:
    from torchx_forge.status import format_table
    from torchx_forge.sweep import expand, resolve

    exp = _load(args)
    runs = expand(exp)
    if args.json:
        out = sys.stdout
        for r in runs:
            out.write(json.dumps({"index": r.index, "id": r.run_id, "case": r.case, "params": dict(r.params)}) + "\n")
        return
    rows = [["RUN", "RUN ID", "CASE", "PARAMETERS", "COMMAND"]]
    for r in runs:
        res = resolve(exp, r)
        params = " ".join(f"{k}={v}" for k, v in r.params) or "-"
        rows.append([str(r.index), r.run_id, r.case or "-", params, shlex.join(res.argv)])
    print(format_table(rows))
    print(f"{len(runs)} run(s) from {args.config}")


def cmd_plan(args: argparse.Namespace) -> None:
    """The plan as a tree, with each step's runs, resources and time limit and the critical path."""
    import tempfile

    import yaml

    from torchx_forge.pipeline import render_tree
    from torchx_forge.records import Store
    from torchx_forge.stages import build_pipeline

    texts = ([args.set_] if args.set_ else []) + list(args.overrides)
    path = args.config
    with open(path) as f:
        is_pipeline = isinstance(yaml.safe_load(f), dict) and "stages" in yaml.safe_load(open(path))
    if not is_pipeline:  # a plain experiment is a one-step plan
        from torchx_forge.experiment import read_yaml

        cfg, _ = read_yaml(path)
        wrapped = {"name": cfg.get("name", "app"), "stages": {cfg.get("name", "app"): {k: v for k, v in cfg.items() if k != "name"}}}
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=os.path.dirname(os.path.abspath(path)), delete=False)
        yaml.safe_dump(wrapped, tmp)
        tmp.close()
        path = tmp.name
    try:
        with tempfile.TemporaryDirectory() as scratch:  # the run tables of a preview are thrown away
            pipe, infos = build_pipeline(path, texts, Store(scratch))
            print(render_tree(pipe.name, infos, pipe.order))
    finally:
        if path != args.config:
            os.unlink(path)


def cmd_cancel(args: argparse.Namespace) -> None:
    from torchx_forge.scheduler import create_scheduler

    scheme, _, path = args.target.partition("://")
    parts = path.split("/")
    if scheme != "slurm_forge" or len(parts) != 4:
        raise ForgeError(f"expected slurm_forge://SESSION/APP_ID/ROLE/REPLICAS (e.g. .../demo/3,4), got {args.target!r}")
    _, app_id, role, replicas = parts
    try:
        ids = [int(x) for x in replicas.split(",") if x]
    except ValueError:
        raise ForgeError(f"replica ids must be numbers separated by ',', got {replicas!r}") from None
    cancelled = create_scheduler("torchx").cancel_replicas(app_id, role, ids)
    print(f"cancelled {', '.join(cancelled)}")


def _app_id(handle: str) -> str:
    scheme, _, path = handle.partition("://")
    parts = path.split("/")
    if scheme != "slurm_forge" or len(parts) != 2 or not parts[1]:
        raise ForgeError(f"expected an app handle slurm_forge://SESSION/APP_ID, got {handle!r}")
    return parts[1]


def cmd_retry(args: argparse.Namespace) -> None:
    from torchx_forge.scheduler import create_scheduler

    states = [s.strip().upper() for s in args.states.split(",")] if args.states else None
    done = create_scheduler("torchx").retry(_app_id(args.app_handle), states)
    if not done:
        print(f"{args.app_handle}: no ended task in {args.states or 'a failed or cancelled state'}; nothing resubmitted")
        return
    for job_id, tasks in done:
        print(f"resubmitted {', '.join(tasks)} as job {job_id}")
    print(f"follow them with: torchx status {args.app_handle}")


COMMANDS: Dict[str, Callable[[argparse.Namespace], None]] = {
    "validate": cmd_validate,
    "preview": cmd_preview,
    "plan": cmd_plan,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
}


class CmdForge(SubCommand):
    """torchx-forge's commands: validate and preview experiment files, cancel single runs."""

    def add_arguments(self, subparser: argparse.ArgumentParser) -> None:
        sub = subparser.add_subparsers(dest="forge_cmd", metavar="COMMAND")
        v = sub.add_parser("validate", help="check an experiment file; print how many runs it expands to")
        _experiment_args(v)
        p = sub.add_parser("preview", help="list every run an experiment file expands to, without submitting")
        _experiment_args(p)
        p.add_argument("--json", action="store_true", help="one JSON object per run (index, id, case, params)")
        t = sub.add_parser("plan", help="a pipeline (or experiment) as a tree with resources, time limits and the critical path")
        _experiment_args(t)
        c = sub.add_parser("cancel", help="cancel single runs of a sweep: slurm_forge://SESSION/APP/ROLE/3,4")
        c.add_argument("target")
        r = sub.add_parser("retry", help="resubmit the failed or cancelled tasks of an app, resuming from checkpoints")
        r.add_argument("app_handle", help="slurm_forge://SESSION/APP_ID")
        r.add_argument("--states", default=None, help="end states to resubmit, comma separated (default: all but COMPLETED)")

    def run(self, args: argparse.Namespace) -> None:
        if not getattr(args, "forge_cmd", None):
            print("usage: torchx forge {" + ",".join(COMMANDS) + "} ... (see torchx forge -h)", file=sys.stderr)
            sys.exit(2)
        try:
            COMMANDS[args.forge_cmd](args)
        except ForgeError as e:
            print(f"torchx forge {args.forge_cmd}: error: {e}", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:  # e.g. `torchx forge preview ... | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
