"""Every verb from a laptop that has no Slurm: the lab reached through the loopback sshd only.

The laptop (tests/remote/conftest.py) has its own HOME, its own Python and failing stand-ins of
every Slurm command first on its PATH; each test ends by asserting none of them ran.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import List

import pytest

from conftest import REPO, wait_for

pytestmark = [pytest.mark.slurm]

#: the values of a sweep axis that a shell would take apart, run or expand: each must arrive as written
HOSTILE = ["$(touch /tmp/forge-pwned)", "`touch /tmp/forge-pwned`; $HOME *", "a b;c\nit's \"quoted\" é ü ✓"]

TRAIN = """\
#!/bin/sh
# a run of the laptop's sweep (sh train.sh --x X --msg M): the snapshot's version, its axis values (base64: exact bytes)
while [ $# -gt 0 ]; do case "$1" in --x) x=$2;; --msg) msg=$2;; esac; shift 2; done
echo "run x=$x version=$(cat version.txt) msg=$(printf '%s' "$msg" | base64 -w0)"
echo '{{"score": '"$x"'}}' > "$FORGE_RESULT_DIR/metrics.json"
if [ "$x" = 2 ] && [ -e "{fail}" ]; then echo "failing on purpose" >&2; exit 3; fi
"""


def workspace(root: Path, fail: Path) -> Path:
    ws = root / "ws"
    (ws / "data").mkdir(parents=True)
    (ws / "train.sh").write_text(TRAIN.format(fail=fail))
    (ws / "version.txt").write_text("v1\n")
    (ws / "data" / "big.bin").write_bytes(b"\0" * 100_000)  # excluded by .torchxignore: never shipped
    (ws / ".torchxignore").write_text("data/\n")
    return ws


def app_state(laptop, handle: str) -> str:
    out = laptop.run("torchx", "status", handle).stdout
    m = re.search(r"State: (\w+)", out)
    return m.group(1) if m else "?"


def wait_state(laptop, handle: str, states=("SUCCEEDED", "FAILED", "CANCELLED"), timeout: float = 240) -> str:
    seen: List[str] = []

    def ended() -> bool:
        seen.append(app_state(laptop, handle))
        return seen[-1] in states

    wait_for(ended, timeout, f"{handle} to reach {states} from the laptop (last: {seen[-1:]})", interval=3)
    return seen[-1]


def test_a_sweep_from_a_laptop_runs_its_snapshot_with_hostile_values_and_every_verb_answers(laptop, tmp_path: Path):
    fail = tmp_path / "fail-2"
    fail.touch()
    ws = workspace(tmp_path, fail)
    (ws / "exp.yaml").write_text(  # JSON is YAML: the hostile values written exactly
        "name: lap\nrun: {command: [sh, train.sh]}\n"
        f"sweep: {{shared_axes: {{run.args.x: [0, 1, 2], run.args.msg: {json.dumps(HOSTILE)}}}}}\n")
    run = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", f"login=forge-lab,python={sys.executable}",
                     "forge.sweep", "--config", "exp.yaml", cwd=ws, timeout=300)
    assert run.returncode == 0, run.stderr
    handle = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"slurm_forge://torchx/\d+@forge-lab", handle), run.stdout
    assert wait_state(laptop, handle) == "FAILED"  # the three runs of x=2 fail on purpose

    # each value arrived byte for byte, nothing was run or expanded, the excluded data stayed home
    status = laptop.run("torchx", "status", handle).stdout
    assert status.count("COMPLETED") == 6 and "FAILED" in status, status
    arrived = set()
    for k in range(9):
        log = laptop.run("torchx", "log", f"{handle}/lap/{k}").stdout
        m = re.search(r"run x=(\d) version=(\S+) msg=(\S*)", log)
        assert m and m.group(2) == "v1", log
        arrived.add(base64.b64decode(m.group(3)).decode())
    assert arrived == set(HOSTILE)
    assert not Path("/tmp/forge-pwned").exists()

    listed = laptop.run("torchx", "list", "-s", "slurm_forge").stdout
    assert handle.rsplit("/", 1)[1] in listed, listed
    watched = laptop.run("torchx", "forge", "watch", "--once", handle)
    assert handle.rsplit("/", 1)[1] in watched.stdout and "FAILED" in watched.stdout, watched.stdout + watched.stderr

    # the laptop's script changes; the retry runs the snapshot the app was submitted with
    (ws / "version.txt").write_text("v2\n")
    fail.unlink()
    retried = laptop.run("torchx", "forge", "retry", handle)
    assert retried.returncode == 0, retried.stderr
    assert wait_state(laptop, handle) == "SUCCEEDED"
    again = laptop.run("torchx", "log", f"{handle}/lap/2").stdout
    assert "version=v1" in again and "version=v2" not in again, again
    results = laptop.run("torchx", "forge", "results", handle, "--metric", "score", "--csv", str(tmp_path / "r.csv"))
    assert results.returncode == 0 and "lap (" in results.stdout and ": 9 run(s)" in results.stdout, results.stderr
    with open(tmp_path / "r.csv", newline="") as f:  # written on the laptop
        rows = list(csv.DictReader(f))
    assert sorted((r["run.args.x"], r["score"], r["run.args.msg"]) for r in rows) == sorted(
        (str(x), str(x), m) for x in range(3) for m in HOSTILE), rows
    assert laptop.slurm_calls() == []


def test_cancel_and_a_followed_log_from_a_laptop(laptop, tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "slow.sh").write_text("i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done\n")
    run = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", f"login=forge-lab,python={sys.executable}",
                     "utils.sh", "sh", "slow.sh", cwd=ws, timeout=300)
    assert run.returncode == 0, run.stderr
    handle = run.stdout.strip().splitlines()[-1]
    wait_state(laptop, handle, states=("RUNNING",))
    t0 = time.monotonic()
    follow = laptop.run("timeout", "20", str(laptop.python), "-c", (
        "import sys\nfrom torchx.runner import get_runner\n"
        f"it = get_runner().log_lines({handle!r}, 'sh', 0, should_tail=True)\n"
        "for line in it:\n    print(line, flush=True)\n    if 'tick 3' in line: break\n"))
    assert "tick 3" in follow.stdout, follow.stdout + follow.stderr
    assert time.monotonic() - t0 < 20
    assert laptop.run("torchx", "cancel", handle).returncode == 0
    assert wait_state(laptop, handle) == "CANCELLED"
    assert laptop.slurm_calls() == []


def test_a_login_that_cannot_be_used_is_one_line_and_nothing_is_submitted(laptop, tmp_path: Path):
    lab = laptop.lab
    port = re.search(r"Port (\d+)", lab.ssh_config.read_text()).group(1)
    common = f"  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentitiesOnly yes\n  BatchMode yes\n  GlobalKnownHostsFile /dev/null\n"
    (laptop.home / ".ssh" / "config").write_text(  # an Include inside a Host block would belong to that host
        f"Include {lab.ssh_config}\n"
        f"Host lab-newkey\n{common}  IdentityFile {lab.dir}/id_ed25519\n  UserKnownHostsFile {tmp_path}/empty_known_hosts\n"
        f"Host lab-nokey\n{common}  IdentityFile {tmp_path}/no_such_key\n  UserKnownHostsFile {lab.known_hosts}\n"
        f"Host lab-closed\n  HostName 127.0.0.1\n  Port 1\n  BatchMode yes\n")
    for cfg, says in [("login=no-such-host-forge", "no such host"),
                      ("login=lab-newkey", "host key is unknown"),
                      ("login=lab-nokey", "authentication failed"),
                      ("login=lab-closed", "does not answer"),
                      ("login=-oProxyCommand=x", "not an SSH destination"),
                      ("login=forge-lab,python=/nonexistent/python3", "has no Python at '/nonexistent/python3'"),
                      ("login=forge-lab,python=/usr/bin/python3", "has no torchx-forge in /usr/bin/python3")]:
        p = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", cfg, "utils.echo", "--msg", "hi")
        assert p.returncode != 0
        assert "Traceback" not in p.stderr and says in p.stderr, (cfg, p.stderr)
        assert len([line for line in p.stderr.splitlines() if "error" in line]) == 1, p.stderr
    log = laptop.run("torchx", "log", "slurm_forge://torchx/12@lab-nokey/sh/0")  # a stream says it too, not nothing
    assert log.returncode != 0 and "authentication failed" in log.stderr and "Traceback" not in log.stderr, log.stderr
    assert laptop.slurm_calls() == []


PIPELINE = """\
name: {name}
stages:
  prep: {{run: {{command: [sh, -c, "echo prepared"]}}}}
  train: {{after: [prep], run: {{command: [sh, -c, "echo trained"]}}}}
  report: {{after: [train], run: {{command: [sh, -c, "echo reported"]}}}}
"""


def slow_python(root: Path) -> Path:
    """The cluster's interpreter behind a wrapper whose sbatch waits 2 s first: a submission that
    takes long enough to cut its connection halfway (a fault in front of the real command)."""
    faults = root / "faults"
    faults.mkdir()
    (faults / "sbatch").write_text(f"#!/bin/sh\necho \"$*\" >> {faults}/sbatch.log\nsleep 2\nexec /usr/bin/sbatch \"$@\"\n")
    wrapper = root / "python3"
    wrapper.write_text(f"#!/bin/sh\nPATH={faults}:$PATH exec {sys.executable} \"$@\"\n")
    for f in (faults / "sbatch", wrapper):
        f.chmod(0o755)
    return wrapper


def test_a_connection_cut_during_a_pipeline_submission_leaves_one_app_and_the_next_command_says_so(laptop, tmp_path: Path):
    name = f"cut{uuid.uuid4().hex[:8]}"  # its records are found by it among every app of the cluster's state dir
    (tmp_path / "pipe.yaml").write_text(PIPELINE.format(name=name))
    python = slow_python(tmp_path)
    ws = tmp_path / "ws"  # the workspace: not tmp_path, where the laptop's own files change
    ws.mkdir()
    run = subprocess.Popen(
        [str(laptop.python), "-m", "torchx.cli.main", "run", "--scheduler", "slurm_forge", "-cfg",
         f"login=forge-lab,python={python}", "forge.pipeline", "--config", str(tmp_path / "pipe.yaml")],
        cwd=ws, env=laptop.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "faults" / "sbatch.log"

    def under_way() -> bool:
        if run.poll() is not None:
            raise AssertionError(f"the submission ended before its connection was cut: {run.communicate()}")
        return log.exists() and len(log.read_text().splitlines()) >= 2

    wait_for(under_way, 120, "the submission to be under way")
    closed = laptop.run(str(laptop.python), "-c", "from torchx_forge.remote.ssh import Login; Login('forge-lab').close()")
    assert closed.returncode == 0, closed.stderr
    out, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "Traceback" not in err, err
    assert "may have gone through" in err and "torchx list" in err, err

    said: List[str] = []

    def listed() -> bool:
        p = laptop.run("torchx", "list", "-s", "slurm_forge")
        said.append(p.stdout + p.stderr)
        return "went through" in said[-1]

    wait_for(listed, 180, "the laptop to learn what became of the submission", interval=3)
    handle = re.search(r"slurm_forge://torchx/\S+@forge-lab", said[-1]).group(0)
    assert wait_state(laptop, handle) == "SUCCEEDED"
    again = laptop.run("torchx", "list", "-s", "slurm_forge").stdout + laptop.run("torchx", "list", "-s", "slurm_forge").stderr
    assert "went through" not in again and handle.rsplit("/", 1)[1] in again, again  # said once
    records = [p for p in Path.home().joinpath(".torchx_forge", "apps").glob("*/record.json") if f'"name": "{name}"' in p.read_text()]
    assert len(records) == 1, records  # submitted once
    held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r %j"], capture_output=True, text=True).stdout
    assert name not in held, held
    assert laptop.slurm_calls() == []


def test_a_named_cluster_reaches_its_login_and_a_second_laptop_reads_its_apps(laptop, tmp_path: Path):
    conf = f"[slurm_forge.cluster.lab]\nlogin = forge-lab\npython = {sys.executable}\n"
    (laptop.home / ".torchxconfig").write_text(conf)
    ws = tmp_path / "ws"
    ws.mkdir()
    run = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", "cluster=lab", "utils.echo", "--msg", "hi there",
                     cwd=ws)
    assert run.returncode == 0, run.stderr
    handle = run.stdout.strip().splitlines()[-1]
    assert handle.endswith("@forge-lab"), run.stdout
    assert wait_state(laptop, handle) == "SUCCEEDED"

    from remote.conftest import Laptop
    other = Laptop(tmp_path / "other", laptop.lab, laptop.python)
    (other.home / ".torchxconfig").write_text(conf)
    status = other.run("torchx", "status", handle)
    assert "State: SUCCEEDED" in status.stdout, status.stdout + status.stderr
    assert "hi there" in other.run("torchx", "log", f"{handle}/echo/0").stdout
    assert laptop.slurm_calls() == [] and other.slurm_calls() == []


@pytest.mark.slow
def test_dist_ddp_2x2_from_a_laptop_trains_across_two_nodes_from_its_snapshot(ddp_slot: None, laptop, tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    script = (REPO / "examples" / "ddp_train.py").read_text()
    (ws / "train_here.py").write_text(script)  # a script the cluster has never seen: it arrives in the snapshot
    run = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", f"login=forge-lab,python={sys.executable}",
                     "dist.ddp", "-j", "2x2", "--script", "train_here.py", "--", "--steps", "20", "--step-seconds", "0.1",
                     cwd=ws, timeout=300)
    assert run.returncode == 0, run.stderr
    handle = run.stdout.strip().splitlines()[-1]
    assert wait_state(laptop, handle, timeout=420) == "SUCCEEDED"
    status = laptop.run("torchx", "status", handle).stdout
    hosts = {line.split()[4] for line in status.splitlines() if re.match(r"\s*train_here\[\d\]\s", line)}
    assert len(hosts) == 2, status  # two different virtual nodes
    log = laptop.run("torchx", "log", handle).stdout
    assert "world_size=4" in log, log
    assert str(ws) not in log and "/snapshots/" in laptop.run("torchx", "run", "--dryrun", "--scheduler", "slurm_forge",
        "-cfg", f"login=forge-lab,python={sys.executable}", "dist.ddp", "-j", "2x2", "--script", "train_here.py",
        cwd=ws).stdout
    assert laptop.slurm_calls() == []


def test_a_secret_arrives_on_the_nodes_and_is_on_no_command_line_and_masked_in_dry_runs(laptop, tmp_path: Path):
    secret = "s3cr3t-value-$(x)"
    argv = ["--scheduler", "slurm_forge", "-cfg", f"login=forge-lab,python={sys.executable}", "utils.sh",
            "--env", f"WANDB_API_KEY={secret}", "sh", "-c", "printf %s \"$WANDB_API_KEY\" | sha256sum"]
    ws = tmp_path / "ws"
    ws.mkdir()
    dry = laptop.run("torchx", "run", "--dryrun", *argv, cwd=ws)
    assert dry.returncode == 0 and secret not in dry.stdout + dry.stderr and "****" in dry.stdout, dry.stdout + dry.stderr
    run = laptop.run("torchx", "run", *argv, cwd=ws)
    assert run.returncode == 0, run.stderr
    handle = run.stdout.strip().splitlines()[-1]
    assert wait_state(laptop, handle) == "SUCCEEDED"
    assert hashlib.sha256(secret.encode()).hexdigest() in laptop.run("torchx", "log", f"{handle}/sh/0").stdout
    lines = laptop.ssh_lines()
    assert "torchx_forge.agent" in lines and secret not in lines and "s3cr3t" not in lines, lines
    assert laptop.slurm_calls() == []


def test_of_two_clusters_behind_their_own_logins_the_app_goes_where_it_starts_soonest(fault_cluster, laptop,
                                                                                      tmp_path: Path):
    """The fault cluster (its own controller and slurmdbd: no ``sbatch -M a,b`` between it and the main
    one) plays a second cluster behind a second login: its interpreter is told its slurm.conf."""
    other = tmp_path / "python-faults"
    other.write_text(f"#!/bin/sh\nSLURM_CONF={fault_cluster.conf} exec {sys.executable} \"$@\"\n")
    other.chmod(0o755)
    port = re.search(r"Port (\d+)", laptop.lab.ssh_config.read_text()).group(1)
    with (laptop.home / ".ssh" / "config").open("a") as f:  # a second login: another Host, the same loopback sshd
        f.write(f"Host forge-lab-2\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {laptop.lab.dir}/id_ed25519\n"
                f"  IdentitiesOnly yes\n  BatchMode yes\n  UserKnownHostsFile {laptop.lab.known_hosts}\n"
                "  GlobalKnownHostsFile /dev/null\n")
    (laptop.home / ".torchxconfig").write_text(
        f"[slurm_forge.cluster.busy]\nlogin = forge-lab-2\npython = {other}\nstate_dir = {tmp_path}/busy-state\n\n"
        f"[slurm_forge.cluster.idle]\nlogin = forge-lab\npython = {sys.executable}\n")
    env = {**os.environ, "SLURM_CONF": str(fault_cluster.conf)}
    fillers = [subprocess.run(["sbatch", "--parsable", "-N1", "--exclusive", "--time=10", "-o", "/dev/null", "--wrap",
                               "sleep 600"], capture_output=True, text=True, env=env, check=True).stdout.strip()
               for _ in fault_cluster.nodes]
    try:
        wait_for(lambda: subprocess.run(["squeue", "-h", "-t", "R", "-j", ",".join(fillers)], capture_output=True,
                                        text=True, env=env).stdout.count("\n") == len(fillers), 60, "the fillers to run")
        ws = tmp_path / "ws"
        ws.mkdir()
        run = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", "cluster=busy,idle", "utils.echo",
                         "--msg", "soonest", cwd=ws)
        assert run.returncode == 0, run.stderr
        assert "submitting to idle, the soonest" in run.stderr and "busy (forge-lab-2)" in run.stderr, run.stderr
        handle = run.stdout.strip().splitlines()[-1]
        assert handle.endswith("@forge-lab"), handle
        assert wait_state(laptop, handle) == "SUCCEEDED"
    finally:
        subprocess.run(["scancel", *fillers], env=env, check=False)
    assert laptop.slurm_calls() == []
