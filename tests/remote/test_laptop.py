"""Every verb from a laptop that has no Slurm: the lab reached through the loopback sshd only.

The laptop (tests/remote/conftest.py) has its own HOME, its own Python and failing stand-ins of
every Slurm command first on its PATH; each test ends by asserting none of them ran.
"""

from __future__ import annotations

import base64
import re
import sys
import time
from pathlib import Path
from typing import List

import pytest

from conftest import wait_for

pytestmark = [pytest.mark.slurm]

#: the values of a sweep axis that a shell would take apart, run or expand: each must arrive as written
HOSTILE = ["$(touch /tmp/forge-pwned)", "`touch /tmp/forge-pwned`", "a b;c", "it's \"quoted\"", "é ü ✓", "$HOME *"]

TRAIN = """\
#!/bin/sh
# a run of the laptop's sweep (sh train.sh --x X --msg M): the snapshot's version, its axis values (base64: exact bytes)
while [ $# -gt 0 ]; do case "$1" in --x) x=$2;; --msg) msg=$2;; esac; shift 2; done
echo "run x=$x version=$(cat version.txt) msg=$(printf '%s' "$msg" | base64 -w0)"
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
    axes = f"x=range(0,3);msg={HOSTILE[:3]!r}".replace("'", '"')
    run = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", f"login=forge-lab,python={sys.executable}",
                     "forge.grid", "--name", "lap", "--axes", axes, "--", "sh", "train.sh", cwd=ws, timeout=300)
    assert run.returncode == 0, run.stderr
    handle = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"slurm_forge://torchx/\d+@forge-lab", handle), run.stdout
    assert wait_state(laptop, handle) == "FAILED"  # the three runs of x=2 fail on purpose

    # each value arrived byte for byte, nothing was run or expanded, the excluded data stayed home
    status = laptop.run("torchx", "status", handle).stdout
    assert status.count("COMPLETED") == 6 and "FAILED" in status, status
    for k in range(9):
        log = laptop.run("torchx", "log", f"{handle}/lap/{k}").stdout
        m = re.search(r"run x=(\d) version=(\S+) msg=(\S*)", log)
        assert m and m.group(2) == "v1", log
        assert base64.b64decode(m.group(3)).decode() in HOSTILE[:3], log
    assert not Path("/tmp/forge-pwned").exists()

    listed = laptop.run("torchx", "list", "-s", "slurm_forge").stdout
    assert handle.rsplit("/", 1)[1] in listed, listed

    # the laptop's script changes; the retry runs the snapshot the app was submitted with
    (ws / "version.txt").write_text("v2\n")
    fail.unlink()
    retried = laptop.run("torchx", "forge", "retry", handle)
    assert retried.returncode == 0, retried.stderr
    assert wait_state(laptop, handle) == "SUCCEEDED"
    again = laptop.run("torchx", "log", f"{handle}/lap/2").stdout
    assert "version=v1" in again and "version=v2" not in again, again
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
    for cfg, says in [("login=no-such-host-forge", "no-such-host-forge"),
                      ("login=forge-lab,python=/nonexistent/python3", "/nonexistent/python3")]:
        p = laptop.run("torchx", "run", "--scheduler", "slurm_forge", "-cfg", cfg, "utils.echo", "--msg", "hi")
        assert p.returncode != 0
        assert "Traceback" not in p.stderr and says in p.stderr, p.stderr
    assert laptop.slurm_calls() == []
