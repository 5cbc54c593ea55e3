"""Runs one sweep point: ``python -m torchx_forge.task --table T --role R --replica K``.

Scheduler-agnostic (slurm_forge, local_cwd, ...): it looks up run K of role R in
the run table, sets ``FORGE_RUN_INDEX``, ``FORGE_RUN_ID``, ``FORGE_RUN_CASE`` and
the run's env, changes to the run's working directory and replaces itself with
the run's program. Outside slurm_forge it also applies the checkpoint/resume
contract (:mod:`torchx_forge.contract`) itself. Outside Slurm, ``--local-parallel N`` makes at most N points
run at once on this machine (stock local_cwd starts every replica together):
each point first takes one of N lock slots and holds it until it exits.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m torchx_forge.task")
    p.add_argument("--table", required=True)
    p.add_argument("--role", required=True)
    p.add_argument("--replica", required=True, type=int)
    p.add_argument("--app-id", default=None)
    p.add_argument("--local-parallel", type=int, default=None)
    p.add_argument("--stage", default=None)
    p.add_argument("--wait-for", default=None, help="(pipelines, outside Slurm) JSON list of upstream steps")
    return p.parse_args(list(argv))


def load_table(path: str) -> Dict[str, Any]:
    """A run table (local path or fsspec URL), as written by torchx_forge.appdefs.write_table."""
    from torchx_forge.files import read_file

    return json.loads(read_file(path))


def find_run(table: Dict[str, Any], role: str, replica: int) -> Dict[str, Any]:
    indices: List[int] = table["roles"].get(role, [])
    if not 0 <= replica < len(indices):
        raise LookupError(f"role {role!r} has {len(indices)} run(s); there is no replica {replica}")
    return table["runs"][indices[replica]]


def run_env(run: Dict[str, Any], base: Dict[str, str]) -> Dict[str, str]:
    env = dict(base)
    env.update(run.get("env", {}))
    env["FORGE_RUN_INDEX"] = str(run["index"])
    env["FORGE_RUN_ID"] = run["run_id"]
    env["FORGE_RUN_CASE"] = run.get("case", "")
    if run.get("resume_arg"):
        env["FORGE_RESUME_ARG"] = str(run["resume_arg"])
    if run.get("params_json"):
        env["FORGE_RUN_PARAMS"] = run["params_json"]
    return env


def acquire_slot(key: str, slots: int) -> int:
    """Block until one of ``slots`` lock files for ``key`` is free; return its fd (kept across exec)."""
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


def _gate(run: Dict[str, Any], env: Dict[str, str], wait_for: Optional[str]) -> Optional[str]:
    """Outside Slurm, wait for the upstream steps; returns why this run is skipped, if it is."""
    from torchx_forge.handoff import wait_for_upstream

    if not wait_for or "SLURM_JOB_ID" in os.environ or not run.get("upstream"):
        return None
    kind = json.loads(wait_for)[0].get("type", "afterok")
    ok, failed = wait_for_upstream(run, env)
    if kind == "afterok" and failed:
        return f"upstream run(s) {','.join(map(str, failed))} failed"
    if kind == "afternotok" and not failed:
        return "every upstream run succeeded (this step runs after a failure only)"
    return None


def _handoff(run: Dict[str, Any], env: Dict[str, str], argv: List[str]) -> List[str]:
    """Upstream results for pipeline steps: FORGE_UPSTREAM_* and, per run, FORGE_INPUT_CHECKPOINT."""
    from torchx_forge.handoff import choose_input, upstream_env

    upstream_env(run, env)
    chosen = choose_input(run, env)
    if chosen:
        env["FORGE_INPUT_CHECKPOINT"] = chosen
        flag = (run.get("inputs") or {}).get("arg")
        if flag:
            argv = argv + [flag, chosen]
    return argv


def _summary(run: Dict[str, Any], env: Dict[str, str], state: str, code: Optional[int], note: str = "") -> None:
    from torchx_forge.handoff import write_summary

    if env.get("FORGE_RESULT_DIR"):
        from torchx_forge.artifacts import collect, globs_from_env

        globs = list(run.get("artifacts") or []) + globs_from_env(env.get("FORGE_ARTIFACTS", ""))
        artifacts = collect(globs, os.getcwd(), env["FORGE_RESULT_DIR"]) if globs else []
        write_summary(env["FORGE_RESULT_DIR"], {
            "artifacts": artifacts,
            "run_id": run["run_id"], "index": run["index"], "case": run.get("case", ""), "stage": env.get("FORGE_STAGE", ""),
            "params": dict(run.get("params") or []), "state": state, "exit_code": code,
            "attempts": int(env.get("FORGE_ATTEMPT", "0")) + 1, "note": note,
        })


def main(argv: Optional[Sequence[str]] = None) -> None:
    ns = _parse(sys.argv[1:] if argv is None else argv)
    try:
        run = find_run(load_table(ns.table), ns.role, ns.replica)
    except (OSError, ValueError, LookupError, KeyError) as e:
        print(f"torchx-forge: cannot load run {ns.role}/{ns.replica} from {ns.table}: {e}", file=sys.stderr)
        sys.exit(2)
    env = run_env(run, dict(os.environ))
    launched = "FORGE_CHECKPOINT_DIR" in os.environ  # slurm_forge's launcher already applied the contract
    from torchx_forge import contract
    from torchx_forge.checkpoint import CheckpointError

    if not launched:  # e.g. local_cwd
        env.setdefault("FORGE_APP_ID", ns.app_id or "local")
        try:
            contract.apply(env, run["run_id"], run.get("checkpoint_dir"))
        except (CheckpointError, OSError) as e:
            print(f"torchx-forge: run {run['run_id']}: cannot choose a checkpoint to resume from: {e}", file=sys.stderr)
            sys.exit(2)
    skip = _gate(run, env, ns.wait_for)
    if skip:
        print(f"torchx-forge: run {run['run_id']} skipped: {skip}", file=sys.stderr)
        _summary(run, env, "CANCELLED", None, skip)
        sys.exit(3)
    try:
        argv_run = _handoff(run, env, contract.resume_argv(list(run["argv"]), env))
    except (CheckpointError, OSError, ValueError) as e:
        print(f"torchx-forge: run {run['run_id']}: cannot choose its input checkpoint: {e}", file=sys.stderr)
        sys.exit(2)
    if ns.local_parallel and "SLURM_JOB_ID" not in os.environ:
        key = f"{ns.app_id or 'app'}-{os.path.basename(ns.table).split('.')[0][:16]}"
        acquire_slot(key, ns.local_parallel)
    workdir = run.get("workdir")
    if workdir:
        try:
            os.chdir(workdir)
        except OSError as e:
            print(f"torchx-forge: run {run['run_id']}: cannot enter workdir {workdir}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
    if launched:  # the launcher supervises the program and writes the summary
        try:
            os.execvpe(argv_run[0], argv_run, env)
        except OSError as e:
            print(f"torchx-forge: run {run['run_id']}: cannot start {argv_run[0]!r}: {e.strerror}", file=sys.stderr)
            sys.exit(127)
    sys.exit(_run_and_report(run, env, argv_run))


def _run_and_report(run: Dict[str, Any], env: Dict[str, str], argv: List[str]) -> int:
    """Outside slurm_forge: run the program, then leave its summary for the steps that follow."""
    import subprocess

    try:
        rc = subprocess.call(argv, env=env)
    except OSError as e:
        print(f"torchx-forge: run {run['run_id']}: cannot start {argv[0]!r}: {e.strerror}", file=sys.stderr)
        rc = 127
    code = 128 - rc if rc < 0 else rc
    _summary(run, env, "COMPLETED" if code == 0 else "FAILED", code)
    return code


if __name__ == "__main__":
    main()
