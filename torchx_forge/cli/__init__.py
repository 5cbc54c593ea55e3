"""``torchx forge ...``: forge's own subcommands, added through the ``torchx.cli.cmds`` entry point.

    torchx forge validate --config exp.yaml [--set 'a=1;b=2'] [KEY=VALUE ...]
    torchx forge preview  --config exp.yaml [--json]
    torchx forge plan     --config pipe.yaml
    torchx forge cancel   slurm_forge://SESSION/APP_ID/ROLE/3,4
    torchx forge retry    slurm_forge://SESSION/APP_ID [--states FAILED,TIMEOUT]
    torchx forge results  slurm_forge://SESSION/APP_ID [--metric NAME] [--stage STEP]
                          [--csv FILE] [--json FILE] [--plot FILE.png --x PARAM]
                          (a search, forge.search: one row per trial; --plot FILE.png [--x trial])
    torchx forge watch    [slurm_forge://SESSION/APP_ID ...] [--once] [--interval S]
    torchx forge init     {command,script,ddp} [DIR]
    torchx forge examples [NAME]

TorchX's own verbs (run, status, log, cancel, list) are left as they are. TorchX imports this
module for every command it runs, so it holds only the argument parser; each subcommand's module
(:mod:`.experiments`, :mod:`.apps`, :mod:`.results`, :mod:`.watch`, :mod:`.starters`) is imported when that subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Dict, Tuple

from torchx.cli.cmd_base import SubCommand
from torchx.cli.cmd_cancel import CmdCancel as TorchxCancel
from torchx.specs.api import parse_app_handle

from torchx_forge.compat import withdraw_forge_entry_points
from torchx_forge.core import envvars
from torchx_forge.errors import ForgeError

withdraw_forge_entry_points()  # TorchX main: before it reads the schedulers (no effect on torchx 0.7)

#: subcommand -> (module, function)
COMMANDS: Dict[str, Tuple[str, str]] = {
    "validate": ("torchx_forge.cli.experiments", "cmd_validate"),
    "preview": ("torchx_forge.cli.experiments", "cmd_preview"),
    "plan": ("torchx_forge.cli.experiments", "cmd_plan"),
    "cancel": ("torchx_forge.cli.apps", "cmd_cancel"),
    "retry": ("torchx_forge.cli.apps", "cmd_retry"),
    "budget": ("torchx_forge.cli.apps", "cmd_budget"),
    "results": ("torchx_forge.cli.results", "cmd_results"),
    "watch": ("torchx_forge.cli.watch", "cmd_watch"),
    "init": ("torchx_forge.cli.starters", "cmd_init"),
    "examples": ("torchx_forge.cli.starters", "cmd_examples"),
}
STARTER_TYPES = {
    "command": "wrap an existing command (a shell script here) in a sweep with retries, then evaluate each run",
    "script": "a Python training script with resume, a learning-rate sweep, and an evaluation per run",
    "ddp": "a DDP (torchrun, multi-node) training script, swept, with resume, and an evaluation per run",
}


def _experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment YAML file")
    p.add_argument("--set", dest="set_", default=None, help="overrides separated by ';', e.g. 'run.args.lr=0.1;sweep.max_runs=4'")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more overrides, typed as YAML")


class CmdCancel(TorchxCancel):
    """``torchx cancel``: for slurm_forge apps, an app nobody knows is an error (as it is for
    ``torchx status``), and cancelling covers everything the app left (companions, pipeline steps,
    a submission its client never finished). Other schedulers' apps go to TorchX's own cancel."""

    def run(self, args: argparse.Namespace) -> None:
        scheduler, _, _ = parse_app_handle(args.app_handle)
        if scheduler != "slurm_forge":
            super().run(args)
            return
        try:
            importlib.import_module("torchx_forge.cli.apps").cmd_cancel_app(args)
        except ForgeError as e:
            print(f"torchx cancel: error: {e}", file=sys.stderr)
            sys.exit(1)


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
        b = sub.add_parser("budget", help="raise a running search's budget of trials (up to its search.max_trials)")
        b.add_argument("app_handle", help="slurm_forge://SESSION/APP_ID of a search (forge.search)")
        b.add_argument("--trials", type=int, required=True, help="the new budget: how many trials at most")
        s = sub.add_parser("results", help="a table of every run's parameters, state and metrics"
                              f" ({envvars.RESULT_DIR.name}/metrics.json)")
        s.add_argument("app_handle", help="slurm_forge://SESSION/APP_ID")
        s.add_argument("--metric", default=None, help="show only this metric (default: every metric found)")
        s.add_argument("--stage", default=None, help="pipelines: the step to show (default: the last step with a run table)")
        s.add_argument("--csv", default=None, metavar="FILE", help="also write the rows to a CSV file")
        s.add_argument("--json", default=None, metavar="FILE", help="also write the rows to a JSON file (a list of objects)")
        s.add_argument("--plot", default=None, metavar="FILE.png",
                       help="save a plot of the metric against --x (needs matplotlib); a search: by trial by default")
        s.add_argument("--x", default=None, metavar="PARAM",
                       help="the parameter on the plot's x axis, e.g. run.args.lr; a search: also 'trial' (its metric"
                            " by trial number, with the best so far)")
        s.add_argument("--optuna", default=None, metavar="FILE.db",
                       help="a search: also write its study to this SQLite file, for optuna-dashboard sqlite:///FILE.db")
        w = sub.add_parser("watch", help="follow apps (default: all of yours not ended) in one Slurm call per poll")
        w.add_argument("app_handles", nargs="*", metavar="HANDLE", help="slurm_forge://SESSION/APP_ID (default: every app)")
        w.add_argument("--once", action="store_true", help="print the table once and exit")
        w.add_argument("--interval", type=float, default=2.0, help="first pause between polls, seconds (default 2)")
        w.add_argument("--max-interval", type=float, default=60.0,
                       help="longest pause while nothing changes, seconds (default 60)")

    def run(self, args: argparse.Namespace) -> None:
        if not getattr(args, "forge_cmd", None):
            print("usage: torchx forge {" + ",".join(COMMANDS) + "} ... (see torchx forge -h)", file=sys.stderr)
            sys.exit(2)
        try:
            module, func = COMMANDS[args.forge_cmd]
            getattr(importlib.import_module(module), func)(args)
        except ForgeError as e:
            print(f"torchx forge {args.forge_cmd}: error: {e}", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:  # e.g. `torchx forge preview ... | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
