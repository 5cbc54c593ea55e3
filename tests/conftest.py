"""Shared fixtures.

Unit tests need nothing. Tests marked ``slurm`` submit real jobs to the local
cluster (``scripts/local-slurm up``); if it is not up they fail with that hint
rather than skip, so a CI run cannot pass without having run them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
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
