"""The laptop-over-SSH lab itself (tests/remote/conftest.py): the laptop reaches the real Slurm lab
through ``ssh forge-lab`` only, runs no Slurm command of its own, and trusts only the lab's host key."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def test_laptop_reaches_slurm_over_ssh_only(laptop) -> None:
    p = laptop.ssh("hostname")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == socket.gethostname()

    p = laptop.ssh("sinfo", "-h", "-o", "%P")  # the login side: the default /etc/slurm/slurm.conf (forge)
    assert p.returncode == 0, p.stderr
    assert "debug*" in p.stdout.split()
    assert laptop.slurm_calls() == []

    p = laptop.run("sbatch", "--wrap", "true")
    assert p.returncode == 127
    assert "not on this laptop" in p.stderr
    assert laptop.slurm_calls() == ["sbatch --wrap true"]


def test_laptop_has_its_own_python(laptop) -> None:
    p = laptop.run("python3", "-c", "import sys, torchx, torchx_forge; print(sys.executable)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(laptop.python.parent / "python3")
    assert p.stdout.strip() != sys.executable


def test_unknown_or_changed_host_key_fails(laptop, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    p = laptop.run("ssh", "-o", f"UserKnownHostsFile={empty}", laptop.lab.alias, "true")
    assert p.returncode == 255
    assert "Host key verification failed" in p.stderr

    other = tmp_path / "other_host_key"
    assert laptop.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)).returncode == 0
    wrong = tmp_path / "known_hosts_wrong"
    key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    wrong.write_text(f"[127.0.0.1]:{laptop.lab.port} {key}\n")
    p = laptop.run("ssh", "-o", f"UserKnownHostsFile={wrong}", laptop.lab.alias, "true")
    assert p.returncode == 255
    assert "Host key verification failed" in p.stderr
