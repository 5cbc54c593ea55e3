"""Every verb returns, with one line that names the thing (issue 18): the real ``torchx`` CLI on the
real clusters, for an app nobody knows, a cluster Slurm does not know, a state dir that cannot be
used, a state dir whose object store does not answer, and a cancel while the controller is down."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path
from subprocess import CompletedProcess
from typing import List

import pytest

from cluster.test_faults import daemon_down
from conftest import FAULTS, LabCluster, S3Server, app_state, handle_of, queued_jobs_of, run_torchx, wait_end, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def errors(p: CompletedProcess) -> List[str]:
    """The lines of stderr that report an error (TorchX's own INFO lines aside)."""
    assert "Traceback" not in p.stderr, p.stderr
    return [line for line in p.stderr.splitlines() if "error" in line.lower()]


def timed(*args: str, **kw) -> tuple:
    """(the finished ``torchx ARGS``, the CPU seconds it took). CPU, not wall time: ten tests side by
    side on 2 cores stretch a one-second command's wall time; a hang (what these tests are about)
    is caught by the wall-time bound."""
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = run_torchx(*args, timeout=60, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert time.monotonic() - start < 60, p.stderr  # (a store that does not answer: its client retries ~12 s)
    return p, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.parametrize("handle", ["slurm_forge://torchx/999999", "slurm_forge://x/y/z", "slurm_forge://torchx/999999/a/0"])
def test_log_of_an_app_that_does_not_exist_is_one_line_at_once(state_dir: Path, handle: str):
    p, took = timed("log", handle)  # it used to print "Waiting for app state response" for ever
    app_id = handle.split("/")[3]
    assert p.returncode == 1 and errors(p) == [
        f"torchx: error: no logs of app '{app_id}': slurm_forge has no record of it in {state_dir} (submitted with"
        " another state dir? set $FORGE_STATE_DIR; see `torchx list -s slurm_forge`)"], p.stderr
    assert "Waiting for app state" not in p.stderr and took < 5, took


def test_status_of_an_app_that_does_not_exist_keeps_torchx_own_answer(state_dir: Path):
    p, took = timed("status", "slurm_forge://torchx/999999")
    assert p.returncode == 1 and len(errors(p)) == 1, p.stderr
    assert "999999, does not exist or has been removed from slurm_forge's data plane" in p.stderr and took < 5


def test_an_unknown_cluster_is_named_before_any_retry(state_dir: Path):
    known = "it knows floods, forge, forge2"  # sacctmgr of forge's slurmdbd
    for args in (("run", "--scheduler", "slurm_forge", "-cfg", "cluster=nosuch", "utils.echo"),
                 ("run", "--scheduler", "slurm_forge", "-cfg", "cluster=forge2,nosuch", "utils.echo"),
                 ("status", "slurm_forge://torchx/nosuch:5")):
        p, took = timed(*args)  # a run used to retry for 36 s, then say Slurm did not answer
        lines = errors(p)
        assert len(lines) == 1, p.stderr
        line = lines[0]
        assert p.returncode == 1 and line.startswith("torchx: error: cluster 'nosuch': Slurm knows no such cluster;"), p.stderr
        assert known in line and "sacctmgr show cluster" in line and "trying again" not in p.stderr, p.stderr
        assert took < (15 if args[0] == "run" else 5), (args, took)  # a run loads the components: ~1.5 s alone
    assert not state_dir.exists() or not queued_jobs_of(state_dir, "forge,forge2")


def test_list_of_a_state_dir_that_cannot_be_used_is_an_error(tmp_path: Path):
    (tmp_path / "file").write_text("")
    for bad in ("/proc/nope", str(tmp_path / "file")):
        p, took = timed("list", "-s", "slurm_forge", env={"FORGE_STATE_DIR": bad})  # it was an empty table, exit 0
        assert p.returncode == 1 and took < 5, p.stdout + p.stderr
        assert errors(p)[-1].startswith(f"torchx: error: state dir {bad}: cannot write there (") and "$FORGE_STATE_DIR" \
            in errors(p)[-1], p.stderr
        assert "APP HANDLE" not in p.stdout
    fresh = tmp_path / "fresh"
    p = run_torchx("list", "-s", "slurm_forge", env={"FORGE_STATE_DIR": str(fresh)})
    assert p.returncode == 0 and "APP HANDLE" in p.stdout and fresh.is_dir(), p.stderr  # not made yet: made, empty


def dead_endpoint() -> str:
    """An endpoint on loopback nothing listens on: an object store that does not answer, for this test's
    CLI alone (the shared moto server and the jobs keep the live one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_log_and_status_while_the_object_store_does_not_answer_name_its_url(s3_server: S3Server, s3_state: str,
                                                                             tmp_path: Path):
    go = tmp_path / "go"  # the tasks wait in the queue for the test
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={tmp_path / 'logs'}", "forge.grid", "--name",
                   "s3down", "--axes", "run.env.I=[0,1]", "--", "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.5; done",
                   cwd=tmp_path)
    handle = handle_of(p)
    app_id = handle.rsplit("/", 1)[1]
    down = {"AWS_ENDPOINT_URL": dead_endpoint()}
    try:
        log, took = timed("log", handle, env=down, cwd=tmp_path)  # it said "No role [None] found for app"
        assert log.returncode == 1 and "No role" not in log.stderr, log.stderr
        (line,) = errors(log)
        assert line.startswith(f"torchx: error: {s3_state}/apps/{app_id}/record.json: the store did not answer"), line
        assert down["AWS_ENDPOINT_URL"] in line and took < 15, took
        st = run_torchx("status", handle, env=down, cwd=tmp_path, timeout=60)
        assert st.returncode == 0 and "Traceback" not in st.stderr, st.stderr
        # the counts are Slurm's (it said "in 0 Slurm job(s)" and "logs in " with nothing after)
        assert "s3down: 2 task(s) in 1 Slurm job(s)" in st.stdout, st.stdout
        assert "its logs are not known without its record (see the note)" in st.stdout, st.stdout
        assert f"{s3_state}/apps/{app_id}/record.json: the store did not answer" in st.stdout, st.stdout
    finally:
        go.touch()
        run_torchx("cancel", handle, cwd=tmp_path)


def test_cancel_while_the_controller_is_down_cancels_nothing_and_says_to_run_it_again(fault_cluster: LabCluster,
                                                                                       state_dir: Path, tmp_path: Path):
    go = tmp_path / "go"  # the job runs until the test is done with it
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c",
                                  f"while [ ! -e {go} ]; do sleep 0.5; done"))
    app_id = handle.rsplit("/", 1)[1]
    wait_for(lambda: app_state(handle) == "RUNNING", 90, "the job to run")
    try:
        with daemon_down(FAULTS.slurmctld_pid):
            p = run_torchx("cancel", handle, timeout=180)  # it said "nothing was left queued: submit again"
            lines = errors(p)
            assert len(lines) == 1, (p.returncode, p.stdout + p.stderr)
            line = lines[0]
            assert p.returncode == 1 and line.startswith(f"torchx cancel: error: app {app_id}: nothing was cancelled:"), p.stderr
            assert "run the same cancel again once `sinfo` answers" in line and "submit" not in p.stderr, p.stderr
            assert not (state_dir / "apps" / app_id / "cancelled.json").exists()  # the app is as it was
        wait_for(lambda: app_state(handle) == "RUNNING", 60, "the job, still running, to show so again")
        again = run_torchx("cancel", handle)
        assert again.returncode == 0, again.stderr
        assert wait_end(handle, timeout=120) == "CANCELLED"
    finally:
        go.touch()
