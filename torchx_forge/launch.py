"""The task launcher: runs one replica's program on a compute node.

The batch scripts slurm_forge writes call, for every task::

    python -m torchx_forge.launch --role ROLE [--replica N] [--env K=V ...] -- PROGRAM ARGS...

It sets the environment contract (see :mod:`torchx_forge.contract`) plus the
role's env, refuses to start when the task has used up its retries, finds the
checkpoint to resume from (a clear error *before* the program starts if that is
ambiguous), runs the program as a child and reports the attempt in the task's
state file (``apps/<app>/tasks/<role>.<replica>.json``), which is how status
stays right without accounting and how attempts are counted.

The pre-timeout warning: the batch script turns it into a flag file that this
launcher polls; it then signals the *program* processes only: wrappers and
launchers (``sh -c``, ``torchrun``, ``torchx_forge.task``) are skipped and their
children signalled instead, so torchrun survives and its workers save. The
program gets ``grace`` seconds to exit before it is stopped. Exits with the
program's exit code (128 + N for death by signal N), or 75 when the attempt was
interrupted and should be resumed.

Standard library only (fsspec only for URL state dirs): this starts once per task.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torchx_forge import contract
from torchx_forge.checkpoint import CheckpointError
from torchx_forge.files import read_file, write_file
from torchx_forge.hostlist import expand_hostlist
from torchx_forge.policy import REQUEUE_EXIT, Outcome, outcome_of

TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WRAPPER_PROGRAMS = {"sh", "bash", "dash", "zsh", "env", "torchrun", "time", "nice", "stdbuf", "apptainer",
                    "singularity", "starter", "starter-suid"}
WRAPPER_MODULES = {"torch.distributed.run", "torch.distributed.launch", "torchx_forge.task", "torchx_forge.launch"}


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


def job_key(env: Dict[str, str]) -> str:
    """``A_T`` for an array task, else the job id."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


def task_env(ns: argparse.Namespace, base: Dict[str, str]) -> Dict[str, str]:
    """The program's environment: inherited env, role env, then the forge contract."""
    env = dict(base)
    for item in ns.env:
        key, _, value = item.partition("=")
        env[key] = value
    replica = ns.replica if ns.replica is not None else int(base.get("FORGE_REPLICA_ID", "0"))
    app_id = base.get("FORGE_APP_ID") or base.get("SLURM_ARRAY_JOB_ID") or base.get("SLURM_JOB_ID", "")
    group0 = base.get("SLURM_JOB_NODELIST_HET_GROUP_0") or base.get("SLURM_JOB_NODELIST", "")
    env.update(FORGE_APP_ID=app_id, FORGE_ROLE=ns.role, FORGE_REPLICA_ID=str(replica))
    env.setdefault("FORGE_ATTEMPT", base.get("SLURM_RESTART_COUNT", "0") or "0")
    rank0 = first_host(group0) if group0 else ""
    if rank0:
        env["FORGE_RANK0_HOST"] = rank0
    env["FORGE_RDZV_PORT"] = str(rdzv_port(base.get("SLURM_JOB_ID", "")))
    return env


def rdzv_port(job_id: str) -> int:
    """A rendezvous port per Slurm job (15000-29999, below Linux's ephemeral range).

    Every task of a job (all het components, all nodes of a task) gets the same port;
    two jobs collide only if their ids differ by a multiple of 15000."""
    digits = "".join(ch for ch in job_id if ch.isdigit())
    return 15000 + (int(digits) % 15000 if digits else 0)


class TaskState:
    """The task's state file: the latest attempt at the top level plus every attempt in ``history``."""

    def __init__(self, state_dir: str, app_id: str, role: str, replica: int) -> None:
        self.rel = f"apps/{app_id}/tasks/{role}.{replica}.json"
        self.state_dir = state_dir
        self.data: Dict[str, Any] = {"role": role, "replica": replica, "history": []}

    def _path(self) -> str:
        return f"{self.state_dir.rstrip('/')}/{self.rel}"

    def load(self) -> "TaskState":
        try:
            self.data.update(json.loads(read_file(self._path())))
        except (OSError, ValueError):
            pass
        return self

    @property
    def history(self) -> List[Dict[str, Any]]:
        return list(self.data.get("history") or [])

    def attempt_for(self, key: str, restart: str) -> Tuple[int, str]:
        """(attempt number, initial job) of the current attempt: 0 for the first start of this task."""
        hist = self.history
        initial = str(hist[0].get("job_key", key)) if hist else key
        if hist and hist[-1].get("job_key") == key and str(hist[-1].get("restart")) == restart:
            return int(hist[-1].get("attempt", len(hist) - 1)), initial  # written by this attempt's first node
        # Slurm's restart count is a floor when the history is missing (state dir not shared)
        return max(len(hist), int(restart or 0)), initial

    def write(self, attempt: Dict[str, Any], **top: Any) -> None:
        hist = self.history
        if hist and hist[-1].get("attempt") == attempt.get("attempt") and hist[-1].get("job_key") == attempt.get("job_key"):
            hist[-1] = {**hist[-1], **attempt}
        else:
            hist.append(attempt)
        self.data.update(top, history=hist, time=time.time())
        for k in ("state", "exit_code", "host", "attempt", "job_id", "outcome", "note", "resumed_from", "stopped_by",
                  "start", "end"):
            if k in hist[-1]:
                self.data[k] = hist[-1][k]
        try:
            write_file(self._path(), json.dumps(self.data, sort_keys=True).encode(), mode=0o600, dir_mode=0o700)
        except OSError as e:  # status degrades, the task itself must not fail
            print(f"torchx-forge: warning: cannot write task state {self.rel}: {e}", file=sys.stderr)


def _is_first_task(env: Dict[str, str], het_group: Optional[int]) -> bool:
    """True on the first node of this replica (the one that reports its state)."""
    key = f"SLURM_JOB_NODELIST_HET_GROUP_{het_group}" if het_group is not None else "SLURM_JOB_NODELIST"
    nodelist = env.get(key) or env.get("SLURM_JOB_NODELIST", "")
    me = env.get("SLURMD_NODENAME", "")
    return not nodelist or not me or first_host(nodelist) == me


# -- the program's processes -------------------------------------------------------------


def _proc_table() -> Dict[int, List[int]]:
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def _cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def is_wrapper(argv: List[str]) -> bool:
    """Shells, torchrun and forge's own task runner: they pass the warning on, they do not get it."""
    if not argv:
        return False
    prog = os.path.basename(argv[0])
    if prog in WRAPPER_PROGRAMS:
        return True
    if prog.startswith("python"):
        if "-m" in argv[1:-1] and argv[argv.index("-m", 1) + 1] in WRAPPER_MODULES:
            return True
        return len(argv) > 1 and os.path.basename(argv[1]) == "torchrun"
    return False


def program_pids(root: int) -> List[int]:
    """The processes that make up the user's program under ``root``, skipping wrappers."""
    if not os.path.isdir("/proc"):
        return [root]
    children = _proc_table()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if is_wrapper(_cmdline(pid)):
            stack.extend(children.get(pid, []))
        else:
            out.append(pid)
    return out or [root]


def _tree(root: int) -> List[int]:
    children = _proc_table() if os.path.isdir("/proc") else {}
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def _signal_all(pids: List[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Supervisor:
    """Runs the program, hands it the warning, stops it after the grace period."""

    def __init__(self, argv: List[str], env: Dict[str, str]) -> None:
        self.argv = argv
        self.env = env
        name = env.get("FORGE_WARN_SIGNAL", "")
        self.warn_sig: Optional[int] = int(getattr(signal, f"SIG{name}")) if name and hasattr(signal, f"SIG{name}") else None
        self.warn_file = env.get("FORGE_WARN_FILE") or None
        self.grace = float(env.get("FORGE_GRACE", "60") or 60)
        self.warned = False
        self.stopped_by: Optional[int] = None
        self.deadline: Optional[float] = None
        self.child: Optional[subprocess.Popen] = None

    def warn(self, why: str) -> None:
        if self.warned or self.child is None:
            return
        self.warned = True
        self.deadline = time.monotonic() + self.grace
        pids = program_pids(self.child.pid)
        if self.warn_sig is not None:
            print(f"torchx-forge: {why}: sending SIG{signal.Signals(self.warn_sig).name[3:]} to pid(s)"
                  f" {' '.join(map(str, pids))}; {self.grace:.0f}s to save and exit", file=sys.stderr, flush=True)
            _signal_all(pids, self.warn_sig)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == self.warn_sig:
            self.warn(f"received SIG{signal.Signals(signum).name[3:]}")
            return
        self.stopped_by = self.stopped_by or signum
        if self.warn_sig is not None:
            self.warn(f"received {signal.Signals(signum).name} (cancel, time limit or preemption)")
        if self.child is not None:
            _signal_all([self.child.pid], signum)

    def run(self) -> Tuple[int, bool, Optional[int]]:
        """(exit code, was warned, terminating signal received from outside)."""
        try:
            self.child = subprocess.Popen(self.argv, env=self.env)
        except OSError as e:
            print(f"torchx-forge: cannot run {self.argv[0]!r}: {e.strerror}", file=sys.stderr)
            return 127, False, None
        for sig in TERMINATING_SIGNALS + ((self.warn_sig,) if self.warn_sig else ()):
            signal.signal(sig, self._on_signal)
        next_poll, escalated = 0.0, 0
        while True:
            rc = self.child.poll()
            if rc is not None:
                break
            now = time.monotonic()
            if self.warn_file and not self.warned and now >= next_poll:
                next_poll = now + 1.0
                if os.path.exists(self.warn_file):
                    self.warn("pre-timeout warning")
            if self.deadline is not None and now > self.deadline + 10 * escalated:
                sig = signal.SIGTERM if escalated == 0 else signal.SIGKILL
                print(f"torchx-forge: grace period over: sending {sig.name} to the program", file=sys.stderr, flush=True)
                _signal_all(_tree(self.child.pid), sig)
                escalated += 1
            time.sleep(0.2)
        return (128 - rc if rc < 0 else rc), self.warned, self.stopped_by


# -- sweep runs ----------------------------------------------------------------------------


def sweep_run(command: List[str]) -> Optional[Dict[str, Any]]:
    """The run a ``python -m torchx_forge.task --table T --role R --replica K`` command will start."""
    if "-m" not in command or "torchx_forge.task" not in command:
        return None
    try:
        from torchx_forge.task import find_run, load_table

        opt = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
        return find_run(load_table(opt["--table"]), opt["--role"], int(opt["--replica"]))
    except (OSError, ValueError, KeyError, LookupError):
        return None  # the task itself reports the problem


def run(argv: Sequence[str]) -> int:
    ns = _parse(argv)
    env = task_env(ns, dict(os.environ))
    replica = int(env["FORGE_REPLICA_ID"])
    reporter = _is_first_task(env, ns.het_group) and bool(env.get("FORGE_STATE_DIR"))
    state = TaskState(env.get("FORGE_STATE_DIR", ""), env["FORGE_APP_ID"], ns.role, replica)
    if env.get("FORGE_STATE_DIR"):
        state.load()
    key = job_key(env)
    attempt, initial = state.attempt_for(key, env.get("SLURM_RESTART_COUNT", "0"))
    env["FORGE_ATTEMPT"], env["FORGE_INITIAL_JOB_ID"] = str(attempt), initial
    host = env.get("SLURMD_NODENAME") or socket.gethostname()
    entry: Dict[str, Any] = dict(attempt=attempt, job_key=key, job_id=env.get("SLURM_JOB_ID", ""),
                                 restart=env.get("SLURM_RESTART_COUNT", "0"), host=host, start=time.time())

    def finish(outcome: Outcome, code: int, note: str = "", **extra: Any) -> None:
        if reporter:
            final = {Outcome.COMPLETED: "COMPLETED", Outcome.STOPPED: "KILLED"}.get(outcome, "FAILED")
            if outcome == Outcome.INTERRUPTED:
                final = "INTERRUPTED"
            state.write({**entry, "end": time.time(), "outcome": outcome.value, "exit_code": code, "state": final,
                         "note": note, **extra})

    max_retries = env.get("FORGE_MAX_RETRIES")
    if max_retries not in (None, ""):
        max_retries = str(int(max_retries) + int(env.get("FORGE_EXTRA_RETRIES", "0") or 0))
    if max_retries not in (None, "") and attempt > int(max_retries):
        note = f"retries exhausted: this would be attempt {attempt + 1}, max_retries={max_retries}"
        print(f"torchx-forge: {note}; not starting", file=sys.stderr)
        finish(Outcome.EXHAUSTED, 1, note)
        return 1
    run_row = sweep_run(ns.command)
    run_id = run_row["run_id"] if run_row else contract.default_run_id(env["FORGE_APP_ID"], ns.role, replica)
    try:
        resumed = contract.apply(env, run_id, (run_row or {}).get("checkpoint_dir"))
    except (CheckpointError, OSError) as e:
        note = f"cannot choose a checkpoint to resume from: {e}"
        print(f"torchx-forge: {note}", file=sys.stderr)
        finish(Outcome.BAD_CHECKPOINT, 2, note)
        return 2
    entry["resumed_from"] = resumed or ""
    argv_ = ns.command if run_row else contract.resume_argv(ns.command, env)
    if attempt > 0:
        banner = f"==== torchx-forge: {run_id} attempt {attempt} (job {key} on {host})" + (
            f", resuming from {resumed}" if resumed else ", no checkpoint to resume from") + " ===="
        print(banner, flush=True)
        print(banner, file=sys.stderr, flush=True)
    if reporter:
        state.write({**entry, "state": "RUNNING", "outcome": "running"})
    code, warned, stopped_by = Supervisor(argv_, env).run()
    outcome = outcome_of(code, warned, stopped_by)
    finish(outcome, code, stopped_by=stopped_by)
    if reporter and (run_row or replica == 0):  # a role's replicas are one run: replica 0 reports it
        _summary(env, run_row, run_id, ns.role, replica, outcome, code, attempt)
    return REQUEUE_EXIT if outcome == Outcome.INTERRUPTED else code


def _collect_artifacts(env: Dict[str, str], row: Optional[Dict[str, Any]]) -> List[str]:
    from torchx_forge.artifacts import collect, globs_from_env

    globs = list((row or {}).get("artifacts") or []) + globs_from_env(env.get("FORGE_ARTIFACTS", ""))
    if not globs or not env.get("FORGE_RESULT_DIR"):
        return []
    return collect(globs, (row or {}).get("workdir") or os.getcwd(), env["FORGE_RESULT_DIR"])


def _summary(env: Dict[str, str], row: Optional[Dict[str, Any]], run_id: str, role: str, replica: int,
             outcome: Outcome, code: int, attempt: int) -> None:
    """The run's summary.json in its result directory (read by later pipeline steps and results views)."""
    from torchx_forge.handoff import write_summary

    state = {Outcome.COMPLETED: "COMPLETED", Outcome.INTERRUPTED: "INTERRUPTED", Outcome.STOPPED: "KILLED"}.get(outcome, "FAILED")
    artifacts = _collect_artifacts(env, row)
    try:
        write_summary(env["FORGE_RESULT_DIR"], {
            "artifacts": artifacts,
            "run_id": run_id, "index": (row or {}).get("index", replica), "case": (row or {}).get("case", ""),
            "stage": env.get("FORGE_STAGE", ""), "role": role, "replica": replica,
            "params": dict((row or {}).get("params") or []), "state": state, "exit_code": code,
            "attempts": attempt + 1, "job": job_key(env), "app_id": env.get("FORGE_APP_ID", ""),
        })
    except (OSError, KeyError) as e:
        print(f"torchx-forge: warning: cannot write the run summary: {e}", file=sys.stderr)


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
