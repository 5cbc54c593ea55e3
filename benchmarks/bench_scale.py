#!/usr/bin/env python3
"""Scale benchmark (issues 11 and 21): 100,000-point dry runs and previews against a one-job dry run, and
submit and status (of a live, pending array and of a finished one) of a 1,000-task array against
submitit and against Slurm's own call alone (the floor: one bare sbatch, forge's squeue/sacct run alone),
measured side by side in the same run on the real cluster of this machine; with ``--waves``, a
100,000-point random search of ``true`` submitted in waves under a capped QOS, run to the end and checked.

    python3 benchmarks/bench_scale.py                     # default: dry run, preview, submit, status (~10 min)
    python3 benchmarks/bench_scale.py --only dryrun       # only the dry runs and previews: nothing submitted
    python3 benchmarks/bench_scale.py --waves             # 100,000 points under cap2500 (41 waves; hours at ~6 tasks/s)
    python3 benchmarks/bench_scale.py --waves --waves-points 5000 --waves-qos cap1000   # the same path, small

Every CLI figure is the median of 5 fresh processes (stdout to /dev/null) timed from this script,
printed with its min-max; peak memory is the maximum resident set size ``/usr/bin/time -v``
reports (MB = 10^6 bytes). In-process figures are timed inside a fresh child process around the
one call named (the import of the library is not included). submitit runs in a venv of its own
(created once under /tmp, reused while it holds the pinned version). Nothing is tuned to pass: a
missed target prints FAIL with its figures. Exit status: 0 every target passed, 1 one failed,
2 error, 130 interrupted. See benchmarks/README.md for what each figure means.

Everything runs in a throwaway directory under /tmp; every job submitted carries a unique tag
(``--comment`` or a job name starting with ``fb<hex>``) and whatever is left is cancelled at the
end, also on error or Ctrl-C. Jobs of others are never touched, but noted when they share the
cluster during a timed section.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _common import (
    SLURM_TOOLS,
    BenchBase,
    BenchError,
    Procs,
    Sample,
    Stats,
    fmt_s,
    guarded_main,
    med,
    say,
    section,
    sh,
    spread,
    table,
    tail,
)

REPS = 5  # fresh processes per CLI and status figure
SUBMIT_REPS = 3  # submissions per tool
DRY_POINTS = 100_000
ARRAY_POINTS = 1_000
SUBMITIT_VERSION = "1.5.4"
SUBMITIT_VENV = "/tmp/forge-bench-submitit-venv"
WAVES_POINTS = 100_000
WAVES_QOS = "cap2500"

# Targets from the issue.
DRYRUN_RATIO_MAX = 2.0  # 100,000-point dry run / one-job dry run
DRYRUN_RSS_MAX_MB = 150.0
PREVIEW_RATIO_MAX = 3.0  # `torchx forge preview --json` of 100,000 points / one-job dry run
LISTED_RATIO_MAX = 2.0  # issue 21: the dry run and the preview of 100,000 values listed in the YAML / one-job dry run
LISTED_RSS_MAX_MB = 150.0
STATUS_CALLS_MAX = 2  # Slurm calls for the status of one app, whatever its size or waves
STATUS_VS_SUBMITIT_MAX = 1.0  # "match or beat submitit's single sacct"
SUBMIT_VS_SUBMITIT_MAX = 1.0  # forge's submit no slower than submitit's (the issue measured 4x faster)
WAVES_MIN = 40  # for 100,000 points under cap2500
# Issue 21 ("at Slurm's floor").
LIVE_VS_SUBMITIT_MAX = 0.5  # status of a live (pending) 1,000-task array / submitit's single sacct
LIVE_CALLS_MAX = 2  # expected: 1 squeue
AGED_CACHE_S = 660.0  # the age given to the limits cache for the "first submit in a fresh process" (its TTL: 600 s)

# -- the child programs (each run as a fresh process; they print one JSON line) ----------------

FORGE_SUBMIT = r'''
import json, sys, time
from torchx.runner import get_runner
from torchx_forge_components.forge import grid
import torchx_forge.scheduler  # imported up front, as `import submitit` is (TorchX would import it on the first call)
n, name, comment = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runner = get_runner()
t0 = time.perf_counter()
app = grid("true", axes=f"run.env.I=range(0,{n})", name=name)
t1 = time.perf_counter()
handle = runner.run(app, scheduler="slurm_forge", cfg={"comment": comment})
t2 = time.perf_counter()
calls = [" ".join(c[:2]) if c[0] in ("scontrol", "sacctmgr") else c[0] for c in runner._scheduler("slurm_forge").cli.calls]
print(json.dumps({"handle": handle, "build_s": t1 - t0, "run_s": t2 - t1, "calls": calls}))
'''

SUBMITIT_SUBMIT = r'''
import json, subprocess, sys, time
import submitit
calls = []
_init = subprocess.Popen.__init__
def _counting(self, args, *a, **kw):
    calls.append(str(args[0] if isinstance(args, (list, tuple)) else args).split()[0])
    _init(self, args, *a, **kw)
subprocess.Popen.__init__ = _counting
def trivial(i):
    return i
folder, n, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
executor.update_parameters(timeout_min=10, slurm_array_parallelism=n, nodes=1, tasks_per_node=1, cpus_per_task=1,
                           name=name, slurm_comment=name)
t0 = time.perf_counter()
jobs = executor.map_array(trivial, range(n))
t1 = time.perf_counter()
print(json.dumps({"job_id": jobs[0].job_id.split("_")[0], "tasks": len(jobs), "submit_s": t1 - t0, "calls": calls}))
'''

FORGE_STATUS = r'''
import json, sys, time
from collections import Counter
from torchx.runner import get_runner
import torchx_forge.scheduler  # imported up front, as `import submitit` is (TorchX would import it on the first call)
handle = sys.argv[1]
runner = get_runner()
t0 = time.perf_counter()
status = runner.status(handle)
t1 = time.perf_counter()
argvs = [list(c) for c in runner._scheduler("slurm_forge").cli.calls]
states = Counter(r.state.name for role in (status.roles if status else []) for r in role.replicas)
print(json.dumps({"status_s": t1 - t0, "calls": [c[0] for c in argvs], "argvs": argvs,
                  "state": status.state.name if status else None, "states": states}))
'''

SUBMITIT_STATUS = r'''
import json, sys, time
from collections import Counter
import submitit
folder, job_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
jobs = [submitit.SlurmJob(folder=folder, job_id=f"{job_id}_{i}") for i in range(n)]
states = [job.state for job in jobs]
t1 = time.perf_counter()
print(json.dumps({"status_s": t1 - t0, "calls": jobs[0].watcher.num_calls, "states": Counter(states)}))
'''

#: a logging stand-in for a Slurm tool, to count the calls of a CLI process (never timed)
SHIM = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "$FORGE_BENCH_CALL_LOG"\nexec {real} "$@"\n'


def random_yaml(name: str, samples: int) -> str:
    return (
        f"name: {name}\n"
        'run: {command: ["true"]}\n'
        "sweep:\n"
        "  random:\n"
        f"    samples: {samples}\n"
        "    seed: 0\n"
        "    params:\n"
        "      run.args.lr: 'tag(log, interval(1e-5, 1e-1))'\n"
        "      run.args.layers: 'int(interval(1, 8))'\n"
        "      run.args.opt: 'choice(adam, sgd)'\n"
    )


def listed_yaml(name: str, n: int) -> str:
    values = ", ".join(str(i) for i in range(n))
    return f'name: {name}\nrun: {{command: ["true"]}}\nsweep:\n  shared_axes:\n    run.env.I: [{values}]\n'


def planned_tasks(dryrun_stdout: str) -> Tuple[int, int]:
    """(array jobs, tasks) of a slurm_forge dry run's plan (its ``#SBATCH --array=LO-HI`` lines)."""
    arrays = re.findall(r"^#SBATCH --array=(\d+)-(\d+)", dryrun_stdout, flags=re.M)
    return len(arrays), sum(int(hi) - int(lo) + 1 for lo, hi in arrays)


def child_json(p: subprocess.CompletedProcess, what: str) -> Dict[str, Any]:
    if p.returncode != 0:
        raise BenchError(f"{what} exited {p.returncode}:\n{tail(p.stderr or p.stdout)}")
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{what} printed no result:\n{tail(p.stdout + p.stderr)}")


def ratio_text(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def calls_text(calls: Sequence[str]) -> str:
    """``['sacct']`` -> ``1 (sacct)``; ``['sacct', 'squeue']`` -> ``2 (sacct, squeue)``."""
    c = Counter(calls)
    return f"{len(calls)} ({', '.join(f'{k} x{v}' if v > 1 else k for k, v in c.items())})" if calls else "0"


class ScaleBase(BenchBase):
    """What both modes share: a name that tags every job, the forge records, sacct counts, shims."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(prefix="forge-bench-scale-", keep=args.keep)
        self.reps = args.reps
        self.name = f"fb{self.token.rsplit('-', 1)[1]}"  # forge's guard and wave jobs carry only their job name
        self.name_prefixes = [self.name]
        self.forge_cwd = os.path.join(self.root, "forge")
        os.makedirs(self.forge_cwd)
        self.shims = os.path.join(self.root, "shims")
        os.makedirs(self.shims)
        for tool in SLURM_TOOLS:
            real = shutil.which(tool)
            if real:
                path = os.path.join(self.shims, tool)
                with open(path, "w") as f:
                    f.write(SHIM.format(real=shlex.quote(real)))
                os.chmod(path, 0o755)

    # -- forge's own records (read only, except the record snapshot put back below) ------

    def record_path(self, app_id: str) -> str:
        from torchx_forge.core import layout

        return os.path.join(self.state, layout.record(app_id))

    def load_record(self, app_id: str):  # -> AppRecord
        from torchx_forge.state.records import Records
        from torchx_forge.state.store import Store

        rec = Records(Store(self.state)).load(app_id)
        if rec is None:
            raise BenchError(f"no forge record of app {app_id} in {self.state}")
        return rec

    def unsettled_record(self, app_id: str) -> Optional[bytes]:
        """The app's record.json as it is now, if no status has frozen ('settled') it yet."""
        try:
            with open(self.record_path(app_id), "rb") as f:
                data = f.read()
            return None if json.loads(data).get("final") else data
        except (OSError, ValueError):
            return None

    def put_back(self, app_id: str, snapshot: Optional[bytes]) -> None:
        if snapshot is not None:
            with open(self.record_path(app_id), "wb") as f:
                f.write(snapshot)

    # -- Slurm helpers -----------------------------------------------------------------

    def sacct_tasks(self, job_ids: Sequence[str], fields: str = "JobID,State") -> List[List[str]]:
        """sacct rows (allocations, every attempt) of the given jobs."""
        if not job_ids:
            return []
        out = sh(["sacct", "-X", "-D", "-n", "-P", f"--format={fields}", f"--jobs={','.join(job_ids)}"]).stdout
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def wait_completed(self, job_id: str, n: int, timeout: float = 180.0) -> float:
        """Wait until sacct shows exactly ``n`` task rows of array ``job_id``, all COMPLETED."""

        def done() -> bool:
            rows = self.sacct_tasks([job_id])
            return len(rows) == n and all(r[1] == "COMPLETED" for r in rows)

        ok, waited = self.wait_until(f"sacct {job_id}", done, timeout, every=2.0)
        if not ok:
            counts = Counter(r[1] for r in self.sacct_tasks([job_id]))
            raise BenchError(f"array {job_id}: sacct does not show {n} COMPLETED tasks after {waited:.0f} s: {dict(counts)}")
        return waited

    def counted_calls(self, argv: Sequence[str], cwd: str) -> List[str]:
        """Run ``argv`` once (untimed) with logging stand-ins for the Slurm tools on PATH; the calls it made."""
        log = os.path.join(self.scratch, f"calls-{time.monotonic_ns()}.log")
        env = dict(self.env, PATH=f"{self.shims}:{self.env.get('PATH', '')}", FORGE_BENCH_CALL_LOG=log)
        p = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise BenchError(f"`{shlex.join(argv)}` exited {p.returncode}:\n{tail(p.stderr)}")
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return [line.split()[0] for line in f if line.strip()]

    def child(self, python: str, code: str, args: Sequence[str], cwd: str, what: str,
              env: Optional[Dict[str, str]] = None) -> Tuple[Dict[str, Any], float]:
        """Run a child program; its JSON result and the wall time of the whole process."""
        t0 = time.perf_counter()
        p = subprocess.run([python, "-c", code, *args], cwd=cwd, env=env or self.env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        return child_json(p, what), wall


# =================================================================================================
# default mode
# =================================================================================================


class DefaultBench(ScaleBase):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.dry_points = args.dryrun_points
        self.array_points = args.array_points
        self.venv = args.submitit_venv
        self.only = args.only
        self.submitit_dir = os.path.join(self.root, "submitit")
        os.makedirs(self.submitit_dir)
        self.extras: List[Tuple[str, str, str]] = []  # (figure, measured, remark): no target
        # issue 21's table: (measure, submitit s, its calls, forge s, its calls, floor s, its calls)
        self.issue21: List[Tuple[str, float, str, float, str, float, str]] = []
        self.drain_timeout = 900.0

    # -- 1. dry runs and preview ---------------------------------------------------------

    def bench_dryrun(self) -> None:
        n = self.dry_points
        section(f"1. dry runs and preview of {n:,} points vs the one-job dry run (no Slurm calls)")
        tx = self.torchx
        random_file = os.path.join(self.forge_cwd, "random.yaml")
        listed_file = os.path.join(self.forge_cwd, "listed.yaml")
        with open(random_file, "w") as f:
            f.write(random_yaml(f"{self.name}r", n))
        with open(listed_file, "w") as f:
            f.write(listed_yaml(f"{self.name}l", n))
        dry = [tx, "run", "--dryrun", "--scheduler", "slurm_forge"]
        cases: Dict[str, List[str]] = {
            "one-job": [*dry, "utils.echo"],
            "random": [*dry, "forge.sweep", "--config", random_file],
            "grid": [*dry, "forge.grid", "--axes", f"run.env.I=range(0,{n})", "--", "true"],
            "listed": [*dry, "forge.sweep", "--config", listed_file],
            "preview": [tx, "forge", "preview", "--config", random_file, "--json"],
            "preview-listed": [tx, "forge", "preview", "--config", listed_file, "--json"],
        }
        labels = {
            "one-job": "torchx run --dryrun --scheduler slurm_forge utils.echo",
            "random": f"  ... forge.sweep --config random.yaml ({n:,}-sample random search)",
            "grid": f"  ... forge.grid --axes 'run.env.I=range(0,{n})' -- true",
            "listed": f"  ... forge.sweep --config listed.yaml ({n:,} values listed,"
                      f" {os.path.getsize(listed_file) / 1e6:.1f} MB)",
            "preview": "torchx forge preview --config random.yaml --json",
            "preview-listed": "torchx forge preview --config listed.yaml --json",
        }
        # One untimed run of each, output kept, to check it does what it says.
        plan: Dict[str, str] = {}
        for name, argv in cases.items():
            state = os.path.join(self.root, f"dry-check-{name}")
            p = sh(argv, cwd=self.forge_cwd, env=dict(self.env, FORGE_STATE_DIR=state), check=False)
            if p.returncode != 0:
                raise BenchError(f"`{shlex.join(argv)}` failed:\n{tail(p.stderr)}")
            tables = os.path.join(state, "tables")
            table_bytes = sum(os.path.getsize(os.path.join(tables, t)) for t in os.listdir(tables)) \
                if os.path.isdir(tables) else 0
            if name.startswith("preview"):
                lines = p.stdout.splitlines()
                idx = [json.loads(line).get("index") for line in (lines[0], lines[-1])] if lines else []
                if len(lines) != n or idx != [0, n - 1]:
                    raise BenchError(f"{labels[name]} printed {len(lines):,} lines (indices {idx}), expected {n:,}")
                plan[name] = f"{len(lines):,} runs, {len(p.stdout) / 1e6:.1f} MB of JSON lines"
            elif name != "one-job":
                arrays, tasks = planned_tasks(p.stdout)
                if tasks != n:
                    raise BenchError(f"{labels[name]}: the plan holds {tasks:,} array tasks, expected {n:,}")
                plan[name] = f"{tasks:,} tasks in {arrays} arrays; run table {table_bytes:,} bytes"
        samples: Dict[str, List[Sample]] = {k: [] for k in cases}
        watch = self.watch_start()
        for rep in range(self.reps):
            for name, argv in cases.items():
                env = dict(self.env, FORGE_STATE_DIR=os.path.join(self.root, f"dry-{rep}-{name}"))
                samples[name].append(self.timed(argv, self.forge_cwd, env))
        self.watch_stop("dry runs", watch)
        st = {k: Stats(k, v) for k, v in samples.items()}
        base = st["one-job"]
        rows = [["command", "median wall", "min-max", "max RSS", "vs one-job"]]
        for k, s in st.items():
            rows.append([labels[k], f"{s.median:.3f} s", s.spread(), f"{s.rss_max_mb:.1f} MB", ratio_text(s.median, base.median)])
        say(table(rows))
        for k, text in plan.items():
            say(f"  {k}: {text}")
        say("  (the compact forms write the search space, not the points: each task draws its own point from the"
            " seed; the listed form writes every value, and preview computes and prints every point)")
        quick = "" if n == DRY_POINTS else f" (smaller run; target is for {DRY_POINTS:,})"
        for key, what in (("random", "random search from a YAML file"), ("grid", "forge.grid --axes range()")):
            s = st[key]
            r = s.median / base.median
            self.targets.append((f"dry run, {n:,}-point {what}{quick}: wall vs one-job dry run", f"<= {DRYRUN_RATIO_MAX:g}x",
                                 f"{r:.2f}x ({s.median:.3f} s / {base.median:.3f} s)", r <= DRYRUN_RATIO_MAX))
            self.targets.append((f"dry run, {n:,}-point {what}{quick}: peak memory (max of {self.reps})",
                                 f"< {DRYRUN_RSS_MAX_MB:.0f} MB", f"{s.rss_max_mb:.1f} MB", s.rss_max_mb < DRYRUN_RSS_MAX_MB))
        p = st["preview"]
        r = p.median / base.median
        self.targets.append((f"torchx forge preview --json, {n:,}-point random search{quick}: wall vs one-job dry run",
                             f"<= {PREVIEW_RATIO_MAX:g}x", f"{r:.2f}x ({p.median:.3f} s / {base.median:.3f} s)",
                             r <= PREVIEW_RATIO_MAX))
        for key, what in (("listed", "dry run"), ("preview-listed", "torchx forge preview --json")):
            s = st[key]
            r = s.median / base.median
            self.targets.append((f"{what}, {n:,} values listed in full in the YAML{quick}: wall vs one-job dry run",
                                 f"<= {LISTED_RATIO_MAX:g}x", f"{r:.2f}x ({s.median:.3f} s / {base.median:.3f} s)",
                                 r <= LISTED_RATIO_MAX))
            self.targets.append((f"{what}, {n:,} values listed in full in the YAML{quick}: peak memory (max of {self.reps})",
                                 f"< {LISTED_RSS_MAX_MB:.0f} MB", f"{s.rss_max_mb:.1f} MB", s.rss_max_mb < LISTED_RSS_MAX_MB))
        self.extras.append(("preview --json of the random search: peak memory", f"{p.rss_max_mb:.1f} MB", "no target"))

    # -- 2. submit ---------------------------------------------------------------------------

    def ensure_submitit(self) -> str:
        """The python of a venv holding submitit==SUBMITIT_VERSION (made once, then reused)."""
        py = os.path.join(self.venv, "bin", "python")
        probe = [py, "-c", "import submitit; print(submitit.__version__)"]
        have = sh(probe, check=False).stdout.strip() if os.access(py, os.X_OK) else ""
        if have == SUBMITIT_VERSION:
            say(f"  submitit {have} in {self.venv} (reused)")
            return py
        t0 = time.monotonic()
        if not os.access(py, os.X_OK):
            sh([sys.executable, "-m", "venv", self.venv])
        sh([py, "-m", "pip", "install", "-q", f"submitit=={SUBMITIT_VERSION}"])
        have = sh(probe).stdout.strip()
        if have != SUBMITIT_VERSION:
            raise BenchError(f"{self.venv} holds submitit {have!r} after installing {SUBMITIT_VERSION}")
        say(f"  submitit {have} installed in {self.venv} ({time.monotonic() - t0:.0f} s)")
        return py

    def forge_submit(self, k: int) -> Dict[str, Any]:
        name, comment = f"{self.name}f{k}", f"{self.token}-f{k}"
        res, _ = self.child(sys.executable, FORGE_SUBMIT, [str(self.array_points), name, comment], self.forge_cwd,
                            f"forge submission {k}")
        res["app_id"] = res["handle"].rsplit("/", 1)[1]
        rec = self.load_record(res["app_id"])
        res["arrays"] = [j.job_id for j in rec.jobs if j.kind == "array"]
        self.submitted.extend(rec.job_ids(companions=True))
        res["total_s"] = res["build_s"] + res["run_s"]
        res["cold"] = any(c.startswith(("sacctmgr", "scontrol show")) for c in res["calls"])
        return res

    def submitit_submit(self, k: int) -> Dict[str, Any]:
        name = f"{self.name}s{k}"
        folder = os.path.join(self.submitit_dir, f"s{k}")
        res, _ = self.child(self.submitit_py, SUBMITIT_SUBMIT, [folder, str(self.array_points), name], self.submitit_dir,
                            f"submitit submission {k}")
        res["folder"] = folder
        self.submitted.append(res["job_id"])
        return res

    def cancel_and_drain(self, ids: Sequence[str]) -> None:
        self.scancel(ids)
        ok, waited = self.wait_until("cancelled jobs", lambda: not self.ours(), 120.0)
        if not ok:
            raise BenchError(f"our jobs {self.ours()} still queued {waited:.0f} s after scancel")

    def wait_finished(self, ids: Sequence[str], what: str) -> float:
        t0 = time.monotonic()
        ok, waited = self.wait_until(what, lambda: not (set(self.ours()) & set(ids)), self.drain_timeout, every=2.0)
        if not ok:
            raise BenchError(f"{what}: still queued after {waited:.0f} s")
        return time.monotonic() - t0

    def floor_submit(self, k: int) -> Dict[str, Any]:
        """The floor of a submission: one bare ``sbatch --array=0-(n-1) --wrap true`` (same shape as the others),
        timed around its one subprocess from this process; cancelled by the caller."""
        n = self.array_points
        argv = ["sbatch", "--parsable", f"--array=0-{n - 1}", "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=1",
                f"--job-name={self.name}b{k}", f"--comment={self.token}-b{k}", "--output=/dev/null", "--wrap", "true"]
        t0 = time.perf_counter()
        p = sh(argv, env=self.env)
        took = time.perf_counter() - t0
        job_id = p.stdout.strip().split(";")[0]
        self.submitted.append(job_id)
        return {"job_id": job_id, "submit_s": took, "calls": ["sbatch"]}

    def age_limits_cache(self) -> str:
        """Make the state dir's limits cache look read ``AGED_CACHE_S`` ago (its TTL is 600 s), as when a user
        submits again after a while: rewrite its ``time`` and ``submit_time``. Returns what it did."""
        from torchx_forge.slurm.limits import cache_path

        path = os.path.join(self.state, cache_path(None))
        try:
            with open(path) as f:
                obj = json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError(f"no limits cache to age at {path} ({e}): did forge #0 not write one?") from None
        then = time.time() - AGED_CACHE_S
        obj["time"] = then
        if obj.get("submit_time"):
            obj["submit_time"] = then
        with open(path, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        return path

    @staticmethod
    def submit_only(calls: Sequence[str]) -> List[str]:
        """A submission's Slurm calls without the reading of the cluster's limits (scontrol show config, sacctmgr)."""
        return [c for c in calls if not c.startswith(("scontrol show", "sacctmgr"))]

    def bench_submit(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        n = self.array_points
        section(f"2. submit {n:,} points in-process: forge runner.run vs submitit map_array vs one bare sbatch"
                f" (median of {SUBMIT_REPS})")
        self.submitit_py = self.ensure_submitit()
        say("  order: forge #0 (the first submission of the state dir: reads the limits), submitit #0, then in each"
            " round: forge 'aged' (a fresh process, the limits cache made 11 minutes old), the bare sbatch (floor),"
            " forge, submitit; each cancelled and drained before the next, the last forge and submitit run to the"
            " end; the figures are rounds #1..#3")
        watch = self.watch_start()
        cold = self.forge_submit(0)
        self.cancel_and_drain(cold["arrays"])
        first = self.submitit_submit(0)  # its counterpart (and the first use of its bytecode cache)
        self.cancel_and_drain([first["job_id"]])
        forge: List[Dict[str, Any]] = []
        subm: List[Dict[str, Any]] = []
        floor: List[Dict[str, Any]] = []
        aged: List[Dict[str, Any]] = []
        for k in range(1, SUBMIT_REPS + 1):
            last = k == SUBMIT_REPS
            self.age_limits_cache()
            a = self.forge_submit(100 + k)
            aged.append(a)
            self.cancel_and_drain(a["arrays"])
            b = self.floor_submit(k)
            floor.append(b)
            self.cancel_and_drain([b["job_id"]])
            f = self.forge_submit(k)
            forge.append(f)
            if not last:
                self.cancel_and_drain(f["arrays"])
            else:
                t = self.wait_finished(f["arrays"], f"forge array {f['app_id']}")
                say(f"  forge's {n:,} tasks (app {f['app_id']}) left the queue {t:.0f} s after submission")
            self.look()
            s = self.submitit_submit(k)
            subm.append(s)
            if not last:
                self.cancel_and_drain([s["job_id"]])
            else:
                t = self.wait_finished([s["job_id"]], f"submitit array {s['job_id']}")
                say(f"  submitit's {n:,} tasks (job {s['job_id']}) left the queue {t:.0f} s after submission")
            self.look()
        self.watch_stop("submit", watch)
        rows = [["submission", "submit call", "of which AppDef", "Slurm calls"]]
        rows.append(["forge #0 (limits read: first of the state dir)", f"{cold['total_s'] * 1000:.1f} ms",
                     f"{cold['build_s'] * 1000:.1f} ms", calls_text(cold["calls"])])
        rows.append(["submitit #0 (first)", f"{first['submit_s'] * 1000:.1f} ms", "-", calls_text(first["calls"])])
        for k, (a, b, f, s) in enumerate(zip(aged, floor, forge, subm, strict=True), 1):
            rows.append([f"forge aged #{k} (limits cache {AGED_CACHE_S / 60:.0f} min old)", f"{a['total_s'] * 1000:.1f} ms",
                         f"{a['build_s'] * 1000:.1f} ms", calls_text(a["calls"])])
            rows.append([f"bare sbatch --array #{k} (floor)", f"{b['submit_s'] * 1000:.1f} ms", "-", calls_text(b["calls"])])
            rows.append([f"forge #{k}{' (limits read!)' if f['cold'] else ''}", f"{f['total_s'] * 1000:.1f} ms",
                         f"{f['build_s'] * 1000:.1f} ms", calls_text(f["calls"])])
            rows.append([f"submitit #{k}", f"{s['submit_s'] * 1000:.1f} ms", "-", calls_text(s["calls"])])
        say(table(rows))
        fm = med([f["total_s"] for f in forge])
        sm = med([s["submit_s"] for s in subm])
        bm = med([b["submit_s"] for b in floor])
        am = med([a["total_s"] for a in aged])
        say(f"  forge: median {fm * 1000:.1f} ms (min-max {spread([f['total_s'] for f in forge], 1000, 1)} ms);"
            f" submitit: median {sm * 1000:.1f} ms (min-max {spread([s['submit_s'] for s in subm], 1000, 1)} ms);"
            f" bare sbatch: median {bm * 1000:.1f} ms (min-max {spread([b['submit_s'] for b in floor], 1000, 1)} ms)")
        say(f"  forge/submitit {fm / sm:.2f}x (submitit/forge {sm / fm:.1f}x); forge/floor {fm / bm:.2f}x;"
            f" forge aged: median {am * 1000:.1f} ms, {am / sm:.2f}x submitit")
        say("  forge's figure is grid(...) + runner.run(app, scheduler='slurm_forge'): building the AppDef, the dry run,"
            " the run table, the intent, one sbatch (an app of one job is not held), the record;"
            " submitit's is executor.map_array(trivial, range(n)): pickling the calls, sbatch;"
            " the floor is one `sbatch --array=0-N --wrap true` subprocess")
        quick = "" if n == ARRAY_POINTS else f" (smaller run; target is for {ARRAY_POINTS:,})"
        self.targets.append((f"submit {n:,} points in-process{quick}: forge vs submitit (median of {SUBMIT_REPS})",
                             f"<= {SUBMIT_VS_SUBMITIT_MAX:g}x", f"{fm / sm:.2f}x ({fm * 1000:.1f} ms / {sm * 1000:.1f} ms)",
                             fm / sm <= SUBMIT_VS_SUBMITIT_MAX))
        every = [cold, *aged, *forge]
        shapes = sorted({calls_text(self.submit_only(x["calls"])) for x in every})
        ok = all(self.submit_only(x["calls"]) == ["sbatch"] for x in every)
        self.targets.append((f"the same: forge's Slurm calls, limits' reading aside (all {len(every)} forge submissions)",
                             "1 (sbatch)", " / ".join(shapes), ok))
        aged_calls = sorted({calls_text(a["calls"]) for a in aged})
        no_sacctmgr = not any(c.startswith("sacctmgr") for a in aged for c in a["calls"])
        self.targets.append((f"first submit in a fresh process, limits cache {AGED_CACHE_S / 60:.0f} min old: no sacctmgr",
                             "0 sacctmgr", " / ".join(aged_calls), no_sacctmgr))
        self.targets.append((f"the same: forge aged vs submitit (median of {SUBMIT_REPS})", "<= 1x",
                             f"{am / sm:.2f}x ({am * 1000:.1f} ms / {sm * 1000:.1f} ms)", am / sm <= 1.0))
        self.extras.append((f"submit {n:,} points, forge's first submission of a state dir (reads the cluster's limits,"
                            " cached 10 min)", f"{cold['total_s'] * 1000:.1f} ms, {cold['total_s'] / sm:.2f}x submitit",
                            calls_text(cold["calls"])))
        self.issue21.append((f"submit a {n:,}-point sweep (one array), in-process", sm, calls_text(first["calls"]), fm,
                             " / ".join(sorted({calls_text(f["calls"]) for f in forge})), bm, "1 (sbatch)"))
        self.issue21.append((f"the same, first submit in a fresh process (limits cache {AGED_CACHE_S / 60:.0f} min old)",
                             sm, "", am, " / ".join(aged_calls), bm, ""))
        return forge[-1], subm[-1]

    # -- 3. status of a live (pending) array ------------------------------------------------------

    def calls_alone(self, argvs: Sequence[Sequence[str]]) -> Tuple[List[float], str]:
        """The Slurm calls a status made, each run alone, one after the other (as forge runs them), ``self.reps``
        times: the wall of each round, and the rows each printed."""
        walls: List[float] = []
        rows: List[str] = []
        env = dict(self.env, SLURM_TIME_FORMAT="standard")
        for _ in range(self.reps):
            t0 = time.perf_counter()
            outs = [sh(list(argv), env=env, check=False).stdout for argv in argvs]
            walls.append(time.perf_counter() - t0)
            rows = [f"{argv[0]} {len([x for x in out.splitlines() if x.strip()]):,} rows"
                    for argv, out in zip(argvs, outs, strict=True)]
        return walls, ", ".join(rows)

    def array_states(self, ids: Sequence[str]) -> Counter:
        """Every task of these arrays that squeue lists, by state (``--array``: one row per task)."""
        out = sh(["squeue", "-h", "--array", f"--jobs={','.join(ids)}", "-o", "%T"], check=False).stdout
        return Counter(line.strip() for line in out.splitlines() if line.strip())

    def start_blocker(self) -> Optional[str]:
        """A job holding every node of the default partition (``--exclusive``), so that arrays submitted after it
        stay pending while their status is timed; None when it did not start within 120 s."""
        argv = ["sbatch", "--parsable", "--nodes=3", "--exclusive", "--time=30", f"--job-name={self.name}-blocker",
                f"--comment={self.token}-blocker", "--output=/dev/null", "--wrap", "sleep 1800"]
        job = sh(argv, env=self.env).stdout.strip().split(";")[0]
        self.submitted.append(job)
        ok, _ = self.wait_until("blocker", lambda: self.array_states([job]).get("RUNNING", 0) == 1, 120.0)
        if not ok:
            self.scancel([job])
            self.notes.append(f"live status: the job holding the nodes ({job}) did not start within 120 s (someone"
                              " else's jobs?): the status of a live array was not measured")
            return None
        return job

    def bench_live_status(self) -> None:
        n = self.array_points
        section(f"3. status of a live {n:,}-task array (every task pending): forge vs submitit, side by side")
        say("  one job holds every node (sbatch --nodes=3 --exclusive --wrap 'sleep 1800'), then forge and submitit"
            f" each submit {n:,} tasks, which stay pending; status timed interleaved, {self.reps} times each;"
            " then all three are cancelled")
        blocker = self.start_blocker()
        if blocker is None:
            self.targets.append((f"status of a live {n:,}-task array: forge vs submitit", f"<= {LIVE_VS_SUBMITIT_MAX:g}x",
                                 "not measured (see the notes)", False))
            return
        watch = self.watch_start()
        try:
            f = self.forge_submit(200)
            s = self.submitit_submit(200)
            ids = [*f["arrays"], s["job_id"]]
            # accounting lists a pending array 1-3 s after its sbatch (squeue at once): submitit's sacct would
            # answer UNKNOWN until then, so the timing starts once it lists it
            listed = lambda: bool(sh(["sacct", "-n", "-X", "-o", "JobID", "-j", s["job_id"]], check=False).stdout.strip())  # noqa: E731
            _, lag = self.wait_until("sacct lists submitit's array", listed, 60.0, every=0.5)
            say(f"  accounting listed submitit's pending array {lag:.1f} s after the check began (timing starts then)")
            before = self.array_states(ids)
            handle = f"slurm_forge://torchx/{f['app_id']}"
            say(f"  forge app {f['app_id']} (array {', '.join(f['arrays'])}), submitit job {s['job_id']}:"
                f" squeue lists {dict(before)} of their tasks")
            f_in: List[Dict[str, Any]] = []
            s_in: List[Dict[str, Any]] = []
            f_wall: List[float] = []
            s_wall: List[float] = []
            for _ in range(self.reps):
                r, wall = self.child(sys.executable, FORGE_STATUS, [handle], self.forge_cwd, "forge status (live)")
                f_in.append(r)
                f_wall.append(wall)
                r, wall = self.child(self.submitit_py, SUBMITIT_STATUS, [s["folder"], s["job_id"], str(n)],
                                     self.submitit_dir, "submitit status (live)")
                s_in.append(r)
                s_wall.append(wall)
                self.look()
            cli = [self.torchx, "status", handle]
            f_cli = [self.timed(cli, self.forge_cwd) for _ in range(self.reps)]
            cli_calls = self.counted_calls(cli, self.forge_cwd)
            floor_walls, floor_rows = self.calls_alone(f_in[-1]["argvs"])
            subm_walls, subm_rows = self.calls_alone([["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j",
                                                       s["job_id"]]])
            after = self.array_states(ids)
        finally:
            self.scancel([blocker])
        self.watch_stop("live status", watch)
        self.cancel_and_drain(ids)
        still = before.get("PENDING", 0) == 2 * n and after.get("PENDING", 0) == 2 * n
        if not still:
            self.notes.append(f"live status: not every task stayed pending while timed (squeue before {dict(before)},"
                              f" after {dict(after)})")
        fi = [r["status_s"] for r in f_in]
        si = [r["status_s"] for r in s_in]
        fc = Stats("cli", f_cli)
        fcalls = " / ".join(sorted({calls_text(r["calls"]) for r in f_in}))
        scalls = " / ".join(sorted({str(r["calls"]) for r in s_in}))
        rows = [["figure", "median", "min-max", "Slurm calls"]]
        rows.append(["forge runner.status (fresh process; the call only)", f"{med(fi) * 1000:.1f} ms",
                     f"{spread(fi, 1000, 1)} ms", fcalls])
        rows.append([f"submitit .state of the {n:,} SlurmJob (fresh process; building them + reading)",
                     f"{med(si) * 1000:.1f} ms", f"{spread(si, 1000, 1)} ms", scalls + " (sacct)"])
        rows.append(["forge `torchx status` CLI (whole process)", f"{fc.median:.3f} s", fc.spread(), calls_text(cli_calls)])
        rows.append(["forge in-process child, whole process", f"{med(f_wall):.3f} s", spread(f_wall), "-"])
        rows.append(["submitit child, whole process", f"{med(s_wall):.3f} s", spread(s_wall), "-"])
        rows.append([f"  forge's Slurm calls alone, the floor ({floor_rows})", f"{med(floor_walls) * 1000:.1f} ms",
                     f"{spread(floor_walls, 1000, 1)} ms", str(len(f_in[-1]["argvs"]))])
        rows.append([f"  submitit's sacct alone ({subm_rows})", f"{med(subm_walls) * 1000:.1f} ms",
                     f"{spread(subm_walls, 1000, 1)} ms", "1"])
        say(table(rows))
        say(f"  forge: {f_in[-1]['state']}, {f_in[-1]['states']}; submitit: {s_in[-1]['states']}")
        say("  forge's calls: " + "; ".join(shlex.join(a) for a in f_in[-1]["argvs"]))
        bad = [r for r in f_in if r["states"].get("PENDING") != n]
        if bad:
            self.notes.append(f"live forge status: {len(bad)} answer(s) without {n:,} PENDING tasks: {bad[0]['states']}")
        sbad = [r for r in s_in if r["states"].get("PENDING") != n]
        if sbad:
            self.notes.append(f"live submitit status: {len(sbad)} answer(s) without {n:,} PENDING: {sbad[0]['states']}")
        r = med(fi) / med(si)
        say(f"  forge/submitit {r:.2f}x; forge/floor {med(fi) / med(floor_walls):.2f}x;"
            f" CLI vs submitit's whole process {fc.median / med(s_wall):.2f}x")
        quick = "" if n == ARRAY_POINTS else f" (smaller run; target is for {ARRAY_POINTS:,})"
        self.targets.append((f"status of a live {n:,}-task array (all pending){quick}, in-process: forge vs submitit",
                             f"<= {LIVE_VS_SUBMITIT_MAX:g}x", f"{r:.2f}x ({med(fi) * 1000:.1f} ms / {med(si) * 1000:.1f} ms)",
                             r <= LIVE_VS_SUBMITIT_MAX and still))
        worst = max(len(x["calls"]) for x in f_in)
        self.targets.append((f"the same: forge's Slurm calls, in-process (max of {self.reps}); CLI",
                             f"<= {LIVE_CALLS_MAX}", f"{fcalls}; {calls_text(cli_calls)}",
                             worst <= LIVE_CALLS_MAX and len(cli_calls) <= LIVE_CALLS_MAX))
        self.extras.append(("live status, `torchx status` CLI vs submitit's whole process",
                            f"{fc.median / med(s_wall):.2f}x", f"{fc.median:.3f} s / {med(s_wall):.3f} s"))
        self.issue21.append((f"status of that app while its {n:,} tasks are pending", med(si), scalls + " (sacct)",
                             med(fi), fcalls, med(floor_walls), floor_rows))

    # -- 4. status ----------------------------------------------------------------------------

    def bench_status(self, forge_run: Dict[str, Any], subm_run: Dict[str, Any]) -> None:
        n = self.array_points
        app_id, sjob = forge_run["app_id"], subm_run["job_id"]
        handle = f"slurm_forge://torchx/{app_id}"
        section(f"4. status of a finished {n:,}-task array: forge (app {app_id}) vs submitit (job {sjob}), side by side")
        arrays = forge_run["arrays"]
        if len(arrays) != 1:
            raise BenchError(f"forge app {app_id} has {len(arrays)} arrays; expected one of {n:,} tasks")
        w1 = self.wait_completed(arrays[0], n)
        w2 = self.wait_completed(sjob, n)
        say(f"  sacct shows {n:,} COMPLETED task rows for both (waited {w1 + w2:.0f} s)")
        snapshot = self.unsettled_record(app_id)
        if snapshot is None:
            self.notes.append(f"forge app {app_id}: its record was settled before the first status was timed, so the"
                              " 'first status' figures below are 'settled' figures (0 Slurm calls)")
        cli = [self.torchx, "status", handle]
        f_in: List[Dict[str, Any]] = []
        f_in_wall: List[float] = []
        f_cli: List[Sample] = []
        s_in: List[Dict[str, Any]] = []
        s_wall: List[float] = []
        watch = self.watch_start()
        for _ in range(self.reps):  # interleaved; forge's record put back as it was before any status
            self.put_back(app_id, snapshot)
            r, wall = self.child(sys.executable, FORGE_STATUS, [handle], self.forge_cwd, "forge status (in-process)")
            f_in.append(r)
            f_in_wall.append(wall)
            self.put_back(app_id, snapshot)
            f_cli.append(self.timed(cli, self.forge_cwd))
            r, wall = self.child(self.submitit_py, SUBMITIT_STATUS, [subm_run["folder"], sjob, str(n)], self.submitit_dir,
                                 "submitit status")
            s_in.append(r)
            s_wall.append(wall)
            self.look()
        self.put_back(app_id, snapshot)
        cli_calls = self.counted_calls(cli, self.forge_cwd)
        # settled: the status above froze the record; later ones need no Slurm call
        settled_in: List[Dict[str, Any]] = []
        settled_cli: List[Sample] = []
        for _ in range(self.reps):
            settled_in.append(self.child(sys.executable, FORGE_STATUS, [handle], self.forge_cwd, "forge status")[0])
            settled_cli.append(self.timed(cli, self.forge_cwd))
        settled_calls = self.counted_calls(cli, self.forge_cwd)
        # the Slurm calls themselves, as each tool makes them: forge's (squeue + sacct, those its first status ran)
        forge_walls, forge_rows = self.calls_alone(f_in[-1]["argvs"])
        subm_walls, subm_rows = self.calls_alone([["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", sjob]])
        raw: Dict[str, Tuple[List[float], str, int]] = {"forge": (forge_walls, forge_rows, len(f_in[-1]["argvs"])),
                                                      "submitit": (subm_walls, subm_rows, 1)}
        self.watch_stop("status", watch)

        fi = [r["status_s"] for r in f_in]
        si = [r["status_s"] for r in s_in]
        fcalls = sorted({calls_text(r["calls"]) for r in f_in})
        scalls = sorted({str(r["calls"]) for r in s_in})
        fc = Stats("cli", f_cli)
        sc = Stats("settled cli", settled_cli)
        rows = [["figure", "median", "min-max", "Slurm calls"]]
        rows.append(["forge runner.status, first status (fresh process; the call only)", f"{med(fi) * 1000:.1f} ms",
                     f"{spread(fi, 1000, 1)} ms", " / ".join(fcalls)])
        rows.append([f"submitit .state of the {n:,} SlurmJob (fresh process; building them + reading)",
                     f"{med(si) * 1000:.1f} ms", f"{spread(si, 1000, 1)} ms", " / ".join(scalls) + " (sacct)"])
        rows.append(["forge `torchx status` CLI, first status (whole process)", f"{fc.median:.3f} s", fc.spread(),
                     calls_text(cli_calls)])
        rows.append(["forge in-process child, whole process (python + imports + status)", f"{med(f_in_wall):.3f} s",
                     spread(f_in_wall), "-"])
        rows.append(["submitit child, whole process (python + import submitit + status)", f"{med(s_wall):.3f} s",
                     spread(s_wall), "-"])
        fs = [r["status_s"] for r in settled_in]
        rows.append(["forge runner.status, settled (record frozen by the first status)", f"{med(fs) * 1000:.1f} ms",
                     f"{spread(fs, 1000, 1)} ms", " / ".join(sorted({calls_text(r['calls']) for r in settled_in}))])
        rows.append(["forge `torchx status` CLI, settled", f"{sc.median:.3f} s", sc.spread(), calls_text(settled_calls)])
        for key, (walls, text, ncalls) in raw.items():
            rows.append([f"  {key}'s Slurm calls alone ({text})", f"{med(walls) * 1000:.1f} ms",
                         f"{spread(walls, 1000, 1)} ms", str(ncalls)])
        say(table(rows))
        bad = [r for r in f_in + settled_in if r["state"] != "SUCCEEDED" or r["states"].get("SUCCEEDED") != n]
        if bad:
            self.notes.append(f"forge status: {len(bad)} answer(s) were not SUCCEEDED with {n:,} tasks: {bad[0]['states']}")
        sbad = [r for r in s_in if r["states"].get("COMPLETED") != n]
        if sbad:
            self.notes.append(f"submitit status: {len(sbad)} answer(s) without {n:,} COMPLETED: {sbad[0]['states']}")
        say(f"  forge: {f_in[-1]['state']}, {f_in[-1]['states']}; submitit: {s_in[-1]['states']}")
        say(f"  ratios forge/submitit: in-process {med(fi) / med(si):.2f}x; whole process: CLI {fc.median / med(s_wall):.2f}x,"
            f" python child {med(f_in_wall) / med(s_wall):.2f}x")
        quick = "" if n == ARRAY_POINTS else f" (smaller run; target is for {ARRAY_POINTS:,})"
        r = med(fi) / med(si)
        self.targets.append((f"status of a finished {n:,}-task array{quick}, first status in-process: forge vs submitit",
                             f"<= {STATUS_VS_SUBMITIT_MAX:g}x", f"{r:.2f}x ({med(fi) * 1000:.1f} ms / {med(si) * 1000:.1f} ms)",
                             r <= STATUS_VS_SUBMITIT_MAX))
        worst = max(len(x["calls"]) for x in f_in)
        self.targets.append((f"the same: forge's Slurm calls, in-process (max of {self.reps})", f"<= {STATUS_CALLS_MAX}",
                             str(worst), worst <= STATUS_CALLS_MAX))
        self.targets.append(("the same: forge's Slurm calls, `torchx status` CLI", f"<= {STATUS_CALLS_MAX}",
                             calls_text(cli_calls), len(cli_calls) <= STATUS_CALLS_MAX))
        self.extras.append(("status CLI (whole process) vs submitit's whole process", f"{fc.median / med(s_wall):.2f}x",
                            f"{fc.median:.3f} s / {med(s_wall):.3f} s; a torchx process starts in ~0.4 s"))
        self.extras.append(("status, settled, in-process", f"{med(fs) * 1000:.1f} ms",
                            f"{calls_text(settled_in[-1]['calls'])} Slurm calls"))
        self.issue21.append((f"status of that app once its {n:,} tasks finished (first status)", med(si),
                             " / ".join(scalls) + " (sacct)", med(fi), " / ".join(fcalls), med(forge_walls), forge_rows))

    # -- summary ------------------------------------------------------------------------------

    def summary(self) -> int:
        if self.issue21:
            section("Issue 21's table: forge / submitit / the floor (Slurm's own call), measured in this run")
            rows = [["measure", "submitit", "forge", "floor", "forge/submitit", "forge/floor"]]
            for what, sv, _sc, fv, _fc, bv, _bc in self.issue21:
                rows.append([what, f"{sv * 1000:.1f} ms", f"{fv * 1000:.1f} ms", f"{bv * 1000:.1f} ms",
                             ratio_text(fv, sv), ratio_text(fv, bv)])
            say(table(rows))
            for what, _, sc, _, fc, _, bc in self.issue21:
                say(f"  {what}: Slurm calls submitit {sc or 'as above'}; forge {fc}; floor {bc or 'as above'}")
        if self.extras:
            section("Extra figures (no target)")
            rows = [["figure", "measured", "remark"]] + [list(x) for x in self.extras]
            say(table(rows))
        return self.print_targets()

    def run(self) -> int:
        only = " (--only dryrun: no submission)" if self.only == "dryrun" else ""
        self.header(f"torchx-forge scale benchmark (issues 11 and 21), default mode{only}",
                    f"dry run and preview {self.dry_points:,} points; submit and status {self.array_points:,} tasks;"
                    f" {self.reps} repetitions per CLI/status figure, {SUBMIT_REPS} submissions per tool")
        try:
            self.bench_dryrun()
            if self.only != "dryrun":
                forge_run, subm_run = self.bench_submit()
                self.bench_live_status()
                self.bench_status(forge_run, subm_run)
            failed = self.summary()
        finally:
            self.cleanup()
        say(f"  total benchmark time {time.monotonic() - self.t_start:.0f} s")
        return 1 if failed else 0


# =================================================================================================
# --waves
# =================================================================================================


class WavesBench(ScaleBase):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.points = args.waves_points
        self.qos = args.waves_qos
        self.every = args.sample_every
        self.timeout = args.waves_timeout or max(1800.0, self.points * 0.5)
        self.full = self.points == WAVES_POINTS and self.qos == WAVES_QOS
        self.app_id = ""
        self.samples = 0
        self.qos_max = 0  # this user's jobs counted against the QOS (what the limit sees)
        self.qos_max_app = 0  # of which this app's
        self.qos_foreign = 0  # the most jobs not of this app seen under the QOS
        self.violations: Dict[int, str] = {}  # pid -> cmdline: forge processes of this run outside Slurm jobs
        # pid -> (cmdline, sample) seen outside Slurm jobs once: a violation when a later sample sees it again (a
        # process left behind lasts); srun's forked helper, reparented to init for the instant srun exits, does not
        self.suspects: Dict[int, Tuple[str, int]] = {}
        self.foreign_procs: Dict[int, Tuple[str, float]] = {}  # pid -> (cmdline, first seen, s after the start)
        self.status_log: List[Tuple[float, float, List[str], Dict[str, int]]] = []  # (elapsed, seconds, calls, counts)
        self.snapshot: Optional[bytes] = None

    # -- samples -------------------------------------------------------------------------------

    def app_job(self, name: str) -> bool:
        return name == self.name or name.startswith(self.name + "-")

    def sample_queue(self) -> int:
        """Count this user's jobs under the QOS (every array task); return how many of this app's are queued."""
        out = sh(["squeue", "-h", "--array", f"--user={os.getuid()}", "-o", "%q|%j"]).stdout
        total = mine = app_live = 0
        for line in out.splitlines():
            qos, _, name = line.partition("|")
            ours = self.app_job(name)
            app_live += ours
            if qos.strip() == self.qos:
                total += 1
                mine += ours
        self.qos_max = max(self.qos_max, total)
        self.qos_max_app = max(self.qos_max_app, mine)
        self.qos_foreign = max(self.qos_foreign, total - mine)
        return app_live

    def sample_procs(self) -> None:
        procs = Procs()
        me = os.getpid()
        mine_desc = {pid for pid in procs.info if me in procs.ancestors(pid)}
        above = set(procs.ancestors(me)) | {me}
        for pid, (_, _, cmd) in procs.info.items():
            if pid in mine_desc or pid in above or not Procs.PATTERN.search(cmd):
                continue
            if procs.in_slurm_job(pid):
                continue
            env = Procs.environ(pid)
            ours = (f"FORGE_STATE_DIR={self.state}" in env or self.state in cmd or self.name in cmd
                    or (self.app_id and f"--app {self.app_id}" in cmd))
            if ours and pid in self.suspects and self.suspects[pid][1] < self.samples:
                self.violations.setdefault(pid, cmd[:200])
            elif ours:
                self.suspects.setdefault(pid, (cmd[:200], self.samples))
            else:
                self.foreign_procs.setdefault(pid, (cmd[:200], time.monotonic() - self.t_start))

    def sample(self) -> int:
        self.samples += 1
        live = self.sample_queue()
        self.sample_procs()
        return live

    def status_now(self, elapsed: float) -> Tuple[str, float, List[str], Dict[str, int]]:
        """The app's status from a fresh in-process scheduler: (state, seconds, Slurm calls, task counts)."""
        from torchx_forge.scheduler import create_scheduler

        before = self.unsettled_record(self.app_id)
        if before is not None:
            self.snapshot = before
        sched = create_scheduler("bench", state_dir=self.state)
        t0 = time.perf_counter()
        resp = sched.describe(self.app_id)
        took = time.perf_counter() - t0
        calls = [c[0] for c in sched.cli.calls]
        counts = Counter(r.state.name for rs in (resp.roles_statuses if resp else []) for r in rs.replicas)
        self.status_log.append((elapsed, took, calls, dict(counts)))
        return (resp.state.name if resp else "UNKNOWN"), took, calls, dict(counts)

    # -- the run -------------------------------------------------------------------------------

    def qos_limit(self) -> int:
        out = sh(["sacctmgr", "-n", "-P", "show", "qos", f"name={self.qos}", "format=name,maxsubmitjobsperuser"]).stdout
        for line in out.splitlines():
            name, _, limit = line.partition("|")
            if name == self.qos and limit.strip().isdigit():
                return int(limit)
        raise BenchError(f"QOS {self.qos!r} has no MaxSubmitJobsPerUser on this cluster (sacctmgr show qos: {out.strip()!r});"
                         " the local cluster has cap100, cap1000 and cap2500 (scripts/local-slurm up)")

    def submit(self) -> Tuple[str, int, float, str]:
        """torchx run the sweep (sampling meanwhile); (app id, waves said, seconds, output)."""
        yaml_file = os.path.join(self.forge_cwd, "waves.yaml")
        with open(yaml_file, "w") as f:
            f.write(random_yaml(self.name, self.points))
        argv = [self.torchx, "run", "--scheduler", "slurm_forge", "-cfg", f"qos={self.qos},comment={self.token}",
                "forge.sweep", "--config", yaml_file]
        say(f"  $ {shlex.join(argv)}")
        out_path = os.path.join(self.scratch, "torchx-run.out")
        t0 = time.monotonic()
        with open(out_path, "w") as out:
            p = subprocess.Popen(argv, cwd=self.forge_cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, text=True)
            while p.poll() is None:
                self.sample()
                time.sleep(0.5)
        took = time.monotonic() - t0
        with open(out_path) as f:
            text = f.read()
        m = re.search(r"slurm_forge://[^/\s]+/([^/\s]+)", text)  # the app id: a job id, or CLUSTER:ID
        if m:
            self.app_id = m.group(1)
            self.submitted.extend(self.load_record(self.app_id).job_ids(companions=True))
        if p.returncode != 0 or not m:
            raise BenchError(f"`torchx run` exited {p.returncode}:\n{tail(text, 25)}")
        w = re.search(r"submitting them in (\d+) waves", text)
        return self.app_id, int(w.group(1)) if w else 1, took, text

    def waves_submitted(self, rec) -> int:
        return rec.waves - len(rec.unsubmitted_waves())

    def monitor(self, t0: float, total: int) -> float:
        """Sample until no job of the app is left in the queue; returns the elapsed time then."""
        next_line = time.monotonic() + 60.0
        gone = 0
        say(f"  {'elapsed':>9}  {'waves':>9}  {'tasks done':>16}  {'tasks/s':>7}  {'status':>22}  {'QOS max':>7}  login-node")
        while True:
            now = time.monotonic()
            elapsed = now - t0
            if elapsed > self.timeout:
                raise BenchError(f"the app did not end within {self.timeout:.0f} s (--waves-timeout)")
            live = self.sample()
            if live == 0:
                gone += 1
                if gone >= 2:  # two samples in a row with nothing of the app queued
                    return elapsed
            else:
                gone = 0
            if now >= next_line:
                next_line += 60.0
                state, took, calls, counts = self.status_now(elapsed)
                rec = self.load_record(self.app_id)
                done = counts.get("SUCCEEDED", 0)
                say(f"  {elapsed:>7.0f} s  {self.waves_submitted(rec):>4} of {rec.waves:<3}  {done:>7,} of {total:<7,}"
                    f"  {done / elapsed:>7.1f}  {took:>6.2f} s, {calls_text(calls):>12}  {self.qos_max:>7}"
                    f"  {len(self.violations)} stray")
                if state in ("SUCCEEDED", "FAILED", "CANCELLED") and live:
                    self.notes.append(f"at {elapsed:.0f} s status said {state} while {live} job(s) of the app were queued")
            time.sleep(self.every)

    def verify(self, rec) -> Dict[str, Any]:
        """What sacct says of every array of the app: each replica 0..N-1 exactly once, COMPLETED."""
        arrays = [j for j in rec.jobs if j.kind == "array" and not j.planned]
        offsets = {j.job_id: j.offset for j in arrays}
        wave_of = {j.job_id: j.wave for j in arrays}
        rows = self.sacct_tasks(list(offsets), "JobID,State,Start,End,ExitCode,NodeList")
        per: Dict[int, List[str]] = {}
        seen: Dict[int, List[str]] = {}  # replica -> its sacct rows, as text
        odd: List[str] = []
        spans: Dict[int, List[Tuple[str, str]]] = {}
        for jid, state, start, end, code, node in rows:
            base, _, task = jid.partition("_")
            if base not in offsets or not task.isdigit():
                odd.append(f"{jid} {state}")
                continue
            replica = offsets[base] + int(task)
            per.setdefault(replica, []).append(state)
            seen.setdefault(replica, []).append(f"{jid} {state} exit {code} on {node}, {start} -> {end}")
            spans.setdefault(wave_of[base], []).append((start, end))
        want = set(range(self.points))
        once = {r for r, s in per.items() if s == ["COMPLETED"]}
        missing = want - set(per)
        twice = {r for r, s in per.items() if len(s) > 1}
        not_ok = {r for r, s in per.items() if len(s) == 1 and s != ["COMPLETED"]}
        extra = set(per) - want
        waves = [j for j in rec.jobs if j.kind == "wave"]
        wave_states = Counter(r[1] for r in self.sacct_tasks([j.job_id for j in waves])) if waves else Counter()
        bad = sorted((twice | not_ok) & want)
        return {"bad": [(r, seen[r]) for r in bad[:5]], "missing_ids": sorted(missing)[:5],
                "arrays": len(arrays), "rows": len(rows), "once": len(once & want), "missing": len(missing),
                "twice": len(twice), "not_ok": len(not_ok), "extra": len(extra), "odd": odd[:5],
                "states": Counter(s for v in per.values() for s in v), "wave_jobs": len(waves),
                "wave_states": dict(wave_states), "spans": spans, "ok": once == want and not odd and not extra}

    def explain_failures(self, rec, v: Dict[str, Any]) -> None:
        """For replicas not run exactly once COMPLETED: their sacct rows and the end of their logs."""
        role = rec.roles[0].name
        import_failed = False
        for replica, lines in v["bad"]:
            say(f"  replica {replica}: " + "; ".join(lines))
            for path in [p for kind in ("err", "out") for p in rec.log_paths(role, replica, kind)]:
                try:
                    with open(path, errors="replace") as f:
                        last = [x.rstrip() for x in f.readlines() if x.strip()][-3:]
                except OSError as e:
                    last = [f"({e})"]
                for line in last:
                    say(f"    {os.path.basename(path)}: {line[:200]}")
                    import_failed |= "No module named 'torchx_forge'" in line
        if v["missing_ids"]:
            say(f"  replicas with no sacct row at all: {v['missing_ids']}{' ...' if v['missing'] > 5 else ''}")
        if v["bad"] or v["missing_ids"]:
            self.notes.append("some tasks did not run exactly once COMPLETED: their sacct rows and logs are above"
                              + ("; one could not import torchx_forge: it started while the package was being"
                                 " reinstalled (see the `pip install` among the processes noted)?" if import_failed else ""))

    @staticmethod
    def wave_timing(spans: Dict[int, List[Tuple[str, str]]]) -> Tuple[List[float], List[float]]:
        """(durations of each wave, gaps between the end of a wave and the start of the next), in seconds."""
        import datetime as dt

        def ts(text: str) -> Optional[float]:
            try:
                return dt.datetime.fromisoformat(text).timestamp()
            except ValueError:
                return None

        bounds = []
        for wave in sorted(spans):
            starts = [t for t in (ts(s) for s, _ in spans[wave]) if t is not None]
            ends = [t for t in (ts(e) for _, e in spans[wave]) if t is not None]
            if starts and ends:
                bounds.append((min(starts), max(ends)))
        durations = [b - a for a, b in bounds]
        gaps = [bounds[k + 1][0] - bounds[k][1] for k in range(len(bounds) - 1)]
        return durations, gaps

    def run(self) -> int:
        n = self.points
        limit_text = "" if self.full else f" (smaller run; the issue's run is {WAVES_POINTS:,} points under {WAVES_QOS})"
        self.header(f"torchx-forge scale benchmark (issue 11), --waves: {n:,}-point random search of `true` under"
                    f" QOS {self.qos}{limit_text}",
                    f"{n:,} points; QOS {self.qos}; a sample every {self.every:g} s; timeout {self.timeout:,.0f} s",
                    wait_for_others=0)
        limit = self.qos_limit()
        failed = 0
        try:
            section(f"1. submit: torchx run --scheduler slurm_forge -cfg qos={self.qos} forge.sweep ({n:,} points)")
            self.sample()
            if self.qos_max:
                self.notes.append(f"{self.qos_max} job(s) of this user were already queued under {self.qos} at the start:"
                                  f" they count against its limit of {limit}")
            t0 = time.monotonic()
            app_id, said, took, text = self.submit()
            rec = self.load_record(app_id)
            say(f"  app slurm_forge://torchx/{app_id}: torchx run took {took:.2f} s and said 'submitting them in {said} waves';"
                f" the record has {rec.waves} waves, {len(rec.jobs)} job records")
            for line in text.splitlines():
                if "waves" in line or "wave 2" in line:
                    say(f"    | {line.strip()[:160]}")
            if rec.waves < 2:
                raise BenchError(f"the sweep was not cut in waves ({rec.waves}); is {self.qos} limited?")

            section(f"2. running: a sample every {self.every:g} s (QOS count, processes), a line every minute")
            elapsed = self.monitor(t0, n)
            say(f"  no job of the app left in the queue at {elapsed:.0f} s ({fmt_s(elapsed)})")

            section("3. the end: status, sacct, log")
            end_snapshot = self.unsettled_record(app_id)
            if end_snapshot is not None:
                self.snapshot = end_snapshot
            state, took_s, calls, counts = self.status_now(elapsed)
            for _ in range(30):  # accounting may lag the last tasks by a few seconds
                if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    break
                time.sleep(2.0)
                state, took_s, calls, counts = self.status_now(time.monotonic() - t0)
            say(f"  status (in-process, fresh scheduler): {state} {counts} in {took_s:.3f} s, {calls_text(calls)} Slurm calls")
            # the first status of the finished app, timed: the record put back as it was before it settled
            first_in, first_cli, settled_cli = [], [], []
            cli = [self.torchx, "status", f"slurm_forge://torchx/{app_id}"]
            for _ in range(3):
                self.put_back(app_id, self.snapshot)
                _, t, c, _ = self.status_now(elapsed)
                first_in.append((t, c))
            for _ in range(3):
                self.put_back(app_id, self.snapshot)
                first_cli.append(self.timed(cli, self.forge_cwd))
            self.put_back(app_id, self.snapshot)
            cli_calls = self.counted_calls(cli, self.forge_cwd)
            for _ in range(3):
                settled_cli.append(self.timed(cli, self.forge_cwd))
            _, settled_t, settled_c, _ = self.status_now(elapsed)
            rec = self.load_record(app_id)
            v = self.verify(rec)
            for _ in range(30):
                if v["ok"]:
                    break
                time.sleep(2.0)
                v = self.verify(rec)
            durations, gaps = self.wave_timing(v["spans"])
            role = rec.roles[0].name
            last = n - 1
            last_job = next(j for j in rec.jobs if j.kind == "array" and not j.planned and j.offset <= last < j.offset + j.size)
            log_argv = [self.torchx, "log", f"slurm_forge://torchx/{app_id}/{role}/{last}"]
            t1 = time.perf_counter()
            lp = subprocess.run(log_argv, cwd=self.forge_cwd, env=self.env, capture_output=True, text=True)
            log_s = time.perf_counter() - t1
            log_lines = [x for x in lp.stdout.splitlines() if x.strip()]

            rows = [["figure", "value"]]
            rows.append(["points (tasks)", f"{n:,}"])
            rows.append(["waves (record / torchx run's message)", f"{rec.waves} / {said}"])
            rows.append(["arrays submitted, wave jobs", f"{v['arrays']}, {v['wave_jobs']} ({dict(v['wave_states'])})"])
            rows.append(["torchx run (submission of wave 1 and the plan)", f"{took:.2f} s"])
            rows.append(["total wall time (torchx run start -> nothing of the app queued)", fmt_s(elapsed)])
            rows.append(["tasks/s over the whole run", f"{n / elapsed:.1f}"])
            if durations:
                rows.append(["wave duration (first task start -> last task end), first / median / max",
                             f"{durations[0]:.1f} s / {med(durations):.1f} s / {max(durations):.1f} s"])
            if gaps:
                rows.append(["gap between waves (last task end -> next wave's first start), median / max",
                             f"{med(gaps):.1f} s / {max(gaps):.1f} s"])
            rows.append([f"max jobs counted against {self.qos} (limit {limit}), all of this user's / this app's",
                         f"{self.qos_max} / {self.qos_max_app}"])
            rows.append(["sacct task rows: replicas run exactly once COMPLETED", f"{v['once']:,} of {n:,}"])
            rows.append(["  missing / more than once / not COMPLETED / unexpected rows",
                         f"{v['missing']} / {v['twice']} / {v['not_ok']} / {v['extra'] + len(v['odd'])}"])
            worst = max(len(c) for _, _, c, _ in self.status_log)
            during = [t for e, t, _, _ in self.status_log if e < elapsed]
            rows.append([f"status during the run: {len(during)} in-process statuses, median time, max Slurm calls",
                         f"{med(during):.3f} s, {max((len(c) for e, _, c, _ in self.status_log if e < elapsed), default=0)}"
                         if during else "-"])
            rows.append(["status of the finished app, first, in-process (median of 3)",
                         f"{med([t for t, _ in first_in]):.3f} s, {calls_text(first_in[-1][1])}"])
            fc = Stats("cli", first_cli)
            rows.append(["status of the finished app, first, `torchx status` CLI (median of 3)",
                         f"{fc.median:.3f} s ({fc.spread()}), {calls_text(cli_calls)}"])
            sc = Stats("cli", settled_cli)
            rows.append(["status, settled: in-process / CLI (median of 3)",
                         f"{settled_t:.3f} s, {calls_text(settled_c)} / {sc.median:.3f} s"])
            rows.append([f"torchx log of {role}/{last} (wave {last_job.wave + 1} of {rec.waves}, job {last_job.job_id})",
                         f"exit {lp.returncode}, {len(log_lines)} line(s), {log_s:.2f} s"])
            rows.append([f"forge/torchx processes outside Slurm jobs ({self.samples} samples)", str(len(self.violations))])
            say(table(rows))
            if log_lines:
                say(f"  log: {log_lines[0][:150]}")
            for pid, cmd in list(self.violations.items())[:10]:
                say(f"  stray process {pid}: {cmd}")
            passing = {pid: c for pid, (c, _) in self.suspects.items() if pid not in self.violations}
            if passing:
                self.notes.append(f"{len(passing)} process(es) of this run were seen outside Slurm jobs in one sample"
                                  f" only, gone by the next (not counted), e.g. {next(iter(passing.values()))[:120]!r}")
            if self.foreign_procs:
                first: Dict[str, float] = {}
                for cmd, when in self.foreign_procs.values():
                    first.setdefault(cmd[:100], when)
                examples = "; ".join(f"{c!r} (from {w:.0f} s)" for c, w in sorted(first.items(), key=lambda x: x[1])[:4])
                self.notes.append(f"{len(self.foreign_procs)} torchx process(es) of someone else (not of this run's state"
                                  f" dir) ran outside Slurm jobs meanwhile, not counted: {examples}")
            self.explain_failures(rec, v)
            if self.qos_foreign:
                self.notes.append(f"up to {self.qos_foreign} job(s) not of this app were counted against {self.qos} meanwhile")
            if v["odd"]:
                self.notes.append(f"sacct rows not of a task of the app's arrays: {v['odd']}")

            small = "" if self.full else f" (smaller run; {WAVES_MIN} is for {WAVES_POINTS:,} points under {WAVES_QOS})"
            want_waves = WAVES_MIN if self.full else 2
            self.targets += [
                (f"{n:,}-point sweep under {self.qos} ends SUCCEEDED", "SUCCEEDED", state, state == "SUCCEEDED"),
                (f"waves{small}", f">= {want_waves}", str(rec.waves), rec.waves >= want_waves and said == rec.waves),
                (f"every task run once: replicas 0..{n - 1} each one COMPLETED sacct row", f"{n:,}",
                 f"{v['once']:,}", v["ok"]),
                (f"jobs counted against {self.qos} (max over {self.samples} samples)", f"<= {limit}", str(self.qos_max),
                 self.qos_max <= limit),
                ("forge/torchx processes of this run outside Slurm jobs (login node)", "0", str(len(self.violations)),
                 not self.violations),
                (f"status of the app: Slurm calls, max over {len(self.status_log)} statuses (running and ended)",
                 f"<= {STATUS_CALLS_MAX}", str(worst), worst <= STATUS_CALLS_MAX),
                ("status of the finished app: Slurm calls, `torchx status` CLI", f"<= {STATUS_CALLS_MAX}",
                 calls_text(cli_calls), len(cli_calls) <= STATUS_CALLS_MAX),
                ("torchx log of a task in the last wave", "exit 0", f"exit {lp.returncode}",
                 lp.returncode == 0 and last_job.wave == rec.waves - 1),
            ]
            failed = self.print_targets()
        finally:
            self.cancel_app()
            self.cleanup()
        say(f"  total benchmark time {time.monotonic() - self.t_start:.0f} s")
        return 1 if failed else 0

    def cancel_app(self) -> None:
        """If anything of the app is left (an error, Ctrl-C): forge's cancel, which stops the waves not submitted."""
        if not self.app_id:
            return
        try:
            if not any(self.app_job(r.name) for r in self.queue()):
                return
            from torchx_forge.scheduler import create_scheduler

            say(f"  cleanup: cancelling app {self.app_id} (and its waves not submitted yet)")
            create_scheduler("bench", state_dir=self.state).cancel(self.app_id)
        except Exception as e:  # the scancel of every tagged job below still runs
            say(f"  cleanup: forge's cancel of {self.app_id} failed: {e}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--waves", action="store_true", help=f"the {WAVES_POINTS:,}-point wave run (hours here) instead")
    ap.add_argument("--waves-points", type=int, default=WAVES_POINTS, help="points of the wave run (default %(default)s)")
    ap.add_argument("--waves-qos", default=WAVES_QOS, help="the capped QOS of the wave run (default %(default)s)")
    ap.add_argument("--waves-timeout", type=float, default=0.0, help="seconds before the wave run is given up"
                    " (default: max(1800, 0.5 s per point))")
    ap.add_argument("--sample-every", type=float, default=3.0, help="seconds between samples of the wave run")
    ap.add_argument("--only", choices=["dryrun"], help="only the dry runs and previews (section 1: no Slurm submission,"
                    " a few minutes)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory under /tmp")
    ap.add_argument("--reps", type=int, default=REPS, help=argparse.SUPPRESS)
    ap.add_argument("--dryrun-points", type=int, default=DRY_POINTS, help=argparse.SUPPRESS)
    ap.add_argument("--array-points", type=int, default=ARRAY_POINTS, help=argparse.SUPPRESS)
    ap.add_argument("--submitit-venv", default=SUBMITIT_VENV, help="venv for submitit (made if missing; default %(default)s)")
    args = ap.parse_args(argv)

    def body() -> int:  # the bench is made after preflight: its set-up needs the cluster
        return (WavesBench(args) if args.waves else DefaultBench(args)).run()

    return guarded_main("bench_scale", body, stop_on_signals=True)

if __name__ == "__main__":
    sys.exit(main())
