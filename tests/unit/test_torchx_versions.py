"""slurm_forge behaves the same on torchx 0.7 and TorchX main (torchx-nightly).

Each test goes through TorchX's own entry points (its Runner, its ``.torchxconfig`` loader, its
CLI) at a place where the two versions' APIs differ (torchx_forge/compat.py); Slurm is a fake
here, the real cluster is in tests/cluster/test_cli.py. .ci/run runs this file on both versions.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Iterable

import pytest
from torchx import specs
from torchx.runner import Runner
from torchx.runner.config import load as load_torchxconfig

from conftest import run_torchx
from torchx_forge.errors import ConfigError
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.options import build_runopts
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm


def slurm(running: Iterable[str] = ()) -> FakeSlurm:
    """Slurm with the given jobs RUNNING (in squeue and in accounting)."""
    fake = FakeSlurm()
    for job_id in running:
        fake.add_job(job_id, "RUNNING", name="a-0")
    return fake


def record(state_dir: Path, app_id: str = "10", name: str = "demo") -> AppRecord:
    rec = AppRecord(app_id=app_id, name=name, jobs=[JobRecord(app_id, "het", components=[["a", 0]])],
                    roles=[RoleRecord("a", 1)], log_dir=str(state_dir / "logs"))
    Records(Store(str(state_dir))).save(rec)
    return rec


def runner(state_dir: Path, cli: SlurmCli) -> Runner:
    def factory(session_name: str, **kwargs: object) -> SlurmForgeScheduler:
        return SlurmForgeScheduler(session_name, cli=cli, state_dir=str(state_dir))

    return Runner("torchx", {"slurm_forge": factory})


def echo_app(**env: str) -> specs.AppDef:
    role = specs.Role("echo", image="", entrypoint="echo", args=["hi"], env=dict(env),
                      resource=specs.Resource(cpu=1, gpu=0, memMB=64))
    return specs.AppDef("hello", roles=[role])


# -- `torchx list -s slurm_forge`: TorchX main calls list(cfg) -------------------------------


def test_runner_list_shows_forge_apps(tmp_path: Path):
    record(tmp_path, "10")
    apps = runner(tmp_path, slurm(running=["10"])).list("slurm_forge")
    assert [(a.app_id, a.app_handle, a.state) for a in apps] == [("10", "slurm_forge://torchx/10", specs.AppState.RUNNING)]
    assert getattr(apps[0], "name", "demo") == "demo"  # TorchX main has a name column


def test_list_cfg_picks_the_state_dir(tmp_path: Path):
    record(tmp_path / "other", "77")
    sched = SlurmForgeScheduler("torchx", cli=slurm(), state_dir=str(tmp_path / "mine"))
    assert sched.list() == []
    assert [a.app_id for a in sched.list({"state_dir": str(tmp_path / "other")})] == ["77"]


# -- `.torchxconfig`: TorchX main casts with runopt.cast_to_type ------------------------------


def test_torchxconfig_ints_and_bools_arrive_typed():
    cfg: Dict[str, specs.CfgVal] = {}
    load_torchxconfig("slurm_forge", io.StringIO("[slurm_forge]\nnodes = 2\nexclusive = true\nnomem = no\n"), cfg)
    resolved = build_runopts().resolve(cfg)
    assert (resolved["nodes"], resolved["exclusive"], resolved["nomem"]) == (2, True, False)


@pytest.mark.parametrize("line,expected", [
    ("nodes = two", "runopt 'nodes': got 'two'; expected a whole number"),
    ("exclusive = maybe", "runopt 'exclusive': got 'maybe'; expected true or false"),
])
def test_bad_torchxconfig_value_is_forges_one_line_error(line: str, expected: str):
    cfg: Dict[str, specs.CfgVal] = {}
    load_torchxconfig("slurm_forge", io.StringIO(f"[slurm_forge]\n{line}\n"), cfg)
    with pytest.raises(ConfigError) as e:
        build_runopts().resolve(cfg)
    assert str(e.value).startswith(expected) and "\n" not in str(e.value)


# -- job_dir: TorchX main builds workspaces through MultiWorkspaceMixin ------------------------


def test_existing_job_dir_is_refused_before_the_workspace_is_copied(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "train.py").write_text("print('hi')\n")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with pytest.raises(ConfigError) as e:
        runner(tmp_path, slurm()).dryrun(echo_app(), "slurm_forge", cfg={"job_dir": str(job_dir)},
                                             workspace=f"file://{workspace}")
    assert str(e.value).startswith("runopt 'job_dir':") and "already exists" in str(e.value)
    assert list(job_dir.iterdir()) == []


def test_new_job_dir_gets_the_workspace(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "train.py").write_text("print('hi')\n")
    job_dir = tmp_path / "job"
    info = runner(tmp_path, slurm()).dryrun(echo_app(), "slurm_forge", cfg={"job_dir": str(job_dir)},
                                                workspace=f"file://{workspace}")
    assert (job_dir / "train.py").read_text() == "print('hi')\n"
    assert f"--chdir={job_dir}" in repr(info)


# -- the cfg _submit_dryrun gets: TorchX main converts it to SlurmOpts -------------------------


def test_forge_options_reach_the_request_in_a_plain_dict(tmp_path: Path):
    seen = []

    class Spy(SlurmForgeScheduler):
        def _submit_dryrun(self, app, cfg):  # type: ignore[no-untyped-def]
            seen.append(type(cfg))
            return super()._submit_dryrun(app, cfg)

    info = Spy("torchx", cli=slurm(), state_dir=str(tmp_path)).submit_dryrun(
        echo_app(), {"nodes": 2, "max_retries": 1, "partition": "debug"})
    assert seen == [dict]
    job = info.request.jobs[0]
    assert job.components[0].nodes == 2 and job.policy.max_retries == 1 and "--partition=debug" in job.sbatch_flags()


# -- the dry run's AppDef: AppDryRunInfo._app in 0.7, .app in TorchX main ----------------------


def test_dryrun_prints_the_appdef_with_secrets_masked(tmp_path: Path):
    p = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "utils.sh", "--env", "API_KEY=s3cr3t", "echo", "hi",
                   env={"FORGE_STATE_DIR": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert "'API_KEY': '****'" in p.stdout and "s3cr3t" not in p.stdout + p.stderr


# -- `torchx delete`: only TorchX main has it ----------------------------------------------------


@pytest.mark.torchx_main(available=hasattr(Runner, "delete"))  # `torchx delete`
def test_runner_delete_cancels_every_job_of_the_app(tmp_path: Path):
    rec = record(tmp_path, "10")
    rec.jobs[0].companion = "11"
    Records(Store(str(tmp_path))).save(rec)
    cli = slurm(running=["10"]).add_job("11", "PENDING", reason="Dependency", name="demo-retry")  # its companion
    runner(tmp_path, cli).delete("slurm_forge://torchx/10")
    assert sorted(cli.cancelled) == ["10", "11"]  # the companion job too, as `torchx cancel` does
    assert Records(Store(str(tmp_path))).cancelled("10")  # so a running companion resubmits nothing


# -- account, qos (new in TorchX main) and the rest of TorchX's own slurm options ---------------


def test_every_option_of_torchx_slurm_is_a_slurm_forge_option_of_the_same_type():
    from torchx.schedulers.slurm_scheduler import SlurmScheduler

    theirs = dict(SlurmScheduler("s")._run_opts())  # workspace builder options (main's docker builder) aside
    ours = dict(build_runopts())
    assert {"partition", "time", "comment", "constraint", "mail-user", "mail-type", "job_dir"} <= set(theirs)
    assert set(theirs) - set(ours) == set(), "slurm_forge lacks options TorchX's slurm scheduler has"
    assert {name: ours[name].opt_type.__name__ for name in theirs} == dict.fromkeys(theirs, "str")
    assert {"account", "qos"} <= set(ours)


# -- what is installed: checked when forge is imported -----------------------------------------


def test_torchx_older_than_0_7_is_refused_with_the_install_command(monkeypatch: pytest.MonkeyPatch):
    from torchx_forge import compat

    monkeypatch.setattr(compat.torchx, "__version__", "0.6.0")
    with pytest.raises(ImportError, match=r"needs torchx >= 0.7 and found torchx 0.6.0: pip install 'torchx-forge\[torchx\]'"):
        compat._check_installed()


def test_torchx_and_torchx_nightly_side_by_side_is_a_warning(monkeypatch: pytest.MonkeyPatch):
    from torchx_forge import compat

    monkeypatch.setattr(compat, "torchx_distributions", lambda: {"torchx": "0.7.0", "torchx-nightly": "2026.10.26"})
    with pytest.warns(RuntimeWarning, match="torchx 0.7.0 and torchx-nightly 2026.10.26 are both installed"):
        compat._check_installed()

