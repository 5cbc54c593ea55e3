"""Jobs Slurm itself lost, and the ids it then hands out again (on the fault cluster).

A controller killed before it saved its state comes back without the jobs submitted since: squeue
does not know them, accounting keeps them PENDING for ever, and their ids are given to the next
jobs. The crash is made exact here: slurmctld is stopped and its state saved aside, forge submits,
then slurmctld is killed (SIGKILL) and started from the saved state, so it has lost every job
forge submitted, as it would have if it died before its periodic save.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from conftest import FAULTS, TORCHX, LabCluster, handle_of, read_json, run_torchx, wait_end, wait_for

pytestmark = [pytest.mark.slurm]

#: slurmctld's StateSaveLocation on the fault cluster (scripts/local-slurm)
STATE = Path("/var/spool/slurmctld-faults")


def _stop_slurmctld(sig: int) -> None:
    pid = int(Path(FAULTS.slurmctld_pid).read_text())
    os.kill(pid, sig)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "slurmctld to stop")


def save_controller_state(to: Path) -> Path:
    """Stop slurmctld cleanly, keep a copy of its state, start it again."""
    _stop_slurmctld(signal.SIGTERM)
    shutil.copytree(STATE, to)
    FAULTS.up()
    return to


def crash_back_to(saved: Path) -> float:
    """Kill slurmctld and start it from ``saved``: every job submitted since is lost to it. Returns
    when it started again (time.monotonic())."""
    _stop_slurmctld(signal.SIGKILL)
    shutil.rmtree(STATE)
    shutil.copytree(saved, STATE)
    FAULTS.up()
    return time.monotonic()


def orphans_ended(restarted: float, after: float = 15) -> None:
    """Wait until the nodes have ended what the lost jobs left running: a job launched under one of
    their ids before that fails (Slurm 22.05: "launch failed requeued held")."""
    time.sleep(max(0.0, restarted + after - time.monotonic()))


def sbatch(*args: str) -> str:
    return subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, check=True).stdout.strip()


def squeue_state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def rows(out: str, name: str) -> List[List[str]]:
    """The task rows of `torchx status` output for role ``name``."""
    return [line.split() for line in out.splitlines() if re.fullmatch(rf"{name}\[\d+\]", (line.split() or [""])[0])]


def sweep(name: str, hold: Path, *cfg: str) -> str:
    """A four-point sweep whose tasks run while ``hold`` exists."""
    p = run_torchx("run", "--scheduler", "slurm_forge", *cfg, "forge.grid", "--name", name, "--axes", "x=range(0,4)", "--",
                   "sh", "-c", f"while test -e {hold}; do sleep 0.5; done")
    return handle_of(p)


def test_sweeps_slurm_lost_are_said_cancelled_retried_and_never_mixed_with_reused_ids(
        fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    hold = tmp_path / "hold"
    hold.touch()
    saved = save_controller_state(tmp_path / "saved")
    first, second = sweep("lostone", hold), sweep("losttwo", hold)
    jobs = {h: h.rsplit("/", 1)[1] for h in (first, second)}
    restarted = crash_back_to(saved)

    # within one poll after the controller answers: every task LOST, and the note names the job
    t0 = time.monotonic()
    out = run_torchx("status", first).stdout
    assert time.monotonic() - t0 < 10, "status must answer at once"
    assert [r[2] for r in rows(out, "lostone")] == ["LOST"] * 4, out
    assert f"Slurm lost job(s) {jobs[first]}" in out and "State: FAILED" in out, out

    # Slurm gives the lost ids again: a job of someone else under the first sweep's id, and a new
    # forge app whose first job gets the second sweep's id (it is submitted again, under an id of its own)
    orphans_ended(restarted)
    # (they run until the test cancels them: a loaded CI machine took more than 120 s to get there)
    other = [sbatch("--wrap", "sleep 900", "-o", "/dev/null")]
    while int(other[-1]) < int(jobs[first]) and len(other) < 20:
        other.append(sbatch("--wrap", "sleep 900", "-o", "/dev/null"))
    try:
        assert jobs[first] in other, (jobs, other)  # the controller did hand out the lost id again
        hold.unlink()
        third = sweep("lostthree", hold)
        assert third.rsplit("/", 1)[1] not in jobs.values()
        assert wait_end(third) == "SUCCEEDED"
        out3 = run_torchx("status", third).stdout
        assert [r[2] for r in rows(out3, "lostthree")] == ["COMPLETED"] * 4, out3  # its own four tasks, nothing else

        # the first sweep: the other job under its id is not counted, and cancel leaves that job alone
        out = run_torchx("status", first).stdout
        assert [r[2] for r in rows(out, "lostone")] == ["LOST"] * 4 and "belong to another submission" in out, out
        assert run_torchx("cancel", first).returncode == 0
        assert wait_end(first, timeout=30) == "CANCELLED"
        assert squeue_state(jobs[first]) in ("PENDING", "RUNNING"), "cancel must not touch a job of another submission"

        # the second sweep: `torchx forge retry` runs what was lost
        retried = run_torchx("forge", "retry", second)
        assert retried.returncode == 0, retried.stderr
        assert wait_end(second) == "SUCCEEDED", run_torchx("status", second).stdout
        assert [r[2] for r in rows(run_torchx("status", second).stdout, "losttwo")] == ["COMPLETED"] * 4

        listed = run_torchx("list", "-s", "slurm_forge").stdout
        assert "UNKNOWN" not in listed, listed
    finally:
        subprocess.run(["scancel", *other], check=False)


def test_a_lost_sweep_with_retries_is_resubmitted_once_by_the_next_commands(
        fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    """The retry policy takes a loss as a node failure; two commands that see it at once resubmit it once."""
    hold = tmp_path / "hold"
    hold.touch()
    saved = save_controller_state(tmp_path / "saved")
    handle = sweep("lostretry", hold, "-cfg", "max_retries=1")
    crash_back_to(saved)
    hold.unlink()
    said: List[str] = []

    def two_statuses_at_once() -> bool:
        both = [subprocess.Popen([TORCHX, "status", handle], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outs = [p.communicate(timeout=120)[0] for p in both]
        said.extend(o for o in outs if "takes a loss as a node failure: resubmitted as job" in o)
        return bool(said) or "LOST" not in outs[0]

    wait_for(two_statuses_at_once, 150, "the lost tasks to be resubmitted")  # once the controller has been up 30 s
    assert said, "the lost tasks were not resubmitted"
    assert wait_end(handle) == "SUCCEEDED", run_torchx("status", handle).stdout
    app_dir = state_dir / "apps" / handle.rsplit("/", 1)[1]
    retries = [read_json(f) for f in (app_dir / "jobs").glob("*.json")]
    assert [(r["retry_of"], r["tasks"]) for r in retries if r.get("retry_of")] == [(handle.rsplit("/", 1)[1], [0, 1, 2, 3])]
    out = run_torchx("status", handle).stdout
    assert [r[2] for r in rows(out, "lostretry")] == ["COMPLETED"] * 4, out


PIPELINE = """\
name: lostpipe
stages:
  prep: {{run: {{command: [sh, -c, "echo prep > {out}/prep"]}}}}
  train: {{after: [prep], run: {{command: [sh, -c, "cat {out}/prep && echo train >> {out}/prep"]}}}}
  report: {{after: [train], run: {{command: [sh, -c, "cat {out}/prep"]}}}}
"""


def test_a_pipeline_slurm_lost_never_waits_for_ever_and_its_retry_runs_every_step(
        fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPELINE.format(out=tmp_path))
    saved = save_controller_state(tmp_path / "saved")
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg)))
    crash_back_to(saved)

    out = run_torchx("status", handle).stdout
    assert "State: FAILED" in out and "Slurm lost job(s)" in out, out  # nothing left PENDING for ever
    assert not re.search(r"\b(PENDING|UNKNOWN)\b", out.split("TASK", 1)[1]), out
    assert "UNKNOWN" not in run_torchx("list", "-s", "slurm_forge").stdout

    retried = run_torchx("forge", "retry", handle)
    assert retried.returncode == 0, retried.stderr
    assert wait_end(handle) == "SUCCEEDED", run_torchx("status", handle).stdout
    assert (tmp_path / "prep").read_text().split() == ["prep", "train"]
