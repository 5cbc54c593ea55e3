"""Faults on the real cluster: daemons stopped, transient errors, killed clients, unusable disks.

Daemons are stopped on the fault cluster (the ``fault_cluster`` fixture: its own slurmctld,
slurmdbd and database) and the job table is filled on the flood cluster, one test at a time, so
those faults never reach the tests running beside them. The other faults (wrappers, killed
clients, disks) belong to one test each and run on forge beside the rest.

Faults are real: slurmdbd and slurmctld are stopped and started again, file systems are real
read-only or full tmpfs mounts, a client is SIGKILLed. Where a fault has to be injected once, a
wrapper script stands in front of the real Slurm command on PATH and then execs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import (
    FAULTS,
    REPO,
    TORCHX,
    LabCluster,
    app_state,
    handle_of,
    ledger_lines,
    queued_jobs_of,
    run_torchx,
    state_in_process,
    task_row,
    wait_end,
    wait_for,
    warn_batch,
)
from torchx_forge.state.intents import Intents
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

REAL = {name: shutil.which(name) or f"/usr/bin/{name}" for name in ("sbatch", "squeue", "scontrol", "git")}
TRAIN = str(REPO / "examples" / "train_steps.py")


# -- helpers -------------------------------------------------------------------------------------


def wrapper(bin_dir: Path, name: str, body: str) -> None:
    """``bin_dir/name``: a bash script run instead of the real ``name`` ($REAL is the real one)."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\nREAL={REAL[name]}\n{body}\n")
    path.chmod(0o755)


def path_env(bin_dir: Path, **extra: str) -> Dict[str, str]:
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


#: a bash pattern for the sbatch of an app's first job (tagged ``<submission>-0``; not its guard)
APP_JOB = '"--comment=forge:"*"-0 "*'


def squeue_rows(fmt: str = "%i|%T|%r|%k") -> List[List[str]]:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", fmt], capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines()]


def tagged(submission_prefix: str) -> List[List[str]]:
    """squeue rows (id, state, reason, comment) of the jobs whose forge tag starts with the prefix."""
    return [r for r in squeue_rows() if any(w.startswith(f"forge:{submission_prefix}") for w in r[3].split())]


def live(rows: List[List[str]]) -> List[List[str]]:
    return [r for r in rows if r[1] in ("PENDING", "RUNNING", "CONFIGURING")]


def held_submission(state_dir: Path) -> str:
    """The submission of this test's state dir whose client was killed before it finished (its intent is left)."""
    pending = Intents(Store(str(state_dir))).pending()
    assert len(pending) == 1, pending
    return pending[0].submission


def stop_daemon(pidfile: str) -> None:
    pid = int(Path(pidfile).read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
             30, f"{pidfile} to stop")


@contextmanager
def daemon_down(pidfile: str) -> Iterator[None]:
    stop_daemon(pidfile)
    try:
        yield
    finally:
        FAULTS.up()  # the fault cluster's daemons, started again


@contextmanager
def tmpfs(path: Path, opts: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)])


def start_torchx(*args: str, env: Dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([TORCHX, *args], cwd=str(cwd), env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)


# -- 1. daemons down -----------------------------------------------------------------------------


def test_status_log_and_list_answer_while_slurmdbd_is_down(fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    go = tmp_path / "go"  # the tasks run until the test has seen them RUNNING with slurmdbd down
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.grid", "--name", "nodb", "--axes",
                                  "run.env.I=[0,1]", "--", "sh", "-c",
                                  f"echo out-$I; while [ ! -e {go} ]; do sleep 0.5; done; sleep 2"))
    wait_for(lambda: app_state(handle) == "RUNNING", 90, "the sweep to run")
    try:
        with daemon_down(FAULTS.slurmdbd_pid):
            st = run_torchx("status", handle)
            assert st.returncode == 0, st.stderr
            # every task running, in its first attempt: squeue tells it all, sacct is not asked
            assert "State: RUNNING" in st.stdout and "unreachable" not in st.stdout, st.stdout
            listed = run_torchx("list", "-s", "slurm_forge")
            assert listed.returncode == 0 and handle.rsplit("/", 1)[1] in listed.stdout, listed.stdout + listed.stderr
            go.touch()
            assert wait_end(handle, timeout=120) == "SUCCEEDED"  # from squeue, then the task state files
            ended = run_torchx("status", handle).stdout  # the ends: sacct is asked, and cannot answer
            assert "accounting (slurmdbd) is unreachable" in ended and task_row(handle, "nodb[1]")[3] == "0", ended
            log = run_torchx("log", f"{handle}/nodb/1")
            assert log.returncode == 0 and "out-1" in log.stdout, log.stderr
    finally:
        go.touch()  # a failed assertion above must not leave the tasks holding the fault cluster's nodes
    # slurmdbd is back, and for a while says RUNNING (it has not taken the ends the controller kept
    # for it yet) while squeue has forgotten the tasks: status never goes back from SUCCEEDED
    seen = []
    end = time.monotonic() + 20
    while time.monotonic() < end:
        seen.append(state_in_process(handle))
        time.sleep(1)
    assert set(seen) == {"SUCCEEDED"}, seen
    assert wait_end(handle) == "SUCCEEDED" and "unreachable" not in run_torchx("status", handle).stdout


def test_status_answers_from_records_while_slurmctld_is_down(fault_cluster: LabCluster, state_dir: Path, tmp_path: Path):
    go = tmp_path / "go"  # the program runs until the test has seen it RUNNING with the controller down
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c",
                                  f"echo out-ctld; while [ ! -e {go} ]; do sleep 0.5; done"))
    wait_for(lambda: app_state(handle) == "RUNNING", 90, "the job to run")
    with daemon_down(FAULTS.slurmctld_pid):
        t0 = time.monotonic()
        st = run_torchx("status", handle, timeout=180)
        assert st.returncode == 0, st.stderr
        assert "State: RUNNING" in st.stdout and "the Slurm controller did not answer" in st.stdout, st.stdout
        assert time.monotonic() - t0 < 90
        listed = run_torchx("list", "-s", "slurm_forge", timeout=180)
        assert listed.returncode == 0 and handle.rsplit("/", 1)[1] in listed.stdout, listed.stdout + listed.stderr
        t0 = time.monotonic()
        log = run_torchx("log", handle, timeout=180)
        assert log.returncode == 0 and "out-ctld" in log.stdout, log.stdout + log.stderr
        assert time.monotonic() - t0 < 90  # one wait for the controller, not one per state lookup (was > 180 s)
        # the program ends while the controller is still down: accounting never hears of it, the
        # launcher's report tells the end (sacct's stale PENDING kept `torchx log` waiting in CI)
        go.touch()
        assert wait_end(handle, timeout=150) == "SUCCEEDED"
        assert "as of its last report" in run_torchx("status", handle, timeout=180).stdout
    assert wait_end(handle, timeout=180) == "SUCCEEDED"


# -- 2. transient errors -------------------------------------------------------------------------


def test_one_socket_timeout_from_sbatch_is_retried(state_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    wrapper(bin_dir, "sbatch", f'''if [[ " $* " == *{APP_JOB} && ! -e {tmp_path}/failed ]]; then
    : > {tmp_path}/failed
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec "$REAL" "$@"''')
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", "--msg", "again", env=path_env(bin_dir))
    assert p.returncode == 0, p.stderr
    assert "Socket timed out" in p.stderr and "trying again" in p.stderr
    assert wait_end(handle_of(p)) == "SUCCEEDED"


def test_a_lost_sbatch_answer_does_not_submit_twice(state_dir: Path, tmp_path: Path):
    # the first held sbatch goes through, but its answer is lost: forge finds the job by its tag
    bin_dir = tmp_path / "bin"
    wrapper(bin_dir, "sbatch", f'''if [[ " $* " == *{APP_JOB} && ! -e {tmp_path}/failed ]]; then
    : > {tmp_path}/failed
    "$REAL" "$@" > {tmp_path}/first-id
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec "$REAL" "$@"''')
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sleep", "3", env=path_env(bin_dir))
    assert p.returncode == 0, p.stderr
    first = (tmp_path / "first-id").read_text().strip()
    handle = handle_of(p)
    assert handle.rsplit("/", 1)[1] == first, (handle, first)  # the job that went through is the app
    assert "went through after all" in p.stderr
    rec = json.loads((state_dir / "apps" / first / "record.json").read_text())
    assert len(tagged(f"{rec['submission']}-0")) == 1  # one job, not two
    assert wait_end(handle) == "SUCCEEDED"


def test_a_failed_squeue_does_not_fail_status_or_stop_log_follow(state_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    # every other squeue call fails the way a busy controller does
    wrapper(bin_dir, "squeue", f'''n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n
if [ $((n % 2)) = 0 ]; then echo "squeue: error: Socket timed out on send/recv operation" >&2; exit 1; fi
exec "$REAL" "$@"''')
    env = path_env(bin_dir)
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c",
                                  "for i in 1 2 3 4 5 6; do echo line-$i; sleep 1; done"))
    st = run_torchx("status", handle, env=env)
    assert st.returncode == 0 and "State:" in st.stdout, st.stderr
    log = run_torchx("log", "-t", f"{handle}/sh/0", env=env, timeout=180)
    assert log.returncode == 0, log.stderr
    assert [f"line-{i}" for i in range(1, 7)] == re.findall(r"line-\d", log.stdout)


def test_a_slow_controller_shows_progress(state_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    wrapper(bin_dir, "sbatch", f'if [[ " $* " == *{APP_JOB} ]]; then sleep 12; fi\nexec "$REAL" "$@"')
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", env=path_env(bin_dir))
    assert p.returncode == 0, p.stderr
    assert "still waiting for `sbatch` after 10 s" in p.stderr


def test_more_tasks_than_max_job_count_are_submitted_in_waves_that_fit(flood_cluster: LabCluster, state_dir: Path):
    limit = int(re.search(r"MaxJobCount\s*=\s*(\d+)", subprocess.run(["scontrol", "show", "config"],
                          capture_output=True, text=True).stdout).group(1))
    n = limit + 2000
    t0 = time.monotonic()
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.grid", "--name", "huge", "--axes",
                   f"run.env.I=range(0,{n})", "--", "true", timeout=300)
    handle = handle_of(p)
    try:
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert "submitting them in 2 waves" in p.stderr, p.stderr
        assert time.monotonic() - t0 < 60  # no stall of 120 s on a full job table
        rec = Records(Store(str(state_dir))).load(handle.rsplit("/", 1)[1])
        first = sum(j.size for j in rec.jobs if j.kind == "array" and not j.planned)
        assert 0 < first <= limit * 0.9 and rec.unsubmitted_waves() == [1]
    finally:
        run_torchx("cancel", handle)


# -- 4, 5. the client killed between sbatch and release --------------------------------------------


def _git_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_a_client_killed_after_its_record_is_written_is_finished_by_the_next_command(state_dir: Path, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    wrapper(bin_dir, "scontrol", f'''if [ "$1" = release ]; then : > {tmp_path}/releasing; sleep 120; fi
exec "$REAL" "$@"''')
    p = start_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=1", "utils.echo", "--msg", "finished",
                     env=path_env(bin_dir), cwd=REPO)
    wait_for((tmp_path / "releasing").exists, 90, "the client to reach the release")
    kill(p)
    held = [r for r in live(tagged(held_submission(state_dir))) if r[2] == "JobHeldUser"]
    assert len(held) == 2, held  # the job and its companion, held, and a user who never saw an app id
    listed = run_torchx("list", "-s", "slurm_forge")
    assert listed.returncode == 0 and "finished: released app" in listed.stderr, listed.stderr
    app_id = re.search(r"released app slurm_forge://torchx/(\d+)", listed.stderr).group(1)
    assert app_id in listed.stdout
    assert wait_end(f"slurm_forge://torchx/{app_id}") == "SUCCEEDED"


def _killed_before_its_record(tmp_path: Path, **env: str) -> subprocess.Popen:
    """A client killed after sbatch of a job and its companion, before the app record exists."""
    bin_dir = tmp_path / "bin"
    wrapper(bin_dir, "git", f': > {tmp_path}/recording; sleep 120; exec "$REAL" "$@"')  # code_version runs git
    p = start_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=1", "utils.echo",
                     env=path_env(bin_dir, **env), cwd=_git_repo(tmp_path / "work"))
    wait_for((tmp_path / "recording").exists, 90, "the client to reach the record")
    kill(p)
    return p


def test_an_interrupted_submission_without_record_is_rolled_back_by_cancel(state_dir: Path, tmp_path: Path):
    _killed_before_its_record(tmp_path)
    sub = held_submission(state_dir)
    held = [r for r in live(tagged(sub)) if r[2] == "JobHeldUser"]
    assert len(held) == 2, held  # the job and its companion
    job = min(held, key=lambda r: int(r[0]))[0]
    c = run_torchx("cancel", f"slurm_forge://torchx/{job}")
    assert c.returncode == 0, c.stderr
    assert "rolled back" in c.stderr
    assert not live(tagged(sub)), tagged(sub)  # the companion and the guard job too


def test_the_guard_job_rolls_back_a_submission_nobody_comes_back_to(state_dir: Path, tmp_path: Path):
    _killed_before_its_record(tmp_path, FORGE_HOLD_LIMIT="10")
    sub = held_submission(state_dir)
    assert len([r for r in live(tagged(sub)) if r[2] == "JobHeldUser"]) == 2
    wait_for(lambda: not live(tagged(sub)), 120, "the guard job to cancel the held jobs", interval=2)
    logs = list((state_dir / "logs").glob("*guard-*.log"))
    assert logs and "rolled back" in logs[0].read_text(), [p.read_text() for p in logs]


def test_an_app_of_one_job_whose_client_died_before_its_record_is_adopted_by_the_next_command(state_dir: Path,
                                                                                         tmp_path: Path):
    """One sbatch, not held: the job runs whatever becomes of its client. Killed before the record,
    the client leaves the record in its intent; the job's task leaves its id (the claim), and once
    the job has ended and left squeue, `torchx list` adopts it."""
    bin_dir = tmp_path / "bin"
    wrapper(bin_dir, "sbatch", f'"$REAL" "$@"; rc=$?; : > {tmp_path}/submitted; sleep 120; exit $rc')
    p = start_torchx("run", "--scheduler", "slurm_forge", "utils.echo", "--msg", "adopted", env=path_env(bin_dir),
                     cwd=REPO)
    wait_for((tmp_path / "submitted").exists, 90, "the client's sbatch to go through")
    kill(p)
    sub = held_submission(state_dir)
    assert not [r for r in tagged(sub) if r[2] == "JobHeldUser"]  # nothing held
    wait_for(lambda: not tagged(sub), 240, "the job to run, end and leave squeue", interval=2)
    assert not list(state_dir.glob("apps/*/record.json"))  # the task wrote its state file, nobody a record
    claim = (state_dir / "intents" / f"{sub}.claim").read_text()
    listed = run_torchx("list", "-s", "slurm_forge")
    assert listed.returncode == 0 and "adopted: app slurm_forge://torchx/" in listed.stderr, listed.stderr
    app_id = re.search(r"adopted: app slurm_forge://torchx/(\d+)", listed.stderr).group(1)
    assert app_id == claim and app_id in listed.stdout
    handle = f"slurm_forge://torchx/{app_id}"
    assert wait_end(handle) == "SUCCEEDED"
    assert "adopted" in run_torchx("log", handle).stdout


# -- 6, 7. status without a record, cancel of nothing -----------------------------------------------


def test_status_without_a_record_maps_array_tasks_to_replicas(state_dir: Path, tmp_path: Path):
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "array_parallelism=1", "forge.grid",
                                  "--name", "norec", "--axes", "run.env.I=[0,1,2]", "--", "sleep", "120"))
    wait_for(lambda: app_state(handle) == "RUNNING", 180, "task 0 to run")
    other = run_torchx("status", handle, env={"FORGE_STATE_DIR": str(tmp_path / "elsewhere")})
    assert other.returncode == 0, other.stderr
    assert "no record of app" in other.stdout and "None" not in other.stdout.split("Msg:")[1], other.stdout
    rows = {line.split()[0]: line.split() for line in other.stdout.splitlines() if line.strip().startswith("norec[")}
    job = handle.rsplit("/", 1)[1]
    assert rows["norec[0]"][1:3] == [f"{job}_0", "RUNNING"], rows
    assert rows["norec[1]"][1:3] == [f"{job}_1", "PENDING"], rows
    run_torchx("cancel", handle)


@pytest.mark.parametrize("app_id", ["999999", "abc"])
def test_cancel_of_an_app_that_does_not_exist_is_an_error(state_dir: Path, app_id: str):
    p = run_torchx("cancel", f"slurm_forge://torchx/{app_id}")
    assert p.returncode != 0 and f"no app '{app_id}' to cancel" in p.stderr, p.stdout + p.stderr
    assert "Traceback" not in p.stderr


def test_cancel_of_an_app_with_retries_leaves_no_companion_behind(state_dir: Path):
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2", "utils.sh", "sleep", "120"))
    job = handle.rsplit("/", 1)[1]
    wait_for(lambda: app_state(handle) == "RUNNING", 180, "the job to run")
    rec = Records(Store(str(state_dir))).load(job)
    companions = [j.companion for j in rec.jobs if j.companion]
    assert companions, rec.jobs  # the retry companion (afternotok), queued next to the job
    assert [r[1] for r in squeue_rows() if r[0] == companions[0]] == ["PENDING"], squeue_rows()
    c = run_torchx("cancel", handle)
    assert c.returncode == 0, c.stderr
    ids = {job, *companions}
    wait_for(lambda: not [r for r in live(squeue_rows()) if r[0].split("_")[0] in ids], 60,
             "the job and its companion to leave the queue")
    assert wait_end(handle) == "CANCELLED"


# -- 8, 9. what a program does after the warning; what ended each attempt ------------------------


def test_a_program_that_saves_and_exits_0_after_the_warning_is_resumed(state_dir: Path, tmp_path: Path):
    ledger = tmp_path / "ledger"
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2", "utils.python",
                                  "--script", TRAIN, "--", "--steps", "20", "--ledger", str(ledger),
                                  "--warned-exit-code", "0"))
    job = handle.rsplit("/", 1)[1]
    wait_for(lambda: ledger_lines(ledger) >= 4, 180, "step 4")
    warn_batch(job)
    assert wait_end(handle) == "SUCCEEDED"
    steps = sorted(int(line.split()[1]) for line in ledger.read_text().splitlines())
    assert steps == list(range(1, 21)), steps  # nothing lost, nothing repeated
    r = task_row(handle, "python[0]")
    assert r[5] == "2" and r[7] == "warned", r
    batch = next((state_dir / "logs").glob(f"*-{job}.batch.log")).read_text()
    assert "requeueing (TIMEOUT: retry 1 of 2)" in batch, batch


SAVE_AND_LEAVE = '''import json, sys, time
from torchx_forge import runtime
stop = runtime.install_warning_handler()
state = runtime.load_latest(lambda p: json.load(runtime.open_path(p, "r")))
step = start = state["step"] if state else 0
print(f"attempt {runtime.attempt()}: starting at step {step}", flush=True)
def save():
    runtime.save(lambda p: json.dump({"step": step}, runtime.open_path(p, "w")), step, name="step_{step}.json")
while step < 3:
    time.sleep(1)
    step += 1
    with open(sys.argv[1], "a") as f:
        f.write(f"step {step} attempt {runtime.attempt()}\\n")
    save()
    print(f"step {step} saved", flush=True)
if start < 3:  # work done this attempt: write the final outputs (slowly), unless warned meanwhile
    for _ in range(300):
        if stop.is_set():
            save()
            print("warned while writing outputs: saved, leaving", flush=True)
            sys.exit(0)  # like many programs: save on the signal, exit 0, never call runtime.finished()
        time.sleep(0.1)
print(f"nothing left to do at step {step}", flush=True)
'''


def test_a_program_resumed_with_nothing_left_to_do_ends_succeeded_quickly(state_dir: Path, tmp_path: Path):
    script, ledger = tmp_path / "save_and_leave.py", tmp_path / "ledger"
    script.write_text(SAVE_AND_LEAVE)
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2", "utils.python",
                                  "--script", str(script), "--", str(ledger)))
    job = handle.rsplit("/", 1)[1]
    wait_for(lambda: ledger_lines(ledger) >= 3, 180, "the last step")
    warn_batch(job)
    assert wait_end(handle) == "SUCCEEDED"
    log = run_torchx("log", f"{handle}/python/0").stdout
    assert "warned while writing outputs" in log and "attempt 1: starting at step 3" in log, log
    assert "nothing left to do at step 3" in log, log
    steps = sorted(int(line.split()[1]) for line in ledger.read_text().splitlines())
    assert steps == [1, 2, 3], steps  # the resumed attempt ran no step again
    r = task_row(handle, "python[0]")
    assert r[5] == "2" and r[7] == "warned", r  # one requeue, and status says why

    def attempts() -> List[str]:
        return subprocess.run(["sacct", "-X", "-n", "-P", "-D", "-o", "State,ElapsedRaw", "-j", job],
                              capture_output=True, text=True).stdout.split()
    wait_for(lambda: attempts()[-1:] and attempts()[-1].startswith("COMPLETED|"), 60, "accounting of the last attempt")
    assert int(attempts()[-1].split("|")[1]) < 30, attempts()  # the empty resume is quick


def test_a_program_without_checkpoints_that_finishes_in_the_grace_time_runs_once(state_dir: Path, tmp_path: Path):
    started = tmp_path / "started"
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_retries=2", "utils.sh",
                                  "sh", "-c", f": > {started}; sleep 20; echo finished"))
    job = handle.rsplit("/", 1)[1]
    # the program says it started (a CLI poll under load may see RUNNING late); it ends well within the grace time
    wait_for(started.exists, 180, "the program to start", interval=0.2)
    time.sleep(2)
    warn_batch(job)
    assert wait_end(handle) == "SUCCEEDED"
    r = task_row(handle, "sh[0]")
    assert r[5] == "1" and "without saving a checkpoint: taken as finished" in " ".join(r), r


# -- 10, 11. disks -----------------------------------------------------------------------------------


def test_a_read_only_or_full_log_dir_is_refused_before_submitting(state_dir: Path, tmp_path: Path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={ro}", "utils.echo")
        assert p.returncode != 0 and f"log dir {ro}" in p.stderr and "Read-only" in p.stderr, p.stderr
        assert "runopt 'log_dir'" in p.stderr and "Traceback" not in p.stderr
    with tmpfs(tmp_path / "full", "size=64k") as full:
        p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={full}", "utils.echo")
        assert p.returncode != 0 and "is full" in p.stderr, p.stderr
    assert queued_jobs_of(tmp_path) == []  # nothing submitted: no job logs under the test's dirs


def test_a_task_whose_log_dir_fills_up_is_not_a_clean_success(state_dir: Path, tmp_path: Path):
    with tmpfs(tmp_path / "small", "size=2m") as logs:
        # 3 MB of output into a 2 MB log dir, from a program that ignores the write errors and exits 0
        handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={logs}", "utils.sh",
                                      "sh", "-c", "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 3000000; true"))
        assert wait_end(handle) == "FAILED"
        r = " ".join(task_row(handle, "sh[0]"))
        assert "the log dir is full" in r, r


def test_a_read_only_state_dir_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with tmpfs(tmp_path / "ro-state", "ro,size=1m") as ro:
        for args in (["utils.echo"], ["forge.grid", "--axes", "run.env.I=[0,1]", "--", "true"]):
            p = run_torchx("run", "--scheduler", "slurm_forge", *args, env={"FORGE_STATE_DIR": str(ro)})
            assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
            assert f"state dir {ro}" in p.stderr and "$FORGE_STATE_DIR" in p.stderr and "Read-only" in p.stderr, p.stderr


# -- 12. secrets and private files ----------------------------------------------------------------


def test_secrets_are_masked_in_the_dry_run_and_logs_and_scripts_are_private(state_dir: Path):
    secrets = {"HF_TOKEN": "hf-s3cret-1", "MY_PASSWORD": "pw-s3cret-2", "WANDB_API_KEY": "wb-s3cret-3"}
    env_arg = ",".join(f"{k}={v}" for k, v in secrets.items())
    dry = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "utils.sh", "--env", env_arg, "echo", "hi")
    assert dry.returncode == 0, dry.stderr
    shown = dry.stdout + dry.stderr
    assert "HF_TOKEN" in shown and not any(v in shown for v in secrets.values()), shown
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "--env", env_arg, "echo", "hi"))
    assert wait_end(handle) == "SUCCEEDED"
    files = [p for p in (state_dir / "logs").iterdir() if p.is_file()] + list((state_dir / "submissions").rglob("*.sh"))
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, (f, oct(f.stat().st_mode))


# -- 13. small input gaps -----------------------------------------------------------------------


def test_a_duplicate_axis_and_a_lead_time_slurm_refuses_are_errors(state_dir: Path):
    p = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "forge.grid", "--axes", "x=[1];x=[2]", "--", "t")
    assert p.returncode != 0 and "is given twice" in p.stderr, p.stderr
    p = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "-cfg", "max_retries=1,signal=USR1@99999",
                   "utils.echo")
    assert p.returncode != 0 and "runopt 'signal'" in p.stderr and "at most 65535" in p.stderr, p.stderr
    p = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "-cfg", "max_retries=1,signal=USR1@600,time=5",
                   "utils.echo")
    assert p.returncode != 0 and "only 300 s" in p.stderr, p.stderr
