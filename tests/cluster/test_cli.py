"""The user-facing verbs through the real ``torchx`` CLI on the real local Slurm cluster."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from torchx.runner import Runner

from conftest import (
    REPO,
    TORCHX,
    app_state,
    handle_of,
    job_gone_from_squeue,
    queued_jobs_of,
    run_torchx,
    wait_end,
    wait_for,
)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

NASTY = 'hi $HOME "q" `x`'


def _status(handle: str) -> str:
    p = run_torchx("status", handle)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_echo_runs_and_logs_byte_for_byte_from_another_directory(state_dir: Path, tmp_path: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", "--msg", NASTY)
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    job_id = handle.rsplit("/", 1)[1]
    # the app id is the Slurm job id
    assert subprocess.run(["scontrol", "show", "job", job_id], capture_output=True).returncode == 0
    assert wait_end(handle, states=("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = run_torchx("log", "--streams", "stdout", f"{handle}/echo/0", cwd=elsewhere)
    assert log.returncode == 0, log.stderr
    assert log.stdout.splitlines() == [f"echo/0 {NASTY}"]
    # with no stream given both streams are shown (stdout's line is there)
    both = run_torchx("log", handle, cwd=elsewhere)
    assert NASTY in both.stdout
    # regex filtering
    assert run_torchx("log", "--regex", r'"q"', handle).stdout.strip() == f"echo/0 {NASTY}"
    assert run_torchx("log", "--regex", "no such text", handle).stdout == ""


def test_log_tail_follows_a_running_job_until_it_ends(state_dir: Path, tmp_path: Path):
    go = tmp_path / "go"  # the job runs (and prints nothing) until `torchx log -t` follows it
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c",
                   f"while [ ! -e {go} ]; do sleep 0.2; done; for i in 1 2 3 4 5; do echo tick $i; sleep 1; done; echo done >&2")
    handle = handle_of(p)
    wait_for(lambda: app_state(handle) == "RUNNING", 180, "the job to run")
    follow = subprocess.Popen([TORCHX, "log", "-t", f"{handle}/sh/0"], cwd=str(REPO), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    go.touch()
    out, err = follow.communicate(timeout=120)  # returns only once the job ended
    tail = subprocess.CompletedProcess(follow.args, follow.returncode, out, err)
    assert tail.returncode == 0, tail.stderr
    lines = [line.split(" ", 1)[1] for line in tail.stdout.splitlines()]
    assert lines[:5] == [f"tick {i}" for i in range(1, 6)] and "done" in lines
    assert app_state(handle) == "SUCCEEDED"


def test_status_keeps_torchx_lines_and_adds_a_task_table(state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c", "exit 3")
    handle = handle_of(p)
    assert wait_end(handle, states=("FAILED", "SUCCEEDED")) == "FAILED"
    out = _status(handle)
    assert re.search(r"\*sh\[0\]:FAILED", out)
    # the forge table: exit code 3 and the host it ran on
    row = next(line for line in out.splitlines() if line.strip().startswith("sh[0]"))
    assert " FAILED " in row and " 3 " in row and re.search(r"\bn[1-3]\b", row)


def test_status_right_after_submit_is_not_unknown(state_dir: Path):
    # long enough to still be queued or running when the status below answers, however busy the machine
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sleep", "120")
    handle = handle_of(p)
    assert app_state(handle) in ("PENDING", "RUNNING")
    run_torchx("cancel", handle)


def test_cancel_a_sleeping_job(state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sleep", "300")
    handle = handle_of(p)
    wait_end(handle, timeout=180, states=("RUNNING",))
    assert queued_jobs_of(state_dir) == [handle.rsplit("/", 1)[1]]  # what the submit-nothing tests look for
    c = run_torchx("cancel", handle)
    assert c.returncode == 0, c.stderr
    assert wait_end(handle) == "CANCELLED"
    assert job_gone_from_squeue(handle.rsplit("/", 1)[1]) or "CANCELLED" in _status(handle)


def test_list_shows_this_users_forge_apps(state_dir: Path):
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", "--msg", "listed"))
    out = run_torchx("list", "-s", "slurm_forge")
    assert out.returncode == 0, out.stderr
    assert handle in out.stdout


def test_dryrun_prints_command_and_script_and_submits_nothing(state_dir: Path):
    p = run_torchx(
        "run", "--dryrun", "--scheduler", "slurm_forge", "-cfg", "partition=debug,time=5",
        "utils.echo", "--msg", NASTY,
    )
    assert p.returncode == 0, p.stderr
    assert "sbatch --parsable --partition=debug --time=5 $SBATCH_SCRIPT" in p.stdout  # one job: not held
    assert "#!/bin/bash" in p.stdout and "-m torchx_forge.node.launch" in p.stdout
    assert "'hi $HOME \"q\" `x`'" in p.stdout
    assert queued_jobs_of(state_dir) == []
    assert not (state_dir / "apps").exists()


def test_status_long_after_squeue_forgot_the_job_comes_from_sacct(state_dir: Path):
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c", "exit 5"))
    job_id = handle.rsplit("/", 1)[1]
    wait_for(lambda: job_gone_from_squeue(job_id), 90, "squeue to forget the job (MinJobAge)")
    out = _status(handle)
    assert "State: FAILED" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("sh[0]"))
    assert " 5 " in row


@pytest.mark.parametrize(
    "cfg,expected",
    [
        ("exclusive=maybe", r"runopt 'exclusive': got 'maybe'; expected true or false"),
        ("nodes=two", r"runopt 'nodes': got 'two'; expected a whole number"),
        ("time=1h", r"runopt 'time': '1h' is not a Slurm time"),
        ("gpu_flag=gpus", r"runopt 'gpu_flag': got 'gpus'; expected one of"),
        ("dependency=afterfoo:1", r"runopt 'dependency'"),
        ("sbatch_args=--array=0-3", r"--array is set by slurm_forge itself"),
        ("partitoin=debug", r"runopt 'partitoin': slurm_forge has no such option; valid options:"),
        ("partition=nosuchpart", r"sbatch.*invalid partition specified: nosuchpart"),
    ],
)
def test_bad_input_through_the_cli_is_one_clear_line(state_dir: Path, cfg: str, expected: str):
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", cfg, "utils.echo", "--msg", "x")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr + p.stdout
    assert re.search(expected, p.stderr, re.IGNORECASE), p.stderr
    assert queued_jobs_of(state_dir) == [], "a failed submission left a job behind"


def test_bad_runopt_in_torchxconfig_is_clean_too(state_dir: Path, tmp_path: Path):
    (tmp_path / ".torchxconfig").write_text("[slurm_forge]\nnodes = lots\n")
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "runopt 'nodes': got 'lots'" in p.stderr


def test_missing_slurm_tools_say_how_to_start_the_cluster(state_dir: Path, tmp_path: Path):
    bindir = Path(subprocess.run(["python3", "-c", "import sys,os;print(os.path.dirname(sys.executable))"],
                                 capture_output=True, text=True).stdout.strip())
    env = {"PATH": f"{bindir}:/usr/local/bin:/bin" if not Path("/bin/sbatch").exists() else str(bindir)}
    env_path = ":".join(d for d in env["PATH"].split(":") if not (Path(d) / "sbatch").exists())
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.echo", env={"PATH": env_path})
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "scripts/local-slurm up" in p.stderr
    s = run_torchx("status", "slurm_forge://torchx/1", env={"PATH": env_path})
    assert s.returncode == 1 and "Traceback" not in s.stderr
    assert "local-slurm up" in s.stderr


def test_unknown_app_id_is_not_found(state_dir: Path):
    p = run_torchx("status", "slurm_forge://torchx/987654")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "does not exist" in p.stderr


def test_repo_torchxconfig_makes_slurm_forge_the_default(state_dir: Path):
    p = run_torchx("run", "--dryrun", "utils.echo", cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert "torchx_forge.node.launch" in p.stdout


@pytest.mark.torchx_main(available=hasattr(Runner, "delete"))  # `torchx delete`
def test_delete_cancels_like_cancel(state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sleep", "300")
    handle = handle_of(p)
    wait_end(handle, timeout=180, states=("RUNNING",))
    d = run_torchx("delete", handle)
    assert d.returncode == 0, d.stderr
    assert wait_end(handle) == "CANCELLED"
