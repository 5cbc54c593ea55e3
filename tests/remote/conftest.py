"""Fixtures for tests of "launch from a laptop over SSH": a process with no Slurm of its own reaches
the local Slurm lab only through ``ssh``.

- ``sshd_lab`` (session): a real OpenSSH server on loopback (``scripts/local-sshd up --dir
  /tmp/forge-sshd``), one for every xdist worker: the first to get the file lock starts it, the
  others find it running; it is left running after the session. Its Host alias is ``forge-lab``
  (key auth, host key checked against its own known_hosts).
- ``laptop`` (function): a :class:`Laptop`, the environment of a laptop: its own HOME whose
  ``~/.ssh/config`` includes the lab's ssh_config, its own Python (a virtualenv at
  /tmp/forge-laptop-venv, not the cluster's ``sys.executable``), and a PATH whose first entry holds
  failing stand-ins of the Slurm commands (sbatch, squeue, ...): each records its argv
  (:meth:`Laptop.slurm_calls`) and exits 127, so a test sees any Slurm command run on the laptop
  side instead of through ssh. OpenSSH reads ``~/.ssh/config`` from the passwd entry, not $HOME, so
  ``ssh``, ``scp`` and ``sftp`` in that first PATH entry are wrappers that pass ``-F
  $HOME/.ssh/config`` (a ``-F`` of the caller's comes later and wins). No SLURM_CONF, FORGE_STATE_DIR, SSH_AUTH_SOCK or anything else of
  the test process reaches it (PYTHONPATH excepted: the laptop runs the code under test).

    def test_x(laptop):
        assert laptop.ssh("sinfo", "-h").returncode == 0
        p = laptop.run("torchx", "status", handle, env={"FORGE_STATE_DIR": "..."})
        assert laptop.slurm_calls() == []
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from conftest import REPO

SSHD_DIR = Path("/tmp/forge-sshd")
LAPTOP_VENV = Path("/tmp/forge-laptop-venv")
#: held around starting the sshd and making the venv: xdist workers start their sessions at once
LOCK = Path("/tmp/forge-sshd.lock")
ALIAS = "forge-lab"
#: Slurm's client commands (and munge): on the laptop each is a stand-in that fails
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo", "sacctmgr", "srun", "salloc", "munge")


@contextmanager
def _locked() -> Iterator[None]:
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class SshdLab:
    """The loopback sshd: ``dir`` holds its keys and configs, ``ssh_config`` has the Host ``alias``."""

    dir: Path
    port: int
    alias: str = ALIAS

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"


def _laptop_venv() -> Path:
    """The laptop's interpreter: a virtualenv over the system site (torchx, pyyaml, fsspec, torchx-forge),
    made once; ``.complete`` marks it whole (a worker killed while making it leaves none)."""
    python = LAPTOP_VENV / "bin" / "python"
    if not (LAPTOP_VENV / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--system-site-packages", str(LAPTOP_VENV)],
                       check=True, capture_output=True, timeout=300)
        (LAPTOP_VENV / ".complete").touch()
    return python


@pytest.fixture(scope="session")
def sshd_lab() -> SshdLab:
    with _locked():
        p = subprocess.run([str(REPO / "scripts" / "local-sshd"), "up", "--dir", str(SSHD_DIR)],
                           capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        pytest.fail(f"scripts/local-sshd up failed:\n{p.stdout}{p.stderr}")
    return SshdLab(SSHD_DIR, int(p.stdout.split()[-1]))


_STANDIN = """#!/bin/sh
# a stand-in of tests/remote/conftest.py: this laptop has no Slurm
echo "$(basename "$0") $*" >> '{called}'
echo "$(basename "$0"): not on this laptop (a stand-in of tests/remote/conftest.py: Slurm is reached over ssh)" >&2
exit 127
"""

#: OpenSSH finds ~/.ssh/config through getpwuid(), never $HOME: the laptop's clients are told it;
#: every command line they are given is kept (:meth:`Laptop.ssh_lines`: no secret may be on one)
_SSH_WRAPPER = """#!/bin/sh
printf '%s\\n' "{name} $*" >> '{log}'
exec /usr/bin/{name} -F "$HOME/.ssh/config" "$@"
"""


class Laptop:
    """A process with no Slurm: its own HOME, Python and PATH (stand-ins first); see the module docstring."""

    def __init__(self, root: Path, lab: SshdLab, python: Path) -> None:
        self.lab = lab
        self.python = python
        self.home = root / "home"
        self.standins = root / "standins"
        self.called = self.standins / "called"
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (ssh_dir / "config").write_text(f"Include {lab.ssh_config}\n")
        (ssh_dir / "config").chmod(0o600)
        self.standins.mkdir()
        for name in SLURM_COMMANDS:
            script = self.standins / name
            script.write_text(_STANDIN.format(called=self.called))
            script.chmod(0o755)
        for name in ("ssh", "scp", "sftp"):
            script = self.standins / name
            script.write_text(_SSH_WRAPPER.format(name=name, log=self.standins / "ssh.log"))
            script.chmod(0o755)

    @property
    def path(self) -> str:
        return f"{self.standins}:{self.python.parent}:/usr/bin:/bin"

    def environ(self, env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """The laptop's environment: built from nothing but HOME, PATH and a locale (plus ``env``)."""
        base = {"HOME": str(self.home), "PATH": self.path, "USER": os.environ.get("USER", "root"),
                "LOGNAME": os.environ.get("LOGNAME", "root"), "LANG": "C.UTF-8"}
        if os.environ.get("PYTHONPATH"):
            base["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return {**base, **(env or {})}

    def run(self, *argv: str, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``argv`` on the laptop (in its HOME unless ``cwd``); ``torchx`` is the laptop venv's."""
        args = list(argv)
        if args and args[0] == "torchx":
            script = self.python.parent / "torchx"
            args[:1] = [str(script)] if script.exists() else [str(self.python), "-m", "torchx.cli.main"]
        return subprocess.run(args, cwd=str(cwd or self.home), env=self.environ(env), capture_output=True,
                              text=True, timeout=timeout)

    def ssh(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``ssh forge-lab COMMAND...`` from the laptop."""
        return self.run("ssh", self.lab.alias, *command, timeout=timeout)

    def ssh_lines(self) -> str:
        """Every command line the laptop's ssh, scp and sftp were given, one per line."""
        try:
            return (self.standins / "ssh.log").read_text()
        except FileNotFoundError:
            return ""

    def slurm_calls(self) -> List[str]:
        """The Slurm commands run on the laptop side, one ``name args...`` line each ([] when none)."""
        try:
            return self.called.read_text().splitlines()
        except FileNotFoundError:
            return []


@pytest.fixture(scope="session")
def laptop_python() -> Path:
    """The laptop's interpreter (/tmp/forge-laptop-venv/bin/python), made once for all workers."""
    with _locked():
        return _laptop_venv()


@pytest.fixture
def laptop(sshd_lab: SshdLab, laptop_python: Path, tmp_path: Path) -> Laptop:
    return Laptop(tmp_path / "laptop", sshd_lab, laptop_python)
