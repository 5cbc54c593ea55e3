"""The task launcher: runs one replica's program on a compute node.

The batch scripts slurm_forge writes call, for every task::

    python -m torchx_forge.node.launch --role ROLE [--replica N] [--env K=V ...] -- PROGRAM ARGS...

It sets the environment contract (see :mod:`torchx_forge.node.contract`) plus the role's env,
refuses to start when the task has used up its retries, finds the checkpoint to resume from (a
clear error *before* the program starts if that is ambiguous), runs the program under a
:class:`~torchx_forge.node.supervisor.Supervisor` (which hands it the pre-timeout warning) and
reports the attempt in the task's state file (:mod:`torchx_forge.state.taskfile`), which is how
status stays right without accounting and how attempts are counted. Exits with the program's
exit code (128 + N for death by signal N), or 75 when the attempt was interrupted and should be
resumed.

Standard library only (fsspec only for URL state dirs): this starts once per task.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, List, NoReturn, Optional, Sequence

from torchx_forge.core import envvars, layout, runtable
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.core.hostlist import expand_hostlist
from torchx_forge.core.policy import REQUEUE_EXIT, RetryPolicy, exhausted_note, outcome_of
from torchx_forge.core.record import replace
from torchx_forge.core.runrow import RunRow
from torchx_forge.core.states import FileState, Outcome
from torchx_forge.core.storage import StoreError, StoreUnreachableError, store_wait
from torchx_forge.node import contract, task
from torchx_forge.node.checkpoint import CheckpointError, saved_since
from torchx_forge.node.summary import job_key, report_run
from torchx_forge.node.supervisor import Ending, Supervisor, say
from torchx_forge.state.files import be_patient, read_file, write_file
from torchx_forge.state.tables import read_table
from torchx_forge.state.taskfile import AttemptEntry, TaskFile

MODULE = "torchx_forge.node.launch"
LOG_LOST_EXIT = 74  # EX_IOERR: the program ran but its output was lost
LOG_ROOM = 4096  # bytes: less left in the log dir's file system when the program ends means it filled up
NEARLY_FULL = 64 << 20  # bytes: with less free, wait for the last output to land before deciding


class Args:
    """The launcher's command line: ``--role R [--replica N] [--het-group G] [--env K=V ...] -- PROGRAM...``
    (parsed by hand: argparse and what it imports cost every task a few milliseconds)."""

    def __init__(self, role: str, replica: Optional[int], het_group: Optional[int], env: List[str], command: List[str]) -> None:
        self.role, self.replica, self.het_group, self.env, self.command = role, replica, het_group, env, command


def _usage(problem: str) -> NoReturn:
    say(f"usage: python -m {MODULE} --role ROLE [--replica N] [--het-group G] [--env K=V ...] -- PROGRAM ARGS...")
    say(f"python -m {MODULE}: error: {problem}")
    sys.exit(2)


def _parse(argv: Sequence[str]) -> Args:
    words, opts, env = list(argv), {"--role": "", "--replica": "", "--het-group": ""}, []
    while words and words[0].startswith("--") and words[0] != "--":
        flag, eq, value = words.pop(0).partition("=")
        if flag not in opts and flag != "--env":
            _usage(f"unrecognized argument: {flag}")
        if not eq:
            if not words:
                _usage(f"argument {flag}: expected one argument")
            value = words.pop(0)
        if flag == "--env":
            env.append(value)
        else:
            opts[flag] = value
    command = words[1:] if words[:1] == ["--"] else words
    if not opts["--role"]:
        _usage("the following arguments are required: --role")
    if not command:
        _usage("no program given after --")
    try:
        replica, het_group = (int(opts[k]) if opts[k] else None for k in ("--replica", "--het-group"))
    except ValueError as e:
        _usage(f"--replica and --het-group take an integer: {e}")
    return Args(opts["--role"], replica, het_group, env, command)


def first_host(nodelist: str) -> str:
    """First node of a Slurm host list (``n[3-4],m1`` -> ``n3``), without calling scontrol."""
    hosts = expand_hostlist(nodelist)
    return hosts[0] if hosts else ""


def task_env(ns: Args, base: Dict[str, str]) -> Dict[str, str]:
    """The program's environment: inherited env, role env, then the forge contract."""
    env = dict(base)
    for item in ns.env:
        key, _, value = item.partition("=")
        env[key] = value
    replica = ns.replica if ns.replica is not None else int(base.get(envvars.REPLICA_ID.name, "0"))
    app_id = base.get(envvars.APP_ID.name) or base.get("SLURM_ARRAY_JOB_ID") or base.get("SLURM_JOB_ID", "")
    group0 = base.get("SLURM_JOB_NODELIST_HET_GROUP_0") or base.get("SLURM_JOB_NODELIST", "")
    env.update({envvars.APP_ID.name: app_id, envvars.ROLE.name: ns.role, envvars.REPLICA_ID.name: str(replica)})
    env.setdefault(envvars.ATTEMPT.name, base.get("SLURM_RESTART_COUNT", "0") or "0")
    rank0 = first_host(group0) if group0 else ""
    if rank0:
        env[envvars.RANK0_HOST.name] = rank0
    env[envvars.RDZV_PORT.name] = str(rdzv_port(base.get("SLURM_JOB_ID", "")))
    return env


def rdzv_port(job_id: str) -> int:
    """A rendezvous port per Slurm job (15000-29999, below Linux's ephemeral range).

    Every task of a job (all het components, all nodes of a task) gets the same port;
    two jobs collide only if their ids differ by a multiple of 15000."""
    digits = "".join(ch for ch in job_id if ch.isdigit())
    return 15000 + (int(digits) % 15000 if digits else 0)


def _is_first_task(env: Dict[str, str], het_group: Optional[int]) -> bool:
    """True on the first node of this replica (the one that reports its state)."""
    key = f"SLURM_JOB_NODELIST_HET_GROUP_{het_group}" if het_group is not None else "SLURM_JOB_NODELIST"
    nodelist = env.get(key) or env.get("SLURM_JOB_NODELIST", "")
    me = env.get("SLURMD_NODENAME", "")
    return not nodelist or not me or first_host(nodelist) == me


def in_process(command: Sequence[str]) -> bool:
    """Is ``command`` forge's own sweep-point runner, with no wrapper (a container) around it? Then
    the launcher prepares the run itself and starts the program directly: one Python less per task."""
    return (len(command) > 2 and os.path.basename(command[0]).startswith("python")
            and list(command[1:3]) == ["-m", "torchx_forge.node.task"])


def sweep_run(command: Sequence[str]) -> Optional[RunRow]:
    """The run a ``python -m torchx_forge.node.task --table T --role R --replica K`` command will
    start (None for other commands). A run table the state dir's store does not give (after
    waiting ``$FORGE_STORE_WAIT`` for it) is a :class:`task.RunError` naming its URL."""
    if "-m" not in command or "torchx_forge.node.task" not in command:
        return None
    try:
        opt = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
        return runtable.find_run(read_table(opt["--table"]), opt["--role"], int(opt["--replica"]))
    except (StoreError, NewerFormatError) as e:
        raise task.RunError(f"cannot load run {opt['--role']}/{opt['--replica']}: {e}") from None
    except (OSError, ValueError, KeyError, LookupError):
        return None  # the task itself reports the problem


class Attempt:
    """This attempt of the task, reported in its state file by the task's first node."""

    def __init__(self, env: Dict[str, str], ns: Args, replica: int) -> None:
        self.reporter = _is_first_task(env, ns.het_group) and bool(env.get(envvars.STATE_DIR.name))
        self.file = TaskFile(env.get(envvars.STATE_DIR.name, ""), env[envvars.APP_ID.name], ns.role, replica)
        if env.get(envvars.STATE_DIR.name):
            self.file.load()
        self.key = job_key(env)
        self.number, self.initial = self.file.attempt_for(self.key, env.get("SLURM_RESTART_COUNT", "0"))
        self.host = env.get("SLURMD_NODENAME") or os.uname().nodename  # (socket's import costs 4 ms a task)
        self.entry = AttemptEntry(attempt=self.number, job_key=self.key, job_id=env.get("SLURM_JOB_ID", ""),
                                  restart=env.get("SLURM_RESTART_COUNT", "0"), host=self.host, start=time.time())

    def started(self) -> None:
        if self.reporter:
            self.file.write(replace(self.entry, state=FileState.RUNNING.value, outcome="running"))

    def ended(self, outcome: Outcome, code: int, note: str = "", ran: Optional[Ending] = None, saved: bool = False) -> None:
        """The attempt's end, as the launcher saw it (``ran``: how the program it ran ended)."""
        if self.reporter:
            end = replace(self.entry, end=time.time(), outcome=outcome.value, exit_code=code,
                          state=outcome.file_state.value, note=note)
            if ran is not None:
                end = replace(end, stopped_by=ran.stopped_by, warned_by=ran.warned_by, saved=saved)
            self.file.write(end)


def claim(env: Dict[str, str]) -> str:
    """Why a job sent without a hold (an app of one job: ``FORGE_SUBMISSION`` says which submission)
    must not run, or "". Under the record of another submission it must not: Slurm gave its id
    again after losing an older app's job, and the client cancels it and submits it again. Before
    its record exists, it leaves its app id in the submission's claim: a client killed before the
    record leaves the next forge command the id to adopt, even once the job has left squeue."""
    mine, state_dir = env.get(envvars.SUBMISSION.name, ""), env.get(envvars.STATE_DIR.name, "")
    if not mine or not state_dir:
        return ""
    app_id = env[envvars.APP_ID.name]
    try:
        obj = json.loads(read_file(layout.join(state_dir, layout.record(app_id))))
    except FileNotFoundError:
        try:
            write_file(layout.join(state_dir, layout.intent_claim(mine)), app_id.encode())
        except Exception:  # noqa: BLE001 - the claim only helps a client that died; never stop the task for it
            pass
        return ""
    except Exception:  # noqa: BLE001 - a store that does not answer: the task file reports it
        return ""
    theirs = obj.get("submission", "") if isinstance(obj, dict) else ""
    if theirs and theirs != mine:
        return (f"job id {app_id} names an older app of {state_dir} (submission {theirs}): Slurm gave the id again"
                f" after losing that app's job; this job (submission {mine}) is cancelled and submitted again")
    return ""


def run(argv: Sequence[str]) -> int:
    ns = _parse(argv)
    env = task_env(ns, dict(os.environ))
    refused = claim(env)
    env.pop(envvars.SUBMISSION.name, None)  # the program's own submissions are not this one
    if refused:
        say(f"torchx-forge: {refused}; not starting")
        return 1
    replica = int(env[envvars.REPLICA_ID.name])
    try:
        attempt = Attempt(env, ns, replica)
    except NewerFormatError as e:  # its state file is a newer torchx-forge's: neither count nor overwrite it
        say(f"torchx-forge: {e}; not starting")
        return 2
    env[envvars.ATTEMPT.name], env[envvars.INITIAL_JOB_ID.name] = str(attempt.number), attempt.initial
    policy = RetryPolicy.from_env(env)
    if env.get(envvars.MAX_RETRIES.name) and not policy.attempts_left(attempt.number):
        note = exhausted_note(attempt.number, policy)
        say(f"torchx-forge: {note}; not starting")
        attempt.ended(Outcome.EXHAUSTED, 1, note)
        return 1
    try:
        run_row = sweep_run(ns.command)
    except task.RunError as e:
        say(f"torchx-forge: {e}")
        attempt.ended(Outcome.FAILED, e.code, str(e))
        return e.code
    run_id = run_row.run_id if run_row else contract.default_run_id(env[envvars.APP_ID.name], ns.role, replica)
    try:
        resumed = contract.apply(env, run_id, run_row.checkpoint_dir or None if run_row else None)
    except (CheckpointError, OSError) as e:
        note = f"cannot choose a checkpoint to resume from: {e}"
        say(f"torchx-forge: {note}")
        # a store that did not answer is no bad checkpoint: the attempt failed, and may be retried
        down = isinstance(e, StoreUnreachableError) or getattr(e, "unreachable", False)
        attempt.ended(Outcome.FAILED if down else Outcome.BAD_CHECKPOINT, 2, note)
        return 2
    attempt.entry = replace(attempt.entry, resumed_from=resumed or "")
    program = list(ns.command) if run_row else contract.resume_argv(list(ns.command), env)
    if attempt.number > 0:
        banner = f"==== torchx-forge: {run_id} attempt {attempt.number} (job {attempt.key} on {attempt.host})" + (
            f", resuming from {resumed}" if resumed else ", no checkpoint to resume from") + " ===="
        say(banner, sys.stdout)
        say(banner)
    done_file = _done_file(env, attempt.key, ns.role, replica)
    attempt.started()
    cwd = None
    if run_row and in_process(ns.command):
        try:
            ready = task.prepare(run_row, env)
        except task.RunError as e:
            say(f"torchx-forge: {e}")
            attempt.ended(Outcome.FAILED, e.code, str(e))
            return e.code
        program, env, cwd = ready.argv, ready.env, ready.workdir
    ending = Supervisor(program, env, policy, cwd).run()
    finished = bool(done_file) and os.path.exists(done_file)
    saved = ending.warned_at is not None and saved_since(env[envvars.CHECKPOINT_DIR.name], ending.warned_at, resumed)
    outcome = outcome_of(ending.code, bool(ending.warned_by), ending.stopped_by, finished, saved)
    code, note = ending.code, warned_note(ending, outcome, finished, saved)
    lost = output_lost(env[envvars.LOG_DIR.name]) if env.get(envvars.LOG_DIR.name) else ""
    if lost:  # a run whose output is gone is no clean success
        say(f"torchx-forge: {lost}")
        outcome, code, note = (Outcome.FAILED, LOG_LOST_EXIT, lost) if outcome is Outcome.COMPLETED else (
            outcome, code, "; ".join(n for n in (note, lost) if n))
    attempt.ended(outcome, code, note, ran=ending, saved=saved)
    if attempt.reporter and (run_row or replica == 0):  # a role's replicas are one run: replica 0 reports it
        report_run(env, run_row, run_id, ns.role, replica, outcome.file_state.value, code)
    return REQUEUE_EXIT if outcome == Outcome.INTERRUPTED else code


def output_lost(log_dir: str, settle: float = 1.0) -> str:
    """Why the task's log lost output ("" when it did not): srun writes the program's stdout and
    stderr to files in the log dir, and a full file system there drops what it printed, silently.

    slurmstepd may still be writing the last output when the program has exited: on a file system
    that is nearly full, the check is repeated for up to ``settle`` seconds."""
    end = time.monotonic() + settle
    while True:
        try:
            st = os.statvfs(log_dir)
        except OSError:
            return ""
        free = st.f_bavail * st.f_frsize
        if free < LOG_ROOM:
            return f"the log dir is full ({log_dir}): the program's output is lost"
        if free > NEARLY_FULL or time.monotonic() > end:
            return ""
        time.sleep(0.1)


def _done_file(env: Dict[str, str], key: str, role: str, replica: int) -> str:
    """FORGE_DONE_FILE: the program creates it to say it finished, even when warned (jobs with retries)."""
    warn_file = env.get(envvars.WARN_FILE.name, "")
    if not warn_file:
        return ""
    path = os.path.join(os.path.dirname(os.path.dirname(warn_file)), ".forge-done", f"{key}.{role}.{replica}")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    env[envvars.DONE_FILE.name] = path
    return path


def warned_note(ending: Ending, outcome: Outcome, finished: bool, saved: bool) -> str:
    """What status says of a warned exit (empty when there was no warning)."""
    if not ending.warned_by:
        return ""
    at = time.strftime("%H:%M:%S", time.localtime(ending.warned_at or 0))
    head = f"warned ({ending.warned_by} at {at}), exited {ending.code}"
    if outcome is Outcome.COMPLETED:
        return head + (" and said it finished" if finished else " without saving a checkpoint: taken as finished")
    return head + (" after saving a checkpoint" if saved else "") + ": interrupted, to be resumed"


def main() -> None:
    be_patient(store_wait())  # a short outage of a state dir on an object store must not cost a task its state
    code = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except OSError:  # a full log dir: run() has reported it already
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (nothing left to flush at exit)
    sys.exit(code)


if __name__ == "__main__":
    main()
