"""Runs one sweep point: ``python -m torchx_forge.node.task --table T --role R --replica K``.

Scheduler-agnostic (slurm_forge, local_cwd, ...): it looks up run K of role R in
the run table, sets ``FORGE_RUN_INDEX``, ``FORGE_RUN_ID``, ``FORGE_RUN_CASE`` and
the run's env, changes to the run's working directory and replaces itself with
the run's program. Outside slurm_forge it also applies the checkpoint/resume
contract (:mod:`torchx_forge.node.contract`) itself. Outside Slurm, ``--local-parallel N`` makes at most N points
run at once on this machine (stock local_cwd starts every replica together):
each point first takes one of N lock slots and holds it until it exits.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from torchx_forge.core import envvars, runtable
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.core.record import record
from torchx_forge.core.runrow import RunRow
from torchx_forge.core.states import DepKind
from torchx_forge.core.storage import store_wait
from torchx_forge.node import contract
from torchx_forge.node.checkpoint import CheckpointError
from torchx_forge.node.handoff import choose_input, upstream_env, wait_for_upstream
from torchx_forge.node.summary import report_run
from torchx_forge.state.files import be_patient
from torchx_forge.state.tables import read_table

if TYPE_CHECKING:
    import argparse


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    import argparse  # noqa: PLC0415 (the launcher runs a sweep point in its own process, without this CLI)

    p = argparse.ArgumentParser(prog="python -m torchx_forge.node.task")
    p.add_argument("--table", required=True)
    p.add_argument("--role", required=True)
    p.add_argument("--replica", required=True, type=int)
    p.add_argument("--app-id", default=None)
    p.add_argument("--local-parallel", type=int, default=None)
    p.add_argument("--stage", default=None)
    p.add_argument("--wait-for", default=None, help="(pipelines, outside Slurm) JSON list of upstream steps")
    return p.parse_args(list(argv))


def run_env(run: RunRow, base: Dict[str, str]) -> Dict[str, str]:
    env = dict(base)
    env.update(run.env)
    env[envvars.RUN_INDEX.name] = str(run.index)
    env[envvars.RUN_ID.name] = run.run_id
    env[envvars.RUN_CASE.name] = run.case
    if run.resume_arg:
        env[envvars.RESUME_ARG.name] = run.resume_arg
    if run.params_json:
        env[envvars.RUN_PARAMS.name] = run.params_json
    return env


def acquire_slot(key: str, slots: int) -> int:
    """Block until one of ``slots`` lock files for ``key`` is free; return its fd (kept across exec)."""
    import tempfile  # noqa: PLC0415 (only tasks that share a node's slots)

    lock_dir = os.path.join(tempfile.gettempdir(), f"torchx_forge-{os.getuid()}", "slots", key)
    os.makedirs(lock_dir, exist_ok=True)
    waited = False
    while True:
        for k in range(slots):
            fd = os.open(os.path.join(lock_dir, f"slot-{k}"), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.set_inheritable(fd, True)
            return fd
        if not waited:
            print(f"torchx-forge: waiting for one of {slots} local slots", file=sys.stderr, flush=True)
            waited = True
        time.sleep(0.2)


def _gate(run: RunRow, env: Dict[str, str], wait_for: Optional[str]) -> Optional[str]:
    """Outside Slurm, wait for the upstream steps; returns why this run is skipped, if it is."""
    if not wait_for or "SLURM_JOB_ID" in os.environ or not run.upstream:
        return None
    kind = DepKind(json.loads(wait_for)[0].get("type", DepKind.AFTEROK))
    ok, failed = wait_for_upstream(run, env)
    if kind is DepKind.AFTEROK and failed:
        return f"upstream run(s) {','.join(map(str, failed))} failed"
    if kind is DepKind.AFTERNOTOK and not failed:
        return "every upstream run succeeded (this step runs after a failure only)"
    return None


def _handoff(run: RunRow, env: Dict[str, str], argv: List[str]) -> List[str]:
    """Upstream results for pipeline steps: FORGE_UPSTREAM_* and, per run, FORGE_INPUT_CHECKPOINT."""
    upstream_env(run, env)
    chosen = choose_input(run, env)
    if chosen:
        env[envvars.INPUT_CHECKPOINT.name] = chosen
        flag = run.inputs.arg if run.inputs else None
        if flag:
            argv = argv + [flag, chosen]
    return argv


class RunError(Exception):
    """A run that cannot start: the message for its log, and the exit code to end with."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@record(frozen=False)
class Prepared:
    """What a run executes: its argv, env and working directory; or why it is skipped."""

    argv: List[str]
    env: Dict[str, str]
    workdir: Optional[str]
    skip: str = ""


def prepare(run: RunRow, base: Dict[str, str], app_id: Optional[str] = None,
            wait_for: Optional[str] = None) -> Prepared:
    """A run's command, ready to start: its env, the checkpoint contract (outside slurm_forge,
    whose launcher applies it), the pipeline handoff and its working directory (RunError if not)."""
    env = run_env(run, base)
    if envvars.CHECKPOINT_DIR.name not in base:  # e.g. local_cwd: no forge launcher around this run
        env.setdefault(envvars.APP_ID.name, app_id or "local")
        try:
            contract.apply(env, run.run_id, run.checkpoint_dir or None)
        except (CheckpointError, OSError) as e:
            raise RunError(f"run {run.run_id}: cannot choose a checkpoint to resume from: {e}") from None
    try:
        skip = _gate(run, env, wait_for)
    except NewerFormatError as e:  # an upstream run's summary
        raise RunError(f"run {run.run_id}: cannot tell how its upstream runs ended: {e}") from None
    if skip:
        return Prepared([], env, None, skip)
    try:
        argv = _handoff(run, env, contract.resume_argv(list(run.argv), env))
    except (CheckpointError, OSError, ValueError, NewerFormatError) as e:
        raise RunError(f"run {run.run_id}: cannot choose its input checkpoint: {e}") from None
    try:  # under a search: the trial's parameters (the launcher prepares sweep runs in process, too)
        argv = search_trial(argv, env)
    except (OSError, ValueError, KeyError) as e:
        raise RunError(f"run {run.run_id}: cannot read its search trial: {e}") from None
    workdir = run.workdir or None
    if workdir and not os.path.isdir(workdir):
        raise RunError(f"run {run.run_id}: cannot enter workdir {workdir}: No such directory")
    return Prepared(argv, env, workdir)


def search_trial(argv: List[str], env: Dict[str, str]) -> List[str]:
    """Under a search (``$FORGE_SEARCH_TRIAL``: the trial's file, written by the decision step before
    its job was submitted): the trial's parameters added to the run (:func:`with_trial_params`)."""
    path = env.get(envvars.SEARCH_TRIAL.name)
    if not path:
        return argv
    from torchx_forge.node.runtime import open_path  # noqa: PLC0415

    with open_path(path, "r") as f:
        params = json.load(f)["params"]
    return with_trial_params(argv, env, params)


def with_trial_params(argv: List[str], env: Dict[str, str], params: Dict[str, Any]) -> List[str]:
    """A search trial's parameters added to a run: ``run.args.K`` as ``--K V`` at the end (replacing
    the run's own ``--K``), ``run.env.K`` set in ``env``; returns the command line."""
    from torchx_forge.core.runrow import render_args  # noqa: PLC0415

    args = {k[len("run.args."):]: v for k, v in params.items() if k.startswith("run.args.")}
    out: List[str] = []
    skip = False
    for word in argv:  # drop the run's own value of a searched argument
        if skip and not word.startswith("--"):
            continue
        skip = word.startswith("--") and word[2:] in args
        if not skip:
            out.append(word)
    for k, v in params.items():
        if k.startswith("run.env."):
            env[k[len("run.env."):]] = str(v)
    return out + render_args(args)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ns = _parse(sys.argv[1:] if argv is None else argv)
    be_patient(store_wait())  # run tables, checkpoints and summaries on an object store: ride out a short outage
    try:
        run = runtable.find_run(read_table(ns.table), ns.role, ns.replica)
    except (OSError, ValueError, LookupError, KeyError, NewerFormatError) as e:
        print(f"torchx-forge: cannot load run {ns.role}/{ns.replica} from {ns.table}: {e}", file=sys.stderr)
        sys.exit(2)
    launched = envvars.CHECKPOINT_DIR.name in os.environ  # slurm_forge's launcher already applied the contract
    try:
        ready = prepare(run, dict(os.environ), ns.app_id, ns.wait_for)
    except RunError as e:
        print(f"torchx-forge: {e}", file=sys.stderr)
        sys.exit(e.code)
    if ready.skip:
        print(f"torchx-forge: run {run.run_id} skipped: {ready.skip}", file=sys.stderr)
        report_run(ready.env, run, run.run_id, ns.role, ns.replica, "CANCELLED", None, ready.skip)
        sys.exit(3)
    if ns.local_parallel and "SLURM_JOB_ID" not in os.environ:
        key = f"{ns.app_id or 'app'}-{os.path.basename(ns.table).split('.')[0][:16]}"
        acquire_slot(key, ns.local_parallel)
    if ready.workdir:
        try:
            os.chdir(ready.workdir)
        except OSError as e:
            print(f"torchx-forge: run {run.run_id}: cannot enter workdir {ready.workdir}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
    if launched:  # the launcher supervises the program and writes the summary
        try:
            os.execvpe(ready.argv[0], ready.argv, ready.env)
        except OSError as e:
            print(f"torchx-forge: run {run.run_id}: cannot start {ready.argv[0]!r}: {e.strerror}", file=sys.stderr)
            sys.exit(127)
    sys.exit(_run_and_report(run, ready.env, ready.argv, ns.role, ns.replica))


def _run_and_report(run: RunRow, env: Dict[str, str], argv: List[str], role: str, replica: int) -> int:
    """Outside slurm_forge: run the program, then leave its summary for the steps that follow."""
    try:
        rc = subprocess.call(argv, env=env)
    except OSError as e:
        print(f"torchx-forge: run {run.run_id}: cannot start {argv[0]!r}: {e.strerror}", file=sys.stderr)
        rc = 127
    code = 128 - rc if rc < 0 else rc
    report_run(env, run, run.run_id, role, replica, "COMPLETED" if code == 0 else "FAILED", code)
    return code


if __name__ == "__main__":
    main()
