"""Adaptive searches on the real cluster (forge.search): trials as jobs, decisions as singleton jobs.

The program is examples/height.py (Syne Tune's "height" curve): one line ``step N loss X`` per step,
a checkpoint per step, resumed from the latest, so a promoted ASHA trial's logs show whether any
step ran twice.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict

import pytest

from conftest import REPO, handle_of, queued_jobs_of, run_torchx, wait_end, wait_for

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
    out = subprocess.run(["squeue", "-h", "-o", "%j", "-n", f"forge-search-{handle.rsplit('/', 1)[1]}"],
                         capture_output=True, text=True).stdout
    assert not out.strip(), out
