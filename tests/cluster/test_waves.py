"""Sweeps bigger than the user's submit limit, in waves, on the real cluster.

The local cluster enforces QOS limits (AccountingStorageEnforce=limits) and has a QOS ``cap100``
whose MaxSubmitJobsPerUser is 100 (every array task counts): a 250-point sweep under it must be
cut into waves, each submitted by a small Slurm job once the one before has ended. The limit
counts every job of the user in that QOS, so these tests run one at a time (the ``capped_qos``
fixture puts them in one xdist group) while other tests run beside them in other QOS.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import List

import pytest
from torchx.runner import get_runner

from conftest import app_state, handle_of, run_torchx, wait_end, wait_for
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

QOS = "cap100"  # the capped_qos fixture's
LIMIT = 100


def queued_in_qos() -> int:
    """This user's jobs counted against cap100's limit right now (every array task)."""
    out = subprocess.run(["squeue", "-h", "--array", f"--user={os.getuid()}", "-o", "%q"], capture_output=True,
                         text=True).stdout
    return sum(1 for q in out.split() if q == QOS)


def login_node_processes(state_dir: Path) -> List[str]:
    """Processes of this app not started by Slurm (no slurmstepd among their ancestors), other than
    this test's own commands: forge or torchx processes whose environment names the test's state dir
    (the tests running beside this one have state dirs of their own)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "torchx_forge" not in cmd and "bin/torchx " not in cmd:
                continue
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FORGE_STATE_DIR={state_dir}".encode() not in env:
            continue
        p, under_slurm = pid, False
        while p not in ("0", "1"):
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                break
            if "(slurmstepd)" in stat or p == str(os.getpid()):
                under_slurm = True
                break
            p = stat.rsplit(")", 1)[1].split()[1]
        if not under_slurm:
            found.append(f"{pid}: {cmd[:120]}")
    return found


class Watch:
    """Samples, while a sweep runs, how many jobs count against the limit and which processes live
    outside Slurm. A process counts only when two samples a second apart both find it outside:
    srun's own helper is reparented to init for an instant before it exits."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.most, self.outside, self.stop = 0, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        before: List[str] = []
        while not self.stop.is_set():
            self.most = max(self.most, queued_in_qos())
            now = login_node_processes(self.state_dir)
            self.outside += [p for p in now if p in before and p not in self.outside]
            before = now
            self.stop.wait(1.0)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def record(state_dir: Path, handle: str):
    return Records(Store(str(state_dir))).load(handle.rsplit("/", 1)[1])


def test_a_sweep_over_the_submit_limit_runs_in_waves_and_retry_covers_every_wave(capped_qos: str, state_dir: Path, tmp_path: Path):
    ledger, marks = tmp_path / "ledger", tmp_path / "marks"
    marks.mkdir()
    # each run appends its index to the ledger; runs 7, 107 and 207 (one in each wave) fail the first time
    script = (f'echo "$FORGE_RUN_INDEX" >> {ledger}; case "$FORGE_RUN_INDEX" in 7|107|207) '
              f'[ -e {marks}/"$FORGE_RUN_INDEX" ] || {{ : > {marks}/"$FORGE_RUN_INDEX"; exit 3; }};; esac; echo "run $FORGE_RUN_INDEX"')
    with Watch(state_dir) as watch:
        p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"qos={QOS}", "forge.grid", "--name", "waves",
                       "--axes", "run.env.I=range(0,250)", "--", "sh", "-c", script)
        assert p.returncode == 0, p.stderr
        assert "submitting them in 3 waves" in p.stderr, p.stderr
        handle = handle_of(p)
        # the client returns at once: no process of it waits for the waves, and only the first is
        # submitted (the next one's wave job starts when the first wave has ended). Not a time
        # bound: in CI, under load, this submit once took 83 s and still waited for nothing
        assert {j.wave for j in record(state_dir, handle).jobs if j.kind == "array" and not j.planned} == {0}
        assert watch.outside == [], watch.outside
        wait_for(lambda: "waves: 2 of 3 submitted" in run_torchx("status", handle).stdout, 240, "wave 2 to be submitted")
        assert wait_end(handle, timeout=600) == "FAILED"
    assert watch.most <= LIMIT, f"{watch.most} jobs counted against a limit of {LIMIT}"
    assert watch.outside == [], f"processes outside Slurm while the waves ran: {watch.outside}"
    rec = record(state_dir, handle)
    arrays = [j for j in rec.jobs if j.kind == "array" and not j.planned]
    assert sorted({j.wave for j in arrays}) == [0, 1, 2] and sum(j.size for j in arrays) == 250
    assert sorted(int(x) for x in ledger.read_text().split()) == list(range(250))  # every run ran once
    out = run_torchx("status", handle).stdout
    assert re.findall(r"waves\[(\d+)\]:FAILED", out) == ["7", "107", "207"], out
    # status of every wave in at most two Slurm calls
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        runner.status(handle)
        assert len(sched.cli.calls) <= 2, sched.cli.calls
    # logs of a run of the last wave, and results of every wave
    log = run_torchx("log", "--streams", "stdout", f"{handle}/waves/249").stdout
    assert log.strip() == "waves/249 run 249", log
    res = run_torchx("forge", "results", handle, "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == 250 and sum(1 for r in rows if r["state"] == "FAILED") == 3
    # retry resubmits the failed runs of every wave; they succeed the second time
    again = run_torchx("forge", "retry", handle)
    assert again.returncode == 0, again.stderr
    assert wait_end(handle, timeout=240) == "SUCCEEDED"
    assert sorted(int(x) for x in ledger.read_text().split()) == sorted([*range(250), 7, 107, 207])


def test_cancel_stops_the_waves_not_submitted_yet(capped_qos: str, state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"qos={QOS}", "forge.grid", "--name", "stop",
                   "--axes", "run.env.I=range(0,250)", "--", "sleep", "30")
    handle = handle_of(p)
    rec = record(state_dir, handle)
    wave_job = next(j.job_id for j in rec.jobs if j.kind == "wave")
    c = run_torchx("cancel", handle)
    assert c.returncode == 0, c.stderr
    wait_for(lambda: app_state(handle) == "CANCELLED", 120, "the app to be cancelled")
    out = run_torchx("status", handle).stdout
    assert "waves: 1 of 3 submitted" in out and "stop[249]:CANCELLED" in out, out
    with get_runner() as runner:
        views = runner._scheduler("slurm_forge").task_views(handle.rsplit("/", 1)[1])
    later = [v for v in views if v.replica >= 98]
    assert len(later) == 152 and all(v.reason.endswith("cancelled before it was submitted") for v in later)
    mine = {j.job_id for j in rec.jobs if j.job_id}

    def queued_of_the_app() -> List[str]:
        rows = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True).stdout.split()
        return [r for r in rows if r.split("|")[0].split("_")[0] in mine or r.split("|")[1] == "stop"]

    assert wave_job in mine and queued_of_the_app() == []
    time.sleep(15)  # nothing of the app comes back: the wave job was cancelled before it ran
    assert queued_of_the_app() == []
    assert record(state_dir, handle).unsubmitted_waves() == [1, 2]
