"""Status on a cluster without accounting (no slurmdbd): sacct fails, squeue forgets.

The test switches the fault cluster (its own slurmdbd, used by nobody else) to
``--no-accounting`` and back.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import LabCluster, handle_of, job_gone_from_squeue, run_torchx, wait_for

pytestmark = [pytest.mark.slurm]


@pytest.fixture
def no_accounting(fault_cluster: LabCluster) -> Iterator[None]:
    try:
        fault_cluster.up("--no-accounting")
        sacct = subprocess.run(["sacct", "-X"], capture_output=True, text=True)
        assert "accounting storage is disabled" in sacct.stdout + sacct.stderr
        yield
    finally:
        fault_cluster.up()


def _row(handle: str, task: str) -> str:
    out = run_torchx("status", handle).stdout
    return next(line for line in out.splitlines() if line.strip().startswith(task))


def test_finished_jobs_keep_their_status_without_accounting(no_accounting, state_dir: Path):
    ok = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", "--msg", "fine"))
    bad = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c", "exit 4"))
    long = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sleep", "300"))
    wait_for(lambda: "RUNNING" in run_torchx("status", long).stdout, 180, "the sleeper to run")
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
