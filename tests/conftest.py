"""Shared fixtures.

Unit tests need nothing. Tests marked ``slurm`` submit real jobs to the local
cluster (``scripts/local-slurm up``); if it is not up they fail with that hint
rather than skip, so a CI run cannot pass without having run them. Tests of
state dirs on ``s3://`` start moto's S3 API server on loopback themselves
(:class:`S3Server`, the ``s3_server`` fixture) and fail, not skip, when moto or
s3fs is missing (``pip install -e '.[s3,test]'``).
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
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
#: the torchx of the interpreter running the tests (a second venv's, in .ci/run), else the one on PATH
_OWN_TORCHX = os.path.join(os.path.dirname(sys.executable), "torchx")
TORCHX = _OWN_TORCHX if os.access(_OWN_TORCHX, os.X_OK) else (shutil.which("torchx") or _OWN_TORCHX)


def _cluster_up() -> Optional[str]:
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
        pytest.fail(f"the local Slurm cluster is not up ({problem}); run `scripts/local-slurm up`")


#: the second local cluster (``scripts/local-slurm up --clusters 2``), in the same slurmdbd as the first
SECOND_CLUSTER = "forge2"


@pytest.fixture(scope="session")
def second_cluster() -> None:
    p = subprocess.run(["sinfo", "-M", SECOND_CLUSTER, "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0 or "idle" not in p.stdout and "mix" not in p.stdout and "alloc" not in p.stdout:
        pytest.fail(f"the second cluster {SECOND_CLUSTER} is not up ({(p.stderr or p.stdout).strip()});"
                    " run `scripts/local-slurm up --clusters 2`")


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
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def squeue_ids() -> List[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


def job_gone_from_squeue(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i", "-j", job_id], capture_output=True, text=True)
    return out.returncode != 0 or not out.stdout.strip()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def app_state(handle: str) -> str:
    """The `State:` of `torchx status HANDLE` ("?" when there is none)."""
    m = re.search(r"State: (\w+)", run_torchx("status", handle).stdout)
    return m.group(1) if m else "?"


def wait_end(handle: str, timeout: float = 240, states: tuple = ("SUCCEEDED", "FAILED", "CANCELLED")) -> str:
    """Poll `torchx status` until the app reaches one of ``states``; returns it."""
    wait_for(lambda: app_state(handle) in states, timeout, f"{handle} to reach {states}", interval=2)
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
