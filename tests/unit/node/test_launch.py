"""The task launcher, run as the batch script runs it (``python -m torchx_forge.node.launch``), without Slurm."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from torchx_forge.node.launch import first_host

SHOW_ENV = "import json, os, sys; json.dump({k: os.environ.get(k) for k in sys.argv[1:]}, sys.stdout)"


@pytest.fixture
def slurm_env(tmp_path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FORGE"))}
    env.update(SLURM_JOB_ID="77", SLURM_JOB_NODELIST="n[3-4]", SLURMD_NODENAME="n3", FORGE_APP_ID="77",
               FORGE_STATE_DIR=str(tmp_path / "state"))
    return env


def launch(env: Dict[str, str], *args: str, program: Optional[List[str]] = None, **popen) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torchx_forge.node.launch", *args, "--", *(program or [])]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **popen)


def py(code: str, *args: str) -> List[str]:
    return [sys.executable, "-c", code, *args]


def state_file(env: Dict[str, str], role: str, replica: int) -> Path:
    return Path(env["FORGE_STATE_DIR"]) / "apps" / "77" / "tasks" / f"{role}.{replica}.json"


def test_child_sees_the_forge_contract(slurm_env):
    slurm_env["SLURM_RESTART_COUNT"] = "2"
    keys = ["FORGE_ROLE", "FORGE_REPLICA_ID", "FORGE_RANK0_HOST", "FORGE_ATTEMPT", "FORGE_APP_ID", "FORGE_INITIAL_JOB_ID"]
    p = launch(slurm_env, "--role", "trainer", "--replica", "4", program=py(SHOW_ENV, *keys))
    assert p.returncode == 0, p.stderr
    banner, shown = p.stdout.splitlines()  # later attempts are marked in the log
    assert banner.startswith("==== torchx-forge: 77-trainer attempt 2 (job 77 on n3)")
    assert json.loads(shown) == {"FORGE_ROLE": "trainer", "FORGE_REPLICA_ID": "4", "FORGE_RANK0_HOST": "n3",
                                    "FORGE_ATTEMPT": "2", "FORGE_APP_ID": "77", "FORGE_INITIAL_JOB_ID": "77"}


def test_role_env_values_arrive_unchanged(slurm_env):
    values = {"A": "x=y,z", "NL": "line1\nline2", "EMPTY": "", "Q": "it's \"$HOME\""}
    env_args = [w for k, v in values.items() for w in ("--env", f"{k}={v}")]
    p = launch(slurm_env, "--role", "r", "--replica", "0", *env_args, program=py(SHOW_ENV, *values))
    assert json.loads(p.stdout) == values


def test_replica_from_env_for_array_tasks(slurm_env):
    slurm_env["FORGE_REPLICA_ID"] = "9"
    p = launch(slurm_env, "--role", "sweep", program=py(SHOW_ENV, "FORGE_REPLICA_ID"))
    assert json.loads(p.stdout) == {"FORGE_REPLICA_ID": "9"}
    assert json.loads(state_file(slurm_env, "sweep", 9).read_text())["state"] == "COMPLETED"


def test_program_args_pass_through_including_dashes(slurm_env):
    args = ["--role", "x", "--", "-h", "", "a b"]
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py("import json,sys; print(json.dumps(sys.argv[1:]))", *args))
    assert json.loads(p.stdout) == args


def test_exit_code_propagates_and_state_file_says_failed(slurm_env):
    p = launch(slurm_env, "--role", "trainer", "--replica", "1", program=py("import sys; sys.exit(3)"))
    assert p.returncode == 3
    st = json.loads(state_file(slurm_env, "trainer", 1).read_text())
    assert (st["state"], st["exit_code"], st["host"], st["job_id"], st["role"], st["replica"]) == ("FAILED", 3, "n3", "77", "trainer", 1)
    assert st["end"] >= st["start"]


def test_success_writes_completed_state_file_privately(slurm_env):
    p = launch(slurm_env, "--role", "trainer", "--replica", "0", program=py("pass"))
    assert p.returncode == 0
    path = state_file(slurm_env, "trainer", 0)
    st = json.loads(path.read_text())
    assert (st["state"], st["exit_code"], st["attempt"]) == ("COMPLETED", 0, 0)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(path.parent) == ["trainer.0.json"]  # no temp files left


def test_death_by_signal_is_128_plus_n(slurm_env):
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert p.returncode == 128 + signal.SIGKILL
    assert json.loads(state_file(slurm_env, "r", 0).read_text())["state"] == "FAILED"


def test_terminating_signal_is_forwarded_and_recorded(slurm_env):
    argv = [sys.executable, "-m", "torchx_forge.node.launch", "--role", "r", "--replica", "0", "--",
            *py("import time; print('ready', flush=True); time.sleep(60)")]
    proc = subprocess.Popen(argv, env=slurm_env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    proc.stdout.close()
    st = json.loads(state_file(slurm_env, "r", 0).read_text())
    assert (st["state"], st["stopped_by"], st["exit_code"]) == ("KILLED", signal.SIGTERM, 128 + signal.SIGTERM)


def test_missing_program_is_127_with_message(slurm_env):
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=["/no/such/program-xyz", "arg"])
    assert p.returncode == 127
    assert "cannot run '/no/such/program-xyz'" in p.stderr and "No such file" in p.stderr
    assert json.loads(state_file(slurm_env, "r", 0).read_text())["exit_code"] == 127


def test_no_program_is_a_usage_error(slurm_env):
    p = launch(slurm_env, "--role", "r")
    assert p.returncode == 2 and "no program given" in p.stderr


def test_non_first_node_writes_no_state_file(slurm_env):
    slurm_env["SLURMD_NODENAME"] = "n4"
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py(SHOW_ENV, "FORGE_RANK0_HOST"))
    assert p.returncode == 0 and json.loads(p.stdout) == {"FORGE_RANK0_HOST": "n3"}
    assert not list(Path(slurm_env["FORGE_STATE_DIR"]).glob("apps/*/tasks/*.json"))


def test_het_group_nodelists(slurm_env):
    slurm_env.update(SLURM_JOB_NODELIST_HET_GROUP_0="m1", SLURM_JOB_NODELIST_HET_GROUP_1="n[3-4]")
    p = launch(slurm_env, "--role", "b", "--replica", "0", "--het-group", "1", program=py(SHOW_ENV, "FORGE_RANK0_HOST"))
    assert json.loads(p.stdout) == {"FORGE_RANK0_HOST": "m1"}  # rank 0 is the first node of the first component
    assert state_file(slurm_env, "b", 0).exists()  # n3 is the first node of its own component


def test_unwritable_state_dir_does_not_fail_the_task(slurm_env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    slurm_env["FORGE_STATE_DIR"] = str(blocker)
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py("pass"))
    assert p.returncode == 0 and "cannot write task state" in p.stderr


def test_first_host():
    assert first_host("n[3-4],m1") == "n3"
    assert first_host("gpu-[07-09]") == "gpu-07"
    assert first_host("login1") == "login1"
    assert first_host("") == ""


# -- an exit after the warning ----------------------------------------------------------------------

WARNED = """
import json, os, signal, sys, time
warned = []
signal.signal(signal.SIGUSR1, lambda *a: warned.append(1))
open(os.environ["FORGE_WARN_FILE"], "w").close()   # the batch script's part: the warning is due
while not warned:
    time.sleep(0.05)
if sys.argv[1] == "save":
    json.dump({"step": 5}, open(os.path.join(os.environ["FORGE_CHECKPOINT_DIR"], "step_5.json"), "w"))
if sys.argv[2] == "finished":
    open(os.environ["FORGE_DONE_FILE"], "w").close()
sys.exit(0)
"""


@pytest.mark.parametrize("save,say,code,state,note", [
    ("save", "-", 75, "INTERRUPTED", "exited 0 after saving a checkpoint: interrupted, to be resumed"),
    ("save", "finished", 0, "COMPLETED", "exited 0 and said it finished"),
    ("nosave", "-", 0, "COMPLETED", "exited 0 without saving a checkpoint: taken as finished"),
])
def test_an_exit_0_after_the_warning(slurm_env, tmp_path, save, say, code, state, note):
    (tmp_path / "logs" / ".forge-warn").mkdir(parents=True)
    slurm_env.update(FORGE_MAX_RETRIES="2", FORGE_WARN_SIGNAL="USR1", FORGE_GRACE="20",
                     FORGE_WARN_FILE=str(tmp_path / "logs" / ".forge-warn" / "77"))
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py(WARNED, save, say))
    assert p.returncode == code, p.stderr
    data = json.loads(state_file(slurm_env, "r", 0).read_text())
    assert data["state"] == state and data["warned_by"] == "USR1" and note in data["note"], data


def test_output_lost_to_a_full_log_dir_is_no_clean_success(slurm_env, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(logs)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = open(logs / "task.out", "w")
        subprocess.run(["dd", "if=/dev/zero", f"of={logs / 'filler'}", "bs=4k"], capture_output=True)  # fill it up
        argv = [sys.executable, "-m", "torchx_forge.node.launch", "--role", "r", "--replica", "0", "--", "true"]
        p = subprocess.run(argv, env={**slurm_env, "FORGE_LOG_DIR": str(logs)}, stdout=out, stderr=out, timeout=60)
        out.close()
    finally:
        subprocess.run(["umount", "-l", str(logs)])
    data = json.loads(state_file(slurm_env, "r", 0).read_text())
    assert p.returncode == 74 and data["state"] == "FAILED" and "the log dir is full" in data["note"], data


# -- a job sent without a hold (an app of one job) ---------------------------------------------------


def _record(env: Dict[str, str], submission: str) -> None:
    path = Path(env["FORGE_STATE_DIR"]) / "apps" / "77" / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"app_id": "77", "submission": submission, "format": 1}))


def test_a_direct_job_under_an_older_apps_record_does_not_run_nor_touch_its_files(slurm_env):
    """Slurm gave job id 77 again after losing an older app's job: the client cancels this job and
    sends it again; meanwhile its task must not count as an attempt of the older app."""
    _record(slurm_env, "old-submission")
    slurm_env["FORGE_SUBMISSION"] = "new-submission"
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py("print('ran')"))
    assert p.returncode == 1 and "ran" not in p.stdout
    assert "job id 77 names an older app" in p.stdout + p.stderr and "old-submission" in p.stdout + p.stderr
    assert not state_file(slurm_env, "r", 0).exists()


def test_a_direct_job_runs_under_its_own_record_and_its_program_does_not_inherit_the_submission(slurm_env):
    _record(slurm_env, "mine")
    slurm_env["FORGE_SUBMISSION"] = "mine"
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py(SHOW_ENV, "FORGE_SUBMISSION"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == {"FORGE_SUBMISSION": None}
    assert not (Path(slurm_env["FORGE_STATE_DIR"]) / "intents").exists()  # a record: no claim needed


def test_a_direct_job_started_before_its_record_leaves_its_claim(slurm_env):
    slurm_env["FORGE_SUBMISSION"] = "early"
    p = launch(slurm_env, "--role", "r", "--replica", "0", program=py("print('ran')"))
    assert p.returncode == 0 and "ran" in p.stdout, p.stderr
    assert (Path(slurm_env["FORGE_STATE_DIR"]) / "intents" / "early.claim").read_text() == "77"


def test_boot_runs_the_launcher_without_site_and_the_program_with_it(slurm_env):
    """``python -S .../node/boot.py``, as batch scripts start it: the launcher imports no site-packages
    (no ``site``, no .pth files) yet finds torchx_forge; the program it starts is a normal Python."""
    from torchx_forge.slurm.srun import BOOT

    env = {k: v for k, v in slurm_env.items() if k != "PYTHONPATH"}
    show = "import sys; print(sys.flags.no_site, 'site' in sys.modules)"
    argv = [sys.executable, "-S", BOOT, "--role", "r", "--replica", "0", "--", *py(show)]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "True"]
    assert json.loads(state_file(slurm_env, "r", 0).read_text())["state"] == "COMPLETED"


@pytest.mark.parametrize("args, problem", [
    (["--role"], "argument --role: expected one argument"),
    (["--role", "r", "--bogus", "1", "--", "true"], "unrecognized argument: --bogus"),
    (["--role", "r", "--replica", "x", "--", "true"], "--replica and --het-group take an integer"),
    (["--role", "r", "--"], "no program given after --"),
    (["--replica", "0", "--", "true"], "the following arguments are required: --role"),
])
def test_a_bad_launcher_command_line_says_what_is_wrong(slurm_env, args, problem):
    p = subprocess.run([sys.executable, "-m", "torchx_forge.node.launch", *args], env=slurm_env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and f"error: {problem}" in p.stderr and p.stderr.startswith("usage: ")


def test_launcher_arguments_in_either_spelling():
    from torchx_forge.node.launch import _parse

    a = _parse(["--role=r", "--replica", "3", "--het-group=1", "--env", "A=--x=y", "--env=B=", "--", "prog", "--role", "z"])
    assert (a.role, a.replica, a.het_group, a.env, a.command) == ("r", 3, 1, ["A=--x=y", "B="], ["prog", "--role", "z"])
    assert _parse(["--role", "r", "prog", "-x"]).command == ["prog", "-x"]  # no "--": the program starts at the first word
