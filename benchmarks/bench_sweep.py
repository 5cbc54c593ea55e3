#!/usr/bin/env python3
"""Sweep benchmark: torchx-forge (``slurm_forge``, one AppDef, job arrays) against
TorchX's own ``slurm`` scheduler (one AppDef, one ``torchx run``, per sweep point),
measured in the same run on the real cluster of this machine.

    python3 benchmarks/bench_sweep.py            # full: 10,000-point dryrun, 1,000-task array, 20 vanilla points
    python3 benchmarks/bench_sweep.py --quick    # quick: 2,000-point dryrun, 100-task array, 5 vanilla points

Every CLI figure is the median of 5 fresh ``torchx`` processes (stdout to /dev/null)
timed from this script; peak memory is the maximum resident set size that
``/usr/bin/time -v`` reports. Nothing is hard-coded: a target that is missed is
printed as FAIL with its figures. See benchmarks/README.md for what each figure means.

Everything runs in a throwaway directory under /tmp (FORGE_STATE_DIR, the vanilla
scheduler's working directory, logs); every job submitted is tagged with a unique
``--comment`` and cancelled with ``scancel`` at the end (also on error or Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from _common import (
    BenchBase,
    BenchError,
    Sample,
    Stats,
    count_subprocess_runs,
    fmt_s,
    guarded_main,
    say,
    section,
    sh,
    table,
    tail,
)

REPS = 5

# Targets from the issue.
DRYRUN_RATIO_MAX = 1.5  # sweep dryrun wall / one-job dryrun wall
DRYRUN_RSS_MAX_MB = 150.0  # MB = 10^6 bytes
STATUS_MAX_S = 1.0


# -- the benchmark ----------------------------------------------------------------------


class Bench(BenchBase):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(prefix="forge-bench-", keep=args.keep)
        self.quick = args.quick
        self.dry_points = args.dryrun_points or (2000 if self.quick else 10000)
        self.array_points = args.array_points or (100 if self.quick else 1000)
        self.vanilla_points = args.vanilla_points or (5 if self.quick else 20)
        self.drain_timeout = 180.0 if self.quick else 480.0
        self.forge_cwd = os.path.join(self.root, "forge")
        self.vanilla_cwd = os.path.join(self.root, "vanilla")
        for d in (self.forge_cwd, self.vanilla_cwd):
            os.makedirs(d)
        self.compare: List[List[str]] = []

    def print_header(self) -> None:
        mode = "QUICK (--quick)" if self.quick else "FULL"
        self.header(f"torchx-forge sweep benchmark, {mode}",
                    f"dryrun {self.dry_points:,} points; array {self.array_points:,} tasks;"
                    f" vanilla {self.vanilla_points} points; {REPS} repetitions per CLI figure")

    # -- 1. dryrun -------------------------------------------------------------------

    def bench_dryrun(self) -> None:
        n = self.dry_points
        section(f"1. --dryrun: {n:,}-point forge.grid vs one-job dryrun (no Slurm calls)")
        axes = "run.env.I=[" + ",".join(str(i) for i in range(n)) + "]"
        tx = self.torchx
        cases = {
            "one-job": [tx, "run", "--dryrun", "--scheduler", "slurm_forge", "utils.echo"],
            "vanilla-one-job": [tx, "run", "--dryrun", "--scheduler", "slurm", "utils.echo"],
            "grid-1": [tx, "run", "--dryrun", "--scheduler", "slurm_forge", "forge.grid", "--axes", "run.env.I=[0]", "--",
                       "true"],
            "grid-n": [tx, "run", "--dryrun", "--scheduler", "slurm_forge", "forge.grid", "--axes", axes, "--", "true"],
        }
        # One untimed run of each, output kept, to check it does what it says.
        check_env = dict(self.env, FORGE_STATE_DIR=os.path.join(self.root, "dry-check"))
        p = sh(cases["grid-n"], cwd=self.forge_cwd, env=check_env, check=False)
        if p.returncode != 0:
            raise BenchError(f"the {n}-point dryrun failed:\n{tail(p.stderr)}")
        if f"# {n} run(s)" not in p.stdout:
            self.notes.append(f"the {n}-point dryrun output does not say '# {n} run(s)'")
        arrays = p.stdout.count("(array)\n")
        for name in ("one-job", "vanilla-one-job", "grid-1"):
            sh(cases[name], cwd=self.forge_cwd, env=check_env)
        # Interleaved repetitions; each sweep dryrun gets a fresh state dir (it writes the run table).
        samples: Dict[str, List[Sample]] = {k: [] for k in cases}
        watch = self.watch_start()
        for rep in range(REPS):
            for name, argv in cases.items():
                env = dict(self.env, FORGE_STATE_DIR=os.path.join(self.root, f"dry-{rep}-{name}"))
                samples[name].append(self.timed(argv, self.forge_cwd, env))
        self.watch_stop("dryrun", watch)
        st = {k: Stats(k, v) for k, v in samples.items()}
        base, big = st["one-job"], st["grid-n"]
        ratio = big.median / base.median
        per_point_us = (big.median - st["grid-1"].median) / max(n - 1, 1) * 1e6
        rows = [["command (torchx run --dryrun ...)", "median wall", "min-max", "max RSS", "vs one-job"]]
        labels = {
            "one-job": "--scheduler slurm_forge utils.echo",
            "vanilla-one-job": "--scheduler slurm utils.echo (vanilla)",
            "grid-1": "--scheduler slurm_forge forge.grid, 1 point",
            "grid-n": f"--scheduler slurm_forge forge.grid, {n:,} points",
        }
        for k, s in st.items():
            rows.append([labels[k], f"{s.median:.3f} s", s.spread(), f"{s.rss_max_mb:.1f} MB", f"{s.median / base.median:.2f}x"])
        say(table(rows))
        say(f"  {n:,}-point plan: {arrays} sbatch array(s); marginal cost {per_point_us:.0f} us/point"
            f" ((grid {n:,} - grid 1) / {n - 1:,})")
        label = f"dryrun {n:,}-point sweep" + (" (quick; target is for 10,000)" if n != 10000 else "")
        self.targets.append((f"{label}: wall vs one-job dryrun", f"<= {DRYRUN_RATIO_MAX}x",
                             f"{ratio:.2f}x ({big.median:.3f} s / {base.median:.3f} s)", ratio <= DRYRUN_RATIO_MAX))
        self.targets.append((f"{label}: peak memory (max of {REPS})", f"< {DRYRUN_RSS_MAX_MB:.0f} MB",
                             f"{big.rss_max_mb:.1f} MB", big.rss_max_mb < DRYRUN_RSS_MAX_MB))

    # -- 2. vanilla submissions ------------------------------------------------------

    def bench_vanilla_submit(self) -> Tuple[Stats, List[str]]:
        n = self.vanilla_points
        section(f"2. vanilla slurm: submit {n} points, one `torchx run --scheduler slurm utils.sh` each")
        samples, ids = [], []
        watch = self.watch_start()
        for k in range(n):
            comment = f"{self.token}-v{k}"
            argv = [self.torchx, "run", "--scheduler", "slurm", "-cfg", f"comment={comment}", "utils.sh", "true"]
            samples.append(self.timed(argv, self.vanilla_cwd))
            found = self.ours(comment, all_states=True)
            self.submitted.extend(found)
            if len(found) != 1:
                raise BenchError(f"vanilla point {k}: expected one job with comment {comment}, squeue shows {found}")
            ids.append(found[0])
        self.watch_stop("vanilla submit", watch)
        s = Stats("vanilla submit", samples)
        say(f"  {n} submissions: median {s.median:.3f} s/point (min-max {s.spread()}), max RSS {s.rss_max_mb:.1f} MB;"
            f" jobs {ids[0]}..{ids[-1]}")
        say(f"  {self.wait_drain()}")
        return s, ids

    # -- 3. forge submissions --------------------------------------------------------

    def bench_forge_submit(self) -> Tuple[Stats, str]:
        n = self.array_points
        section(f"3. torchx-forge: submit a {n:,}-point sweep with one `torchx run --scheduler slurm_forge forge.grid`")
        axes = "run.env.I=[" + ",".join(str(i) for i in range(n)) + "]"
        apps_dir = os.path.join(self.state, "apps")
        samples: List[Sample] = []
        app_id = ""
        watch = self.watch_start()
        for rep in range(REPS):
            comment = f"{self.token}-f{rep}"
            before = set(os.listdir(apps_dir)) if os.path.isdir(apps_dir) else set()
            argv = [self.torchx, "run", "--scheduler", "slurm_forge", "-cfg", f"comment={comment}",
                    "forge.grid", "--name", f"bench{rep}", "--axes", axes, "--", "true"]
            samples.append(self.timed(argv, self.forge_cwd))
            jobs = self.ours(comment, all_states=True)
            self.submitted.extend(jobs)
            new = sorted(set(os.listdir(apps_dir)) - before) if os.path.isdir(apps_dir) else []
            app_id = new[0] if len(new) == 1 else (jobs[0] if jobs else "")
            if not app_id:
                raise BenchError(f"forge submission {rep}: no new record in {apps_dir} and no job with comment {comment}")
            if rep < REPS - 1:
                self.scancel(jobs)  # only the last submission runs to the end
        self.watch_stop("forge submit", watch)
        s = Stats("forge submit", samples)
        say(f"  {REPS} submissions of {n:,} points: median {s.median:.3f} s (min-max {s.spread()}), max RSS"
            f" {s.rss_max_mb:.1f} MB; the first {REPS - 1} cancelled at once, app {app_id} runs to the end")
        t0 = time.monotonic()
        msg = self.wait_drain()
        say(f"  {n:,} tasks finished {time.monotonic() - t0:.0f} s after submission; {msg}")
        return s, app_id

    # -- 4. status -------------------------------------------------------------------

    def bench_vanilla_status(self, ids: List[str]) -> Tuple[Stats, float, int]:
        n = len(ids)
        section(f"4. vanilla slurm: status of the {n} points, one `torchx status slurm://torchx/ID` each")
        from torchx.schedulers.slurm_scheduler import create_scheduler as vanilla_scheduler

        watch = self.watch_start()
        samples = [
            self.timed([self.torchx, "status", f"slurm://torchx/{jid}"], self.vanilla_cwd)
            for jid in ids
        ]
        s = Stats("vanilla status", samples)
        walls, states, ncalls = [], [], 0
        for jid in ids:
            sched = vanilla_scheduler("x")
            with count_subprocess_runs() as calls:
                t0 = time.perf_counter()
                resp = sched.describe(jid)
                walls.append(time.perf_counter() - t0)
            ncalls += len(calls)
            states.append(str(resp.state) if resp else "None")
        self.watch_stop("vanilla status", watch)
        ok = sum(1 for x in states if x.endswith("SUCCEEDED"))
        describe = statistics.median(walls)
        say(f"  CLI: median {s.median:.3f} s/point (min-max {s.spread()}), max RSS {s.rss_max_mb:.1f} MB")
        say(f"  in-process SlurmScheduler.describe: median {describe * 1000:.1f} ms/point, {ncalls / n:.0f} Slurm call(s)/point;"
            f" {ok}/{n} SUCCEEDED")
        if ok != n:
            self.notes.append(f"vanilla: only {ok}/{n} points reported SUCCEEDED ({sorted(set(states))})")
        return s, describe, ncalls // n

    def bench_forge_status(self, app_id: str) -> Dict[str, object]:
        n = self.array_points
        section(f"5. torchx-forge: status of the {n:,}-task array, one `torchx status slurm_forge://torchx/{app_id}`")
        from torchx_forge.scheduler import create_scheduler

        record = os.path.join(self.state, "apps", app_id, "record.json")
        snapshot = None
        if os.path.isfile(record):
            with open(record, "rb") as f:
                data = f.read()
            try:
                if not json.loads(data).get("final"):
                    snapshot = data
            except ValueError:
                pass
        if snapshot is None:
            self.notes.append("forge: no unsettled record to restore, so the first-status figures are repeat-status figures")

        def restore() -> None:
            if snapshot is not None:
                with open(record, "wb") as f:
                    f.write(snapshot)

        def in_process(cold: bool) -> Tuple[List[float], List[int], object]:
            walls, calls, resp = [], [], None
            for _ in range(REPS):
                if cold:
                    restore()
                sched = create_scheduler("x")
                t0 = time.perf_counter()
                resp = sched.describe(app_id)
                walls.append(time.perf_counter() - t0)
                calls.append(len(getattr(getattr(sched, "cli", None), "calls", []) or []))
            return walls, calls, resp

        watch = self.watch_start()
        # first status after the end: the record is not settled yet, so Slurm is asked
        # (sacct; squeue only while a task may still change)
        cold_cli = Stats("cold", [])
        for _ in range(REPS):
            restore()
            cold_cli.samples.append(self.timed([self.torchx, "status", f"slurm_forge://torchx/{app_id}"], self.forge_cwd))
        cold_walls, cold_calls, _ = in_process(cold=True)
        # repeat status: the first describe settled the record; no Slurm call should be needed
        warm_cli = Stats("warm", [
            self.timed([self.torchx, "status", f"slurm_forge://torchx/{app_id}"], self.forge_cwd)
            for _ in range(REPS)
        ])
        warm_walls, warm_calls, resp = in_process(cold=False)
        self.watch_stop("forge status", watch)

        replicas = [r for rs in getattr(resp, "roles_statuses", []) for r in rs.replicas]
        ok = sum(1 for r in replicas if str(r.state).endswith("SUCCEEDED"))
        rows = [["forge status of the array", "median wall", "min-max", "max RSS", "Slurm calls"]]
        rows.append(["CLI, first status after the end (asks Slurm)", f"{cold_cli.median:.3f} s", cold_cli.spread(),
                     f"{cold_cli.rss_max_mb:.1f} MB", "-"])
        rows.append(["CLI, repeat status (settled record)", f"{warm_cli.median:.3f} s", warm_cli.spread(),
                     f"{warm_cli.rss_max_mb:.1f} MB", "-"])
        rows.append(["in-process describe, first (fresh scheduler)", f"{statistics.median(cold_walls):.3f} s",
                     f"{min(cold_walls):.3f}-{max(cold_walls):.3f}", "-", "/".join(map(str, sorted(set(cold_calls))))])
        rows.append(["in-process describe, repeat (fresh scheduler)", f"{statistics.median(warm_walls):.3f} s",
                     f"{min(warm_walls):.3f}-{max(warm_walls):.3f}", "-", "/".join(map(str, sorted(set(warm_calls))))])
        say(table(rows))
        say(f"  app state {getattr(resp, 'state', None)}; {ok}/{n} tasks SUCCEEDED ({len(replicas)} replicas reported)")
        if ok != n:
            self.notes.append(f"forge: only {ok}/{n} tasks reported SUCCEEDED")
        label = f"status of a {n:,}-task array" + (" (quick; target is for 1,000)" if n != 1000 else "")
        for what, value in (
            (f"{label}, CLI first status, median of {REPS}", cold_cli.median),
            (f"{label}, CLI repeat status, median of {REPS}", warm_cli.median),
            (f"{label}, in-process describe first ({statistics.median(cold_calls)} Slurm calls)", statistics.median(cold_walls)),
            (f"{label}, in-process describe repeat ({statistics.median(warm_calls)} Slurm calls)", statistics.median(warm_walls)),
        ):
            self.targets.append((what, f"< {STATUS_MAX_S:.0f} s", f"{value:.3f} s", value < STATUS_MAX_S))
        return {"cold": cold_cli, "warm": warm_cli, "cold_describe": statistics.median(cold_walls),
                "cold_calls": statistics.median(cold_calls), "warm_describe": statistics.median(warm_walls)}

    # -- summary ---------------------------------------------------------------------

    def summary(self, v_sub: Stats, f_sub: Stats, v_stat: Stats, v_desc: float, v_calls: int, f_stat: Dict[str, object]) -> None:
        n, nv = self.array_points, self.vanilla_points
        section(f"Comparison: a {n:,}-point sweep, vanilla slurm vs torchx-forge")
        proj = f"projected: {n:,} x median of {nv} measured"
        cold: Stats = f_stat["cold"]  # type: ignore[assignment]
        warm: Stats = f_stat["warm"]  # type: ignore[assignment]
        rows = [["figure", "vanilla slurm", "torchx-forge (measured)", "vanilla / forge"]]
        rows.append([f"submit {n:,} points (CLI wall)", f"{fmt_s(n * v_sub.median)} (projected)", fmt_s(f_sub.median),
                     f"{n * v_sub.median / f_sub.median:,.0f}x"])
        rows.append(["  torchx run processes", f"{n:,}", "1", ""])
        rows.append(["  peak memory per process", f"{v_sub.rss_max_mb:.1f} MB", f"{f_sub.rss_max_mb:.1f} MB", ""])
        rows.append([f"status of {n:,} points, CLI, first", f"{fmt_s(n * v_stat.median)} (projected)", fmt_s(cold.median),
                     f"{n * v_stat.median / cold.median:,.0f}x"])
        rows.append([f"status of {n:,} points, CLI, repeat", f"{fmt_s(n * v_stat.median)} (projected)", fmt_s(warm.median),
                     f"{n * v_stat.median / warm.median:,.0f}x"])
        rows.append(["  torchx status processes", f"{n:,}", "1", ""])
        rows.append([f"status of {n:,} points, in-process describe", f"{fmt_s(n * v_desc)} (projected)",
                     fmt_s(float(f_stat['cold_describe'])), f"{n * v_desc / float(f_stat['cold_describe']):,.0f}x"])  # type: ignore[arg-type]
        rows.append(["  Slurm calls", f"{n * v_calls:,} (projected)", f"{f_stat['cold_calls']}", ""])
        say(table(rows))
        say(f"  vanilla per point (measured, {nv} points): submit {v_sub.median:.3f} s, status {v_stat.median:.3f} s,"
            f" describe {v_desc * 1000:.1f} ms")
        say(f"  vanilla columns are {proj}; forge columns are real {n:,}-point runs (median of {REPS}).")
        if n != 1000:
            say(f"  vanilla projected to 1,000 points: submit {fmt_s(1000 * v_sub.median)}, status {fmt_s(1000 * v_stat.median)}")

        self.print_targets()

    # -- driver ----------------------------------------------------------------------

    def run(self) -> int:
        self.print_header()
        try:
            self.bench_dryrun()
            v_sub, v_ids = self.bench_vanilla_submit()
            f_sub, app_id = self.bench_forge_submit()
            v_stat, v_desc, v_calls = self.bench_vanilla_status(v_ids)
            f_stat = self.bench_forge_status(app_id)
            self.summary(v_sub, f_sub, v_stat, v_desc, v_calls, f_stat)
        finally:
            self.cleanup()
        say(f"  total benchmark time {time.monotonic() - self.t_start:.0f} s")
        return 1 if any(not ok for *_, ok in self.targets) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000-point dryrun, 100-task array, 5 vanilla points (< 3 min)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory under /tmp")
    ap.add_argument("--dryrun-points", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--array-points", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--vanilla-points", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return guarded_main("bench_sweep", lambda: Bench(args).run())

if __name__ == "__main__":
    sys.exit(main())
