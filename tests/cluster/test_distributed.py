"""Real distributed training on the virtual nodes (CPU PyTorch, gloo), and starters."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from conftest import REPO, handle_of, run_torchx, task_row, wait_end, wait_for, warn_batch

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]
try:
    import torch  # noqa: F401  the DDP tests run torchrun with it on the nodes
except ImportError:  # fail, not skip: `bash scripts/demo` installs it
    pytest.fail("the DDP tests need PyTorch: pip install torch==2.13.0 (the CPU build on disk)", pytrace=False)

DDP = str(REPO / "examples" / "ddp_train.py")


@pytest.mark.slow
def test_dist_ddp_2x2_trains_across_two_nodes(ddp_slot: None, state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "dist.ddp", "-j", "2x2", "--script", DDP, "--", "--steps", "20",
                   "--step-seconds", "0.1")
    handle = handle_of(p)
    assert wait_end(handle) == "SUCCEEDED"
    hosts = {task_row(handle, f"ddp_train[{i}]")[4] for i in (0, 1)}
    assert len(hosts) == 2, hosts  # two different virtual nodes
    log = run_torchx("log", handle).stdout
    assert "world_size=4" in log
    m = re.search(r"rendezvous=(\S+):(\d+)", log)
    assert m and m.group(1) in hosts and m.group(1) != "localhost"
    losses = [float(x) for x in re.findall(r"step \d+ loss ([0-9.]+)", log)]
    assert len(losses) == 20 and losses[-1] < losses[0] / 4  # the loss goes down


def started(job: str) -> bool:
    """True once every component of the heterogeneous job ``job`` is RUNNING (squeue lists one line each)."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.split()
    return bool(out) and set(out) == {"RUNNING"}


@pytest.mark.slow
def test_warned_ddp_run_resumes_with_every_step_once(ddp_slot: None, state_dir: Path, tmp_path: Path):
    ledger = tmp_path / "ledger"
    p = run_torchx("run", "--scheduler", "slurm_forge", "dist.ddp", "-j", "2x2", "--max_retries", "2", "--script", DDP,
                   "--", "--steps", "30", "--step-seconds", "0.5", "--ledger", str(ledger))
    handle = handle_of(p)
    job = handle.rsplit("/", 1)[1]
    # the queue (other tests hold nodes) and torch's cold import come first: wait for the start, then the steps
    wait_for(lambda: started(job), 600, f"job {job} to start on both nodes")
    wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 5, 180, "5 steps")
    warn_batch(job)
    assert wait_end(handle) == "SUCCEEDED"
    steps = Counter(int(line.split()[1]) for line in ledger.read_text().splitlines())
    assert sorted(steps) == list(range(1, 31)) and set(steps.values()) == {1}, steps
    attempts = {int(line.split()[3]) for line in ledger.read_text().splitlines()}
    assert attempts == {0, 1}
    log = run_torchx("log", handle).stdout
    assert "stopping at step" in log and "resuming from" in log
    assert "torchrun" not in log.split("stopping at step")[1].split("resuming from")[0] or "SignalException" not in log


@pytest.mark.slow
def test_sweep_of_two_node_ddp_runs_without_port_clashes(ddp_slot: None, state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(REPO / "examples" / "ddp_sweep.yaml"),
                   cwd=REPO / "examples")
    handle = handle_of(p)
    assert wait_end(handle, timeout=600) == "SUCCEEDED"
    log = run_torchx("log", handle).stdout
    rendezvous = set(re.findall(r"rendezvous=(\S+:\d+)", log))
    assert len(rendezvous) == 4, log  # one endpoint per run
    job = handle.rsplit("/", 1)[1]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,Start,End,NodeList", "-j", job], capture_output=True, text=True).stdout
    spans = [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for _, s, e, _ in (line.split("|") for line in out.split())]
    assert len(spans) == 4
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:]), spans  # ran together
    assert all("," in n or "[" in n for *_, n in (line.split("|") for line in out.split()))  # every run on 2 nodes


@pytest.mark.parametrize("kind", ["command", "script", pytest.param("ddp", marks=[pytest.mark.slow, pytest.mark.xdist_group("ddp")])])
def test_each_starter_goes_from_init_to_succeeded(state_dir: Path, tmp_path: Path, kind: str):
    target = tmp_path / kind
    assert run_torchx("forge", "init", kind, str(target)).returncode == 0
    assert run_torchx("forge", "validate", "--config", "experiment.yaml", cwd=target).returncode == 0
    assert "critical path" in run_torchx("forge", "plan", "--config", "experiment.yaml", cwd=target).stdout
    assert run_torchx("forge", "preview", "--config", "experiment.yaml", cwd=target).returncode == 0
    p = run_torchx("run", "forge.pipeline", "--config", "experiment.yaml", cwd=target)  # the starter's .torchxconfig picks slurm_forge
    handle = handle_of(p)
    assert wait_end(handle, timeout=600) == "SUCCEEDED", run_torchx("status", handle).stdout
    assert "eval" in run_torchx("status", handle, cwd=target).stdout
