"""Cutting sweeps into waves under the cluster's limits (pure planning; the real waves run in
tests/cluster/test_waves.py)."""

from typing import List, Optional

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.appdef.meta import ForgeMeta, RetrySpec
from torchx_forge.errors import ConfigError
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.limits import ClusterLimits, parse_assoc, parse_qos
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.waves import WAVE_OVERHEAD, cost, pack


def sweep(n: int, retries: int = 0, name: str = "s") -> Role:
    role = Role(name, image="/tmp", entrypoint="python", args=["-m", "torchx_forge.node.task"], num_replicas=n,
                resource=Resource(cpu=1, gpu=0, memMB=0))
    return ForgeMeta(array=True, retry=RetrySpec(max_retries=retries)).apply(role)


def request(n: int, tmp_path, retries: int = 0, limits: Optional[ClusterLimits] = None, in_use: int = 0, **opts):
    app = AppDef("app", roles=[sweep(n, retries)])
    return build_request(app, ForgeOpts.of(state_dir=str(tmp_path), **opts), limits or ClusterLimits(), in_use)


def waves_of(req) -> List[List[int]]:
    """Tasks of each array, wave by wave."""
    out: List[List[int]] = [[] for _ in range(req.waves)]
    for job in req.jobs:
        out[job.wave].append(job.array.size)
    return out


def test_no_limit_is_one_wave_cut_at_max_array_size(tmp_path):
    req = request(2500, tmp_path)
    assert req.waves == 1 and [j.array.size for j in req.jobs] == [1001, 1001, 498]
    assert [j.array.offset for j in req.jobs] == [0, 1001, 2002]


def test_a_submit_limit_cuts_waves_that_fit_it(tmp_path):
    req = request(2500, tmp_path, limits=ClusterLimits(qos_max_submit={"cap": 1000}), qos="cap")
    assert waves_of(req) == [[998], [998], [504]]
    # replicas are covered once, in order, across the waves
    spans = [(j.array.offset, j.array.size) for j in req.jobs]
    assert spans == [(0, 998), (998, 998), (1996, 504)] and [j.index for j in req.jobs] == [0, 1, 2]


def test_companions_count_and_queued_jobs_shrink_the_first_wave(tmp_path):
    req = request(2500, tmp_path, retries=1, limits=ClusterLimits(max_array_size=600, assoc_max_submit=1000),
                  in_use=300)
    # wave 1: 1000 - 300 queued - 2 (guard, next wave job) = 698 records: 600 + companion, 96 + companion
    assert waves_of(req)[0] == [600, 96]
    for wave in waves_of(req):
        assert len(wave) <= 2 and sum(wave) + len(wave) <= 1000 - WAVE_OVERHEAD
    assert sum(j.array.size for j in req.jobs) == 2500


def test_runopts_override_what_slurm_says(tmp_path):
    req = request(300, tmp_path, limits=ClusterLimits(max_array_size=1001, assoc_max_submit=10_000),
                  max_submit_jobs=102, max_array_size=40)
    assert req.waves == 3 and waves_of(req)[0] == [40, 40, 20]


def test_the_controllers_job_table_is_a_limit_too_with_room_for_others(tmp_path):
    req = request(12_000, tmp_path, limits=ClusterLimits(max_job_count=10_000))
    assert req.waves == 2 and sum(waves_of(req)[0]) <= 9_000


def test_a_wave_too_small_for_one_task_and_no_room_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no room to submit"):
        request(10, tmp_path, limits=ClusterLimits(assoc_max_submit=100), in_use=99)
    with pytest.raises(ConfigError, match="leaves no room for a task"):
        pack(request(1, tmp_path, retries=1).jobs, per_wave=WAVE_OVERHEAD + 1)


def test_a_pipeline_is_not_cut_into_waves(tmp_path):
    roles = []
    for stage in ("train", "eval"):
        role = sweep(800, name=stage)
        meta = ForgeMeta.from_role(role)
        ForgeMeta(array=True, table=meta.table, stage=stage).apply(role)
        roles.append(role)
    with pytest.raises(ConfigError, match="only sweeps are submitted in waves"):
        build_request(AppDef("pipe", roles=roles), ForgeOpts.of(state_dir=str(tmp_path)), ClusterLimits(assoc_max_submit=1000))


def test_the_dry_run_says_which_wave_each_job_is_in(tmp_path):
    req = request(250, tmp_path, limits=ClusterLimits(assoc_max_submit=100))
    text = repr(req)
    assert "# job 1 of 3 (array, wave 1 of 3)" in text
    assert "# job 3 of 3 (array, wave 3 of 3: submitted by a Slurm job once the wave before has ended)" in text
    assert cost(req.jobs[0]) == 98


def test_limits_are_parsed_from_sacctmgr():
    assert parse_qos("normal|\ncap1000|1000\ncap2500|2500\n") == {"cap1000": 1000, "cap2500": 2500}
    assoc = parse_assoc("forge|root|500|normal\nforge|other||\nelse|x|10|\n", "forge")
    assert assoc == {"max_submit": 500, "default_qos": "normal"}
    limits = ClusterLimits(assoc_max_submit=500, qos_max_submit={"cap1000": 1000, "normal": 50}, default_qos="normal")
    assert limits.max_submit("cap1000") == 500 and limits.max_submit(None) == 50
    assert ClusterLimits(qos_max_submit={"cap": 10}).max_submit("other") is None
