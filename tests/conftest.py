"""Shared fixtures.

Unit tests (tests/unit) need nothing. Tests in tests/cluster submit real jobs to the local
clusters (``scripts/local-slurm up --clusters 3``); if those are not up they fail with that hint
rather than skip, so a run cannot pass without having run them. Tests of state dirs on ``s3://``
start moto's S3 API server on loopback themselves (:class:`S3Server`, the ``s3_server`` fixture)
and fail, not skip, when moto or s3fs is missing.

The suite runs side by side (pytest-xdist, ``-n``/``--dist loadgroup`` in pyproject.toml):
- tests that stop daemons, switch accounting off or preempt use the ``fault_cluster`` fixture:
  they run one at a time (xdist group ``faults``) on the fault cluster, which has its own
  slurmctld, slurmdbd and database, so no other test sees the fault;
- tests that fill a cluster (a thousand tasks, a full job table, a node set down) use the
  ``flood_cluster`` fixture: one at a time (group ``floods``) on a cluster of their own;
- tests that use the capped QOS (its limit counts every job of the user) run one at a time
  (group ``qos``), and so do the real DDP runs (group ``ddp``: PyTorch takes the CPUs);
- every other cluster test only looks at its own jobs and its own state dir.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
#: the torchx of the interpreter running the tests (a second venv's, in .ci/run), else the one on PATH
_OWN_TORCHX = os.path.join(os.path.dirname(sys.executable), "torchx")
TORCHX = _OWN_TORCHX if os.access(_OWN_TORCHX, os.X_OK) else (shutil.which("torchx") or _OWN_TORCHX)


def _cluster_up() -> Optional[str]:
    """None when the cluster Slurm commands go to ($SLURM_CONF) has a usable node, else why not."""
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        return f"sinfo unavailable: {e}"
    if p.returncode != 0:
        return p.stderr.strip()
    bad = ("down", "drain", "drng", "fail", "unk", "inval", "maint")
    if not any(not s.rstrip("*~#$@").startswith(bad) and not s.endswith("*") for s in p.stdout.split()):
        return f"no usable node: {p.stdout.split()}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    problem = _cluster_up()
    if problem:
        pytest.fail(f"the local Slurm cluster is not up ({problem}); run `scripts/local-slurm up --clusters 3`")


#: the second local cluster (``scripts/local-slurm up --clusters 2``), in the same slurmdbd as the first
SECOND_CLUSTER = "forge2"


@pytest.fixture(scope="session")
def second_cluster() -> None:
    p = subprocess.run(["sinfo", "-M", SECOND_CLUSTER, "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0 or "idle" not in p.stdout and "mix" not in p.stdout and "alloc" not in p.stdout:
        pytest.fail(f"the second cluster {SECOND_CLUSTER} is not up ({(p.stderr or p.stdout).strip()});"
                    " run `scripts/local-slurm up --clusters 3`")


@dataclass(frozen=True)
class LabCluster:
    """A cluster of the lab only some tests use (``scripts/local-slurm up --clusters 3``), each the
    shape of ``forge`` (three nodes, partitions debug, high and solo). A test reaches it through
    ``SLURM_CONF`` (set by its fixture) and the tests of one cluster run one at a time (its xdist
    group), so what they do to it reaches no other test."""

    name: str
    nodes: tuple
    slurmdbd_pid: str = "/run/slurmdbd.pid"  # faults has a slurmdbd (and database) of its own

    @property
    def conf(self) -> str:
        return f"/etc/slurm/{self.name}/slurm.conf"

    @property
    def slurmctld_pid(self) -> str:
        return f"/run/slurmctld-{self.name}.pid"

    def up(self, *options: str) -> subprocess.CompletedProcess:
        """``scripts/local-slurm up --only NAME [options]``: start what is not running, resume nodes (checked)."""
        p = subprocess.run([str(REPO / "scripts" / "local-slurm"), "up", "--only", self.name, *options],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def use(self, monkeypatch: pytest.MonkeyPatch) -> LabCluster:
        """Send every Slurm command of the test (its own, the torchx CLI's, the jobs') to this cluster."""
        monkeypatch.setenv("SLURM_CONF", self.conf)
        problem = _cluster_up()
        if problem:
            self.up()  # a test before this one may have left it down
            problem = _cluster_up()
        if problem:
            pytest.fail(f"the {self.name} cluster is not up ({problem}); run `scripts/local-slurm up --clusters 3`")
        return self


#: daemons stopped (slurmctld, its own slurmdbd), accounting off, a partition that preempts
FAULTS = LabCluster("faults", ("f1", "f2", "f3"), slurmdbd_pid="/run/slurmdbd-faults.pid")
#: a thousand tasks, a full job table, a hundred apps at once, a node set down
FLOODS = LabCluster("floods", ("g1", "g2", "g3"))


@pytest.fixture
def fault_cluster(monkeypatch: pytest.MonkeyPatch) -> LabCluster:
    """The fault cluster, for tests that stop its daemons, switch its accounting off or preempt its jobs."""
    return FAULTS.use(monkeypatch)


@pytest.fixture
def flood_cluster(monkeypatch: pytest.MonkeyPatch) -> LabCluster:
    """The flood cluster, for tests that fill a cluster's queue, nodes or job table."""
    return FLOODS.use(monkeypatch)


#: the xdist groups (``--dist loadgroup``): tests of one group run one after the other, on one worker
SERIAL_GROUPS = {"fault_cluster": "faults", "flood_cluster": "floods", "capped_qos": "qos", "ddp_slot": "ddp"}


@pytest.fixture
def capped_qos() -> str:
    """The capped QOS the wave tests submit under; its limit counts every job of the user in it, so
    the tests that use it run one at a time (xdist group ``qos``)."""
    return "cap100"


@pytest.fixture
def ddp_slot() -> None:
    """Real DDP runs (torchrun and four PyTorch processes each) take the 2 CPUs for a while: one at
    a time (xdist group ``ddp``), so that their steps keep a pace the tests can wait for."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Mark tests/cluster as ``slurm``; put the tests of each serial group (SERIAL_GROUPS) in its
    xdist group; order the collection so the longest chains start first (xdist hands out work in
    this order): the groups, then tests marked ``slow``, then the other cluster tests, then unit tests."""
    # tests of what only TorchX main has (.ci/nightly runs them there): deselected, not skipped
    other_torchx = [i for i in items if not all(m.kwargs["available"] for m in i.iter_markers("torchx_main"))]
    if other_torchx:
        config.hook.pytest_deselected(items=other_torchx)
        items[:] = [i for i in items if i not in other_torchx]
    for item in items:
        if item.nodeid.startswith("tests/cluster/"):
            item.add_marker(pytest.mark.slurm)
        for fixture, group in SERIAL_GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("xdist_group"):
            return 0
        if item.get_closest_marker("slow"):
            return 1
        return 2 if item.get_closest_marker("slurm") else 3

    items.sort(key=rank)  # stable: the file order stays within each rank


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state dir for this test, also seen by the torchx CLI subprocesses."""
    d = tmp_path / "state"
    monkeypatch.setenv("FORGE_STATE_DIR", str(d))
    return d


def run_torchx(*args: str, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real ``torchx`` CLI; returns the completed process (text mode)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [TORCHX, *args], cwd=str(cwd or REPO), env=full_env, capture_output=True, text=True, timeout=timeout
    )


def handle_of(p: subprocess.CompletedProcess) -> str:
    """The app handle `torchx run` printed on stdout."""
    for line in p.stdout.splitlines():
        if line.startswith("slurm_forge://"):
            return line.strip()
    raise AssertionError(f"no app handle in output:\nstdout:{p.stdout}\nstderr:{p.stderr}")


def wait_for(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll ``pred`` until it holds. A predicate that runs a command (a torchx CLI takes about half a
    CPU second) is polled about a third of the time, with at most 2.5 s between polls: tests run
    side by side on 2 CPUs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t0 = time.monotonic()
        if pred():
            return
        time.sleep(max(interval, min(2 * (time.monotonic() - t0), 2.5)))
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def warn_batch(job: str, sig: str = "USR1") -> None:
    """Send ``sig`` to the job's batch shell once: the path a real pre-timeout warning takes.

    Slurm 22.05's ``scancel --signal`` of a job of an array that still has pending tasks delivers the
    signal, is told "Job is in transitional state", and sends it again every 5-10 s for about a
    minute: every next attempt of a requeued task would be warned too. So scancel is stopped at
    its first "retrying"."""
    p = subprocess.Popen(["scancel", "-v", "--batch", f"--signal={sig}", job], stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    err = []
    for line in p.stderr:
        err.append(line)
        if "transitional state, retrying" in line:  # delivered: do not let it come again
            p.kill()
            p.wait()
            return
    assert p.wait() == 0, f"scancel --signal={sig} {job}: {''.join(err)}"


def squeue_ids() -> List[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


def queued_jobs_of(state_dir: Path, clusters: str = "") -> List[str]:
    """Ids of the queued or running jobs that write their output under ``state_dir``: this test's
    own, since every job forge submits (the app's, its guard, companions and wave jobs) logs there
    unless ``log_dir`` says otherwise (then pass the test's tmp_path, which holds both). Tests run
    side by side, so the queue as a whole says nothing about one test. ``clusters``: ``-M`` for
    squeue (default: the cluster $SLURM_CONF names)."""
    argv = ["squeue", "-h", "-O", "JobID:40,StdOut:4096", *(["-M", clusters] if clusters else [])]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rows = (line.split(None, 1) for line in out.splitlines())
    return [r[0] for r in rows if len(r) == 2 and r[1].strip().startswith(str(state_dir))]


def job_gone_from_squeue(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i", "-j", job_id], capture_output=True, text=True)
    return out.returncode != 0 or not out.stdout.strip()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def app_state(handle: str) -> str:
    """The `State:` of `torchx status HANDLE` ("?" when there is none)."""
    m = re.search(r"State: (\w+)", run_torchx("status", handle).stdout)
    return m.group(1) if m else "?"


def state_in_process(handle: str) -> str:
    """The app's state from the Runner API in this process ("?" when there is none yet)."""
    from torchx.runner import get_runner

    with get_runner() as runner:
        status = runner.status(handle)
    return status.state.name if status is not None else "?"


def ledger_lines(path: Path) -> int:
    """Lines the example training (examples/train_steps.py --ledger) has written: one per step, before
    the step's checkpoint. Tests wait on it, a local file, rather than on the log through the CLI."""
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def wait_end(handle: str, timeout: float = 240, states: tuple = ("SUCCEEDED", "FAILED", "CANCELLED")) -> str:
    """Wait until the app reaches one of ``states``; returns the state `torchx status` then prints.

    The polls go through the Runner API in this process (the same scheduler code as the CLI, without
    starting an interpreter every 2 s: tests run side by side on 2 CPUs); the answer returned, and
    the one that ends the wait, come from the real `torchx status`."""
    def reached() -> bool:
        return state_in_process(handle) in states and app_state(handle) in states

    try:
        wait_for(reached, timeout, f"{handle} to reach {states}", interval=2)
    except AssertionError as e:  # what the app looked like: the failure is read from CI's output alone
        raise AssertionError(f"{e}; its status:\n{run_torchx('status', handle).stdout}") from None
    return app_state(handle)


def task_row(handle: str, task: str) -> List[str]:
    """The words of the forge table row of ``task`` (e.g. ``train[1]``) in `torchx status`."""
    out = run_torchx("status", handle).stdout
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [task])


# -- an S3 API server on loopback (moto's server mode) -------------------------------------------


class S3Server:
    """moto's S3 API server on a free loopback port, for state dirs on ``s3://`` (tests/moto_s3.py).

    moto keeps objects in memory only, so its recorder is on: every request is appended to a file
    before it is handled. :meth:`kill` is a real ``SIGKILL`` (clients see connections refused);
    :meth:`start` after it starts a new server on the same port that replays the recorded writes
    before it listens, so it comes back with everything it had acknowledged, as a real object
    store does after an outage.
    """

    def __init__(self, workdir: Path, bucket: str = "forge-test") -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.recording = workdir / "moto-recording.jsonl"
        self.log = workdir / "moto.log"
        self.proc: Optional[subprocess.Popen] = None

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def _answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    def start(self) -> None:
        """Start the server (again), with everything it held before it was killed (tests/moto_s3.py
        replays the logged writes before it listens: no client sees it half restored)."""
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "moto_s3.py"), "--port", str(self.port),
                                      "--recording", str(self.recording)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_for(self._answers, 120, f"moto's S3 server on port {self.port}", interval=0.2)

    def kill(self) -> None:
        """SIGKILL: the endpoint refuses connections until :meth:`start`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fs(self):
        """A fresh s3fs client (no cached listings) on the server."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


#: what the S3 tests' credentials are, distinctive enough to search every record for
S3_KEY_ID = "AKIAFORGETEST" + uuid.uuid4().hex[:8].upper()
S3_SECRET = "forge-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """moto's S3 API server for the whole session, found by every client (this process, the torchx
    CLI subprocesses and, through sbatch's environment, the jobs) through the usual AWS_* variables."""
    missing = [m for m in ("moto", "s3fs", "flask") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the S3 tests need {', '.join(missing)}: pip install -e '.[s3,test]'")
    workdir = tmp_path_factory.mktemp("s3")
    server = S3Server(workdir)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN")}
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET,
                      AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    server.start()
    try:
        server.fs().mkdir(server.bucket)
        yield server
    finally:
        server.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_state(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh state dir on the S3 server for this test (``s3://forge-test/<id>/state``), seen by the CLI and the jobs."""
    if not s3_server.running:  # a test that killed it and failed before starting it again
        s3_server.start()
    url = s3_server.url(f"{uuid.uuid4().hex[:12]}/state")
    monkeypatch.setenv("FORGE_STATE_DIR", url)
    return url
