#!/usr/bin/env python3
"""Laptop benchmark (issue 19): submit of a 1,000-point sweep and status of that app from a
"laptop" over one multiplexed SSH connection (runopt ``login``), against the same two commands on
the login node itself and against TorchX's own ``slurm`` scheduler, measured in the same run on the
real cluster of this machine and its loopback OpenSSH server.

    python3 benchmarks/bench_laptop.py            # about 3-5 minutes
    python3 benchmarks/bench_laptop.py --keep     # keep the scratch directory (/tmp/forge-bench-laptop-*)

The "laptop" is built as tests/remote/conftest.py builds it: its own HOME whose ``~/.ssh/config``
includes the lab's ssh_config (Host ``forge-lab``), its own Python (the venv /tmp/forge-laptop-venv),
a PATH whose first entry holds failing stand-ins of every Slurm command and an ``ssh`` wrapper that
passes ``-F $HOME/.ssh/config`` (and counts its calls), and nothing else of this process's
environment (PYTHONPATH excepted). Every figure is the median of fresh processes timed from this
script (wall clock; CPU = user + system of the process and its children, from ``/usr/bin/time -v``:
on the laptop that is the laptop's side only, the agent on the login node is not in it). Nothing is
tuned to pass: a missed target prints FAIL with its figures. Exit status: 0 every target passed,
1 one failed, 2 error, 130 interrupted. See benchmarks/README.md.

Every job submitted carries a unique ``--comment`` (and forge's a job name starting with
``fb<hex>``); the sweeps are submitted with ``array_parallelism=1`` and held right after
submission (``scontrol hold``) so the lab is not loaded, and everything is cancelled at the end,
also on error or Ctrl-C. Jobs of others are never touched, but noted when they share the cluster
during a timed section.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _common import (
    PYCACHE,
    REPO,
    TIME_BIN,
    BenchBase,
    BenchError,
    guarded_main,
    med,
    say,
    section,
    sh,
    spread,
    table,
    tail,
)

SUBMIT_REPS = 3  # timed submissions of each kind
STATUS_REPS = 5  # timed statuses of each kind
POINTS = 1_000
SSHD_DIR = "/tmp/forge-sshd"
SSHD_LOCK = "/tmp/forge-sshd.lock"  # the lock tests/remote/conftest.py holds around starting the sshd
LAPTOP_VENV = "/tmp/forge-laptop-venv"
ALIAS = "forge-lab"
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo", "sacctmgr", "srun", "salloc", "munge")

# Targets (issue 19), on loopback.
LAPTOP_SUBMIT_MAX = 1.0  # s, wall, `torchx run` of a 1,000-point sweep from an unchanged workspace
LAPTOP_STATUS_MAX = 0.5  # s, wall, `torchx status` of that app

_STANDIN = """#!/bin/sh
echo "$(basename "$0") $*" >> '{called}'
echo "$(basename "$0"): not on this laptop (a stand-in of bench_laptop.py: Slurm is reached over ssh)" >&2
exit 127
"""

#: OpenSSH reads ~/.ssh/config from the passwd entry, not $HOME; one line per call to $FORGE_BENCH_SSH_LOG
_SSH_WRAPPER = """#!/bin/sh
[ -n "$FORGE_BENCH_SSH_LOG" ] && echo "{name}" >> "$FORGE_BENCH_SSH_LOG"
exec /usr/bin/{name} -F "$HOME/.ssh/config" "$@"
"""

#: one laptop submission and status in-process, every ssh call timed and named (never timed from outside)
BREAKDOWN = r'''
import json, sys, time
t0 = time.perf_counter()
from torchx.runner import get_runner
from torchx_forge_components.forge import grid
import torchx_forge.laptop
from torchx_forge.remote import ssh
t_import = time.perf_counter() - t0
calls = []
real = ssh.Login.run
def timed_run(self, command, input=None, timeout=None):
    t = time.perf_counter()
    p = real(self, command, input=input, timeout=timeout)
    if "torchx_forge.agent" in command:
        what = "agent " + json.loads(input)["op"]
    elif command[:2] == ["sh", "-c"]:
        what = "snapshot check" if not input else "snapshot extract"
    else:
        what = command[0]
    calls.append([what, time.perf_counter() - t, len(input or b""), len(p.stdout)])
    return p
ssh.Login.run = timed_run
n, name, cfg = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
runner = get_runner()
t1 = time.perf_counter()
app = grid("true", axes=f"x=range(0,{n})", name=name)
t2 = time.perf_counter()
handle = runner.run(app, scheduler="slurm_forge", cfg=cfg)
t3 = time.perf_counter()
submit_calls = calls[:]
del calls[:]
statuses = []
for _ in range(3):  # each from a runner of its own: not the status the submission returned with the id
    del calls[:]
    t4 = time.perf_counter()
    status = get_runner().status(handle)
    statuses.append(time.perf_counter() - t4)
print(json.dumps({"handle": handle, "import_s": t_import, "build_s": t2 - t1, "run_s": t3 - t2,
                  "status_s": sorted(statuses)[1],
                  "submit_calls": submit_calls, "status_calls": calls, "state": status.state.name if status else None}))
'''


@dataclass
class Run:
    wall: float
    cpu: float  # user + system, the process and its children (s)
    rss_kb: int
    ssh_calls: int
    stdout: str


def run_cpu_timed(argv: Sequence[str], cwd: str, env: Dict[str, str], scratch: str) -> Run:
    """Run argv once under /usr/bin/time -v (stdout to a file); wall clock from here, CPU from time."""
    fd, tpath = tempfile.mkstemp(dir=scratch, prefix="time-")
    os.close(fd)
    sshlog = tpath + ".ssh"
    env = dict(env, FORGE_BENCH_SSH_LOG=sshlog)
    with tempfile.TemporaryFile(dir=scratch) as out:
        t0 = time.perf_counter()
        p = subprocess.run([TIME_BIN, "-v", "-o", tpath, *argv], cwd=cwd, env=env, stdout=out,
                           stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    with open(tpath) as f:
        report = f.read()
    os.unlink(tpath)
    ssh_calls = 0
    if os.path.exists(sshlog):
        with open(sshlog) as f:
            ssh_calls = sum(1 for line in f if line.strip())
        os.unlink(sshlog)
    if p.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` (in {cwd}) exited {p.returncode}:\n{tail(p.stderr)}")
    fields = {}
    for line in report.splitlines():
        key, _, value = line.strip().rpartition(":")
        fields[key.strip()] = value.strip()
    cpu = float(fields.get("User time (seconds)", 0)) + float(fields.get("System time (seconds)", 0))
    return Run(wall, cpu, int(fields.get("Maximum resident set size (kbytes)", 0)), ssh_calls, stdout)


def handle_of(stdout: str) -> str:
    for line in reversed(stdout.strip().splitlines()):
        if "://" in line:
            return line.strip()
    raise BenchError(f"no app handle in the output:\n{tail(stdout)}")


class LaptopBench(BenchBase):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(prefix="forge-bench-laptop-", keep=args.keep)
        self.submit_reps = args.submit_reps
        self.status_reps = args.status_reps
        self.points = args.points
        self.python = args.python or sys.executable  # the cluster's interpreter (runopt python)
        self.name = f"fb{self.token.rsplit('-', 1)[1]}"
        self.name_prefixes = [self.name]
        self.rows: List[List[str]] = []  # the figures table
        self.figures: Dict[str, List[Run]] = {}
        self.extras: List[Tuple[str, str]] = []
        # the laptop
        self.lap = os.path.join(self.root, "laptop")
        # short: forge's ControlPath ~/.cache/torchx-forge/ssh/%C, plus the ".<16 random>" ssh adds while it makes the
        # master's socket, must fit a socket's 107 bytes (else forge falls back to a directory under /tmp shared with
        # every other laptop of this user: the tests', whose master we would close at the end)
        self.home = tempfile.mkdtemp(prefix="fbl", dir="/tmp")
        self.bin = os.path.join(self.lap, "bin")
        self.lap_state = os.path.join(self.lap, "state")
        self.called = os.path.join(self.lap, "slurm-called")
        self.ws = os.path.join(self.root, "ws")
        self.vanilla_cwd = os.path.join(self.root, "vanilla")
        for d in (self.bin, self.lap_state, self.vanilla_cwd, os.path.join(self.ws, "conf")):
            os.makedirs(d)
        ssh_dir = os.path.join(self.home, ".ssh")
        os.makedirs(ssh_dir, mode=0o700)
        with open(os.path.join(ssh_dir, "config"), "w") as f:
            f.write(f"Include {SSHD_DIR}/ssh_config\n")
        os.chmod(os.path.join(ssh_dir, "config"), 0o600)
        for name in SLURM_COMMANDS:
            self._script(name, _STANDIN.format(called=self.called))
        for name in ("ssh", "scp", "sftp"):
            self._script(name, _SSH_WRAPPER.format(name=name))
        # a small workspace: a few files, shipped once before the timed runs
        files = {"train.py": "import sys\nprint('train', sys.argv[1:])\n", "README.md": "a workspace\n",
                 "conf/base.yaml": "lr: 0.1\nlayers: 4\n", "requirements.txt": "torch\n"}
        for rel, text in files.items():
            with open(os.path.join(self.ws, rel), "w") as f:
                f.write(text)
        self.laptop_python = os.path.join(LAPTOP_VENV, "bin", "python")
        self.lap_env = {"HOME": self.home, "PATH": f"{self.bin}:{os.path.dirname(self.laptop_python)}:/usr/bin:/bin",
                        "USER": os.environ.get("USER", "root"), "LOGNAME": os.environ.get("LOGNAME", "root"),
                        "LANG": "C.UTF-8", "FORGE_STATE_DIR": self.lap_state, "PYTHONPYCACHEPREFIX": PYCACHE}
        if os.environ.get("PYTHONPATH"):
            self.lap_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.lap_torchx = [self.laptop_python, "-m", "torchx.cli.main"]

    def _script(self, name: str, text: str) -> None:
        path = os.path.join(self.bin, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)

    # -- set-up --------------------------------------------------------------------------

    def setup(self) -> None:
        section("set-up: the loopback sshd, the laptop venv, the master connection, the workspace shipped once")
        with open(SSHD_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                p = sh([os.path.join(REPO, "scripts", "local-sshd"), "up", "--dir", SSHD_DIR], check=False)
                if p.returncode != 0:
                    raise BenchError(f"scripts/local-sshd up failed: {p.stderr.strip() or p.stdout.strip()}")
                if not os.path.exists(os.path.join(LAPTOP_VENV, ".complete")):
                    sh([sys.executable, "-m", "venv", "--clear", "--system-site-packages", LAPTOP_VENV])
                    open(os.path.join(LAPTOP_VENV, ".complete"), "w").close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        say(f"  sshd        {SSHD_DIR} (port {p.stdout.split()[-1]}), Host {ALIAS}")
        probe = sh([self.laptop_python, "-c", "import torchx_forge, sys; print(torchx_forge.__file__, sys.executable)"],
                   env=self.lap_env)
        say(f"  laptop      python {self.laptop_python}; imports {probe.stdout.split()[0]}")
        there = self.lap_sh(["ssh", ALIAS, "--", self.python, "-c", "'import torchx_forge; print(torchx_forge.__file__)'"])
        say(f"  login node  python {self.python} (runopt python); imports {there.stdout.strip()}")
        say(f"  state dirs  laptop {self.lap_state}; cluster {self.state} (runopt state_dir; FORGE_STATE_DIR on the"
            " login node)")
        # the master connection, through forge's own ControlPath
        self.master = json.loads(self.lap_sh([self.laptop_python, "-c", (
            "import json; from torchx_forge.remote.ssh import Login\n"
            "login = Login('forge-lab'); t = __import__('time').perf_counter(); p = login.run(['true'])\n"
            "print(json.dumps({'rc': p.returncode, 's': __import__('time').perf_counter() - t,"
            " 'argv': login.ssh_argv(['true'])}))")]).stdout.strip().splitlines()[-1])
        if self.master["rc"] != 0:
            raise BenchError("`ssh forge-lab true` through forge's ControlPath failed")
        self.control = next(a.split("=", 1)[1] for a in self.master["argv"] if a.startswith("ControlPath="))
        if not self.control.startswith(self.home + "/"):
            raise BenchError(f"forge's ControlPath {self.control} is not under the laptop's HOME {self.home}")
        self.check_master()
        say(f"  master      opened by `ssh {ALIAS} true` in {self.master['s']:.3f} s; ControlPath {self.control}")
        # ship the workspace once (untimed): the timed submits find the snapshot there
        self.cfg = (f"login={ALIAS},python={self.python},state_dir={self.state},array_parallelism=1")
        p = self.lap_sh([*self.lap_torchx, "run", "--scheduler", "slurm_forge", "-cfg",
                         f"{self.cfg},comment={self.token}-ship", "forge.grid", "--name", f"{self.name}s", "--axes",
                         f"x=range(0,{self.points})", "--", "true"], cwd=self.ws)
        shipped = [line for line in p.stderr.splitlines() if "snapshot" in line or "shipping" in line]
        self.scancel(self.ours(f"{self.token}-ship", all_states=True))
        say(f"  workspace   {self.ws} ({len(os.listdir(self.ws))} entries), shipped by an untimed submit:"
            f" {shipped[-1].split(': ', 1)[-1] if shipped else '?'}")

    def lap_sh(self, argv: Sequence[str], cwd: Optional[str] = None) -> subprocess.CompletedProcess:
        return sh(argv, cwd=cwd or self.home, env=self.lap_env)

    def check_master(self) -> None:
        p = sh(["/usr/bin/ssh", "-F", os.path.join(self.home, ".ssh", "config"), "-o", f"ControlPath={self.control}",
                "-O", "check", ALIAS], check=False)
        if p.returncode != 0:
            raise BenchError(f"the master connection is not up: {p.stderr.strip()}")

    def close_master(self) -> None:
        if getattr(self, "control", None):
            sh(["/usr/bin/ssh", "-F", os.path.join(self.home, ".ssh", "config"), "-o", f"ControlPath={self.control}",
                "-O", "exit", ALIAS], check=False)

    # -- timing ----------------------------------------------------------------------------

    def timed_run(self, argv: Sequence[str], cwd: str, env: Dict[str, str]) -> Run:
        r = run_cpu_timed(argv, cwd, env, self.scratch)
        self.look()
        return r

    def hold(self, comment: str) -> List[str]:
        """Hold the (array) jobs of ``comment`` at once (untimed), so the lab is not loaded; cancelled at the end."""
        ids = self.ours(comment, all_states=True)
        self.submitted.extend(ids)
        if ids:
            sh(["scontrol", "hold", *ids], check=False)
        return ids

    def submits(self, key: str, argv_for, cwd: str, env: Dict[str, str]) -> str:
        """``submit_reps`` timed submissions; each held at once, all but the last cancelled; the last's handle."""
        runs: List[Run] = []
        handle = ""
        for k in range(self.submit_reps):
            comment = f"{self.token}-{key}{k}"
            r = self.timed_run(argv_for(comment, f"{self.name}{key}{k}"), cwd, env)
            ids = self.hold(comment)
            handle = handle_of(r.stdout)
            runs.append(r)
            if k < self.submit_reps - 1:
                self.scancel(ids)
        self.figures[key] = runs
        return handle

    def statuses(self, key: str, argv: Sequence[str], cwd: str, env: Dict[str, str]) -> None:
        runs = [self.timed_run(argv, cwd, env) for _ in range(self.status_reps)]
        if "State:" not in runs[-1].stdout:
            raise BenchError(f"`{shlex.join(argv)}` printed no state:\n{tail(runs[-1].stdout)}")
        self.figures[key] = runs

    # -- the sections ----------------------------------------------------------------------

    def bench(self) -> Dict[str, str]:
        n = self.points
        grid = ["forge.grid", "--axes", f"x=range(0,{n})", "--", "true"]
        lap_run = [*self.lap_torchx, "run", "--scheduler", "slurm_forge"]
        here_env = dict(self.env)
        handles: Dict[str, str] = {}

        section(f"1. from the laptop: submit a {n:,}-point sweep (unchanged workspace) and its status, over ssh")
        self.check_master()
        watch = self.watch_start()
        handles["lap"] = self.submits("lap_submit", lambda c, name: [*lap_run, "-cfg", f"{self.cfg},comment={c}",
                                                                      "forge.grid", "--name", name, *grid[1:]],
                                      self.ws, self.lap_env)
        self.statuses("lap_status", [*self.lap_torchx, "status", handles["lap"]], self.ws, self.lap_env)
        self.watch_stop("laptop", watch)
        say(f"  app {handles['lap']}")

        section("2. on the login node itself: the same submit and status (FORGE_STATE_DIR = the cluster state dir)")
        watch = self.watch_start()
        handles["here"] = self.submits("here_submit", lambda c, name: [
            self.torchx, "run", "--scheduler", "slurm_forge", "-cfg", f"array_parallelism=1,comment={c}",
            "forge.grid", "--name", name, *grid[1:]], self.ws, here_env)
        self.statuses("here_status", [self.torchx, "status", handles["here"]], self.ws, here_env)
        self.watch_stop("login node", watch)
        say(f"  app {handles['here']}")

        section("3. vanilla TorchX `slurm` on the login node (reference): `torchx run utils.sh true` and its status")
        watch = self.watch_start()
        handles["van"] = self.submits("van_submit", lambda c, name: [
            self.torchx, "run", "--scheduler", "slurm", "-cfg", f"comment={c}", "utils.sh", "true"],
            self.vanilla_cwd, here_env)
        self.statuses("van_status", [self.torchx, "status", handles["van"]], self.vanilla_cwd, here_env)
        self.watch_stop("vanilla", watch)
        say(f"  app {handles['van']}")
        if os.path.exists(self.called):
            with open(self.called) as f:
                raise BenchError(f"the laptop ran Slurm commands itself: {f.read().strip()}")
        return handles

    def breakdown(self, handles: Dict[str, str]) -> None:
        section("4. where the laptop's time goes (untimed by the targets)")
        self.check_master()
        # a) one submission + status in-process on the laptop, every ssh call timed and named
        cfg: Dict[str, Any] = {"login": ALIAS, "python": self.python, "state_dir": self.state, "array_parallelism": 1,
                               "comment": f"{self.token}-bd"}
        p = sh([self.laptop_python, "-c", BREAKDOWN, str(self.points), f"{self.name}bd", json.dumps(cfg)],
               cwd=self.ws, env=self.lap_env, check=False)
        self.hold(f"{self.token}-bd")
        self.scancel(self.ours(f"{self.token}-bd", all_states=True))
        if p.returncode != 0:
            raise BenchError(f"the in-process laptop submission failed:\n{tail(p.stderr)}")
        bd = json.loads(p.stdout.strip().splitlines()[-1])
        rows = [["laptop, in-process (runner.run + runner.status)", "wall", "bytes in / out"]]
        rows.append(["import torchx.runner, forge's component and torchx_forge.laptop", f"{bd['import_s']:.3f} s", ""])
        rows.append([f"grid(...) : the AppDef of {self.points:,} points", f"{bd['build_s']:.3f} s", ""])
        ssh_sub = sum(c[1] for c in bd["submit_calls"])
        for what, s, nin, nout in bd["submit_calls"]:
            rows.append([f"  ssh: {what}", f"{s:.3f} s", f"{nin:,} / {nout:,}"])
        rows.append([f"runner.run: total ({len(bd['submit_calls'])} ssh calls, {ssh_sub:.3f} s of them)",
                     f"{bd['run_s']:.3f} s", ""])
        for what, s, nin, nout in bd["status_calls"]:
            rows.append([f"  ssh: {what}", f"{s:.3f} s", f"{nin:,} / {nout:,}"])
        rows.append([f"runner.status, a fresh runner: total ({len(bd['status_calls'])} ssh call(s); median of 3)",
                     f"{bd['status_s']:.3f} s", ""])
        say(table(rows))
        self.bd = bd

        # b) the floor of one call: an ssh round trip through the master, and the agent's own start on the login node
        hello = json.dumps({"protocol": 1, "op": "hello", "state_dir": self.state})
        mux = ["ssh", "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}"]
        rt = [self.timed_run([*mux, ALIAS, "true"], self.home, self.lap_env).wall for _ in range(5)]
        fresh = [self.timed_run(["ssh", "-o", "ControlPath=none", ALIAS, "true"], self.home, self.lap_env).wall
                 for _ in range(3)]
        agent_here = [self.timed_run(["sh", "-c", f"echo '{hello}' | {shlex.quote(self.python)} -m torchx_forge.agent"],
                                     self.home, self.env) for _ in range(5)]
        agent_ssh = [self.timed_run(["sh", "-c", f"echo '{hello}' | {shlex.join(mux)} {ALIAS} {shlex.quote(self.python)} -m"
                                     " torchx_forge.agent"], self.home, self.lap_env).wall for _ in range(5)]
        # loopback: one clock; how long from the laptop starting ssh to the remote command running, and back
        starts, ends = [], []
        for _ in range(5):
            t0 = time.time()
            out = sh([*mux, ALIAS, "date +%s.%N"], env=self.lap_env, cwd=self.home).stdout.strip()
            t1 = time.time()
            starts.append(float(out) - t0)
            ends.append(t1 - float(out))
        bare = [self.timed_run([self.python, "-c", "pass"], self.home, self.env).wall for _ in range(5)]
        imp = [self.timed_run([self.python, "-c", "import torchx_forge.agent"], self.home, self.env) for _ in range(5)]
        lap_imp = [self.timed_run([self.laptop_python, "-c", "import torchx.cli.main, torchx_forge.laptop,"
                                   " torchx_forge_components.forge"], self.home, self.lap_env) for _ in range(5)]
        lap_help = [self.timed_run([*self.lap_torchx, "status", "--help"], self.home, self.lap_env) for _ in range(5)]
        rows = [["one call's floor (median of 5)", "wall", "CPU"]]
        rows.append([f"`ssh {ALIAS} true` through the warm master (laptop)", f"{med(rt):.3f} s", ""])
        rows.append(["  of which: laptop starts ssh -> remote command runs (remote shell start)", f"{med(starts):.3f} s", ""])
        rows.append(["  of which: the remote command ends -> the laptop's ssh exits", f"{med(ends):.3f} s", ""])
        rows.append([f"`ssh {ALIAS} true`, a new connection (no master; median of 3)", f"{med(fresh):.3f} s", ""])
        rows.append(["`python -c pass` on the login node", f"{med(bare):.3f} s", ""])
        rows.append(["`python -c 'import torchx_forge.agent'` on the login node",
                     f"{med([r.wall for r in imp]):.3f} s", f"{med([r.cpu for r in imp]):.3f} s"])
        rows.append(["agent `hello` on the login node, no ssh", f"{med([r.wall for r in agent_here]):.3f} s",
                     f"{med([r.cpu for r in agent_here]):.3f} s"])
        rows.append(["agent `hello` from the laptop over the master", f"{med(agent_ssh):.3f} s", ""])
        rows.append(["laptop: import torchx.cli.main, torchx_forge.laptop, forge component",
                     f"{med([r.wall for r in lap_imp]):.3f} s", f"{med([r.cpu for r in lap_imp]):.3f} s"])
        rows.append(["laptop: `torchx status --help` (the CLI's start, no call)", f"{med([r.wall for r in lap_help]):.3f} s",
                     f"{med([r.cpu for r in lap_help]):.3f} s"])
        say(table(rows))
        self.floor = {"rt": med(rt), "agent_here": med([r.wall for r in agent_here]), "agent_ssh": med(agent_ssh),
                      "agent_import": med([r.wall for r in imp]), "lap_help": med([r.wall for r in lap_help])}

        # c) the agent's imports, heaviest first (-X importtime, cumulative)
        p = sh([self.python, "-X", "importtime", "-c", "import torchx_forge.agent"], cwd=self.home, env=self.env)
        top = []
        for line in p.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if m and len(m.group(3)) <= 3:  # top-level imports of the agent and their first level
                top.append((int(m.group(2)), m.group(4)))
        top.sort(reverse=True)
        say("  the agent's heaviest imports (python -X importtime, cumulative, top level):")
        say("    " + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in top[:8]))

    # -- report ----------------------------------------------------------------------------

    def report(self) -> None:
        section("figures (wall: median and min-max; CPU: median, the local process and its children)")
        labels = {
            "lap_submit": f"laptop  `torchx run --scheduler slurm_forge -cfg login=... forge.grid` ({self.points:,} pts)",
            "lap_status": "laptop  `torchx status slurm_forge://torchx/ID@forge-lab`",
            "here_submit": f"login   `torchx run --scheduler slurm_forge forge.grid` ({self.points:,} pts)",
            "here_status": "login   `torchx status slurm_forge://torchx/ID`",
            "van_submit": "login   vanilla `torchx run --scheduler slurm utils.sh true` (1 job)",
            "van_status": "login   vanilla `torchx status slurm://torchx/ID`",
        }
        rows = [["command", "wall", "min-max", "CPU", "max RSS", "ssh calls"]]
        for key, label in labels.items():
            runs = self.figures[key]
            walls = [r.wall for r in runs]
            calls = sorted({r.ssh_calls for r in runs})
            rows.append([label, f"{med(walls):.3f} s", spread(walls), f"{med([r.cpu for r in runs]):.3f} s",
                         f"{max(r.rss_kb for r in runs) * 1024 / 1e6:.1f} MB", "/".join(map(str, calls))])
        say(table(rows))
        m = {k: med([r.wall for r in v]) for k, v in self.figures.items()}
        say()
        rows = [["ratio (wall medians)", "x"]]
        rows.append(["laptop submit / login-node submit", f"{m['lap_submit'] / m['here_submit']:.2f}x"])
        rows.append(["laptop status / login-node status", f"{m['lap_status'] / m['here_status']:.2f}x"])
        rows.append(["laptop submit / vanilla submit (1 job)", f"{m['lap_submit'] / m['van_submit']:.2f}x"])
        rows.append(["laptop status / vanilla status", f"{m['lap_status'] / m['van_status']:.2f}x"])
        rows.append(["login-node submit / vanilla submit", f"{m['here_submit'] / m['van_submit']:.2f}x"])
        rows.append(["login-node status / vanilla status", f"{m['here_status'] / m['van_status']:.2f}x"])
        say(table(rows))
        bd, fl = self.bd, self.floor
        sub_calls = bd["submit_calls"]
        agent_calls = [c for c in sub_calls if c[0].startswith("agent")]
        say()
        say(f"  a laptop submit makes {len(sub_calls)} ssh calls ({', '.join(c[0] for c in sub_calls)}),"
            f" {len(agent_calls)} of them start the agent (a fresh Python on the login node, ~{fl['agent_here']:.2f} s"
            f" each before any Slurm call); a status makes {len(bd['status_calls'])}"
            f" ({', '.join(c[0] for c in bd['status_calls'])}).")
        self.targets.append((f"laptop submit, {self.points:,}-point sweep, unchanged workspace (median of"
                             f" {self.submit_reps})", f"<= {LAPTOP_SUBMIT_MAX:g} s", f"{m['lap_submit']:.3f} s",
                             m["lap_submit"] <= LAPTOP_SUBMIT_MAX))
        self.targets.append((f"laptop status of that app (median of {self.status_reps})", f"<= {LAPTOP_STATUS_MAX:g} s",
                             f"{m['lap_status']:.3f} s", m["lap_status"] <= LAPTOP_STATUS_MAX))
        # the same from a Python program on the laptop (TorchX's runner API): forge's part, without
        # the `torchx` command's own start (about 0.65 s on this machine, the same with any scheduler)
        self.targets.append(("laptop submit, the runner API in a Python process (once)", f"<= {LAPTOP_SUBMIT_MAX:g} s",
                             f"{bd['run_s']:.3f} s", bd["run_s"] <= LAPTOP_SUBMIT_MAX))
        self.targets.append(("laptop status, the runner API (median of 3)", f"<= {LAPTOP_STATUS_MAX:g} s",
                             f"{bd['status_s']:.3f} s", bd["status_s"] <= LAPTOP_STATUS_MAX))

    def run(self) -> int:
        failed = 1
        try:
            self.header("bench_laptop: submit and status from a laptop over ssh (issue 19)",
                        f"{self.points:,}-point sweep; {self.submit_reps} submits and {self.status_reps} statuses each")
            self.setup()
            handles = self.bench()
            self.breakdown(handles)
            self.report()
            failed = self.print_targets()
        finally:
            self.cleanup()
            self.close_master()
            if self.keep:
                say(f"  kept {self.home} (the laptop's HOME)")
            else:
                shutil.rmtree(self.home, ignore_errors=True)
        say(f"  total benchmark time {time.monotonic() - self.t_start:.0f} s")
        return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory under /tmp")
    ap.add_argument("--python", default="", help="the cluster's interpreter, runopt python (default: this Python)")
    ap.add_argument("--submit-reps", type=int, default=SUBMIT_REPS, help="timed submissions of each kind")
    ap.add_argument("--status-reps", type=int, default=STATUS_REPS, help="timed statuses of each kind")
    ap.add_argument("--points", type=int, default=POINTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    def body() -> int:
        if not shutil.which("/usr/bin/ssh"):
            raise BenchError("/usr/bin/ssh not found (Debian: openssh-client)")
        return LaptopBench(args).run()

    return guarded_main("bench_laptop", body, stop_on_signals=True)

if __name__ == "__main__":
    sys.exit(main())
