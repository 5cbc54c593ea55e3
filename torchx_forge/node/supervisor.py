"""The program's processes: hand them the pre-timeout warning, stop them after the grace time.

The warning goes to the *program* processes only: wrappers and launchers (``sh -c``,
``torchrun``, forge's own sweep-point runner) are skipped and their children signalled instead,
so torchrun survives and its workers save. Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, TextIO

from torchx_forge.core import envvars
from torchx_forge.core.policy import RetryPolicy
from torchx_forge.core.record import record

TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WRAPPER_PROGRAMS = {"sh", "bash", "dash", "zsh", "env", "torchrun", "time", "nice", "stdbuf", "apptainer",
                    "singularity", "starter", "starter-suid"}
WRAPPER_MODULES = {"torch.distributed.run", "torch.distributed.launch", "torchx_forge.node.task",
                   "torchx_forge.node.launch"}


def say(text: str, stream: Optional[TextIO] = None) -> None:
    """A line for the task's log; a log that cannot be written (a full log dir) must not stop the task."""
    try:
        print(text, file=stream or sys.stderr, flush=True)
    except OSError:
        pass


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


def _exit_waiter(child: subprocess.Popen[bytes]) -> Callable[[float], Optional[int]]:
    """``wait(timeout)``: the program's exit status as soon as it exits, or None after ``timeout`` s.

    Woken by the kernel through a pidfd (Linux 5.3+) rather than polled: Popen's own ``wait(timeout)``
    sleeps between polls (up to 50 ms), which every short task would pay as its slot's idle time."""
    try:
        fd = os.pidfd_open(child.pid)
    except (AttributeError, OSError):  # no pidfd here: poll
        def polled(timeout: float) -> Optional[int]:
            try:
                return child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        return polled

    def woken(timeout: float) -> Optional[int]:
        select.select([fd], [], [], timeout)  # interrupted by a signal: its handler runs, then this goes on
        rc = child.poll()
        if rc is not None:
            os.close(fd)
        return rc
    return woken


@record
class Ending:
    """How the program ended: its exit code (128 + N for death by signal N), the signal that warned
    it (``USR1``, or ``TERM`` from a preemption, cancel or time limit) and when, and the terminating
    signal the launcher itself received from outside."""

    code: int
    warned_by: str = ""
    warned_at: Optional[float] = None
    stopped_by: Optional[int] = None


class Supervisor:
    """Runs the program, hands it the warning, stops it after the grace period."""

    def __init__(self, argv: List[str], env: Dict[str, str], policy: RetryPolicy, cwd: Optional[str] = None) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.warn_sig: Optional[int] = policy.warning.number if policy.warning else None
        self.warn_file = env.get(envvars.WARN_FILE.name) or None
        self.grace = float(policy.grace)
        self.warned = False
        self.warned_by = ""
        self.warned_at: Optional[float] = None
        self.stopped_by: Optional[int] = None
        self.deadline: Optional[float] = None
        self.child: Optional[subprocess.Popen[bytes]] = None

    def warn(self, why: str, by: str) -> None:
        if self.warned or self.child is None:
            return
        self.warned, self.warned_by, self.warned_at = True, by, time.time()
        self.deadline = time.monotonic() + self.grace
        pids = program_pids(self.child.pid)
        if self.warn_sig is not None:
            say(f"torchx-forge: {why}: sending SIG{signal.Signals(self.warn_sig).name[3:]} to pid(s)"
                f" {' '.join(map(str, pids))}; {self.grace:.0f}s to save and exit")
            _signal_all(pids, self.warn_sig)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == self.warn_sig:
            self.warn(f"received SIG{signal.Signals(signum).name[3:]}", signal.Signals(signum).name[3:])
            return
        self.stopped_by = self.stopped_by or signum
        if self.warn_sig is not None:
            self.warn(f"received {signal.Signals(signum).name} (cancel, time limit or preemption)",
                      signal.Signals(signum).name[3:])
        if self.child is not None:
            _signal_all([self.child.pid], signum)

    def run(self) -> Ending:
        """Run the program to its end."""
        try:
            self.child = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd)
        except OSError as e:
            say(f"torchx-forge: cannot run {self.argv[0]!r}: {e.strerror}")
            return Ending(127)
        for sig in TERMINATING_SIGNALS + ((self.warn_sig,) if self.warn_sig else ()):
            signal.signal(sig, self._on_signal)
        next_poll, escalated = 0.0, 0
        exited = _exit_waiter(self.child)
        while True:
            rc = exited(0.2)
            if rc is not None:
                break
            now = time.monotonic()
            if self.warn_file and not self.warned and now >= next_poll:
                next_poll = now + 1.0
                if os.path.exists(self.warn_file):
                    self.warn("pre-timeout warning", self._warn_name())
            if self.deadline is not None and now > self.deadline + 10 * escalated:
                sig = signal.SIGTERM if escalated == 0 else signal.SIGKILL
                say(f"torchx-forge: grace period over: sending {sig.name} to the program")
                _signal_all(_tree(self.child.pid), sig)
                escalated += 1
        return Ending(128 - rc if rc < 0 else rc, self.warned_by, self.warned_at, self.stopped_by)

    def _warn_name(self) -> str:
        return signal.Signals(self.warn_sig).name[3:] if self.warn_sig is not None else "warning"
