"""gpu_flag=auto: the GPU flag follows the cluster's Slurm version, read at submit time (dry runs
make no Slurm call and show the version last seen); an explicit gpu_flag always wins."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.core.options import gpu_flag_for
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.limits import CACHE, ClusterLimits
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.submit import submit
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm

CONFIG_18 = "Configuration data as of 2026-01-01T00:00:00\nMaxJobCount             = 10000\nSLURM_VERSION           = 18.08.9\n"


def gpu_app(gpus: int = 2) -> AppDef:
    return AppDef("train", roles=[Role("t", image="", entrypoint="python", args=["t.py"],
                                       resource=Resource(cpu=1, gpu=gpus, memMB=64))])


@pytest.mark.parametrize("version,flag", [
    ("22.05.8", "gpus-per-node"), ("24.11.1", "gpus-per-node"), ("19.05.0", "gpus-per-node"),
    ("18.08.9", "gres"), ("17.11", "gres"), (None, "gpus-per-node"), ("garbage", "gpus-per-node"),
])
def test_auto_flag_follows_the_slurm_version(version: Optional[str], flag: str):
    assert gpu_flag_for(version) == flag


def test_scontrol_show_config_gives_the_version(tmp_path: Path):
    limits = ClusterLimits.parse(CONFIG_18)
    assert limits.slurm_version == "18.08.9" and limits.max_job_count == 10000
    store = Store(str(tmp_path))
    assert ClusterLimits.known_version(store) is None
    store.write_json(CACHE, {"time": 0, "slurm_version": "18.08.9"})  # stale for the limits, still the version
    assert ClusterLimits.known_version(store) == "18.08.9"


def test_only_auto_is_resolved(tmp_path: Path):
    for given, on_old in [("auto", "--gres=gpu:2"), ("gpus-per-node", "--gpus-per-node=2"), ("gpus-per-task", "--gpus-per-task=2")]:
        req = build_request(gpu_app(), ForgeOpts.of(gpu_flag=given, state_dir=str(tmp_path)))
        assert on_old in req.for_slurm("18.08.9").jobs[0].materialize()


def test_dry_run_shows_the_flag_of_the_version_last_seen_without_calling_slurm(tmp_path: Path):
    slurm = FakeSlurm()
    sched = SlurmForgeScheduler("torchx", cli=slurm, state_dir=str(tmp_path))
    cfg = {"state_dir": str(tmp_path)}
    assert "--gpus-per-node=2" in repr(sched.submit_dryrun(gpu_app(), cfg))  # nothing known yet: a recent Slurm
    Store(str(tmp_path)).write_json(CACHE, {"time": 0, "slurm_version": "18.08.9"})
    shown = repr(sched.submit_dryrun(gpu_app(), cfg))
    assert "--gres=gpu:2" in shown and "--gpus-per-node" not in shown
    assert "--gpus-per-node=2" in repr(sched.submit_dryrun(gpu_app(), {**cfg, "gpu_flag": "gpus-per-node"}))
    assert slurm.calls == []


def test_submit_reads_the_version_and_writes_its_flag(tmp_path: Path):
    cli = FakeSlurm(version="18.08.9")  # an 18.08 controller
    req = build_request(gpu_app(), ForgeOpts.of(state_dir=str(tmp_path), log_dir=str(tmp_path / "logs")))
    submit(cli, Records(Store(str(tmp_path))), req)
    assert cli.called("scontrol show config")
    (script,) = [c.script for c in cli.submitted if c.script and "torchx_forge.node.launch" in c.script]
    assert "#SBATCH --gres=gpu:2" in script and "--gpus-per-node" not in script
    assert ClusterLimits.known_version(Store(str(tmp_path))) == "18.08.9"
