#!/usr/bin/env python3
"""Adaptive search benchmark (issue 20): random, TPE, ASHA (and Hyperband) on the "height" curve
in process with the real engine, and (``--lab``) ``forge.search`` against Hydra's Optuna sweeper
with the submitit launcher on the real cluster of this machine.

    python3 benchmarks/bench_search.py                # in-process part only, 3 seeds (< 1 min)
    python3 benchmarks/bench_search.py --lab          # + forge vs Hydra on the cluster, 3 seeds (~4 min)
    python3 benchmarks/bench_search.py --lab --quick  # + the cluster part with one seed (~2 min)
    python3 benchmarks/bench_search.py --lab --asha   # + forge.search with examples/height_asha.yaml too (~6 min)

**In process** (no Slurm): each search runs with ``parallel`` slots on a clock of trial-steps. Every
tick, each running trial computes one step of Syne Tune's height curve, ``(0.1 + width*step/100)**-1
+ height*0.1``; a trial that reaches its budget (its rung under ASHA/Hyperband, else its full
length) ends there, and a decision follows at once, as a decision job follows each trial job on
Slurm (asynchronous top-up). A decision is the code the Slurm side's decision step runs:
``torchx_forge.slurm.search.reconcile`` (the ended trial's job COMPLETED, the others RUNNING), then
``torchx_forge.search.decide`` and ``apply``. Every algorithm gets the same budget of trial-steps
(random search's: ``trials x 27``); ASHA and Hyperband stop when they have spent it.

**On the cluster** (``--lab``): ``torchx run --scheduler slurm_forge forge.search --config
examples/height_tpe.yaml`` (12 trials, 4 at a time) against a Hydra app running the same curve for
the same 27 steps with ``hydra/sweeper=optuna`` (TPE, the same n_trials, n_jobs=4) and
``hydra/launcher=submitit_slurm``, per seed: wall time from launch to the first trial end that
brings the best-so-far to a common target (the worse of the two searches' final bests: both reach
it), and to the end; processes of the run outside Slurm jobs after submit; the idle-slot fraction.
Hydra runs in a venv of its own (made under /tmp if missing: hydra-optuna-sweeper pins optuna<3).

Nothing is tuned to pass: a missed target prints FAIL with its figures. Exit status: 0 every target
passed, 1 one failed, 2 error, 130 interrupted. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from _common import (
    REPO,
    BenchBase,
    BenchError,
    Procs,
    forge_source,
    git_describe,
    guarded_main,
    say,
    section,
    sh,
    table,
    tail,
    verdict,
)

SEEDS = 3
PARALLEL = 4
STEPS = 27  # the height curve's full length (examples/height_*.yaml: run.args.steps)
SIM_TRIALS = 32  # random search's trials in process: its budget of trial-steps is SIM_TRIALS x STEPS
SPACE = {"run.args.width": "interval(0, 20)", "run.args.height": "interval(-100, 100)"}
LAB_TRIALS = 12  # examples/height_tpe.yaml
LAB_SLEEP = 0.2  # seconds per step (examples/height.py's default)
LAB_TIMEOUT = 300.0  # seconds a search of the lab may take before it is cancelled
STATUS_EVERY = 5.0  # seconds between two `torchx status` of a forge search (processes are sampled every second)

ASHA_FRACTION_MAX = 0.40  # ASHA reaches random search's best in <= 40% of random search's trial-steps
WALL_RATIO_MAX = 0.5  # forge's wall time to the target <= 0.5x Hydra's
IDLE_MAX = 0.15  # idle-slot fraction of forge's trials
HYDRA_VENV = "/tmp/forge-hydra-venv"
HYDRA_PINS = {"hydra-core": "1.3.8", "hydra-optuna-sweeper": "1.3.0", "hydra-submitit-launcher": "1.2.0"}
SIM_SUBMISSION = "sim"  # the submission id of the trials' tags in process


def height(params: Dict[str, Any], step: int) -> float:
    """Syne Tune's "height" learning curve (examples/height.py): lower with steps, lowest at width 20, height -100."""
    return float((0.1 + params["run.args.width"] * step / 100) ** -1 + params["run.args.height"] * 0.1)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def pct(x: Optional[float]) -> str:
    return "never" if x is None or math.isinf(x) else f"{100 * x:.0f}%"


# =================================================================================================
# in process
# =================================================================================================


@dataclass
class SimRun:
    algorithm: str
    seed: int
    best: Optional[float]  # the best COMPLETE trial's value (lower is better)
    spent: int  # trial-steps computed
    trials: int  # trials asked
    complete: int  # trials that ran their full length
    decisions: int
    seconds: float  # wall time of the whole simulation (decide and apply are nearly all of it)
    curve: List[Tuple[int, float]] = field(default_factory=list)  # (trial-steps spent, best so far) at each improvement

    def steps_to(self, target: float) -> Optional[int]:
        """Trial-steps spent when the best-so-far first reached ``target`` (None: never)."""
        return next((spent for spent, value in self.curve if value <= target + 1e-12), None)


def make_spec(algorithm: str, trials: int, seed: int, parallel: int) -> Any:
    from torchx_forge.search import SearchSpec

    section_ = {"algorithm": algorithm, "metric": "loss", "mode": "min", "trials": trials, "parallel": parallel,
                "seed": seed, "space": dict(SPACE)}
    if algorithm in ("asha", "hyperband"):
        section_["budget"] = "run.args.steps"  # as examples/height_asha.yaml
    return SearchSpec.from_section(section_, base={"run": {"args": {"steps": STEPS}}})


def simulate(spec: Any, budget: int, f: Callable[[Dict[str, Any], int], float] = height) -> SimRun:
    """Run a search on a clock of trial-steps with ``spec.parallel`` slots until it is over or has
    spent ``budget`` trial-steps (trials still running then are cut: their steps count)."""
    from torchx_forge.core.states import SlurmState
    from torchx_forge.search import apply, best, decide
    from torchx_forge.slurm.search_reconcile import reconcile, trial_tag
    from torchx_forge.slurm.views import TaskView

    full = spec.max_budget or STEPS
    t0 = time.perf_counter()

    def job_id(t: Any) -> str:
        return f"j{t.number}r{t.rung}a{t.attempts}"

    def decision(trials: List[Any], ended: int) -> Tuple[List[Any], Any]:
        """What the decision job after trial ``ended``'s job does: reconcile with Slurm's answer
        (that job COMPLETED, the other trials' jobs RUNNING), decide, apply."""
        active = [t for t in trials if t.state.active]
        rec = SimpleNamespace(jobs=[SimpleNamespace(tag=trial_tag(SIM_SUBMISSION, t), job_id=job_id(t)) for t in active])
        views = [TaskView(role="height", replica=t.number, key=f"{job_id(t)}_{t.number}",
                          slurm_state=SlurmState.COMPLETED if t.number == ended else SlurmState.RUNNING)
                 for t in active]
        trials = reconcile(spec, trials, rec, views, SIM_SUBMISSION)  # type: ignore[arg-type]
        d = decide(spec, trials, 0)
        return apply(trials, d), d

    d = decide(spec, [], 0)
    trials = apply([], d)
    decisions, spent, curve, over = 1, 0, [], d.over
    while not over and spent < budget:
        active = [t.number for t in trials if t.state.active]  # asked or running: each holds a slot
        if not active:
            break
        for n in active:  # one tick: every trial that holds a slot computes its next step
            if spent >= budget:
                break
            t = trials[n]
            step = (t.last_step or 0) + 1
            trials[n] = t = replace(t, intermediate={**t.intermediate, step: f(t.params, step)})
            spent += 1
            if step < (t.budget or full):
                continue
            trials, d = decision(trials, n)  # the trial stopped at its budget: its job ends, its decision runs
            decisions += 1
            top = best(spec, trials)
            if top is not None and (not curve or top.value < curve[-1][1]):
                curve.append((spent, float(top.value)))
            if d.over:
                over = True
                break
    top = best(spec, trials)
    complete = sum(t.state.value == "COMPLETE" for t in trials)
    return SimRun(spec.algorithm, spec.seed, None if top is None else float(top.value), spent, len(trials), complete,
                  decisions, time.perf_counter() - t0, curve)


class InProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        self.trials = args.sim_trials
        self.seeds = list(range(args.seeds))
        self.budget = self.trials * STEPS
        self.hyperband = not args.no_hyperband
        self.targets: List[Tuple[str, str, str, bool]] = []
        self.runs: Dict[Tuple[str, int], SimRun] = {}

    def run(self) -> None:
        import optuna

        algorithms = ["random", "tpe", "asha"] + (["hyperband"] if self.hyperband else [])
        section(f"1. in process: {', '.join(algorithms)} on the height curve, {self.budget} trial-steps each,"
                f" {PARALLEL} slots, seeds {self.seeds[0]}-{self.seeds[-1]}")
        say(f"  optuna {optuna.__version__}; random search and TPE: {self.trials} trials x {STEPS} steps;"
            f" ASHA/Hyperband: rungs 1, 3, 9, 27 (eta 3), as many trials as fit in {self.budget} trial-steps")
        t0 = time.perf_counter()
        for algorithm in algorithms:
            for seed in self.seeds:
                # random/TPE: the budget in trials; ASHA/Hyperband: never bound by trials (each costs >= 1 step)
                n = self.trials if algorithm in ("random", "tpe") else self.budget
                self.runs[algorithm, seed] = simulate(make_spec(algorithm, n, seed, PARALLEL), self.budget)
        rows = [["algorithm", "seed", "best loss", "trial-steps", "trials", "complete", "decisions",
                 "steps to random's best", "of random's steps", "ms/decision"]]
        for (algorithm, seed), r in self.runs.items():
            rnd = self.runs["random", seed]
            reach = r.steps_to(rnd.best) if rnd.best is not None else None
            rows.append([algorithm, str(seed), f"{r.best:.4f}" if r.best is not None else "-", f"{r.spent}",
                         f"{r.trials}", f"{r.complete}", f"{r.decisions}", "never" if reach is None else f"{reach}",
                         pct(None if reach is None else reach / rnd.spent), f"{1000 * r.seconds / r.decisions:.1f}"])
        say(table(rows))
        say()
        rows = [["algorithm", "median best loss", "median steps to random's best", "per seed (of random's steps)"]]
        med_best: Dict[str, float] = {}
        fractions: Dict[str, List[float]] = {}
        for algorithm in algorithms:
            runs = [self.runs[algorithm, s] for s in self.seeds]
            med_best[algorithm] = median([r.best if r.best is not None else math.inf for r in runs])
            fracs = []
            for r in runs:
                rnd = self.runs["random", r.seed]
                reach = r.steps_to(rnd.best) if rnd.best is not None else None
                fracs.append(math.inf if reach is None else reach / rnd.spent)
            fractions[algorithm] = fracs
            steps = median([f * self.budget for f in fracs])
            rows.append([algorithm, f"{med_best[algorithm]:.4f}", "never" if math.isinf(steps) else f"{steps:.0f}",
                         ", ".join(pct(f) for f in fracs)])
        say(table(rows))
        say(f"  {time.perf_counter() - t0:.1f} s in all (every decision rebuilds the study from the trials, as on Slurm)")
        size = f" (--sim-trials {self.trials}, not the default {SIM_TRIALS})" if self.trials != SIM_TRIALS else ""
        label = f"in process, {len(self.seeds)} seeds, {self.budget} trial-steps each{size}"
        for algorithm in ("tpe", "asha"):
            ok = med_best[algorithm] < med_best["random"]
            self.targets.append((f"{label}: {algorithm.upper()} median best loss < random search's", "<",
                                 f"{med_best[algorithm]:.4f} vs {med_best['random']:.4f}", ok))
        fracs = fractions["asha"]
        within = sum(f <= ASHA_FRACTION_MAX for f in fracs)
        self.targets.append((f"{label}: ASHA's trial-steps to reach random search's best / random's (median)",
                             f"<= {ASHA_FRACTION_MAX:.0%}",
                             f"{pct(median(fracs))} (per seed {', '.join(pct(f) for f in fracs)};"
                             f" {within} of {len(fracs)} within)",
                             median(fracs) <= ASHA_FRACTION_MAX))


# =================================================================================================
# on the cluster
# =================================================================================================

HYDRA_APP = '''"""examples/height.py's curve under Hydra (bench_search.py's reference): the loss after the last step."""
import json
import os
import time

import hydra


@hydra.main(version_base=None, config_path=".", config_name="height")
def main(cfg) -> float:
    loss = float("nan")
    for step in range(1, int(cfg.steps) + 1):
        time.sleep(float(cfg.sleep) * (1 + float(cfg.width_cost) * float(cfg.width) / 20))
        loss = (0.1 + cfg.width * step / 100) ** -1 + cfg.height * 0.1
        print(f"step {step} loss {loss:.6f}", flush=True)
    env = os.environ
    rec = {"array_job": env.get("SLURM_ARRAY_JOB_ID", ""), "task": env.get("SLURM_ARRAY_TASK_ID", ""),
           "job": env.get("SLURM_JOB_ID", ""), "width": float(cfg.width), "height": float(cfg.height), "loss": loss,
           "end": time.time()}
    os.makedirs(cfg.record_dir, exist_ok=True)
    with open(os.path.join(cfg.record_dir, f"{rec['job']}.json"), "w") as f:
        json.dump(rec, f)
    return loss


if __name__ == "__main__":
    main()
'''

HYDRA_CONFIG = """defaults:
  - override hydra/sweeper: optuna
  - override hydra/sweeper/sampler: tpe
  - override hydra/launcher: submitit_slurm
  - _self_
steps: {steps}
sleep: {sleep}
width_cost: {width_cost}
width: 10.0
height: 0.0
record_dir: {records}
hydra:
  sweep:
    dir: {sweep}
    subdir: ${{hydra.job.num}}
  sweeper:
    direction: minimize
    n_trials: {trials}
    n_jobs: {parallel}
    sampler:
      seed: {seed}
      n_startup_trials: {startup}
    params:
      width: interval(0, 20)
      height: interval(-100, 100)
  launcher:
    partition: debug
    cpus_per_task: 1
    mem_per_cpu: 256M
    timeout_min: 10
    comment: {comment}
"""


def slurm_time(text: str) -> Optional[float]:
    """A sacct time (local, whole seconds) as epoch seconds; None for Unknown/None."""
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def sacct_rows(ids: Sequence[str]) -> Dict[str, Tuple[str, Optional[float], Optional[float]]]:
    """JobID (``123_4`` for an array task) -> (state, start, end) of the allocations of ``ids``."""
    out: Dict[str, Tuple[str, Optional[float], Optional[float]]] = {}
    for k in range(0, len(ids), 200):
        p = sh(["sacct", "-X", "-n", "-P", "-j", ",".join(ids[k:k + 200]), "-o", "JobID,State,Start,End"])
        for line in p.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                out[parts[0]] = (parts[1].split()[0] if parts[1] else "", slurm_time(parts[2]), slurm_time(parts[3]))
    return out


def ctld_log() -> Optional[str]:
    """slurmctld's log file (``scontrol show config``), when this user can read it, else None."""
    p = sh(["scontrol", "show", "config"])
    m = re.search(r"^SlurmctldLogFile\s*=\s*(\S+)", p.stdout, re.M)
    return m.group(1) if m and os.access(m.group(1), os.R_OK) else None


def ctld_intervals(keys: Sequence[str], since: float) -> List[Tuple[float, float]]:
    """(start, end) of the array tasks ``keys`` (``123_4``) to the millisecond, from slurmctld's log
    lines after ``since`` (its last start and end of each: ``sched: Allocate``, ``_start_job:
    Started``, ``_job_complete: ... done``); empty unless every key has both. sacct has whole
    seconds only: a gap of 0.9 s between two trials can read as 0 s or 1 s there."""
    path = ctld_log()
    if path is None:
        return []
    want, got = set(keys), {}  # type: ignore[var-annotated]
    pattern = re.compile(r"^\[(\S+)\] (?:sched: Allocate|sched/backfill: _start_job: Started|_job_complete:)"
                         r" JobId=(\d+_\d+)\(\d+\)( done)?")
    with open(path, errors="replace") as f:
        for line in f:
            m = pattern.match(line)
            if not m or m.group(2) not in want or ("_job_complete" in line and not m.group(3)):
                continue
            try:
                t = datetime.datetime.fromisoformat(m.group(1)).timestamp()  # local time, as sacct's
            except ValueError:
                continue
            if t < since:
                continue
            start, end = got.get(m.group(2), (None, None))
            got[m.group(2)] = (start, t) if m.group(3) else (t, end)
    out = [got.get(k, (None, None)) for k in keys]
    return [(a, b) for a, b in out if a and b] if all(a and b for a, b in out) else []


def idle_fraction(intervals: Sequence[Tuple[float, float]], parallel: int) -> Tuple[float, float, float]:
    """(idle fraction while trials remain, plain idle fraction, span) of trial jobs' (start, end).

    From the first start to the last end, the slots that could hold a trial at time t are
    min(parallel, trial jobs not ended by t) ("while trials remain": the last few trials do not
    leave the other slots idle), the idle ones those minus the trial jobs running; the plain
    fraction counts every slot over the whole span: (parallel x span - busy) / (parallel x span).
    """
    if not intervals:
        return math.nan, math.nan, 0.0
    first, last = min(s for s, _ in intervals), max(e for _, e in intervals)
    span = last - first
    if span <= 0:
        return 0.0, 0.0, 0.0
    cuts = sorted({first, last, *(s for s, _ in intervals), *(e for _, e in intervals)})
    idle = capacity = 0.0
    n = len(intervals)
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        running = sum(s <= a and e >= b for s, e in intervals)
        ended = sum(e <= a for _, e in intervals)
        cap = min(parallel, n - ended)
        capacity += cap * (b - a)
        idle += max(0, cap - running) * (b - a)
    busy = sum(e - s for s, e in intervals)
    return idle / capacity if capacity else 0.0, (parallel * span - busy) / (parallel * span), span


def refill_gaps(intervals: Sequence[Tuple[float, float]], parallel: int) -> List[float]:
    """Seconds from each trial job's end to the start of the job that takes its slot: the i-th end
    is paired with the start of the i-th job after the first ``parallel`` (slots are freed and
    taken in order), as long as jobs remain to start."""
    starts = sorted(s for s, _ in intervals)[parallel:]
    ends = sorted(e for _, e in intervals)
    return [max(0.0, s - e) for s, e in zip(starts, ends[:len(starts)], strict=True)]


def reach_time(events: Sequence[Tuple[float, float]], target: float) -> Optional[float]:
    """The first time at which the best-so-far of (time, value) events is <= target."""
    best = math.inf
    for t, v in sorted(events):
        best = min(best, v)
        if best <= target + 1e-12:
            return t
    return None


class ProcWatch:
    """Samples of the processes of one run (their environment holds ``FORGE_BENCH_RUN=<marker>`` or
    another of ``markers``) that are not in a Slurm job (not slurmstepd nor below one). A process
    seen in two samples or more lasts ("lasting"); one seen once is transient (a submit's sbatch,
    or srun's helper reparented to init for the instant srun exits)."""

    def __init__(self, markers: Sequence[str]) -> None:
        self.markers = set(markers)
        self.samples = 0
        self.seen: Dict[int, List[int]] = {}
        self.cmd: Dict[int, str] = {}
        self.max_at_once = 0

    def sample(self) -> None:
        self.samples += 1
        procs = Procs()
        me = os.getpid()
        above = set(procs.ancestors(me)) | {me}
        now = 0
        for pid, (_, _, cmd) in procs.info.items():
            if pid in above or procs.in_slurm_job(pid):
                continue
            if not self.markers & set(Procs.environ(pid).splitlines()):
                continue
            now += 1
            self.seen.setdefault(pid, []).append(self.samples)
            self.cmd.setdefault(pid, cmd[:160])
        self.max_at_once = max(self.max_at_once, now)

    @property
    def lasting(self) -> List[int]:
        return sorted(p for p, s in self.seen.items() if len(s) >= 2)

    @property
    def transient(self) -> List[int]:
        return sorted(p for p, s in self.seen.items() if len(s) < 2)

    def describe(self) -> str:
        parts = [f"{len(self.lasting)} lasting"]
        if self.lasting:
            parts[0] += " (" + "; ".join(f"{p}: {self.cmd[p]}" for p in self.lasting[:3]) + ")"
        parts.append(f"{len(self.transient)} seen once" + (" (" + "; ".join(self.cmd[p][:60] for p in self.transient[:3]) + ")"
                                                           if self.transient else ""))
        return f"{', '.join(parts)}; {self.samples} samples"


@dataclass
class LabRun:
    tool: str  # forge-tpe, hydra, forge-asha
    seed: int
    t0: float  # launch (epoch)
    events: List[Tuple[float, float]]  # (end of the trial's job, its value) of every trial with a value
    intervals: List[Tuple[float, float]]  # (start, end) of every trial job
    end: float  # the search over (epoch): forge, its last job's end (sacct); Hydra, the driver's exit
    procs: ProcWatch
    submit_s: float = math.nan  # forge: `torchx run` returned after this many seconds
    seen_done: float = math.nan  # forge: `torchx status` first said it ended (epoch)
    jobs: int = 0  # trial jobs
    other_jobs: int = 0  # forge: decision and relay jobs
    relay_jobs: int = 0  # forge: relay jobs (one per trial job; each submits a decision only if its trial's script did not)
    decision_waits: List[float] = field(default_factory=list)  # forge: decision job's start - its trial job's end (s)
    decision_runs: List[float] = field(default_factory=list)  # forge: decision job's end - start (s)
    notes: List[str] = field(default_factory=list)
    fine: List[Tuple[float, float]] = field(default_factory=list)  # (start, end) of every trial job from slurmctld's log, ms

    @property
    def idle(self) -> float:
        """The idle-slot fraction the target is judged on: from slurmctld's log (ms) when it could be read, else sacct's."""
        return idle_fraction(self.fine or self.intervals, PARALLEL)[0]

    @property
    def best(self) -> float:
        return min((v for _, v in self.events), default=math.inf)


class Lab(BenchBase):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(prefix="forge-bench-search-", keep=args.keep)
        self.seeds = list(range(1 if args.quick else args.seeds))
        self.trials = args.lab_trials
        self.sleep = args.sleep
        self.width_cost = args.width_cost
        self.asha = args.asha
        self.venv = args.hydra_venv
        self.forge_apps: List[Tuple[str, str]] = []  # (state dir, handle) to cancel on the way out
        self.drivers: List[subprocess.Popen] = []
        self.runs: List[LabRun] = []

    # -- forge -----------------------------------------------------------------------------------

    def forge_run(self, seed: int, algorithm: str) -> LabRun:
        from torchx_forge.core import layout
        from torchx_forge.search import Trial
        from torchx_forge.slurm.search_reconcile import trial_tag
        from torchx_forge.state.records import Records
        from torchx_forge.state.store import Store

        config = {"tpe": "height_tpe.yaml", "asha": "height_asha.yaml"}[algorithm]
        run = f"forge-{algorithm}-s{seed}"
        cwd = os.path.join(self.root, run)
        state = os.path.join(cwd, "state")
        os.makedirs(cwd)
        marker = f"{self.token}-{run}"
        env = dict(self.env, FORGE_STATE_DIR=state, FORGE_BENCH_RUN=marker)
        status_env = dict(self.env, FORGE_STATE_DIR=state)  # the bench's own status commands: not the run's
        trials = self.trials if algorithm == "tpe" else 16
        sets = [f"run.args.sleep={self.sleep}", f"run.args.width_cost={self.width_cost:g}", f"search.seed={seed}",
                f"search.trials={trials}", f"search.parallel={PARALLEL}"]
        argv = [self.torchx, "run", "--scheduler", "slurm_forge", "-cfg", f"comment={marker}", "forge.search",
                "--config", os.path.join(REPO, "examples", config), "--set", ";".join(sets)]
        say(f"  {run}: torchx run ... forge.search --config examples/{config} --set '{';'.join(sets)}'")
        watch = ProcWatch([f"FORGE_BENCH_RUN={marker}", f"FORGE_STATE_DIR={state}"])
        t0 = time.time()
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        submit_s = time.time() - t0
        if p.returncode != 0:
            raise BenchError(f"{run}: `torchx run` exited {p.returncode}:\n{tail(p.stderr + p.stdout)}")
        m = re.search(r"slurm_forge://[^/\s]+/(\S+)", p.stdout + p.stderr)
        if not m:
            raise BenchError(f"{run}: no app handle in the output of torchx run:\n{tail(p.stdout + p.stderr)}")
        handle, app_id = m.group(0), m.group(1)
        self.forge_apps.append((state, handle))
        self.name_prefixes.append(f"forge-search-{layout.safe_name(app_id)}")  # its decision jobs: ours, not someone else's
        state_seen, seen_done, last_status = "", math.nan, 0.0
        while True:
            watch.sample()
            # a status every STATUS_EVERY s: one `torchx status` takes ~0.5 s of CPU, which this machine's
            # 2 cores share with the search; the figures come from sacct, not from when status saw the end
            if time.time() - last_status >= STATUS_EVERY:
                last_status = time.time()
                s = sh([self.torchx, "status", handle], check=False, cwd=cwd, env=status_env)
                found = re.search(r"State:\s*(\w+)", s.stdout)
                state_seen = found.group(1) if found else state_seen
                if state_seen in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    seen_done = time.time()
                    break
            if time.time() - t0 > LAB_TIMEOUT:
                raise BenchError(f"{run}: not over after {LAB_TIMEOUT:.0f} s (status {state_seen or '?'}); cancelled")
            time.sleep(1.0)
        for _ in range(2):  # after the end too: nothing of the run may be left
            time.sleep(1.0)
            watch.sample()
        if state_seen != "SUCCEEDED":
            raise BenchError(f"{run}: the search ended {state_seen}:\n{tail(s.stdout)}")

        rec = Records(Store(state)).load(app_id)
        if rec is None or not rec.meta.search:
            raise BenchError(f"{run}: no search record of {app_id} in {state}")
        trial_jobs = [j for j in rec.jobs if j.kind == "array" and not j.planned and j.tag]
        decide_jobs = [j for j in rec.jobs if j.kind == "decide"]
        tdir = os.path.join(state, rec.meta.search, "trials")
        trial_list = []
        for name in sorted(os.listdir(tdir)):
            with open(os.path.join(tdir, name)) as f:
                trial_list.append(Trial.from_json(json.load(f), name))
        keys = {f"{j.job_id}_{(j.tasks or [0])[0]}": j for j in trial_jobs}
        rows = self.sacct_until_ended([j.job_id for j in trial_jobs + decide_jobs],
                                      list(keys) + [j.job_id for j in decide_jobs])
        by_tag = {j.tag: j for j in trial_jobs}
        events = []
        for t in trial_list:
            if t.value is None or t.state.value != "COMPLETE":
                continue
            job = by_tag.get(trial_tag(rec.submission, t))
            end = rows.get(f"{job.job_id}_{t.number}", ("", None, None))[2] if job else None
            if end is None:
                raise BenchError(f"{run}: no end time in sacct for trial {t.number}")
            events.append((end, float(t.value)))
        intervals = [(rows[k][1], rows[k][2]) for k in keys if rows.get(k) and rows[k][1] and rows[k][2]]
        ends = [r[2] for r in rows.values() if r[2]]
        lab = LabRun(run, seed, t0, events, intervals, max(ends), watch, submit_s=submit_s, seen_done=seen_done,  # type: ignore[arg-type]
                     jobs=len(trial_jobs), other_jobs=len(decide_jobs), fine=ctld_intervals(list(keys), t0 - 1),
                     relay_jobs=sum(any(a.startswith("--dependency=afterany:") for a in j.argv) for j in decide_jobs))
        trial_end = {j.job_id: rows[k][2] for k, j in keys.items() if k in rows}
        end_of_tag = {j.tag: trial_end.get(j.job_id) for j in trial_jobs}
        for j in decide_jobs:  # the decision job that takes trial job <tag>'s end is tagged <tag>dr
            trial_ended = end_of_tag.get(j.tag[:-2]) if j.tag.endswith("dr") else None
            _, start, end = rows.get(j.job_id, ("", None, None))
            if trial_ended is not None and start is not None and end is not None:
                lab.decision_waits.append(start - trial_ended)
                lab.decision_runs.append(end - start)
        complete = sum(t.state.value == "COMPLETE" for t in trial_list)
        if algorithm == "tpe" and complete != trials:
            lab.notes.append(f"{run}: {complete} of {trials} trials COMPLETE")
        failed = sorted({r[0] for r in rows.values()} - {"COMPLETED"})
        if failed:
            lab.notes.append(f"{run}: jobs ended {', '.join(failed)}")
        return lab

    def sacct_until_ended(self, ids: Sequence[str], want: Sequence[str], timeout: float = 60.0):
        """sacct rows of ``ids`` once every row of ``want`` has an end (accounting lags a little)."""
        t0 = time.monotonic()
        while True:
            rows = sacct_rows(ids)
            missing = [k for k in want if k not in rows or rows[k][2] is None]
            if not missing:
                return rows
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"sacct has no end for {missing[:5]} after {timeout:.0f} s")
            time.sleep(2.0)

    # -- Hydra -----------------------------------------------------------------------------------

    def ensure_hydra(self) -> str:
        """The python of a venv with HYDRA_PINS (made once, then reused)."""
        py = os.path.join(self.venv, "bin", "python")
        probe = [py, "-c", "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                 + repr(sorted(HYDRA_PINS)) + "}))"]

        def have() -> Dict[str, str]:
            if not os.access(py, os.X_OK):
                return {}
            p = sh(probe, check=False)
            return json.loads(p.stdout) if p.returncode == 0 else {}

        found = have()
        if found == HYDRA_PINS:
            say(f"  Hydra venv {self.venv} (reused): " + ", ".join(f"{k} {v}" for k, v in sorted(found.items())))
        else:
            say(f"  Hydra venv {self.venv} missing or not pinned ({found or 'none'}): making it (pip, about 1-2 min)")
            t0 = time.monotonic()
            if not os.access(py, os.X_OK):
                sh([sys.executable, "-m", "venv", self.venv])
            sh([py, "-m", "pip", "install", "-q", *(f"{k}=={v}" for k, v in sorted(HYDRA_PINS.items()))])
            found = have()
            if found != HYDRA_PINS:
                raise BenchError(f"{self.venv} holds {found} after installing {HYDRA_PINS}")
            say(f"  Hydra venv made in {time.monotonic() - t0:.0f} s")
        versions = sh([py, "-c", "import optuna, submitit; print(optuna.__version__, submitit.__version__)"]).stdout.split()
        say(f"  in it: optuna {versions[0]}, submitit {versions[1]}")
        return py

    def hydra_run(self, py: str, seed: int) -> LabRun:
        run = f"hydra-s{seed}"
        cwd = os.path.join(self.root, run)
        os.makedirs(cwd)
        marker = f"{self.token}-{run}"
        records = os.path.join(cwd, "records")
        startup = max(2, min(10, self.trials // 4))  # forge's TPE: torchx_forge.search.study.sampler
        with open(os.path.join(cwd, "height_hydra.py"), "w") as f:
            f.write(HYDRA_APP)
        with open(os.path.join(cwd, "height.yaml"), "w") as f:
            f.write(HYDRA_CONFIG.format(steps=STEPS, sleep=self.sleep, width_cost=self.width_cost, records=records,
                                        sweep=os.path.join(cwd, "multirun"),
                                        trials=self.trials, parallel=PARALLEL, seed=seed, startup=startup, comment=marker))
        env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}
        env["FORGE_BENCH_RUN"] = marker
        argv = [py, "height_hydra.py", "--multirun"]
        say(f"  {run}: {os.path.basename(py)} height_hydra.py --multirun (optuna TPE seed {seed}, n_startup_trials {startup},"
            f" n_trials {self.trials}, n_jobs {PARALLEL}; submitit_slurm, 1 CPU, 256M)")
        watch = ProcWatch([f"FORGE_BENCH_RUN={marker}"])
        log_path = os.path.join(cwd, "driver.log")
        with open(log_path, "w") as log:
            t0 = time.time()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
            self.drivers.append(proc)
            while True:
                try:
                    proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    watch.sample()
                if time.time() - t0 > LAB_TIMEOUT:
                    proc.kill()
                    raise BenchError(f"{run}: the Hydra driver still runs after {LAB_TIMEOUT:.0f} s; killed")
            end = time.time()
        for _ in range(2):
            time.sleep(1.0)
            watch.sample()
        with open(log_path) as f:
            text = f.read()
        if proc.returncode != 0:
            raise BenchError(f"{run}: the Hydra driver exited {proc.returncode}:\n{tail(text, 25)}")
        recs = []
        for name in sorted(os.listdir(records)) if os.path.isdir(records) else []:
            with open(os.path.join(records, name)) as f:
                recs.append(json.load(f))
        keys = [f"{r['array_job']}_{r['task']}" if r["array_job"] else r["job"] for r in recs]
        rows = self.sacct_until_ended(sorted({r["array_job"] or r["job"] for r in recs}), keys)
        events = [(rows[k][2], float(r["loss"])) for k, r in zip(keys, recs, strict=True)]
        intervals = [(rows[k][1], rows[k][2]) for k in keys]
        lab = LabRun(run, seed, t0, events, intervals, end, watch, jobs=len(recs),  # type: ignore[arg-type]
                     fine=ctld_intervals(keys, t0 - 1))
        if len(recs) != self.trials:
            lab.notes.append(f"{run}: {len(recs)} of {self.trials} trials wrote their result")
        return lab

    # -- driver ----------------------------------------------------------------------------------

    def run(self) -> List[Tuple[str, str, str, bool]]:
        section(f"2. on the cluster: forge.search (TPE{', ASHA' if self.asha else ''}) vs Hydra's Optuna sweeper +"
                f" submitit, {self.trials} trials, {PARALLEL} at a time, {self.sleep:g} s per step, seeds"
                f" {self.seeds[0]}-{self.seeds[-1]}")
        py = self.ensure_hydra()
        for seed in self.seeds:
            order = ["forge", "hydra"] if seed % 2 == 0 else ["hydra", "forge"]  # alternate: drift hits both
            for tool in order:
                watch0 = self.watch_start()
                lab = self.forge_run(seed, "tpe") if tool == "forge" else self.hydra_run(py, seed)
                self.watch_stop(lab.tool, watch0)
                self.runs.append(lab)
                self.report_run(lab)
                self.settle()
            if self.asha:
                watch0 = self.watch_start()
                lab = self.forge_run(seed, "asha")
                self.watch_stop(lab.tool, watch0)
                self.runs.append(lab)
                self.report_run(lab)
                self.settle()
        return self.compare()

    def settle(self) -> None:
        """Wait (up to 60 s) until no job of this run is queued before the next search starts."""
        ok, waited = self.wait_until("ours", lambda: not self.ours(), 60.0)
        if not ok:
            self.notes.append(f"jobs of a previous search still queued after {waited:.0f} s")

    def report_run(self, r: LabRun) -> None:
        idle, plain, span = idle_fraction(r.intervals, PARALLEL)
        extra = ""
        if r.tool.startswith("forge"):
            extra = f", submit {r.submit_s:.1f} s, status saw the end at {r.seen_done - r.t0:.1f} s"
        other = (f" + {r.other_jobs - r.relay_jobs} decision jobs and {r.relay_jobs} relay jobs" if r.other_jobs else "")
        if r.decision_waits:
            w = r.decision_waits
            other += (f" (the decision job of a trial's end started {median(w):.0f} s after the trial job's end, median; max"
                      f" {max(w):.0f} s; each ran {median(r.decision_runs):.0f} s)")
        gaps = refill_gaps(r.intervals, PARALLEL)
        if gaps:
            other += (f"; slot refill gap (a trial job's end to the next one's start) median {median(gaps):.0f} s,"
                      f" max {max(gaps):.0f} s")
        fine = ""
        if r.fine:
            fine_gaps = refill_gaps(r.fine, PARALLEL)
            fine = (f"; from slurmctld's log (ms): idle slots {r.idle:.1%}, refill gap median {median(fine_gaps):.2f} s,"
                    f" max {max(fine_gaps):.2f} s" if fine_gaps else f"; from slurmctld's log (ms): idle slots {r.idle:.1%}")
        say(f"    best {r.best:.4f}; {r.jobs} trial jobs{other}; over at {r.end - r.t0:.1f} s{extra};"
            f" idle slots {idle:.1%} (plain {plain:.1%} of {PARALLEL} x {span:.0f} s){fine};"
            f" processes outside Slurm after launch: {r.procs.describe()}")
        self.notes.extend(r.notes)

    def compare(self) -> List[Tuple[str, str, str, bool]]:
        section("2. forge vs Hydra, per seed (times from launch; trial ends from sacct, whole seconds)")
        rows = [["seed", "run", "best loss", "target", "to target", "to the end", "idle slots", "idle (plain)",
                 "idle (ms)", "refill gap med/max", "procs outside Slurm"]]
        ratios, idles, hydra_idles, forge_procs, hydra_procs = [], [], [], [], []
        for seed in self.seeds:
            forge = next(r for r in self.runs if r.tool == f"forge-tpe-s{seed}")
            hydra = next(r for r in self.runs if r.tool == f"hydra-s{seed}")
            target = max(forge.best, hydra.best)  # the worse of the two bests: both reached it
            times = {}
            for r in [forge, hydra] + [x for x in self.runs if x.tool == f"forge-asha-s{seed}"]:
                t = reach_time(r.events, target)
                times[r.tool] = None if t is None else t - r.t0
                idle, plain, _ = idle_fraction(r.intervals, PARALLEL)
                gaps = refill_gaps(r.intervals, PARALLEL)
                rows.append([str(seed), r.tool, f"{r.best:.4f}", f"{target:.4f}",
                             "never" if t is None else f"{t - r.t0:.1f} s", f"{r.end - r.t0:.1f} s", f"{idle:.1%}",
                             f"{plain:.1%}", f"{r.idle:.1%}" if r.fine else "-",
                             f"{median(gaps):.0f} s / {max(gaps):.0f} s" if gaps else "-",
                             f"{len(r.procs.lasting)} (max {r.procs.max_at_once} at once)"])
            f_t, h_t = times[forge.tool], times[hydra.tool]
            ratios.append(math.inf if f_t is None or not h_t else f_t / h_t)
            idles.append(forge.idle)
            hydra_idles.append(hydra.idle)
            forge_procs.append(len(forge.procs.lasting))
            hydra_procs.append(len(hydra.procs.lasting))
        say(table(rows))
        ends = [(next(r for r in self.runs if r.tool == f"forge-tpe-s{s}"), next(r for r in self.runs if r.tool == f"hydra-s{s}"))
                for s in self.seeds]
        end_ratios = [(f.end - f.t0) / (h.end - h.t0) for f, h in ends]
        say(f"  forge / Hydra, time to target per seed: {', '.join(f'{x:.2f}x' for x in ratios)};"
            f" to the end: {', '.join(f'{x:.2f}x' for x in end_ratios)}")
        label = f"cluster, {len(self.seeds)} seed(s), TPE {self.trials} trials, {PARALLEL} at a time"
        if self.width_cost:
            label += f", steps 1-{1 + self.width_cost:g}x as long by width (--width-cost {self.width_cost:g})"
        fine = all(r.fine for r in self.runs if r.tool.startswith(("forge-tpe", "hydra")))
        targets = [
            (f"{label}: wall time to the same target, forge / Hydra (median)", f"<= {WALL_RATIO_MAX:g}x",
             f"{median(ratios):.2f}x (per seed {', '.join(f'{x:.2f}x' for x in ratios)})", median(ratios) <= WALL_RATIO_MAX),
            (f"{label}: forge processes outside Slurm jobs after submit (max)", "0",
             f"{max(forge_procs)} (Hydra's: {', '.join(map(str, hydra_procs))}, its driver)", max(forge_procs) == 0),
            (f"{label}: forge idle-slot fraction while trials remain (median{', ms from slurmctld' if fine else ', sacct'})",
             f"<= {IDLE_MAX:.0%}",
             f"{median(idles):.1%} (per seed {', '.join(f'{x:.1%}' for x in idles)}; Hydra's"
             f" {', '.join(f'{x:.1%}' for x in hydra_idles)})", median(idles) <= IDLE_MAX),
        ]
        return targets

    def cleanup(self) -> None:
        for proc in self.drivers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for state, handle in self.forge_apps:  # forge's cancel stops decisions too (they submit nothing more)
            env = dict(self.env, FORGE_STATE_DIR=state)
            s = sh([self.torchx, "status", handle], check=False, env=env)
            if not re.search(r"State:\s*(SUCCEEDED|FAILED|CANCELLED)", s.stdout):
                say(f"  cleanup: torchx cancel {handle}")
                sh([self.torchx, "cancel", handle], check=False, env=env)
        super().cleanup()


# =================================================================================================


def header(args: argparse.Namespace) -> None:
    import torchx

    say("bench_search: adaptive search (issue 20), the height curve")
    say(f"  date        {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    say(f"  CPUs        {os.cpu_count()}; {platform.machine()}, {platform.platform()}; 1-min load {os.getloadavg()[0]:.1f}")
    say(f"  python      {platform.python_version()} ({sys.executable}); torchx {torchx.__version__}")
    say(f"  forge       {forge_source()}")
    say(f"  benchmarks  {REPO} @ {git_describe(REPO)}")
    parts = ["in process"]
    if args.lab:
        parts.append("on the cluster" + (" (quick: one seed)" if args.quick else ""))
    say(f"  parts       {', '.join(parts)}")


def print_targets(targets: List[Tuple[str, str, str, bool]], notes: Sequence[str]) -> int:
    section("Targets")
    rows = [["target", "limit", "measured", "result"]]
    rows += [[what, limit, measured, verdict(ok)] for what, limit, measured, ok in targets]
    say(table(rows))
    failed = sum(not ok for *_, ok in targets)
    say(f"  {len(targets) - failed} PASS, {failed} FAIL")
    for note in notes:
        say(f"  note: {note}")
    return failed


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", action="store_true", help="also forge.search vs Hydra + submitit on the cluster (~4 min)")
    ap.add_argument("--quick", action="store_true", help="lab: one seed (the in-process part is the same)")
    ap.add_argument("--sim-trials", type=int, default=SIM_TRIALS,
                    help=f"in process: random search's trials; each algorithm gets N x {STEPS} trial-steps (default %(default)s)")
    ap.add_argument("--seeds", type=int, default=SEEDS, help="seeds 0..N-1 (default %(default)s)")
    ap.add_argument("--no-hyperband", action="store_true", help="in process: leave Hyperband out (it has no target)")
    ap.add_argument("--asha", action="store_true", help="lab: also forge.search with examples/height_asha.yaml per seed")
    ap.add_argument("--lab-trials", type=int, default=LAB_TRIALS, help="lab: TPE trials of both (default %(default)s)")
    ap.add_argument("--sleep", type=float, default=LAB_SLEEP, help="lab: seconds per step (default %(default)s)")
    ap.add_argument("--width-cost", type=float, default=0.0,
                    help="lab: a step of width w takes sleep * (1 + C * w / 20): trials of unequal length (default 0: equal)")
    ap.add_argument("--hydra-venv", default=HYDRA_VENV, help="venv for Hydra (made if missing; default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="lab: keep the scratch directory under /tmp")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.sim_trials < 1:
        ap.error("--seeds and --sim-trials must be >= 1")

    def body() -> int:
        t0 = time.monotonic()
        header(args)
        part = InProcess(args)
        part.run()
        targets, notes = list(part.targets), []
        if args.lab:
            lab = Lab(args)
            try:
                lab.header("  cluster", f"TPE {args.lab_trials} trials, {PARALLEL} at a time, {args.sleep:g} s per step"
                           + (f" x (1 + {args.width_cost:g} width/20)" if args.width_cost else "")
                           + f", {len(lab.seeds)} seed(s)")
                targets += lab.run()
            finally:
                lab.cleanup()
            notes = lab.notes
        failed = print_targets(targets, notes)
        say(f"  total benchmark time {time.monotonic() - t0:.0f} s")
        return 1 if failed else 0

    return guarded_main("bench_search", body, stop_on_signals=args.lab, cluster=args.lab)


if __name__ == "__main__":
    sys.exit(main())
