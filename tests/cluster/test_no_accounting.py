"""Status on a cluster without accounting (no slurmdbd): sacct fails, squeue forgets.

The module switches the local cluster to ``--no-accounting`` and back.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, handle_of, job_gone_from_squeue, run_torchx, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def _local_slurm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts/local-slurm"), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def no_accounting():
    # the second cluster needs slurmdbd: `up --no-accounting` stops it, and the way back starts it again
    two = re.search(r"slurmctld forge2\s+running", _local_slurm("status").stdout) is not None
    try:
        up = _local_slurm("up", "--no-accounting")
        assert up.returncode == 0, up.stdout + up.stderr
        assert not two or "stopped slurmctld (forge2)" in up.stdout + up.stderr, up.stdout + up.stderr
        sacct = subprocess.run(["sacct", "-X"], capture_output=True, text=True)
        assert "accounting storage is disabled" in sacct.stdout + sacct.stderr
        yield
    finally:
        back = _local_slurm("up", *(["--clusters", "2"] if two else []))
        assert back.returncode == 0, back.stdout + back.stderr


def _row(handle: str, task: str) -> str:
    out = run_torchx("status", handle).stdout
    return next(line for line in out.splitlines() if line.strip().startswith(task))


def test_finished_jobs_keep_their_status_without_accounting(no_accounting, state_dir: Path):
    ok = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", "--msg", "fine"))
    bad = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c", "exit 4"))
    long = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sleep", "300"))
    wait_for(lambda: "RUNNING" in run_torchx("status", long).stdout, 60, "the sleeper to run")
    assert run_torchx("cancel", long).returncode == 0
    for handle in (ok, bad, long):
        wait_for(lambda h=handle: job_gone_from_squeue(h.rsplit("/", 1)[1]), 120, "squeue to forget the job")
    assert "State: SUCCEEDED" in run_torchx("status", ok).stdout
    out = run_torchx("status", bad).stdout
    assert "State: FAILED" in out
    assert re.search(r"sh\[0\]\s+\S+\s+FAILED\s+4\b", _row(bad, "sh[0]"))
    assert "State: CANCELLED" in run_torchx("status", long).stdout
    log = run_torchx("log", f"{ok}/echo/0")
    assert log.stdout.strip().endswith("fine")
