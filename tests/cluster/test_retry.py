"""Retry and checkpoint-resume on the real cluster: warnings, walltime, preemption, node failure.

The training program is examples/train_steps.py: one step per second, a checkpoint
after every step, and a ledger line per step so "every step ran exactly once" can
be checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, LabCluster, handle_of, ledger_lines, run_torchx, task_row, wait_end, wait_for, warn_batch

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

TRAIN = str(REPO / "examples" / "train_steps.py")


def submit(cfg: str, *train_args: str, component: str = "utils.python") -> str:
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", cfg, component, "--script", TRAIN, "--", *train_args)
    assert p.returncode == 0, p.stderr
    return handle_of(p)


def status(handle: str) -> str:
    return run_torchx("status", handle).stdout


def ledger_steps(path: Path) -> Counter:
    return Counter(int(line.split()[1]) for line in path.read_text().splitlines())


def sacct_states(job: str) -> list:
    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job], capture_output=True, text=True).stdout
    return out.split()


def running(ledger: Path, steps: int, timeout: float = 180) -> None:
    """Wait until the training has done ``steps`` steps (its ledger, a local file: quick to poll)."""
    wait_for(lambda: ledger_lines(ledger) >= steps, timeout, f"{steps} steps in {ledger}")


def test_warning_saves_requeues_same_job_and_resumes(state_dir: Path, tmp_path: Path):
    ledger = tmp_path / "ledger"
    handle = submit("max_retries=2", "--steps", "30", "--ledger", str(ledger))
    job = handle.rsplit("/", 1)[1]
    running(ledger, 5)
    # the path a real pre-timeout warning takes: the signal reaches the batch shell
    warn_batch(job)
    assert wait_end(handle) == "SUCCEEDED"
    steps = ledger_steps(ledger)
    assert sorted(steps) == list(range(1, 31)) and set(steps.values()) == {1}, steps  # each step exactly once
    r = task_row(handle, "python[0]")
    assert r[1] == job and r[5] == "2", r  # same job id, 2 attempts
    assert r[7] == "warned", r  # what ended the first attempt
    assert re.match(r"\S+/step_\d+\.json", r[6]), r  # resumed from a checkpoint
    wait_for(lambda: "REQUEUED" in sacct_states(job), 30, "sacct to show the requeue")
    log = run_torchx("log", f"{handle}/python/0").stdout
    assert "attempt 1 (job" in log and "resuming from" in log  # the attempts are told apart


@pytest.mark.slow
def test_real_walltime_warning_before_a_two_minute_limit(state_dir: Path, tmp_path: Path):
    ledger = tmp_path / "ledger"
    handle = submit("max_retries=2,time=2,signal=USR1@70", "--steps", "75", "--ledger", str(ledger))
    assert wait_end(handle, timeout=420) == "SUCCEEDED"
    steps = ledger_steps(ledger)
    assert sorted(steps) == list(range(1, 76)) and set(steps.values()) == {1}
    assert int(task_row(handle, "python[0]")[5]) >= 2
    assert "REQUEUED" in sacct_states(handle.rsplit("/", 1)[1])


@pytest.mark.slow
def test_hard_timeout_without_warning_is_resubmitted_by_the_companion(state_dir: Path, tmp_path: Path):
    ledger = tmp_path / "ledger"
    # 100 one-second steps under a 1-minute limit: killed once (Slurm enforces limits to the minute,
    # so after 60-90 steps), then the resubmission has well under a minute of work left
    handle = submit("max_retries=2,signal=off,time=1", "--steps", "100", "--ledger", str(ledger))
    job = handle.rsplit("/", 1)[1]
    assert wait_end(handle, timeout=420) == "SUCCEEDED"
    r = task_row(handle, "python[0]")
    assert r[1] != job and int(r[5]) >= 2, r  # a new job id (resubmitted by the companion), a later attempt
    assert "TIMEOUT" in sacct_states(job) and r[7].startswith("TIMEOUT"), r
    resumed = int(r[6].split("_")[-1].split(".")[0])
    assert 30 <= resumed < 100, r  # resumed from the checkpoint the killed attempt left
    steps = ledger_steps(ledger)
    # a hard kill may land between a step and its checkpoint: at most that step runs twice
    assert sorted(steps) == list(range(1, 101)) and sum(steps.values()) <= 101 + int(r[5]) - 2


def test_preemption_by_the_high_partition_saves_and_resumes(fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    # on the fault cluster: the high partition's job would preempt other tests' jobs on forge
    ledger = tmp_path / "ledger"
    node = fault_cluster.nodes[-1]
    handle = submit(f"max_retries=2,exclusive=true,sbatch_args=--nodelist={node}", "--steps", "40", "--ledger", str(ledger))
    job = handle.rsplit("/", 1)[1]
    running(ledger, 3)
    high = subprocess.run(["sbatch", "--parsable", "-p", "high", f"--nodelist={node}", "--exclusive", "-o", "/dev/null",
                           "--wrap", "sleep 5"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        # Slurm requeues a preempted job itself: sacct -D shows the first attempt as REQUEUED
        wait_for(lambda: "REQUEUED" in sacct_states(job), 120, "the job to be preempted and requeued")
        assert wait_end(handle, timeout=300) == "SUCCEEDED"
    finally:
        subprocess.run(["scancel", high])
    assert "COMPLETED" in sacct_states(high)
    steps = ledger_steps(ledger)
    r = task_row(handle, "python[0]")
    assert sorted(steps) == list(range(1, 41)) and int(r[5]) >= 2
    assert "PREEMPTED" in r[7].split(","), r  # status names what happened
    log = run_torchx("log", f"{handle}/python/0").stdout
    assert "received SIGTERM" in log and "resuming from" in log  # warned by the preemption's SIGTERM, saved


def test_node_failure_resumes_on_another_node(flood_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    # on the flood cluster: a node set down would fail other tests' jobs on it
    ledger = tmp_path / "ledger"
    handle = submit("max_retries=2", "--steps", "40", "--ledger", str(ledger))
    running(ledger, 3)
    node = task_row(handle, "python[0]")[4]
    assert node in flood_cluster.nodes
    try:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=forge-test"], check=True)
        # the new attempt may be short (the old one's steps went on until Slurm killed it): its node, not RUNNING
        wait_for(lambda: task_row(handle, "python[0]")[4] not in (node, "-"), 180, "the task to run on another node")
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"])
    assert wait_end(handle, timeout=300) == "SUCCEEDED"
    assert {"NODE_FAIL", "REQUEUED"} & set(sacct_states(handle.rsplit("/", 1)[1]))
    assert sorted(ledger_steps(ledger)) == list(range(1, 41))
    assert "NODE_FAIL" in task_row(handle, "python[0]")[7].split(","), task_row(handle, "python[0]")


def test_only_the_interrupted_tasks_of_an_array_run_again(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "arr.yaml"
    exp.write_text(
        "name: arr\n"
        # 3 s a step: a task seen at its first step is still running when the poll (up to 2.5 s under load) warns it
        f"run: {{command: [sh, -c, 'exec {sys.executable} {TRAIN} --steps 8 --step-seconds 3 --ledger {tmp_path}/l.$FORGE_RUN_INDEX']}}\n"
        "retry: {max_retries: 2}\n"
        "sweep: {shared_axes: {run.env.I: [0,1,2,3,4,5,6,7,8,9]}}\n"
    )
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(exp))
    handle = handle_of(p)
    job = handle.rsplit("/", 1)[1]
    hit = [2, 5, 7]
    waiting = set(hit)

    def warn_the_started() -> bool:  # each as soon as it has done a step: the others need not run beside it
        for k in sorted(waiting):
            if ledger_lines(tmp_path / f"l.{k}"):
                warn_batch(f"{job}_{k}")
                waiting.discard(k)
        return not waiting

    wait_for(warn_the_started, 300, "tasks 2, 5, 7 to start")
    assert wait_end(handle, timeout=300) == "SUCCEEDED"
    out = status(handle)
    attempts = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"arr\[(\d)\]\s+\S+\s+COMPLETED\s+0\s+\S+\s+(\d+)", out)}
    assert attempts == {k: (2 if k in hit else 1) for k in range(10)}, out
    for k in range(10):
        assert sorted(ledger_steps(tmp_path / f"l.{k}")) == list(range(1, 9))


def test_failed_is_retried_only_when_asked_and_retries_run_out(state_dir: Path, tmp_path: Path):
    script = tmp_path / "fail.sh"
    script.write_text("echo attempt $FORGE_ATTEMPT >> " + str(tmp_path / "attempts") + "; exit 1\n")
    no = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2", "utils.sh", "sh", str(script)))
    assert wait_end(no) == "FAILED"
    assert (tmp_path / "attempts").read_text().split("\n")[:-1] == ["attempt 0"]
    (tmp_path / "attempts").unlink()
    yes = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2,retry_on=TIMEOUT,FAILED",
                               "utils.sh", "sh", str(script)))
    assert wait_end(yes, timeout=240) == "FAILED"
    assert (tmp_path / "attempts").read_text().split() == ["attempt", "0", "attempt", "1", "attempt", "2"]
    r = " ".join(task_row(yes, "sh[0]"))
    assert " 3 " in r and "retries exhausted" in r, r


def test_ambiguous_checkpoints_fail_before_the_program_starts(state_dir: Path, tmp_path: Path):
    ckpt = tmp_path / "ckpt" / "0"  # replica 0's directory under the template below
    ckpt.mkdir(parents=True)
    (ckpt / "model_a.pt").write_text("a")
    (ckpt / "model_b.pt").write_text("b")
    marker = tmp_path / "started"
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg",
                                  f"checkpoint_dir={tmp_path}/ckpt/{{replica}}", "utils.sh", "touch", str(marker)))
    assert wait_end(handle) == "FAILED"
    assert not marker.exists()
    log = run_torchx("log", f"{handle}/sh/0").stdout
    assert "several checkpoints without a step number" in log and "model_a.pt, model_b.pt" in log


def test_retry_by_hand_resubmits_the_failed_tasks_linked_to_the_app(state_dir: Path, tmp_path: Path):
    flag = tmp_path / "ok-now"
    exp = tmp_path / "byhand.yaml"
    exp.write_text(
        "name: byhand\n"
        f"run: {{command: [sh, -c, 'test $FORGE_RUN_INDEX != 1 || test -e {flag}']}}\n"
        "sweep: {shared_axes: {run.env.I: [0, 1, 2]}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(exp)))
    assert wait_end(handle) == "FAILED"
    flag.write_text("")
    r = run_torchx("forge", "retry", handle)
    assert r.returncode == 0, r.stderr
    assert "resubmitted byhand[1] as job" in r.stdout
    assert wait_end(handle) == "SUCCEEDED"
    assert task_row(handle, "byhand[1]")[5] == "2"


def test_one_retry_budget_for_describe_the_node_the_companion_and_status(state_dir: Path, tmp_path: Path):
    # -cfg max_retries=2 on a sweep: a task that always fails is tried 3 times, and every side says 2
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2,retry_on=FAILED", "forge.grid",
                   "--name", "budget", "--axes", "run.env.I=[0]", "--", "sh", "-c", "exit 1")
    handle = handle_of(p)
    job = handle.rsplit("/", 1)[1]
    described = run_torchx("describe", handle)
    assert described.returncode == 0 and "'max_retries': 2" in described.stdout, described.stdout + described.stderr
    assert wait_end(handle, timeout=300) == "FAILED"
    # the node: the batch script's requeue decision, attempt after attempt
    batch = (state_dir / "logs" / f"budget-{job}_0.batch.log").read_text()
    assert "retry 1 of 2" in batch and "retry 2 of 2" in batch, batch
    assert "not requeueing (retries exhausted: 3 attempt(s), max_retries=2)" in batch, batch
    # the companion job (afternotok): it runs once the array failed, and resubmits nothing
    companion = state_dir / "logs" / f"budget-{job}.retry.log"
    wait_for(lambda: companion.exists() and "nothing to retry" in companion.read_text(), 120, "the companion job")
    text = companion.read_text()
    assert "retry policy max_retries=2 on FAILED" in text and "retries exhausted: 3 attempt(s), max_retries=2" in text, text
    # status
    out = status(handle)
    assert "retries: max_retries=2 on FAILED; warning USR1@90, grace 60 s" in out, out
    row = task_row(handle, "budget[0]")
    assert row[5] == "3" and "max_retries=2" in " ".join(row), row
