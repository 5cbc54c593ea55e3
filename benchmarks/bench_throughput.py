#!/usr/bin/env python3
"""Throughput benchmark (issue 21, item 5): the tasks per second of a sweep of trivial tasks, forge's
``torchx run --scheduler slurm_forge forge.grid --axes 'run.env.I=range(0,N)' -- true`` against the bare
``sbatch --array=0-(N-1) --wrap 'srun python3 -c pass'`` on the same cluster, in the same run, interleaved;
and where forge's per-task time goes (the launcher's imports, its state-file writes, srun).

    python3 benchmarks/bench_throughput.py           # 300 tasks, 2 runs of each, ~6 min
    python3 benchmarks/bench_throughput.py --quick   # 100 tasks, ~3 min

A run's figure is its span in accounting: the End of its last task minus the Submit of its array (sacct,
whole seconds), and tasks/s = N / span; the target compares the medians (forge / bare >= 0.9x). Each run
waits for the previous one to leave the queue and accounting. Then, once each, the ladder the bare run
sits on (``--wrap true``, ``--wrap 'srun true'``), which splits a task's cost into Slurm's batch job,
the srun step and Python's start; forge's extra is split further by timing, on the login node (no Slurm),
``python3 -c pass``, the import of the launcher and the launcher's whole run of one task (``strace``
counting its file writes), and by the CPU time accounting gives every step (TotalCPU).

Exit status: 0 the target passed, 1 it failed, 2 error, 130 interrupted. Every job carries the run's tag
(``--comment=forgebench-<hex>...``) and whatever is left is cancelled at the end, also on error or Ctrl-C.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _common import BenchBase, BenchError, fmt_s, guarded_main, med, say, section, sh, spread, table, tail

from torchx_forge.slurm.srun import BOOT

TASKS = 300
QUICK_TASKS = 100
REPS = 2  # runs of forge and of the bare array, interleaved
PROBE_REPS = 10  # fresh processes per login-node figure
RATIO_MIN = 0.9  # forge's tasks/s / the bare array's (issue 21)
PY = sys.executable  # forge's batch scripts run the launcher with the submitting Python; the bare array uses it too

#: how forge's batch scripts start the launcher here (torchx_forge.slurm.srun.launch_lines: the submitting
#: Python, a local state dir): without site, from this torchx_forge's node/boot.py
LAUNCH: Tuple[str, ...] = (PY, "-S", BOOT) if os.path.exists(BOOT) else (PY, "-m", "torchx_forge.node.launch")
START_SHOWN = f"{os.path.basename(PY)} -S" if LAUNCH[1] == "-S" else f"{os.path.basename(PY)} -m"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(BOOT)))  # the directory that holds torchx_forge
IMPORT_LAUNCHER: Tuple[str, ...] = (
    (PY, "-S", "-c", f"import sys; sys.path[0] = {_ROOT!r}; import torchx_forge.node.launch") if LAUNCH[1] == "-S"
    else (PY, "-c", "import torchx_forge.node.launch"))

SACCT_FIELDS = "JobID,State,Submit,Start,End,ElapsedRaw,TotalCPU"


def parse_cpu(text: str) -> float:
    """sacct's TotalCPU (``[D-][HH:]MM:SS[.mmm]``) in seconds."""
    text = text.strip()
    if not text:
        return 0.0
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    return days * 86400 + secs


def parse_ts(text: str) -> Optional[float]:
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


class Run:
    """One submitted array and what accounting says of it."""

    def __init__(self, kind: str, rep: int, job_id: str, t_cmd: float, cmd_s: float) -> None:
        self.kind, self.rep, self.job_id = kind, rep, job_id
        self.t_cmd = t_cmd  # time.time() before the submitting command started
        self.cmd_s = cmd_s  # how long the submitting command took
        self.app_id = ""  # forge's
        self.tasks: Dict[str, Dict[str, Any]] = {}  # task id -> {state, submit, start, end, elapsed, cpu: {step: s}}

    def load(self, rows: Sequence[List[str]]) -> None:
        for jid, state, submit, start, end, elapsed, cpu in rows:
            task, _, step = jid.partition(".")
            if "_" not in task or "[" in task:
                continue
            t = self.tasks.setdefault(task, {"cpu": {}, "elapsed": {}})
            if not step:
                t.update(state=state.split()[0], submit=parse_ts(submit), start=parse_ts(start), end=parse_ts(end),
                         alloc=int(elapsed or 0))
            else:
                t["cpu"][step] = parse_cpu(cpu)
                t["elapsed"][step] = int(elapsed or 0)

    def done(self, n: int) -> bool:
        ended = [t for t in self.tasks.values() if t.get("end") and t.get("state") not in ("PENDING", "RUNNING")]
        return len(ended) == n

    def completed(self) -> int:
        return sum(1 for t in self.tasks.values() if t.get("state") == "COMPLETED")

    @property
    def span(self) -> float:
        """Submit of the array (its earliest task's) -> End of its last task, in accounting (whole seconds)."""
        return max(t["end"] for t in self.tasks.values()) - min(t["submit"] for t in self.tasks.values())

    @property
    def from_cmd(self) -> float:
        """Start of the submitting command (this script's clock) -> End of the last task."""
        return max(t["end"] for t in self.tasks.values()) - self.t_cmd

    def concurrency(self) -> float:
        """Mean number of tasks running over the span (their allocations' durations added up / span)."""
        busy = sum(t["end"] - t["start"] for t in self.tasks.values() if t.get("start") and t.get("end"))
        return busy / self.span if self.span else 0.0

    def cpu(self, step: str) -> List[float]:
        return [t["cpu"].get(step, 0.0) for t in self.tasks.values()]

    def steps(self) -> List[str]:
        return sorted({s for t in self.tasks.values() for s in t["cpu"]})


class ThroughputBench(BenchBase):
    drain_timeout = 600.0

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(prefix="forge-bench-throughput-", keep=args.keep)
        self.n = args.tasks or (QUICK_TASKS if args.quick else TASKS)
        self.reps = args.reps
        self.ladder = not args.no_ladder
        self.name = f"fb{self.token.rsplit('-', 1)[1]}"
        self.name_prefixes = [self.name]
        self.forge_cwd = os.path.join(self.root, "forge")
        self.bare_dir = os.path.join(self.root, "bare")
        os.makedirs(self.forge_cwd)
        os.makedirs(self.bare_dir)
        self.runs: List[Run] = []
        self.role = "grid"  # forge's role (the app's name)

    # -- submitting -----------------------------------------------------------------------------

    def submit_forge(self, rep: int) -> Run:
        comment = f"{self.token}-f{rep}"
        argv = [self.torchx, "run", "--scheduler", "slurm_forge", "-cfg", f"comment={comment}", "forge.grid",
                "--name", f"{self.name}f{rep}", "--axes", f"run.env.I=range(0,{self.n})", "--", "true"]
        t_cmd = time.time()
        t0 = time.perf_counter()
        p = subprocess.run(argv, cwd=self.forge_cwd, env=self.env, capture_output=True, text=True)
        took = time.perf_counter() - t0
        m = re.search(r"slurm_forge://[^/\s]+/([^/\s]+)", p.stdout + p.stderr)
        if p.returncode != 0 or not m:
            raise BenchError(f"`{shlex.join(argv)}` exited {p.returncode}:\n{tail(p.stderr + p.stdout)}")
        app_id = m.group(1)
        from torchx_forge.state.records import Records
        from torchx_forge.state.store import Store

        rec = Records(Store(self.state)).load(app_id)
        if rec is None:
            raise BenchError(f"no record of forge app {app_id}")
        arrays = [j.job_id for j in rec.jobs if j.kind == "array"]
        self.submitted.extend(rec.job_ids(companions=True))
        if len(arrays) != 1:
            raise BenchError(f"forge app {app_id}: {len(arrays)} arrays, expected one of {self.n} tasks")
        run = Run("forge", rep, arrays[0], t_cmd, took)
        run.app_id = app_id
        return run

    def submit_bare(self, kind: str, rep: int, wrap: str) -> Run:
        argv = ["sbatch", "--parsable", f"--array=0-{self.n - 1}", "--nodes=1", "--ntasks-per-node=1",
                "--cpus-per-task=1", f"--job-name={self.name}{kind[0]}{rep}", f"--comment={self.token}-{kind}{rep}",
                f"--output={self.bare_dir}/{kind}-%A_%a.out", "--wrap", wrap]
        t_cmd = time.time()
        t0 = time.perf_counter()
        p = sh(argv, env=self.env)
        took = time.perf_counter() - t0
        job_id = p.stdout.strip().split(";")[0]
        self.submitted.append(job_id)
        return Run(kind, rep, job_id, t_cmd, took)

    def sacct(self, job_id: str) -> List[List[str]]:
        out = sh(["sacct", "-n", "-P", f"--format={SACCT_FIELDS}", f"--jobs={job_id}"],
                 env=dict(self.env, SLURM_TIME_FORMAT="standard")).stdout
        return [line.split("|") for line in out.splitlines() if line.count("|") == SACCT_FIELDS.count(",")]

    def wait_run(self, run: Run) -> None:
        """Until the array left the queue and accounting shows every task ended (steps included)."""
        ok, waited = self.wait_until(f"job {run.job_id}", lambda: run.job_id not in {r.job for r in self.queue()},
                                     self.drain_timeout, every=1.0)
        if not ok:
            raise BenchError(f"{run.kind} array {run.job_id} still queued after {waited:.0f} s")

        def accounted() -> bool:
            run.tasks.clear()
            run.load(self.sacct(run.job_id))
            return run.done(self.n)

        ok, waited = self.wait_until(f"sacct {run.job_id}", accounted, 120.0, every=2.0)
        if not ok:
            raise BenchError(f"{run.kind} array {run.job_id}: sacct shows {len(run.tasks)} tasks ended after {waited:.0f} s,"
                             f" expected {self.n}")
        if run.completed() != self.n:
            states = Counter(t.get("state") for t in run.tasks.values())
            self.notes.append(f"{run.kind} #{run.rep} (job {run.job_id}): not every task COMPLETED: {dict(states)}")

    def one(self, run_fn, *a) -> Run:
        run = run_fn(*a)
        self.wait_run(run)
        self.runs.append(run)
        say(f"  {run.kind:<10} #{run.rep}  job {run.job_id:>6}  submit command {run.cmd_s:6.2f} s  span {run.span:5.0f} s"
            f"  {self.n / run.span:5.1f} tasks/s  (from the command's start {run.from_cmd:5.1f} s; mean tasks running"
            f" {run.concurrency():4.1f})")
        self.look()
        return run

    # -- the login node: python, the launcher's imports, the launcher's whole run -------------------

    def timed_proc(self, argv: Sequence[str], env: Dict[str, str], cwd: str) -> float:
        t0 = time.perf_counter()
        p = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True)
        took = time.perf_counter() - t0
        if p.returncode != 0:
            raise BenchError(f"`{shlex.join(argv)}` exited {p.returncode}:\n{tail(p.stderr + p.stdout)}")
        return took

    def launcher_argv(self, table_path: str, app_id: str, replica: int,
                      start: Sequence[str] = ()) -> Tuple[List[str], Dict[str, str]]:
        """The command forge's batch script runs for one task (after srun; ``start``: the interpreter's words, by
        default as the script starts it), and a task's environment as Slurm and the script give it (faked: this
        runs on the login node, outside any job)."""
        role = self.role
        state = os.path.join(self.root, "probe-state")
        env = dict(self.env, FORGE_STATE_DIR=state, FORGE_APP_ID=app_id, FORGE_APP_NAME="probe",
                   FORGE_REPLICA_ID=str(replica), FORGE_LOG_DIR=os.path.join(state, "logs"), SLURM_JOB_ID=app_id,
                   SLURM_ARRAY_JOB_ID=app_id, SLURM_ARRAY_TASK_ID=str(replica), SLURM_JOB_NODELIST="n1",
                   SLURMD_NODENAME="n1", SLURM_RESTART_COUNT="0", PYTHONUNBUFFERED="1")
        argv = [*(start or LAUNCH), "--role", role, "--env", f"TORCHX_JOB_ID=slurm_forge://torchx/{app_id}",
                "--", PY, "-m", "torchx_forge.node.task", "--table", table_path, "--role", role, "--replica", str(replica),
                "--app-id", app_id]
        return argv, env

    def probe(self, table_path: str) -> Dict[str, Any]:
        section("3. one task's work on the login node (no Slurm): Python's start, the launcher's imports, its whole run")
        cwd = self.scratch
        out: Dict[str, List[float]] = {"pass": [], "import": [], "launch": [], "site": []}
        for k in range(PROBE_REPS):  # interleaved
            out["pass"].append(self.timed_proc([PY, "-c", "pass"], self.env, cwd))
            out["import"].append(self.timed_proc(IMPORT_LAUNCHER, self.env, cwd))
            argv, env = self.launcher_argv(table_path, f"9{k:05d}", k)
            out["launch"].append(self.timed_proc(argv, env, cwd))
            argv, env = self.launcher_argv(table_path, f"8{k:05d}", k, start=(PY, "-m", "torchx_forge.node.launch"))
            out["site"].append(self.timed_proc(argv, env, cwd))
        # what the launcher writes: one run under strace (untimed)
        writes: Counter = Counter()
        written: List[str] = []
        if shutil.which("strace"):
            log = os.path.join(self.scratch, "strace.log")
            argv, env = self.launcher_argv(table_path, "9999999", 7)
            subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,rename,mkdir,fsync", "-o", log, *argv],
                           env=env, cwd=cwd, capture_output=True)
            state = env["FORGE_STATE_DIR"]
            with open(log) as f:
                for line in f:
                    if "pycache" in line or "= -1" in line:
                        continue
                    if "openat(" in line and ("O_WRONLY" in line or "O_RDWR" in line or "O_CREAT" in line):
                        writes["files written (opened to write)"] += 1
                    elif "rename(" in line:
                        writes["renames"] += 1
                        m = re.search(r'rename\("[^"]+", "([^"]+)"', line)
                        if m:
                            written.append(os.path.relpath(m.group(1), state) if m.group(1).startswith(state) else m.group(1))
                    elif "fsync(" in line:
                        writes["fsyncs"] += 1
                    elif "mkdir(" in line:
                        writes["directories made"] += 1
        # import time, by module (one run each; self times in microseconds): what the launcher imports beyond what
        # Python's start imports (site and the .pth files of site-packages, e.g. an editable install's finder)
        def importtime(argv: Sequence[str]) -> List[Tuple[int, int, str]]:
            p = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=self.env, cwd=cwd, capture_output=True, text=True)
            found = []
            for line in p.stderr.splitlines():
                m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
                if m:
                    found.append((int(m.group(1)), int(m.group(2)), m.group(4)))
            return found

        at_start = importtime([PY, "-c", "pass"])
        bare_start = {name for _, _, name in importtime([*IMPORT_LAUNCHER[:-1], "pass"])}
        mods = [m for m in importtime(IMPORT_LAUNCHER) if m[2] not in bare_start]
        start_us = sum(s for s, _, _ in at_start)
        total_us = sum(s for s, _, _ in mods)
        forge_us = sum(s for s, _, name in mods if name.startswith("torchx_forge"))
        top = sorted(mods, reverse=True)[:6]
        rows = [["fresh process (median of 10, interleaved)", "median", "min-max"]]
        rows.append([f"{os.path.basename(PY)} -c pass", f"{med(out['pass']) * 1000:.1f} ms",
                     f"{spread(out['pass'], 1000, 1)} ms"])
        rows.append([f"{START_SHOWN} -c 'import torchx_forge.node.launch' (its start, the launcher's imports)",
                     f"{med(out['import']) * 1000:.1f} ms", f"{spread(out['import'], 1000, 1)} ms"])
        rows.append([f"{START_SHOWN} ... -- (a task of the grid, running `true`, as the batch script starts it)",
                     f"{med(out['launch']) * 1000:.1f} ms", f"{spread(out['launch'], 1000, 1)} ms"])
        rows.append(["  the same, started with site: -m torchx_forge.node.launch ... --",
                     f"{med(out['site']) * 1000:.1f} ms", f"{spread(out['site'], 1000, 1)} ms"])
        say(table(rows))
        imports = med(out["import"]) - med(out["pass"])
        rest = med(out["launch"]) - med(out["import"])
        say(f"  the launcher's start and imports: +{imports * 1000:.1f} ms over `python -c pass` (-X importtime:"
            f" {len(mods)} modules more than its bare start, {total_us / 1000:.1f} ms,"
            f" of which torchx_forge's own {forge_us / 1000:.1f} ms; slowest:"
            f" {', '.join(f'{n} {s / 1000:.1f} ms' for s, _, n in top)})")
        say(f"  Python's start with site (the bare task's) imports {len(at_start)} modules ({start_us / 1000:.1f} ms by"
            " -X importtime), slowest:"
            f" {', '.join(f'{n} {c / 1000:.1f} ms' for _, c, n in sorted(at_start, key=lambda m: -m[1])[:4])} (cumulative)")
        say(f"  the rest of its run (reading the run table, the task file RUNNING then ended, the run's summary, running"
            f" `true` in a child): +{rest * 1000:.1f} ms")
        if writes:
            say(f"  its file writes (strace, one task): {', '.join(f'{v} {k}' for k, v in writes.items())}:"
                f" {', '.join(written)}")
        return {"pass": med(out["pass"]), "import": med(out["import"]), "launch": med(out["launch"]), "site": med(out["site"]),
                "imports_s": imports, "rest_s": rest, "writes": dict(writes),
                "start_ms": start_us / 1000, "launcher_import_ms": total_us / 1000}

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> int:
        n = self.n
        self.header("torchx-forge throughput benchmark (issue 21): a sweep of trivial tasks, forge vs a bare sbatch array",
                    f"{n:,} tasks per array; {self.reps} runs of forge and of the bare array, interleaved;"
                    f" ladder {'once each' if self.ladder else 'off'}; Python {PY}")
        failed = 0
        try:
            section(f"1. forge.grid ... -- true vs sbatch --array --wrap 'srun python3 -c pass', {n:,} tasks, interleaved")
            say(f"  forge: torchx run --scheduler slurm_forge forge.grid --axes 'run.env.I=range(0,{n})' -- true")
            say(f"  bare:  sbatch --array=0-{n - 1} --nodes=1 --ntasks-per-node=1 --cpus-per-task=1 --output=... --wrap"
                f" 'srun {PY} -c pass'")
            say("  (span: sacct's Submit of the array -> End of its last task, whole seconds)")
            watch = self.watch_start()
            for rep in range(1, self.reps + 1):
                self.one(self.submit_forge, rep)
                self.one(self.submit_bare, "bare", rep, f"srun {PY} -c pass")
            self.watch_stop("forge and bare runs", watch)
            if self.ladder:
                section("2. the ladder under the bare run, once each: what a task costs without Python, without srun")
                watch = self.watch_start()
                self.one(self.submit_bare, "true", 1, "true")
                self.one(self.submit_bare, "srun-true", 1, "srun true")
                self.watch_stop("ladder", watch)
            forge_runs = [r for r in self.runs if r.kind == "forge"]
            table_path, self.role = self.table_of(forge_runs[0])
            try:
                probe: Dict[str, Any] = self.probe(table_path)
            except BenchError as e:  # the runs' figures stand without it
                self.notes.append(f"the login-node probe failed: {e}")
                probe = {"imports_s": float("nan"), "rest_s": float("nan"), "writes": {}}
            self.report(probe)
            fr = med([n / r.span for r in forge_runs])
            br = med([n / r.span for r in self.runs if r.kind == "bare"])
            quick = "" if n == TASKS else f" (smaller run; the issue's figure is for {TASKS:,})"
            self.targets.append((f"tasks/s of a {n:,}-task sweep of `true`{quick}: forge vs bare sbatch array (median of"
                                 f" {self.reps})", f">= {RATIO_MIN:g}x", f"{fr / br:.2f}x ({fr:.2f} / {br:.2f} tasks/s)",
                                 fr / br >= RATIO_MIN))
            failed = self.print_targets()
        finally:
            self.cleanup()
        say(f"  total benchmark time {time.monotonic() - self.t_start:.0f} s")
        return 1 if failed else 0

    def table_of(self, run: Run) -> Tuple[str, str]:
        """The run table of a forge run and its role (the launcher probe reads it, as the tasks did)."""
        from torchx_forge.state.records import Records
        from torchx_forge.state.store import Store

        rec = Records(Store(self.state)).load(run.app_id)
        tables = list(rec.tables) if rec is not None else []
        if not tables:
            raise BenchError(f"forge app {run.app_id} names no run table")
        return tables[0], rec.roles[0].name if rec is not None else "grid"

    def report(self, probe: Dict[str, Any]) -> None:
        n = self.n
        section("4. where a task's time goes")
        by_kind: Dict[str, List[Run]] = {}
        for r in self.runs:
            by_kind.setdefault(r.kind, []).append(r)
        order = [k for k in ("true", "srun-true", "bare", "forge") if k in by_kind]
        what = {"true": "sbatch --array --wrap true (Slurm's batch job alone)",
                "srun-true": "  --wrap 'srun true' (+ an srun step)",
                "bare": "  --wrap 'srun python3 -c pass' (+ Python's start)",
                "forge": "forge.grid ... -- true (+ forge's launcher)"}
        rows = [["array of trivial tasks", "runs", "span (median)", "tasks/s", "s per task", "+ over the row above"]]
        prev: Optional[float] = None
        for k in order:
            spans = [r.span for r in by_kind[k]]
            per = med(spans) / n
            rows.append([what[k], str(len(spans)), f"{med(spans):.0f} s ({spread(spans, 1, 0)})", f"{n / med(spans):.2f}",
                         f"{per * 1000:.0f} ms", f"{(per - prev) * 1000:+.0f} ms" if prev is not None else "-"])
            prev = per
        say(table(rows))
        say("  s per task = span / tasks: the cluster's cost of one more task at full load (12 slots on this machine's"
            f" {os.cpu_count()} cores)")
        # CPU time per task and step, from accounting
        rows = [["CPU per task (sacct TotalCPU, median)", *order]]
        steps = sorted({s for r in self.runs for s in r.steps()})
        for step in steps:
            rows.append([f"step .{step}", *[f"{med([c for r in by_kind[k] for c in r.cpu(step)]) * 1000:.0f} ms"
                                            for k in order]])
        totals = {k: med([sum(t["cpu"].values()) for r in by_kind[k] for t in r.tasks.values()]) for k in order}
        rows.append(["all steps", *[f"{totals[k] * 1000:.0f} ms" for k in order]])
        rows.append(["task's allocation, mean elapsed (whole s)",
                     *[f"{sum(t.get('alloc', 0) for r in by_kind[k] for t in r.tasks.values()) / (n * len(by_kind[k])):.2f} s"
                       for k in order]])
        say(table(rows))
        say("  (.batch: the batch script's bash and the srun client; .0: the srun step, i.e. the task's program;"
            " .extern: Slurm's own; not counted anywhere: slurmctld, slurmd and slurmstepd, which share the cores)")
        if "forge" in by_kind and "bare" in by_kind:
            fs = med([r.span for r in by_kind["forge"]]) / n
            bs = med([r.span for r in by_kind["bare"]]) / n
            step0 = lambda k: med([c for r in by_kind[k] for c in r.cpu("0")])  # noqa: E731
            say(f"  forge's extra per task: {(fs - bs) * 1000:+.0f} ms of span; CPU of step .0 {step0('forge') * 1000:.0f} ms"
                f" vs {step0('bare') * 1000:.0f} ms ({(step0('forge') - step0('bare')) * 1000:+.0f} ms); on the login node the"
                f" launcher's imports cost +{probe['imports_s'] * 1000:.0f} ms over `python -c pass` and the rest of its run"
                f" +{probe['rest_s'] * 1000:.0f} ms (state files: {probe['writes'] or 'not traced'})")
            cmd = [r.cmd_s for r in by_kind["forge"]]
            say(f"  forge's submit command (torchx run, whole process) took {med(cmd):.2f} s; the span starts at sbatch,"
                f" inside it. From the command's start: forge {med([r.from_cmd for r in by_kind['forge']]):.0f} s,"
                f" bare {med([r.from_cmd for r in by_kind['bare']]):.0f} s")
        if "true" in by_kind and "srun-true" in by_kind and "bare" in by_kind:
            t = med([r.span for r in by_kind["true"]]) / n
            s = med([r.span for r in by_kind["srun-true"]]) / n
            b = med([r.span for r in by_kind["bare"]]) / n
            say(f"  a bare task's {b * 1000:.0f} ms: Slurm's batch job {t * 1000:.0f} ms, the srun step {(s - t) * 1000:+.0f} ms,"
                f" Python's start {(b - s) * 1000:+.0f} ms")
        for k in order:
            spans = ", ".join(f"#{r.rep} {r.span:.0f} s ({fmt_s(r.from_cmd)} from the command)" for r in by_kind[k])
            say(f"  {k}: {spans}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks per array instead of {TASKS}")
    ap.add_argument("--tasks", type=int, default=0, help="tasks per array (overrides --quick)")
    ap.add_argument("--reps", type=int, default=REPS, help="runs of forge and of the bare array (default %(default)s)")
    ap.add_argument("--no-ladder", action="store_true", help="skip the --wrap true and --wrap 'srun true' runs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory under /tmp")
    args = ap.parse_args(argv)
    return guarded_main("bench_throughput", lambda: ThroughputBench(args).run(), stop_on_signals=True)


if __name__ == "__main__":
    sys.exit(main())
