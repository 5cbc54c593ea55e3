"""Every input answers at once (issue 18, found by fault injection on the lab): each input below
gives one short message naming the thing, no traceback, exit code != 0, in under 5 s, through the
real ``torchx`` program, and submits nothing. Each test uses its own state dir and files only.

"Under 5 s" is the CPU time of the ``torchx`` process (about 0.6 s when it refuses at once; the
inputs here used to compute for minutes): the suite runs ten tests side by side on two CPUs,
where the wall time of even a quick process varies by tens of seconds (55 s for 1.2 s of CPU, seen
in CI), so the wall time is bounded only by the process's timeout (60 s): a hang still fails."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import List

import pytest

from conftest import handle_of, queued_jobs_of, run_torchx, wait_end

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

HUGE = "x=range(0,1000000000000)"
SIZE = "range(0,1000000000000) has 1,000,000,000,000 values, more than the 1,000,000 runs a sweep may have"
ALIASES = "YAML aliases repeat more than 100,000 nodes"


def refused(*args: str, names: str, cwd: Path) -> str:
    """``torchx ARGS`` exits != 0 within 5 s with a short message naming ``names`` and no traceback;
    returns the message (stderr without TorchX's INFO lines)."""
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = run_torchx(*args, cwd=cwd, timeout=60)
    elapsed, after = time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    message: List[str] = [line for line in p.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert p.returncode != 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert len(message) <= 3, p.stderr  # TorchX frames a component's error in 3 lines; forge's own verbs: 1
    assert names in p.stderr and sum(names in line for line in message) == 1, p.stderr
    assert cpu < 5, f"{cpu:.1f} s of CPU, {elapsed:.1f} s: {p.stderr}"
    return "\n".join(message)


def laughs(path: Path) -> Path:
    """An experiment file with the "billion laughs": eight levels of nine aliases each (9**9 values)."""
    lines = ["name: laughs", "run: {command: [python3, -c, pass]}", "sweep:", "  shared_axes:",
             '    run.args.l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    run.args.l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_huge_range_axis_via_forge_grid(state_dir: Path, tmp_path: Path):
    message = refused("run", "--scheduler", "slurm_forge", "forge.grid", "--axes", HUGE, "--", "python3", "-c", "pass",
                      names=f"forge.grid: sweep.shared_axes.run.args.x: {SIZE}", cwd=tmp_path)
    assert "$FORGE_SWEEP_LIMIT" in message
    assert queued_jobs_of(state_dir) == []


def test_a_huge_range_axis_via_torchx_run_dryrun(state_dir: Path, tmp_path: Path):
    refused("run", "--dryrun", "--scheduler", "slurm_forge", "forge.grid", "--axes", HUGE, "--", "python3", "-c", "pass",
            names=SIZE, cwd=tmp_path)
    exp = tmp_path / "huge.yaml"
    exp.write_text("name: huge\nrun: {command: [python3, -c, pass]}\nsweep:\n  shared_axes: {run.args.x: 'range(0,1000000000000)'}\n")
    refused("run", "--dryrun", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(exp),
            names=f"{exp}:4: sweep.shared_axes.run.args.x: {SIZE}", cwd=tmp_path)
    refused("forge", "validate", "--config", str(exp), names=f"{exp}:4: sweep.shared_axes.run.args.x", cwd=tmp_path)


@pytest.mark.parametrize("verb", [["forge", "validate"], ["forge", "preview"], ["forge", "plan"],
                                  ["run", "--dryrun", "--scheduler", "slurm_forge", "forge.sweep"]])
def test_a_billion_laughs_file(state_dir: Path, tmp_path: Path, verb: List[str]):
    exp = laughs(tmp_path / "laughs.yaml")
    message = refused(*verb, "--config", str(exp), names=f"{exp}:", cwd=tmp_path)
    assert ALIASES in message and "sweep.shared_axes.run.args.l" in message


@pytest.mark.parametrize("verb", [["forge", "validate"], ["forge", "preview"],
                                  ["run", "--dryrun", "--scheduler", "slurm_forge", "forge.sweep"]])
def test_a_binary_file(state_dir: Path, tmp_path: Path, verb: List[str]):
    exp = tmp_path / "model.yaml"
    exp.write_bytes(b"name: x\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    message = refused(*verb, "--config", str(exp), names=f"{exp}:2: not UTF-8 text: byte 8 (0x89)", cwd=tmp_path)
    assert "binary file" in message


@pytest.mark.parametrize("verb", [["forge", "validate"], ["forge", "preview"],
                                  ["run", "--dryrun", "--scheduler", "slurm_forge", "forge.sweep"]])
def test_a_latin1_file(state_dir: Path, tmp_path: Path, verb: List[str]):
    exp = tmp_path / "cafe.yaml"
    exp.write_bytes("name: x\nrun: {command: [echo, café]}\n".encode("latin-1"))
    message = refused(*verb, "--config", str(exp), names=f"{exp}:2: not UTF-8 text: byte 33 (0xe9)", cwd=tmp_path)
    assert "iconv" in message


def test_a_python_that_does_not_exist_is_refused_before_sbatch(state_dir: Path, tmp_path: Path):
    refused("run", "--scheduler", "slurm_forge", "-cfg", "python=/nonexistent/python", "forge.grid", "--axes", "x=[1,2]",
            "--", "python3", "-c", "pass", names="runopt 'python': /nonexistent/python does not exist", cwd=tmp_path)
    assert queued_jobs_of(state_dir) == []
    assert not (state_dir / "apps").exists() or not list((state_dir / "apps").iterdir())


def test_a_python_name_missing_on_the_nodes_fails_every_task_with_a_line_naming_it(state_dir: Path, tmp_path: Path):
    # a bare name is looked up on the nodes' PATH: not refused here, but each task's log says what is missing
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "python=no-such-python3", "forge.grid", "--name", "nopy",
                   "--axes", "x=[1,2]", "--", "python3", "-c", "pass", cwd=tmp_path)
    handle = handle_of(p)
    assert wait_end(handle, timeout=120) == "FAILED"
    for replica in (0, 1):
        log = run_torchx("log", f"{handle}/nopy/{replica}", cwd=tmp_path)
        assert "runopt python: no-such-python3 is not an executable on" in log.stdout, log.stdout + log.stderr
    rows = [line.split() for line in run_torchx("status", handle, cwd=tmp_path).stdout.splitlines()]
    assert sorted(r[0] for r in rows if len(r) > 2 and r[0].startswith("nopy[") and r[2] == "FAILED") == ["nopy[0]", "nopy[1]"]
