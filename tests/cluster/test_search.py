"""Adaptive searches on the real cluster (forge.search): trials as jobs, decisions as singleton jobs.

The program is examples/height.py (Syne Tune's "height" curve): one line ``step N loss X`` per step,
a checkpoint per step, resumed from the latest, so a promoted ASHA trial's logs show whether any
step ran twice.
"""

from __future__ import annotations

import csv
import re
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Tuple

import pytest
from torchx.runner import get_runner

from conftest import REPO, handle_of, queued_jobs_of, run_torchx, wait_end, wait_for
from torchx_forge import sweeps

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

EXAMPLES = REPO / "examples"
STEPS = 27


def submit(config: str, *sets: str) -> str:
    args = ["run", "--scheduler", "slurm_forge", "forge.search", "--config", str(EXAMPLES / config)]
    if sets:
        args += ["--set", ";".join(sets)]
    p = run_torchx(*args)
    assert p.returncode == 0, p.stderr
    return handle_of(p)


def status(handle: str) -> str:
    return run_torchx("status", handle).stdout


def steps_per_trial(logs: Path) -> Dict[int, Counter]:
    """Trial (replica) -> how many times each step ran, from every attempt's output in the log dir."""
    out: Dict[int, Counter] = defaultdict(Counter)
    for f in logs.glob("height-*-height-*.out"):
        trial = int(f.name.rsplit("-", 1)[1].split(".")[0])
        for line in f.read_text().splitlines():
            m = re.match(r"step (\d+) loss ", line)
            if m:
                out[trial][int(m.group(1))] += 1
    return out


def test_tpe_search_of_12_trials_4_at_a_time_succeeds_and_shows_its_best_trial(state_dir: Path):
    handle = submit("height_tpe.yaml")
    assert wait_end(handle, timeout=300) == "SUCCEEDED"
    out = status(handle)
    assert "search tpe, min loss: 12 of 12 trials done (12 complete" in out, out
    best = re.search(r"best: trial (\d+), loss (\S+) \((.*)\)", out)
    assert best, out
    assert "run.args.width=" in best.group(3) and "run.args.height=" in best.group(3)
    runs = steps_per_trial(state_dir / "logs")
    assert sorted(runs) == list(range(12)) and all(sorted(c) == list(range(1, STEPS + 1)) for c in runs.values())
    # each trial ran with its own parameters: the final losses differ
    finals = set()
    for f in (state_dir / "logs").glob("height-*-height-*.out"):
        last = [line for line in f.read_text().splitlines() if line.startswith(f"step {STEPS} ")]
        finals.update(last)
    assert len(finals) == 12, finals
    # every trial's script submitted the decision job that took its end (decide.sh, not its relay):
    # each such job linked itself to the app as it started, tagged as the relay's would be
    said = [f.read_text() for f in (state_dir / "logs").glob("height-*.batch.log")]
    assert sum("the trial ended: decision job " in t for t in said) == 12, said
    assert sum(bool(re.search(r"the trial ended: decision job \d+", t)) for t in said) >= 9, said
    from torchx_forge.state.records import Records
    from torchx_forge.state.store import Store

    rec = Records(Store(str(state_dir))).load(handle.rsplit("/", 1)[1])
    by_trial = [j for j in rec.jobs if j.kind == "decide" and j.tag.endswith("dr") and not j.argv]
    assert len(by_trial) >= 9, [(j.job_id, j.tag, bool(j.argv)) for j in rec.jobs if j.kind == "decide"]
    # forge results: every trial with its parameters and loss, the best one marked as status has it
    csv_path = state_dir.parent / "trials.csv"
    p = run_torchx("forge", "results", handle, "--csv", str(csv_path))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].endswith(": search tpe, min loss: 12 of 12 trial(s)"), p.stdout
    assert lines[1].split() == ["TRIAL", "STATE", "RUNG", "STEPS", "loss", "run.args.height", "run.args.width"], p.stdout
    table = [line.split() for line in lines[2:14]]
    assert [row[-7] for row in table] == [str(n) for n in range(12)], p.stdout
    assert all(row[-6:-3] == ["COMPLETE", "0", str(STEPS)] for row in table), p.stdout
    assert [row[0] for row in table if len(row) == 8] == ["*"] and [row for row in table if row[0] == "*"][0][1] == best.group(1)
    assert f"best (*): trial {best.group(1)}, loss " in p.stdout, p.stdout
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["trial"]) for r in rows] == list(range(12))
    for r in rows:
        assert r["state"] == "COMPLETE" and int(r["steps"]) == STEPS, r
        assert float(r["loss"]) == pytest.approx((0.1 + float(r["run.args.width"]) * STEPS / 100) ** -1
                                                 + float(r["run.args.height"]) * 0.1, rel=1e-5), r
    assert [r["trial"] for r in rows if r["best"] == "True"] == [best.group(1)]
    assert min(float(r["loss"]) for r in rows) == float([r["loss"] for r in rows if r["best"] == "True"][0])


def test_a_search_built_in_python_runs_through_the_runner_api(state_dir: Path):
    exp = sweeps.Experiment(name="pyheight", run=sweeps.Run(command=["python", "height.py"], workdir=str(EXAMPLES),
                                                            args={"steps": 5, "sleep": 0.05}),
                            cluster={"cpus_per_task": 1, "mem": "256M", "time_limit": "00:05:00"})
    space = {"run.args.width": sweeps.uniform(0, 20), "run.args.height": sweeps.choice(-1, 1)}
    app = sweeps.search(exp, sweeps.Search("random", "loss", trials=4, parallel=2, seed=5, space=space))
    with get_runner() as runner:
        handle = runner.run(app, scheduler="slurm_forge")
    assert wait_end(handle, timeout=240) == "SUCCEEDED"
    csv_path = state_dir.parent / "py.csv"
    p = run_torchx("forge", "results", handle, "--csv", str(csv_path))
    assert p.returncode == 0 and ": search random, min loss: 4 of 4 trial(s)" in p.stdout, p.stdout + p.stderr
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["trial"], r["state"], r["steps"]) for r in rows] == [(str(n), "COMPLETE", "5") for n in range(4)]
    for r in rows:
        assert r["run.args.height"] in ("-1", "1")
        assert float(r["loss"]) == pytest.approx((0.1 + float(r["run.args.width"]) * 5 / 100) ** -1
                                                 + int(r["run.args.height"]) * 0.1, rel=1e-5), r


def test_asha_search_of_16_trials_runs_fewer_steps_and_each_promoted_step_once(state_dir: Path):
    handle = submit("height_asha.yaml")
    assert wait_end(handle, timeout=420) == "SUCCEEDED"
    out = status(handle)
    assert "search asha, min loss: 16 of 16 trials done" in out, out
    assert re.search(r"best: trial \d+, loss \S+ \(", out), out
    assert "rungs (steps): 1:" in out, out
    runs = steps_per_trial(state_dir / "logs")
    assert sorted(runs) == list(range(16)), sorted(runs)
    total = sum(sum(c.values()) for c in runs.values())
    assert total < 16 * STEPS, total
    promoted = {t: c for t, c in runs.items() if max(c) > 1}
    assert promoted, runs
    for t, c in runs.items():  # every trial, promoted or not, ran steps 1..its last once each
        assert sorted(c) == list(range(1, max(c) + 1)) and set(c.values()) == {1}, (t, c)
    assert any(max(c) == STEPS for c in runs.values())


def test_cancel_stops_trials_and_decisions_and_nothing_starts_after(state_dir: Path):
    handle = submit("height_tpe.yaml", "run.args.sleep=1", "search.trials=12")
    logs = state_dir / "logs"
    wait_for(lambda: any(steps_per_trial(logs).values()), 180, "a trial to run a step")
    p = run_torchx("cancel", handle)
    assert p.returncode == 0, p.stderr
    assert wait_end(handle, timeout=120, states=("CANCELLED",)) == "CANCELLED"
    wait_for(lambda: not queued_jobs_of(state_dir), 60, "every job of the search to leave the queue")
    seen = {f.name for f in logs.iterdir()}
    lines = sum(sum(c.values()) for c in steps_per_trial(logs).values())
    time.sleep(20)  # no decision, trial or companion comes back
    assert not queued_jobs_of(state_dir)
    assert {f.name for f in logs.iterdir()} == seen
    assert sum(sum(c.values()) for c in steps_per_trial(logs).values()) == lines
    app_id = handle.rsplit("/", 1)[1]
    out = subprocess.run(["squeue", "-h", "-o", "%j", "-n", f"forge-search-{app_id},forge-relay-{app_id}"],
                         capture_output=True, text=True).stdout
    assert not out.strip(), out


def _trial_times(state_dir: Path, app_id: str) -> Dict[int, Tuple[float, float]]:
    """Trial number -> (start, end) of its (last) job, from sacct."""
    from torchx_forge.state.records import Records
    from torchx_forge.state.store import Store

    rec = Records(Store(str(state_dir))).load(app_id)
    assert rec is not None
    out: Dict[int, Tuple[float, float]] = {}
    for job in rec.jobs:
        if job.kind != "array" or job.planned or not job.tasks:
            continue
        (k,) = job.tasks
        p = subprocess.run(["sacct", "-n", "-X", "-P", "-j", f"{job.job_id}_{k}", "-o", "Start,End", "--noconvert"],
                           capture_output=True, text=True, check=True)
        start, end = p.stdout.strip().splitlines()[-1].split("|")
        out[k] = (time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S")), time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S")))
    return out


# seconds a step of the slow trial: its 10 steps must outlast the three queue waits (relay job, decision
# job, next trial) that top up the fast trial's slot, 31 s in all on a CI machine running the suite
SLOW_STEP = 5.0


def _seed_with_slow_first_trial() -> int:
    """A seed whose first wave (2 trials) gives trial 0 the long sleep and trial 1 the short one."""
    from torchx_forge.experiment.generators import distribution
    from torchx_forge.search import SearchSpec, apply, decide

    for seed in range(100):
        spec = SearchSpec("random", "loss", trials=3, parallel=2, seed=seed,
                          space=(("run.args.sleep", distribution(f"choice(0.02, {SLOW_STEP})")),))
        first = apply([], decide(spec, [], 0))
        if [t.params["run.args.sleep"] for t in first] == [SLOW_STEP, 0.02]:
            return seed
    raise AssertionError("no seed gives a slow trial 0 and a fast trial 1")


def test_a_slot_freed_early_gets_the_next_trial_while_a_slower_trial_runs(state_dir: Path):
    # decision jobs queue as trials end: trial 1 (10 x 0.02 s) ends long before trial 0 (10 x 5 s),
    # and trial 2 starts in its slot before trial 0 ends (decisions submitted with their trials
    # waited for trial 0's decision, as a singleton waits for every earlier job of its name)
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.search", "--algorithm", "random", "--trials", "3",
                   "--parallel", "2", "--seed", str(_seed_with_slow_first_trial()), "--space",
                   f"sleep=choice(0.02,{SLOW_STEP});width=interval(0,20)", "--name", "height", "--",
                   "python", str(EXAMPLES / "height.py"), "--steps", "10")
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    assert wait_end(handle, timeout=360) == "SUCCEEDED"
    times = _trial_times(state_dir, handle.rsplit("/", 1)[1])
    assert sorted(times) == [0, 1, 2], times
    assert times[1][1] < times[0][1] - 5, times  # the fast one ended well before the slow one
    assert times[2][0] < times[0][1], times  # and its slot was topped up meanwhile


def test_the_budget_of_a_running_search_is_raised_within_max_trials(state_dir: Path):
    handle = submit("height_tpe.yaml", "run.args.sleep=0.2", "run.args.steps=10", "search.trials=3",
                    "search.parallel=3", "search.max_trials=6")
    over = run_torchx("forge", "budget", handle, "--trials", "7")
    assert over.returncode != 0 and "Traceback" not in over.stderr, over.stderr
    assert "submitted for at most 6 trials (search.max_trials): give --trials 6 or less" in over.stderr, over.stderr
    p = run_torchx("forge", "budget", handle, "--trials", "5")
    assert p.returncode == 0, p.stderr
    assert "budget raised from 3 to 5 trials" in p.stdout, p.stdout
    assert wait_end(handle, timeout=300) == "SUCCEEDED"
    out = status(handle)
    assert "search tpe, min loss: 5 of 5 trials done (5 complete" in out, out
    res = run_torchx("forge", "results", handle)
    assert res.returncode == 0 and ": 5 of 5 trial(s)" in res.stdout, res.stdout + res.stderr
    runs = steps_per_trial(state_dir / "logs")
    assert sorted(runs) == list(range(5)) and all(sorted(c) == list(range(1, 11)) for c in runs.values()), runs
