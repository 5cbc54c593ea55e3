"""The Python API (torchx.runner) on the real local Slurm cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from torchx import specs
from torchx.runner import get_runner

from conftest import read_json, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

DUMP_ENV = "import json,os,sys; json.dump({k: os.environ.get(k) for k in sys.argv[2:]}, open(sys.argv[1], 'w'))"

SECRET_ENV = {"API_KEY": "sk-123", "HF_TOKEN": "hf_abc"}

NASTY_ENV = {
    "COMMA": "0,1",
    "NEWLINE": "line1\nline2",
    "QUOTES": "it's \"quoted\"",
    "DOLLAR": "$HOME and `date` and $(id)",
    "SEMI": "a;b=c,d",
    "EMPTY": "",
    "SPACES": "  lead and trail  ",
}


def _role(name: str, entrypoint: str, args, **kw) -> specs.Role:
    return specs.Role(
        name=name, image="", entrypoint=entrypoint, args=list(args),
        resource=specs.Resource(cpu=1, gpu=kw.pop("gpu", 0), memMB=256), **kw,
    )


def test_env_values_and_args_arrive_unchanged(state_dir: Path, tmp_path: Path):
    out = tmp_path / "env.json"
    argv_out = tmp_path / "argv.json"
    nasty_args = ["a b", "--x=1,2", "$HOME", "`id`", "semi;colon", "new\nline", "", "'single'"]
    app = specs.AppDef(
        name="envcheck",
        roles=[
            _role("dump", sys.executable,
                  ["-c", DUMP_ENV + f"; json.dump(sys.argv, open({str(argv_out)!r}, 'w'))", str(out), *NASTY_ENV,
                   "FORGE_APP_ID", "FORGE_ROLE", "FORGE_REPLICA_ID", "FORGE_RANK0_HOST", "TORCHX_JOB_ID", *nasty_args],
                  env={**NASTY_ENV, **SECRET_ENV}),
        ],
    )
    with get_runner() as runner:
        handle = runner.run(app, scheduler="slurm_forge")
        status = runner.wait(handle, wait_interval=1)
    assert status is not None and status.state == specs.AppState.SUCCEEDED, status
    with get_runner() as fresh:  # a new runner describes from the record: secrets are masked there
        described = fresh.describe(handle)
    assert {k: described.roles[0].env[k] for k in SECRET_ENV} == {"API_KEY": "****", "HF_TOKEN": "****"}
    assert described.roles[0].env["COMMA"] == "0,1"
    seen = read_json(out)
    app_id = handle.rsplit("/", 1)[1]
    for key, value in NASTY_ENV.items():
        assert seen[key] == value, key
    assert seen["FORGE_APP_ID"] == app_id
    assert seen["FORGE_ROLE"] == "dump" and seen["FORGE_REPLICA_ID"] == "0"
    assert seen["FORGE_RANK0_HOST"] in ("n1", "n2", "n3")
    assert seen["TORCHX_JOB_ID"] == handle  # the ${app_id} macro in env
    assert json.loads(argv_out.read_text())[-len(nasty_args):] == nasty_args


def test_two_roles_run_as_one_heterogeneous_job(state_dir: Path):
    app = specs.AppDef(
        name="hetero",
        roles=[
            _role("trainer", "sh", ["-c", "echo trainer $FORGE_REPLICA_ID"], num_replicas=2),
            _role("reader", "sh", ["-c", "echo reader $FORGE_REPLICA_ID"]),
        ],
    )
    with get_runner() as runner:
        handle = runner.run(app, scheduler="slurm_forge")
        status = runner.wait(handle, wait_interval=1)
        assert status.state == specs.AppState.SUCCEEDED, status
        listed = {(r.role, rep.id, rep.state) for r in status.roles for rep in r.replicas}
        assert listed == {("trainer", 0, specs.AppState.SUCCEEDED), ("trainer", 1, specs.AppState.SUCCEEDED),
                          ("reader", 0, specs.AppState.SUCCEEDED)}
        assert "".join(runner.log_lines(handle, "trainer", 1)) == "trainer 1\n"
        assert "".join(runner.log_lines(handle, "reader", 0)) == "reader 0\n"
    job_id = handle.rsplit("/", 1)[1]

    def sacct() -> list:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID", "-j", job_id], capture_output=True, text=True).stdout
        return sorted(out.split())

    wait_for(lambda: len(sacct()) == 3, 30, "sacct to catch up")  # it lags squeue by seconds
    assert sacct() == [f"{job_id}+0", f"{job_id}+1", f"{job_id}+2"]


def test_multi_node_replica_and_gpus(state_dir: Path, tmp_path: Path):
    script = "echo $SLURMD_NODENAME ${CUDA_VISIBLE_DEVICES:-none} $FORGE_RANK0_HOST"
    app = specs.AppDef(name="wide", roles=[_role("w", "sh", ["-c", script], gpu=1)])
    with get_runner() as runner:
        handle = runner.run(app, scheduler="slurm_forge", cfg={"nodes": 2})
        status = runner.wait(handle, wait_interval=1)
        assert status.state == specs.AppState.SUCCEEDED, status
        lines = sorted(line.split(":", 1)[1].split() for line in runner.log_lines(handle, "w", 0))
    nodes = [line[0] for line in lines]
    assert len(nodes) == 2 and len(set(nodes)) == 2, lines  # two different virtual nodes
    assert all(line[1] == "0" for line in lines)  # one GPU each: CUDA_VISIBLE_DEVICES=0
    assert len({line[2] for line in lines}) == 1 and lines[0][2] in nodes  # same rank-0 host, the first node


def test_runner_wait_and_log_lines_of_a_failure(state_dir: Path):
    app = specs.AppDef(name="boom", roles=[_role("b", "sh", ["-c", "echo out; echo err >&2; exit 7"])])
    with get_runner() as runner:
        handle = runner.run(app, scheduler="slurm_forge")
        status = runner.wait(handle, wait_interval=1)
        assert status.state == specs.AppState.FAILED
        assert "7" in status.msg
        assert "".join(runner.log_lines(handle, "b", 0)) == "out\nerr\n"
        assert "".join(runner.log_lines(handle, "b", 0, streams=None)) == "out\nerr\n"
        from torchx.schedulers.api import Stream

        assert "".join(runner.log_lines(handle, "b", 0, streams=Stream.STDERR)) == "err\n"
