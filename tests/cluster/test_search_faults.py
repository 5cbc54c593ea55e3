"""Faults of adaptive searches on the fault cluster: decisions killed, a trial preempted, the failure
cap, a cancelled search retried.

The program is examples/height.py: one line ``step N loss X`` per step, a checkpoint per step,
resumed from the latest, so the logs of every job that ran a trial show whether a step ran twice.
A decision is killed by a wrapper in front of the real sbatch on PATH (the decision jobs and what
they submit inherit the PATH of ``torchx run``): it lets the decision's first trial submission go
through, then kills the decision (its process, or its whole job). Every sbatch the wrapper sees is
logged, so "each tag submitted once" is checked against what Slurm was asked, not only the records.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import REPO, LabCluster, handle_of, queued_jobs_of, run_torchx, wait_end, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

CONFIG = str(REPO / "examples" / "height_tpe.yaml")
SBATCH = shutil.which("sbatch") or "/usr/bin/sbatch"


def submit(*sets: str, cfg: str = "") -> str:
    args = ["run", "--scheduler", "slurm_forge", *(["-cfg", cfg] if cfg else []), "forge.search", "--config", CONFIG,
            "--set", ";".join(["run.args.sleep=0.1", "run.args.steps=3", *sets])]
    p = run_torchx(*args)
    assert p.returncode == 0, p.stderr
    return handle_of(p)


def status(handle: str) -> str:
    return run_torchx("status", handle).stdout


def steps_per_job(logs: Path) -> Dict[int, Dict[str, Counter]]:
    """Trial -> its jobs' log files -> how many times each step ran in it."""
    out: Dict[int, Dict[str, Counter]] = defaultdict(dict)
    for f in logs.glob("height-*-height-*.out"):
        trial = int(f.name.rsplit("-", 1)[1].split(".")[0])
        out[trial][f.name] = Counter(int(m.group(1)) for m in re.finditer(r"(?m)^step (\d+) loss ", f.read_text()))
    return out


def each_step_once(logs: Path, trials: int, steps: int) -> Dict[int, Dict[str, Counter]]:
    runs = steps_per_job(logs)
    assert sorted(runs) == list(range(trials)), sorted(runs)
    for t, jobs in runs.items():
        total = sum(jobs.values(), Counter())
        assert sorted(total) == list(range(1, steps + 1)) and set(total.values()) == {1}, (t, jobs)
    return runs


def trial_files(state_dir: Path) -> List[dict]:
    return [json.loads(f.read_text()) for f in sorted(state_dir.glob("searches/*/trials/*.json"))]


def kill_decision_at_its_first_trial(bin_dir: Path, flag: Path, log: Path, how: str, monkeypatch) -> None:
    """PATH (of the test, the torchx CLI and through them of every job) gets an sbatch that logs
    every call and, the first time a decision (a process running torchx_forge.slurm.search) submits
    a trial, lets it go through and then ``how``: ``process`` (SIGKILL to the decision's python) or
    ``job`` (scancel of the decision's job)."""
    kill = {"process": 'kill -9 "$PPID"',
            "job": 'scancel "$(tr "\\0" "\\n" < /proc/$PPID/environ | sed -n "s/^SLURM_JOB_ID=//p")"; sleep 60'}[how]
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sbatch").write_text(f'''#!/bin/bash
printf '%s\\n' "$*" >> {log}
if [[ " $* " == *" --array="* ]] && tr '\\0' ' ' < /proc/$PPID/cmdline | grep -q torchx_forge.slurm.search \\
        && mkdir {flag} 2>/dev/null; then
    {SBATCH} "$@"; rc=$?
    {kill}
    exit $rc
fi
exec {SBATCH} "$@"
''')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def submitted_tags(log: Path) -> Counter:
    return Counter(m.group(1) for line in log.read_text().splitlines() for m in [re.search(r"--comment=\S*forge:(\S+)", line)]
                   if m)


def assert_once_each(log: Path, state_dir: Path, trials: int) -> None:
    """Every trial asked once (numbers 0..n-1, attempt 0), every trial and decision tag sbatched once."""
    tags = submitted_tags(log)
    assert tags and set(tags.values()) == {1}, [t for t, n in tags.items() if n > 1]
    trial_tags = sorted(t for t in tags if re.search(r"-t\d+r\d+a\d+$", t))
    assert [int(re.search(r"-t(\d+)r", t).group(1)) for t in trial_tags] == sorted(range(trials)), trial_tags
    files = trial_files(state_dir)
    assert [t["number"] for t in files] == list(range(trials)) and {t["state"] for t in files} == {"COMPLETE"}, files


def test_a_decision_killed_after_it_submitted_a_trial_runs_again_and_loses_or_doubles_nothing(
        fault_cluster: LabCluster, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log, flag = tmp_path / "sbatch.log", tmp_path / "killed"
    kill_decision_at_its_first_trial(tmp_path / "bin", flag, log, "process", monkeypatch)
    handle = submit("search.trials=6", "search.parallel=3")
    assert wait_end(handle, timeout=240) == "SUCCEEDED"
    assert flag.exists(), "no decision was killed"
    out = status(handle)
    assert "search tpe, min loss: 6 of 6 trials done (6 complete" in out, out
    assert_once_each(log, state_dir, 6)
    runs = each_step_once(state_dir / "logs", 6, 3)
    assert all(len(jobs) == 1 for jobs in runs.values()), runs  # each trial ran in one job
    decisions = "".join(f.read_text() for f in (state_dir / "logs").glob("*search-*.log"))
    assert "the decision ended with 137: running it again (1 of 3)" in decisions, decisions


def test_a_search_whose_last_decision_job_was_cancelled_is_given_one_by_the_next_status(
        fault_cluster: LabCluster, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log, flag = tmp_path / "sbatch.log", tmp_path / "killed"
    kill_decision_at_its_first_trial(tmp_path / "bin", flag, log, "job", monkeypatch)
    handle = submit("search.trials=3", "search.parallel=1")  # one decision job at a time
    wait_for(flag.exists, 120, "the first decision to submit trial 1 (and be cancelled)", interval=1)
    app = handle.rsplit("/", 1)[1]

    def decisions_left() -> str:
        return subprocess.run(["squeue", "-h", "-n", f"forge-search-{app}", "-o", "%i %T"], capture_output=True,
                              text=True).stdout.strip()

    wait_for(lambda: not decisions_left(), 60, "the cancelled decision job to leave the queue")
    time.sleep(5)  # nothing moves the search: trial 1 stays held, unrecorded, nobody decides
    held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r %k"], capture_output=True, text=True).stdout
    assert re.search(r"JobHeldUser .*-t1r0a0\b", held), held
    assert not decisions_left()
    out = status(handle)
    assert re.search(rf"search {re.escape(app)} had no decision job left .* submitted decision job \d+", out), out
    assert wait_end(handle, timeout=180) == "SUCCEEDED"
    assert "search tpe, min loss: 3 of 3 trials done (3 complete" in status(handle)
    assert_once_each(log, state_dir, 3)
    each_step_once(state_dir / "logs", 3, 3)


def test_a_preempted_trial_resumes_from_its_checkpoint_and_is_not_a_failure(
        fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    node = fault_cluster.nodes[-1]
    steps = 12
    handle = submit("search.trials=3", "search.parallel=3", f"run.args.steps={steps}", "run.args.sleep=0.5",
                    cfg=f"sbatch_args=--nodelist={node}")
    logs = state_dir / "logs"
    wait_for(lambda: len(steps_per_job(logs)) == 3 and all(max(sum(j.values(), Counter()), default=0) >= 2
                                                           for j in steps_per_job(logs).values()),
             120, "every trial to run 2 steps")
    high = subprocess.run(["sbatch", "--parsable", "-p", "high", f"--nodelist={node}", "--exclusive", "-o", "/dev/null",
                           "--wrap", "sleep 3"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert wait_end(handle, timeout=240) == "SUCCEEDED"
    finally:
        subprocess.run(["scancel", high])
    out = status(handle)
    assert "search tpe, min loss: 3 of 3 trials done (3 complete, 0 pruned, 0 failed)" in out, out
    runs = each_step_once(logs, 3, steps)
    assert any(len(jobs) == 2 for jobs in runs.values()), runs  # preempted, then resumed in a job of its own
    assert re.search(r"Num Restarts: [1-9]", out), out
    rows = [line.split() for line in out.split("TASK", 1)[1].splitlines() if line.strip().startswith("height[")]
    # Slurm accounts a preempted job that may not be requeued as FAILED; its launcher saw it stopped from outside
    assert any(r[5] == "2" and r[6] != "-" and r[7] == "KILLED" for r in rows), out
    assert [t["attempts"] for t in trial_files(state_dir)].count(0) < 3


def test_a_search_whose_trials_fail_stops_at_its_failure_cap_and_starts_nothing_more(
        fault_cluster: LabCluster, state_dir: Path):
    handle = submit("search.trials=8", "search.parallel=3", "run.args.fail_above=-1000")  # every trial fails
    assert wait_end(handle, timeout=180) == "FAILED"
    out = status(handle)
    assert re.search(r"search stopped: \d+ of \d+ trials failed \(max_failures 0.5\): nothing more starts", out), out
    assert "`torchx forge retry`" in out
    wait_for(lambda: not queued_jobs_of(state_dir), 60, "the last decision jobs to end")
    asked = len(trial_files(state_dir))
    assert 3 <= asked < 8, asked
    time.sleep(10)
    assert not queued_jobs_of(state_dir) and len(trial_files(state_dir)) == asked
    assert {t["state"] for t in trial_files(state_dir)} == {"FAIL"}
    assert "CANCELLED" in out and "trial not asked: the search ended" in out, out


def test_a_cancelled_search_retried_goes_on_from_its_checkpoints_and_succeeds(
        fault_cluster: LabCluster, state_dir: Path):
    steps = 8
    handle = submit("search.trials=4", "search.parallel=2", f"run.args.steps={steps}", "run.args.sleep=0.5")
    logs = state_dir / "logs"
    wait_for(lambda: sum(sum(sum(j.values(), Counter()).values()) for j in steps_per_job(logs).values()) >= 4, 120,
             "the trials to run 4 steps")
    assert run_torchx("cancel", handle).returncode == 0
    assert wait_end(handle, timeout=60) == "CANCELLED"
    wait_for(lambda: not queued_jobs_of(state_dir), 60, "the search's jobs to leave the queue")
    p = run_torchx("forge", "retry", handle)
    assert p.returncode == 0 and "(asked again by the search's decision job) as job" in p.stdout, p.stdout + p.stderr
    assert wait_end(handle, timeout=240) == "SUCCEEDED"
    out = status(handle)
    assert "search tpe, min loss: 4 of 4 trials done (4 complete" in out, out
    runs = each_step_once(logs, 4, steps)
    assert any(len(jobs) == 2 for jobs in runs.values()), runs  # cancelled mid-way, resumed in a new job
    assert re.search(r"Num Restarts: [1-9]", out), out
    assert max(t["attempts"] for t in trial_files(state_dir)) == 1
