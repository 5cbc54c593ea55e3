"""``torchx forge ...``: forge's own subcommands, added through the ``torchx.cli.cmds`` entry point.

    torchx forge validate --config exp.yaml [--set 'a=1;b=2'] [KEY=VALUE ...]
    torchx forge preview  --config exp.yaml [--json]
    torchx forge plan     --config pipe.yaml
    torchx forge cancel   slurm_forge://SESSION/APP_ID/ROLE/3,4
    torchx forge retry    slurm_forge://SESSION/APP_ID [--states FAILED,TIMEOUT]
    torchx forge results  slurm_forge://SESSION/APP_ID [--metric NAME] [--stage STEP]
                          [--csv FILE] [--json FILE] [--plot FILE.png --x PARAM]
    torchx forge init     {command,script,ddp} [DIR]
    torchx forge examples [NAME]

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

from torchx_forge.errors import ForgeError, in_torchx_cli, install_cli_excepthook

if in_torchx_cli():  # torchx imports this module for every command: keep user errors to one line
    install_cli_excepthook()


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment YAML file")
    p.add_argument("--set", dest="set_", default=None, help="overrides separated by ';', e.g. 'run.args.lr=0.1;sweep.max_runs=4'")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more overrides, typed as YAML")


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from torchx_forge.experiment import load_experiment

    return load_experiment(args.config, ([args.set_] if args.set_ else []) + list(args.overrides))


def _is_pipeline(path: str) -> bool:
    from torchx_forge.experiment import read_yaml

    cfg, _ = read_yaml(path)
    return "stages" in cfg


def _pipeline(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Build a pipeline file's steps with throwaway run tables (nothing is submitted)."""
    import tempfile

    from torchx_forge.records import Store
    from torchx_forge.stages import build_pipeline

    with tempfile.TemporaryDirectory() as scratch:
        return build_pipeline(args.config, ([args.set_] if args.set_ else []) + list(args.overrides), Store(scratch))


def cmd_validate(args: argparse.Namespace) -> None:
    from torchx_forge.appdefs import shape_of
    from torchx_forge.sweep import count_runs, expand, resolve

    if _is_pipeline(args.config):
        pipe, infos = _pipeline(args)
        steps = ", ".join(f"{n} ({infos[n].runs} run(s){' per run' if infos[n].per_run else ''})" for n in pipe.order)
        print(f"{args.config}: OK, a pipeline of {len(pipe.order)} step(s): {steps}")
        return
    exp = _load(args)
    n = count_runs(exp)
    shapes = {shape_of(resolve(exp, r)) for r in expand(exp)}
    print(f"{args.config}: OK, {n} run(s) in {len(shapes)} resource shape(s) (one job array each on slurm_forge)")


def _print_runs(rows: list, as_json: bool) -> None:
    from torchx_forge.status import format_table

    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    table = [["RUN", "RUN ID", "CASE", "PARAMETERS", "COMMAND"]]
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        table.append([(f"{r['stage']}/" if r.get("stage") else "") + str(r["index"]), r["id"], r["case"] or "-", params, r["command"]])
    print(format_table(table))


def cmd_preview(args: argparse.Namespace) -> None:
    from torchx_forge.sweep import expand, resolve

    rows = []
    if _is_pipeline(args.config):
        from torchx_forge.appdefs import read_table

        pipe, _ = _pipeline(args)
        for name in pipe.order:
            for table in {r.metadata["forge"]["table"] for r in pipe.steps[name].app.roles}:
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
    import tempfile

    import yaml

    from torchx_forge.pipeline import render_tree

    if _is_pipeline(args.config):
        pipe, infos = _pipeline(args)
        print(render_tree(pipe.name, infos, pipe.order))
        return
    from torchx_forge.experiment import read_yaml

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


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
STARTER_TYPES = {
    "command": "wrap an existing command (a shell script here) in a sweep with retries, then evaluate each run",
    "script": "a Python training script with resume, a learning-rate sweep, and an evaluation per run",
    "ddp": "a DDP (torchrun, multi-node) training script, swept, with resume, and an evaluation per run",
}


def cmd_init(args: argparse.Namespace) -> None:
    """Write a ready-to-run starter project: experiment.yaml, train and eval scripts, .torchxconfig."""
    import shutil

    if args.type not in STARTER_TYPES:
        raise ForgeError(f"unknown starter type {args.type!r}; choose one of: {', '.join(STARTER_TYPES)}")
    target = os.path.abspath(args.directory)
    files = {os.path.join(PACKAGE_DIR, "starters", args.type, n): n for n in os.listdir(os.path.join(PACKAGE_DIR, "starters", args.type))}
    common = os.path.join(PACKAGE_DIR, "starters", "common")
    files[os.path.join(common, "torchxconfig")] = ".torchxconfig"
    if args.type != "command":
        files[os.path.join(common, "eval.py")] = "eval.py"
    clashes = [n for n in files.values() if os.path.exists(os.path.join(target, n))]
    if clashes and not args.force:
        raise ForgeError(f"{target} already has {', '.join(sorted(clashes))}; pick an empty directory or pass --force")
    os.makedirs(target, exist_ok=True)
    for src, name in sorted(files.items(), key=lambda kv: kv[1]):
        shutil.copyfile(src, os.path.join(target, name))
        print(f"  wrote {os.path.join(args.directory, name)}")
    print(f"{args.type} starter in {args.directory}: {STARTER_TYPES[args.type]}\nnext: cd {args.directory} &&"
          " torchx forge validate --config experiment.yaml && torchx run forge.pipeline --config experiment.yaml")


def cmd_examples(args: argparse.Namespace) -> None:
    """List the shipped example files, or print one."""
    folder = os.path.join(PACKAGE_DIR, "examples")
    names = sorted(n for n in os.listdir(folder) if n.endswith((".yaml", ".py")))
    if not args.name:
        for n in names:
            with open(os.path.join(folder, n)) as f:
                first = next((line.strip("# \n\"") for line in f if line.strip() and not line.startswith("#!")), "")
            print(f"  {n:<18} {first}")
        print(f"print one with: torchx forge examples NAME   (they live in {folder})")
        return
    if args.name not in names:
        raise ForgeError(f"no example {args.name!r}; examples: {', '.join(names)}")
    with open(os.path.join(folder, args.name)) as f:
        sys.stdout.write(f.read())


def cmd_results(args: argparse.Namespace) -> None:
    """One row per run: parameters, state, attempts, exit code and the metrics in each result dir."""
    from torchx_forge import results as rs
    from torchx_forge.scheduler import create_scheduler
    from torchx_forge.status import format_table

    app_id = _app_id(args.app_handle)
    if bool(args.plot) != bool(args.x):
        raise ForgeError("--plot FILE.png and --x PARAM go together (e.g. --plot lr.png --x run.args.lr)")
    res = rs.load(create_scheduler("torchx"), app_id, args.stage)
    metrics = rs.select_metrics(res, args.metric)
    if args.plot:  # check before writing anything
        metric = rs.plot_metric(res, args.metric)
        rs.check_param(res, args.x)
    print(f"{res.title}: {len(res.runs)} run(s)")
    print(format_table(rs.table_rows(res, metrics)))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    if not res.metrics():
        print(f"note: no run has written {rs.METRICS_JSON} (or {rs.METRICS_CSV}) in its FORGE_RESULT_DIR yet",
              file=sys.stderr)
    rows = rs.rows_of(res, metrics)
    if args.csv:
        rs.write_csv(args.csv, rows)
        print(f"wrote {args.csv}")
    if args.json:
        rs.write_json(args.json, rows)
        print(f"wrote {args.json}")
    if args.plot:
        n = rs.plot(res, metric, args.x, args.plot)
        print(f"wrote {args.plot} ({metric} vs {args.x}, {n} point(s))")


COMMANDS: Dict[str, Callable[[argparse.Namespace], None]] = {
    "validate": cmd_validate,
    "preview": cmd_preview,
    "plan": cmd_plan,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "init": cmd_init,
    "examples": cmd_examples,
    "results": cmd_results,
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
        i = sub.add_parser("init", help="write a ready-to-run starter project (" + ", ".join(STARTER_TYPES) + ")")
        i.add_argument("type", help="; ".join(f"{k}: {v}" for k, v in STARTER_TYPES.items()))
        i.add_argument("directory", nargs="?", default=".", help="where to write it (default: here)")
        i.add_argument("--force", action="store_true", help="overwrite files that exist")
        e = sub.add_parser("examples", help="list the shipped example files, or print one")
        e.add_argument("name", nargs="?", help="the example to print")
        r = sub.add_parser("retry", help="resubmit the failed or cancelled tasks of an app, resuming from checkpoints")
        r.add_argument("app_handle", help="slurm_forge://SESSION/APP_ID")
        r.add_argument("--states", default=None, help="end states to resubmit, comma separated (default: all but COMPLETED)")
        s = sub.add_parser("results", help="a table of every run's parameters, state and metrics (FORGE_RESULT_DIR/metrics.json)")
        s.add_argument("app_handle", help="slurm_forge://SESSION/APP_ID")
        s.add_argument("--metric", default=None, help="show only this metric (default: every metric found)")
        s.add_argument("--stage", default=None, help="pipelines: the step to show (default: the last step with a run table)")
        s.add_argument("--csv", default=None, metavar="FILE", help="also write the rows to a CSV file")
        s.add_argument("--json", default=None, metavar="FILE", help="also write the rows to a JSON file (a list of objects)")
        s.add_argument("--plot", default=None, metavar="FILE.png", help="save a plot of the metric against --x (needs matplotlib)")
        s.add_argument("--x", default=None, metavar="PARAM", help="the parameter on the plot's x axis, e.g. run.args.lr")

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
