"""The task launcher: runs one replica's program on a compute node.

The batch scripts slurm_forge writes call, for every task::

    python -m torchx_forge.launch --role ROLE [--replica N] [--env K=V ...] -- PROGRAM ARGS...

It sets the forge environment contract (``FORGE_APP_ID``, ``FORGE_ROLE``,
``FORGE_REPLICA_ID``, ``FORGE_RANK0_HOST`` ...) plus the role's env, runs the
program as a child, forwards termination signals to it, and writes the task's
state file (start, end, exit code, host) into the state dir, which is how
status stays right on clusters without accounting. It exits with the program's
exit code (128 + N when the program died of signal N).

Only the standard library is imported here (fsspec only for non-local state
dirs): this runs once per task, so it must start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from torchx_forge.hostlist import expand_hostlist

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m torchx_forge.launch")
    p.add_argument("--role", required=True)
    p.add_argument("--replica", type=int, default=None)
    p.add_argument("--het-group", type=int, default=None)
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("command", nargs=argparse.REMAINDER)
    ns = p.parse_args(list(argv))
    if ns.command and ns.command[0] == "--":
        ns.command = ns.command[1:]
    if not ns.command:
        p.error("no program given after --")
    return ns


def first_host(nodelist: str) -> str:
    """First node of a Slurm host list (``n[3-4],m1`` -> ``n3``), without calling scontrol."""
    hosts = expand_hostlist(nodelist)
    return hosts[0] if hosts else ""


def task_env(ns: argparse.Namespace, base: Dict[str, str]) -> Dict[str, str]:
    """The program's environment: inherited env, role env, then the forge contract."""
    env = dict(base)
    for item in ns.env:
        key, _, value = item.partition("=")
        env[key] = value
    replica = ns.replica if ns.replica is not None else int(base.get("FORGE_REPLICA_ID", "0"))
    app_id = base.get("FORGE_APP_ID") or base.get("SLURM_ARRAY_JOB_ID") or base.get("SLURM_JOB_ID", "")
    group0 = base.get("SLURM_JOB_NODELIST_HET_GROUP_0") or base.get("SLURM_JOB_NODELIST", "")
    env.update(
        FORGE_APP_ID=app_id,
        FORGE_ROLE=ns.role,
        FORGE_REPLICA_ID=str(replica),
        FORGE_ATTEMPT=base.get("SLURM_RESTART_COUNT", "0") or "0",
        FORGE_INITIAL_JOB_ID=base.get("FORGE_INITIAL_JOB_ID") or base.get("SLURM_JOB_ID", ""),
    )
    rank0 = first_host(group0) if group0 else ""
    if rank0:
        env["FORGE_RANK0_HOST"] = rank0
    return env


class TaskState:
    """Writes ``apps/<app>/tasks/<role>.<replica>.json`` atomically (local dir or fsspec URL)."""

    def __init__(self, state_dir: str, app_id: str, role: str, replica: int) -> None:
        self.rel = f"apps/{app_id}/tasks/{role}.{replica}.json"
        self.state_dir = state_dir
        self.data: Dict[str, object] = {"role": role, "replica": replica}

    def write(self, **fields: object) -> None:
        self.data.update(fields, time=time.time())
        payload = json.dumps(self.data, sort_keys=True).encode()
        try:
            if "://" in self.state_dir and not self.state_dir.startswith("file://"):
                import fsspec

                with fsspec.open(f"{self.state_dir.rstrip('/')}/{self.rel}", "wb") as f:
                    f.write(payload)
                return
            path = os.path.join(os.path.expanduser(self.state_dir.replace("file://", "")), self.rel)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as e:  # status degrades, the task itself must not fail
            print(f"torchx-forge: warning: cannot write task state {self.rel}: {e}", file=sys.stderr)


def _is_first_task(env: Dict[str, str], het_group: Optional[int]) -> bool:
    """True on the first node of this replica (the one that reports its state)."""
    key = f"SLURM_JOB_NODELIST_HET_GROUP_{het_group}" if het_group is not None else "SLURM_JOB_NODELIST"
    nodelist = env.get(key) or env.get("SLURM_JOB_NODELIST", "")
    me = env.get("SLURMD_NODENAME", "")
    return not nodelist or not me or first_host(nodelist) == me


def run(argv: Sequence[str]) -> int:
    ns = _parse(argv)
    env = task_env(ns, dict(os.environ))
    replica = int(env["FORGE_REPLICA_ID"])
    reporter = _is_first_task(env, ns.het_group) and bool(env.get("FORGE_STATE_DIR"))
    state = TaskState(env.get("FORGE_STATE_DIR", ""), env["FORGE_APP_ID"], ns.role, replica)
    host = env.get("SLURMD_NODENAME") or socket.gethostname()
    common = dict(job_id=env.get("SLURM_JOB_ID", ""), host=host, attempt=int(env["FORGE_ATTEMPT"]))
    if reporter:
        state.write(state="RUNNING", start=time.time(), **common)
    code, stopped_by = _run_child(ns.command, env)
    if reporter:
        final = "COMPLETED" if code == 0 else "FAILED"
        if stopped_by is not None and code != 0:
            final = "KILLED"  # stopped from outside: cancel, time limit or preemption
        state.write(state=final, exit_code=code, stopped_by=stopped_by, end=time.time(), **common)
    return code


def _run_child(command: List[str], env: Dict[str, str]) -> Tuple[int, Optional[int]]:
    """Run the program; returns (exit code, terminating signal received from outside or None)."""
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as e:
        print(f"torchx-forge: cannot run {command[0]!r}: {e.strerror}", file=sys.stderr)
        return 127, None
    stopped_by: List[int] = []

    def forward(signum: int, _frame: object) -> None:
        if signum in TERMINATING_SIGNALS:
            stopped_by.append(signum)
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    rc = child.wait()
    return (128 - rc if rc < 0 else rc), (stopped_by[0] if stopped_by else None)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
