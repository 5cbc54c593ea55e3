"""Run options: -cfg splitting, lenient casting, strict validation, typed ForgeOpts."""

import io
import os

import pytest
from torchx.runner.config import load as load_torchxconfig

from torchx_forge.errors import ConfigError
from torchx_forge.slurm.options import ForgeOpts, build_runopts, parse_sbatch_args


@pytest.fixture
def opts():
    return build_runopts()


def resolve_err(opts, cfg) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        opts.resolve(cfg)
    return info.value


# -- cfg_from_str ------------------------------------------------------------------------


def test_values_may_hold_equals_and_commas(opts):
    cfg = opts.cfg_from_str("sbatch_args=--exclude=n1,n2 --reservation=x,qos=high")
    assert cfg == {"sbatch_args": "--exclude=n1,n2 --reservation=x", "qos": "high"}


def test_split_on_semicolon_and_keys_with_dashes(opts):
    cfg = opts.cfg_from_str("mail-user=a@b.c;mail-type=END,FAIL;comment=k=v")
    assert cfg == {"mail-user": "a@b.c", "mail-type": "END,FAIL", "comment": "k=v"}


def test_empty_cfg_and_empty_value(opts):
    assert opts.cfg_from_str("") == {}
    assert opts.cfg_from_str("partition=''") == {"partition": ""}


def test_cfg_without_key_is_rejected(opts):
    with pytest.raises(ConfigError, match="key=value"):
        opts.cfg_from_str("just-text")


@pytest.mark.parametrize("text,value", [("yes", True), ("ON", True), ("1", True), ("no", False), ("off", False), ("false", False)])
def test_lenient_bool_cast(opts, text, value):
    cfg = opts.cfg_from_str(f"exclusive={text}")
    assert cfg["exclusive"] is value
    assert opts.resolve(cfg)["exclusive"] is value


def test_lenient_int_cast(opts):
    cfg = opts.cfg_from_str("nodes=3,exclusive=no")
    assert cfg["nodes"] == 3 and type(cfg["nodes"]) is int
    assert opts.resolve(cfg)["nodes"] == 3


def test_bad_int_is_kept_then_rejected_by_resolve(opts):
    cfg = opts.cfg_from_str("nodes=two")
    assert cfg["nodes"] == "two"
    err = resolve_err(opts, cfg)
    assert "'nodes'" in str(err) and "'two'" in str(err) and "whole number" in str(err)
    assert err.where == "runopt 'nodes'"


def test_bad_bool_is_kept_then_rejected_by_resolve(opts):
    cfg = opts.cfg_from_str("exclusive=maybe")
    err = resolve_err(opts, cfg)
    assert "'exclusive'" in str(err) and "'maybe'" in str(err) and "true or false" in str(err)


@pytest.mark.parametrize("cfg,needle", [({"nodes": 0}, ">= 1"), ({"nodes": True}, "whole number"), ({"partition": 5}, "expected text")])
def test_resolve_rejects_wrong_python_values(opts, cfg, needle):
    assert needle in str(resolve_err(opts, cfg))


def test_unknown_option_lists_valid_options(opts):
    cfg = opts.cfg_from_str("partition=x,colour=red")
    assert cfg["colour"] == "red"  # kept so resolve can name it
    msg = str(resolve_err(opts, cfg))
    assert "'colour'" in msg
    for valid in ("partition", "nodes", "sbatch_args", "mail-user", "state_dir"):
        assert valid in msg


def test_resolve_fills_defaults(opts):
    res = opts.resolve({})
    assert res["gpu_flag"] == "auto" and res["exclusive"] is False and res["nomem"] is False
    assert res["nodes"] is None and res["partition"] is None


# -- per-option validation ---------------------------------------------------------------


@pytest.mark.parametrize("good", ["30", "90:00", "48:00:00", "1-12", "2-00:00:01", "UNLIMITED"])
def test_time_accepts_sbatch_forms(opts, good):
    assert opts.resolve({"time": good})["time"] == good


@pytest.mark.parametrize("bad", ["1h", "soon", "1:2:3:4"])
def test_time_rejects_garbage(opts, bad):
    err = resolve_err(opts, {"time": bad})
    assert err.where == "runopt 'time'" and bad in str(err)


@pytest.mark.parametrize("flag", ["auto", "gpus-per-node", "gres", "gpus-per-task"])
def test_gpu_flag_choices(opts, flag):
    assert opts.resolve({"gpu_flag": flag})["gpu_flag"] == flag


def test_gpu_flag_rejects_other(opts):
    msg = str(resolve_err(opts, {"gpu_flag": "gpus"}))
    assert "'gpus'" in msg and "auto, gpus-per-node, gres, gpus-per-task" in msg


@pytest.mark.parametrize("dep", ["afterok:1:2", "afterok:1,afterany:2", "singleton", "aftercorr:5", "afterok:1?afternotok:2", "afterany:7_3"])
def test_dependency_valid(opts, dep):
    assert opts.resolve({"dependency": dep})["dependency"] == dep


@pytest.mark.parametrize("dep", ["afterfoo:1", "afterok", "afterok:x", "afterok:1,", ""])
def test_dependency_invalid(opts, dep):
    msg = str(resolve_err(opts, {"dependency": dep}))
    assert "'dependency'" in msg and "TYPE:JOBID" in msg


def test_dependency_mixing_all_and_any_rejected(opts):
    msg = str(resolve_err(opts, {"dependency": "afterok:1,afterany:2?afterok:3"}))
    assert "mixing" in msg


@pytest.mark.parametrize("args,flag", [("--array=1", "--array"), ("-o x", "-o"), ("--exclude=n1 --output=f", "--output"),
                                       ("--export=NONE", "--export"), ("-J name", "-J"), ("--chdir=/x", "--chdir")])
def test_reserved_sbatch_flags_rejected(opts, args, flag):
    msg = str(resolve_err(opts, {"sbatch_args": args}))
    assert "'sbatch_args'" in msg and f"{flag} is set by slurm_forge" in msg


@pytest.mark.parametrize("args", ["-ofile.log", "-Jname", "-a1-3", "-D/tmp"])
def test_reserved_short_flags_with_attached_value_rejected(args):
    with pytest.raises(ConfigError):
        parse_sbatch_args(args)


@pytest.mark.parametrize("args", ["--outp=f.log", "--arr=1-3"])
def test_reserved_long_flags_abbreviated_rejected(args):
    with pytest.raises(ConfigError):
        parse_sbatch_args(args)


def test_sbatch_args_split_shell_style():
    assert parse_sbatch_args("--exclude=n1,n2 --comment='a b'") == ["--exclude=n1,n2", "--comment=a b"]
    with pytest.raises(ConfigError, match="expected sbatch flags"):
        parse_sbatch_args("n1 --exclude")
    with pytest.raises(ConfigError, match="cannot split"):
        parse_sbatch_args("--comment='open")


# -- torchx integration -------------------------------------------------------------------


def test_torchx_runopts_accepts_lenient_types_and_prints_builtin_names(opts):
    text = str(opts)
    assert "nodes=NODES (int, None)" in text
    assert "exclusive=EXCLUSIVE (bool, False)" in text
    assert "nomem=NOMEM (bool, False)" in text


def test_torchxconfig_values_cast_leniently():
    cfg: dict = {}
    load_torchxconfig("slurm_forge", io.StringIO("[slurm_forge]\nexclusive = yes\nnodes = two\n"), cfg)
    assert cfg["exclusive"] is True and cfg["nodes"] == "two"
    assert "'two'" in str(resolve_err(build_runopts(), cfg))


# -- ForgeOpts -----------------------------------------------------------------------------


def test_from_cfg_types(opts):
    cfg = opts.resolve(opts.cfg_from_str("nodes=2,exclusive=yes,sbatch_args=--exclude=n1,n2 --x='a b',mail-user=u@x,python=/p/py"))
    o = ForgeOpts.from_cfg(cfg)
    assert o.nodes == 2 and o.get("exclusive") is True and o.nomem is False
    assert o.sbatch_args == ("--exclude=n1,n2", "--x=a b")
    assert o.get("mail-user") == "u@x" and o.python == "/p/py" and o.gpu_flag == "auto"


def test_from_cfg_defaults(opts, monkeypatch, tmp_path):
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path))
    o = ForgeOpts.from_cfg(opts.resolve({}))
    assert o.sbatch_args == () and o.nodes is None and o.state_dir == str(tmp_path)
    assert o.python  # the running interpreter


def test_logs_prefers_log_dir_and_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    o = ForgeOpts(log_dir="~/l", job_dir="/jobs/j1", state_dir="/s")
    assert o.logs == str(tmp_path / "l")


def test_logs_under_job_dir_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ForgeOpts(job_dir="run1", state_dir="/s").logs == str(tmp_path / "run1" / "logs")


def test_logs_under_local_state_dir():
    assert ForgeOpts(state_dir="/s/forge").logs == "/s/forge/logs"
    assert ForgeOpts(state_dir="file:///s/forge").logs == "/s/forge/logs"


def test_logs_need_a_file_system_for_remote_state_dir():
    with pytest.raises(ConfigError) as info:
        ForgeOpts(state_dir="s3://bucket/forge").logs
    assert info.value.where == "runopt 'log_dir'" and "s3://bucket/forge" in str(info.value)
    assert ForgeOpts(state_dir="s3://bucket/forge", log_dir="/shared/l").logs == os.path.abspath("/shared/l")


# -- one row, every face ------------------------------------------------------------------------


def test_an_option_row_gives_a_runopt_a_cluster_key_and_an_sbatch_flag(tmp_path):
    from torchx.specs import AppDef, Role

    from torchx_forge.experiment.schema import CLUSTER_SCHEMA
    from torchx_forge.slurm.jobs import build_request

    assert "reservation" in {k for k, _ in build_runopts()}
    assert "reservation" in CLUSTER_SCHEMA
    o = ForgeOpts.from_cfg(build_runopts().resolve({"reservation": "maint-42", "state_dir": str(tmp_path)}))
    argv = build_request(AppDef("a", roles=[Role("r", image="", entrypoint="true")]), o).jobs[0].argv("s.sh")
    assert "--reservation=maint-42" in argv


def test_every_option_is_either_read_by_forge_or_an_sbatch_flag():
    from torchx_forge.core.options import OPTIONS
    from torchx_forge.slurm.options import TYPED_FIELDS

    silent = [o.name for o in OPTIONS if o.field not in TYPED_FIELDS and not o.sbatch]
    assert not silent, f"options nobody reads: {silent}"
