"""The sbatch request: every word reaches the program unchanged, flags land where Slurm reads them.

Scripts are materialized and evaluated by real bash with ``srun`` replaced by a
function that prints its arguments; nothing here calls Slurm.
"""

import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.errors import ConfigError
from torchx_forge.slurm.jobs import MAX_HET_COMPONENTS, build_request, component_for, het_job
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.request import ArraySpec, JobRequest
from torchx_forge.slurm.srun import BOOT, TaskCommand, launch_lines, shell_word
from unit.bounds import HANG

NASTY = [
    "plain", "two words", "it's", 'say "hi"', "$HOME", "`id`", "$(id)", "a;b", "a,b", "k=v=w", "line1\nline2",
    "tab\there", "ünïcödé ✓", "", "--leading-dash", "-x", "*", "~", "back\\slash", "%j %x", "!", "a' \"b",
]
SECRETS = {"API_KEY": "k-123", "HF_TOKEN": "hf_abc", "DB_PASSWORD": "p@ss,w=rd", "MY_SECRET": "s e c"}


def opts(tmp_path, **kw) -> ForgeOpts:
    kw.setdefault("state_dir", str(tmp_path / "state"))
    kw.setdefault("python", "/opt/my py/bin/python3")
    return ForgeOpts.of(**kw)


def role(name="trainer", replicas=1, args=(), env=None, res=None, image="img", entrypoint="prog") -> Role:
    return Role(name, image=image, entrypoint=entrypoint, args=list(args), env=dict(env or {}), num_replicas=replicas,
                resource=res or Resource(cpu=2, gpu=0, memMB=1024))


def bash_words(script: str, env: Dict[str, str]) -> List[str]:
    """bash evaluates ``script``; returns the NUL-separated words it prints."""
    out = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"], **env}, capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


def srun_words(tmp_path, text: str, **env: str) -> List[List[str]]:
    """Run a materialized batch script with a fake srun; the words of each srun group. (The made-up
    interpreter, runopt python, passes the script's check that it exists: a fake ``type``.)"""
    script, out = tmp_path / "job.sh", tmp_path / "srun.words"
    script.write_text(text)
    driver = 'srun() { printf "%s\\0" "$@" > "$SRUN_OUT"; }; type() { :; }; source "$1"'
    subprocess.run(["bash", "-c", driver, "bash", str(script)], env={"PATH": os.environ["PATH"], "SRUN_OUT": str(out), **env},
                   capture_output=True, check=True)
    words = out.read_bytes().decode().split("\0")[:-1]
    groups, cur = [], []
    for w in words:
        if w == ":":
            groups.append(cur)
            cur = []
        else:
            cur.append(w)
    return groups + [cur]


def launcher(group: List[str]) -> Dict[str, object]:
    """Pick apart one srun group: srun flags, python, launcher flags, program argv."""
    i = group.index("-m")
    dash = group.index("--", i)
    flags = group[i + 2:dash]
    env = [flags[k + 1] for k in range(len(flags)) if flags[k] == "--env"]
    opt = {flags[k]: flags[k + 1] for k in range(0, len(flags), 2) if flags[k] != "--env"}
    return {"srun": group[:i - 1], "python": group[i - 1], "module": group[i + 1], "env": env, "opt": opt, "argv": group[dash + 1:]}


# -- shell quoting -----------------------------------------------------------------------


def test_shell_word_survives_bash():
    words = [shell_word(a) for a in NASTY + ["${app_id}", "run-${replica_id}.ckpt", "x${app_id}y${replica_id}"]]
    got = bash_words("FORGE_APP_ID=123; FORGE_REPLICA_ID=4; printf '%s\\0' " + " ".join(words), {})
    assert got == NASTY + ["123", "run-4.ckpt", "x123y4"]


def test_launcher_words_survive_bash():
    env = (("A", "x,y=z"), ("NL", "a\nb"), ("Q", "it's \"q\" $HOME `id`"), ("E", ""), ("M", "${app_id}-${replica_id}"))
    cmd = TaskCommand(role="my role", replica=None, entrypoint="/bin/my prog", args=tuple(NASTY) + ("${app_id}",), env=env)
    words = cmd.launcher_words("forge_python", mask=False, het_group=2)
    got = bash_words("forge_python='/p y/python'; forge_launch=(-m torchx_forge.node.launch); FORGE_APP_ID=123; FORGE_REPLICA_ID=4; printf '%s\\0' " + " ".join(words), {})
    g = launcher(got)
    assert g["python"] == "/p y/python" and g["module"] == "torchx_forge.node.launch"
    assert g["opt"] == {"--role": "my role", "--het-group": "2"}
    assert g["env"] == ["A=x,y=z", "NL=a\nb", "Q=it's \"q\" $HOME `id`", "E=", "M=123-4"]
    assert g["argv"] == ["/bin/my prog"] + NASTY + ["123"]


def test_materialized_script_delivers_args_and_env_unchanged(tmp_path):
    env = {"PLAIN": "a b", "COMMA": "x,y=z", "NL": "l1\nl2", "Q": "'\"$HOME`id`;", "EMPTY": "", "ID": "${app_id}/${replica_id}"}
    app = AppDef("app", roles=[role(replicas=2, args=NASTY + ["${app_id}", "r${replica_id}"], env=env)])
    text = build_request(app, opts(tmp_path, log_dir=str(tmp_path / "logs"))).jobs[0].materialize()
    groups = srun_words(tmp_path, text, SLURM_JOB_ID="123")
    assert len(groups) == 2
    for replica, group in enumerate(groups):
        g = launcher(group)
        assert g["python"] == "/opt/my py/bin/python3"
        assert g["opt"] == {"--role": "trainer", "--replica": str(replica), "--het-group": str(replica)}
        assert g["argv"] == ["prog"] + NASTY + ["123", f"r{replica}"]
        assert g["env"] == [f"{k}={v}" for k, v in env.items() if k != "ID"] + [f"ID=123/{replica}"]


def test_later_job_uses_exported_app_id(tmp_path):
    app = AppDef("app", roles=[role(args=["${app_id}"])])
    text = build_request(app, opts(tmp_path, log_dir=str(tmp_path / "l"))).jobs[0].materialize()
    (group,) = srun_words(tmp_path, text, SLURM_JOB_ID="124", FORGE_APP_ID="123")
    assert launcher(group)["argv"] == ["prog", "123"]


def test_invalid_env_name_rejected(tmp_path):
    app = AppDef("app", roles=[role(env={"BAD-NAME": "x"})])
    with pytest.raises(ConfigError, match="BAD-NAME"):
        build_request(app, opts(tmp_path))


def test_app_without_roles_rejected(tmp_path):
    with pytest.raises(ConfigError, match="no roles"):
        build_request(AppDef("empty", roles=[]), opts(tmp_path))


# -- het layout and resources ------------------------------------------------------------


def test_one_het_component_per_replica_across_roles(tmp_path):
    app = AppDef("app", roles=[role("a", replicas=2), role("b", replicas=1)])
    job = build_request(app, opts(tmp_path)).jobs[0]
    text = job.materialize()
    assert job.kind == "het" and len(job.components) == 3
    assert text.count("#SBATCH hetjob") == 2
    names = [ln for ln in text.splitlines() if ln.startswith("#SBATCH --job-name=")]
    assert names == ["#SBATCH --job-name=a-0", "#SBATCH --job-name=a-1", "#SBATCH --job-name=b-0"]
    groups = srun_words(tmp_path, text, SLURM_JOB_ID="9")
    assert [(launcher(g)["opt"]["--role"], launcher(g)["opt"]["--replica"]) for g in groups] == [("a", "0"), ("a", "1"), ("b", "0")]


def test_single_component_has_no_het_group(tmp_path):
    text = build_request(AppDef("app", roles=[role()]), opts(tmp_path)).jobs[0].materialize()
    assert "hetjob" not in text and "--het-group" not in text


def test_resources_become_sbatch_lines(tmp_path):
    r = role(res=Resource(cpu=4, gpu=2, memMB=2048))
    lines = build_request(AppDef("app", roles=[r]), opts(tmp_path)).jobs[0].materialize().splitlines()
    for flag in ("--cpus-per-task=4", "--mem=2048", "--gpus-per-node=2", "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {flag}" in lines


def test_nomem_drops_mem_and_zero_gpus_adds_no_flag(tmp_path):
    text = build_request(AppDef("app", roles=[role()]), opts(tmp_path, nomem=True)).jobs[0].materialize()
    assert not any(ln.startswith(("#SBATCH --mem", "#SBATCH --g")) for ln in text.splitlines())
    assert "#SBATCH --cpus-per-task=2" in text


@pytest.mark.parametrize("form,flag", [("gpus-per-node", "--gpus-per-node=3"), ("gres", "--gres=gpu:3"), ("gpus-per-task", "--gpus-per-task=3")])
def test_gpu_flag_forms(tmp_path, form, flag):
    r = role(res=Resource(cpu=1, gpu=3, memMB=0))
    text = build_request(AppDef("app", roles=[r]), opts(tmp_path, gpu_flag=form)).jobs[0].materialize()
    assert f"#SBATCH {flag}\n" in text
    assert [ln for ln in text.splitlines() if ln.startswith("#SBATCH --g")] == [f"#SBATCH {flag}"]


def test_nodes_option_sets_nodes_and_label(tmp_path):
    app = AppDef("app", roles=[role(replicas=2)])
    text = build_request(app, opts(tmp_path, nodes=3)).jobs[0].materialize()
    assert text.count("#SBATCH --nodes=3") == 2
    for g in srun_words(tmp_path, text, SLURM_JOB_ID="9"):
        assert "--label" in launcher(g)["srun"]


def test_one_node_has_no_label(tmp_path):
    text = build_request(AppDef("app", roles=[role()]), opts(tmp_path)).jobs[0].materialize()
    assert "--label" not in text and "#SBATCH --nodes=1" in text


def test_absolute_image_is_the_task_workdir(tmp_path):
    app = AppDef("app", roles=[role("a", image="/my work"), role("b", image="docker.io/x")])
    ga, gb = srun_words(tmp_path, build_request(app, opts(tmp_path)).jobs[0].materialize(), SLURM_JOB_ID="9")
    assert "--chdir=/my work" in launcher(ga)["srun"]
    assert not any(w.startswith("--chdir") for w in launcher(gb)["srun"])


# -- sbatch command line -----------------------------------------------------------------


def test_job_wide_options_on_sbatch_command_line(tmp_path):
    o = opts(tmp_path, partition="gpu", time="1:00:00", account="acct", qos="high", exclusive=True, constraint="a100|h100",
             dependency="afterok:1:2", comment="my run, v2", mail_user="u@x", mail_type="END,FAIL",
             sbatch_args=("--exclude=n1,n2", "--reservation=r"), job_dir="/jobs/j 1")
    argv = build_request(AppDef("app", roles=[role()]), o).jobs[0].argv("/s/job-0.sh", hold=False)
    assert argv[:2] == ["sbatch", "--parsable"] and argv[-1] == "/s/job-0.sh"
    for flag in ("--partition=gpu", "--time=1:00:00", "--account=acct", "--qos=high", "--exclusive", "--constraint=a100|h100",
                 "--dependency=afterok:1:2", "--comment=my run, v2", "--mail-user=u@x", "--mail-type=END,FAIL",
                 "--exclude=n1,n2", "--reservation=r", "--chdir=/jobs/j 1"):
        assert flag in argv
    assert "--hold" not in argv and not any(a.startswith("--export") for a in argv)


def test_unset_options_add_no_flags(tmp_path):
    argv = build_request(AppDef("app", roles=[role()]), opts(tmp_path)).jobs[0].argv("/s.sh")
    assert argv == ["sbatch", "--parsable", "--hold", "/s.sh"]


def test_hold_and_app_id_export(tmp_path):
    job = build_request(AppDef("app", roles=[role()]), opts(tmp_path)).jobs[0]
    argv = job.argv("/s.sh", hold=True, ids=["555"])
    assert "--hold" in argv and "--export=ALL,FORGE_APP_ID=555" in argv
    assert argv.index("--export=ALL,FORGE_APP_ID=555") < argv.index("/s.sh")


# -- logs ---------------------------------------------------------------------------------


def test_open_mode_append_in_header_and_srun(tmp_path):
    text = build_request(AppDef("app", roles=[role()]), opts(tmp_path)).jobs[0].materialize()
    assert "#SBATCH --open-mode=append" in text.splitlines()
    (g,) = srun_words(tmp_path, text, SLURM_JOB_ID="9")
    assert "--open-mode=append" in launcher(g)["srun"]


def test_percent_in_log_dir_escaped_for_srun(tmp_path):
    logs = str(tmp_path / "50% done %j")
    text = build_request(AppDef("my app", roles=[role()]), opts(tmp_path, log_dir=logs)).jobs[0].materialize()
    (g,) = srun_words(tmp_path, text, SLURM_JOB_ID="9")
    esc = logs.replace("%", "%%")
    assert f"--output={esc}/my_app-9-trainer-0.out" in launcher(g)["srun"]
    assert f"--error={esc}/my_app-9-trainer-0.err" in launcher(g)["srun"]
    assert os.path.isdir(logs)  # the script's mkdir uses the literal path


def test_percent_in_log_dir_escaped_for_batch_output(tmp_path):
    logs = str(tmp_path / "50% done")
    text = build_request(AppDef("app", roles=[role()]), opts(tmp_path, log_dir=logs)).jobs[0].materialize()
    assert f'#SBATCH --output="{logs.replace("%", "%%")}/app-%j.batch.log"' in text.splitlines()


def test_relative_state_dir_is_exported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = build_request(AppDef("app", roles=[role(image="/work")]), opts(tmp_path, state_dir="rel/st")).jobs[0].materialize()
    assert f"export FORGE_STATE_DIR={tmp_path}/rel/st" in text.splitlines()


# -- dryrun masking -----------------------------------------------------------------------


def test_dryrun_masks_secret_env_but_materialize_keeps_it(tmp_path):
    env = {**SECRETS, "PLAIN_VAR": "visible,value"}
    req = build_request(AppDef("app", roles=[role(env=env)]), opts(tmp_path))
    shown = repr(req)
    assert "sbatch --parsable $SBATCH_SCRIPT" in shown and "# job 1 of 1 (het)" in shown  # one job: not held
    for key, value in SECRETS.items():
        assert shlex.quote(f"{key}=****") in shown
        assert value not in shown
    assert "PLAIN_VAR=visible,value" in shown
    (g,) = srun_words(tmp_path, req.jobs[0].materialize(), SLURM_JOB_ID="9")
    assert launcher(g)["env"] == [f"{k}={v}" for k, v in env.items()]


def test_het_job_index_and_name(tmp_path):
    app = AppDef("app", roles=[role()])
    job = het_job(app, app.roles, opts(tmp_path), index=3)
    assert job.index == 3 and job.app_name == "app" and job.array is None


# -- arrays (built by hand: one component, replica from the task id) ---------------------------


def test_array_job_script_derives_replica_and_log_names(tmp_path):
    o = opts(tmp_path, log_dir=str(tmp_path / "l"))
    comp = component_for(role("sweep", args=["--seed=${replica_id}", "${app_id}"]), None, o, "sweep", 1)
    job = JobRequest(app_name="app", index=1, components=(comp,), opts=o, array=ArraySpec(size=5, offset=10, throttle=2))
    text = job.materialize()
    assert job.kind == "array" and "#SBATCH --array=0-4%2" in text.splitlines()
    (g,) = srun_words(tmp_path, text, SLURM_JOB_ID="52", SLURM_ARRAY_JOB_ID="50", SLURM_ARRAY_TASK_ID="2")
    parts = launcher(g)
    assert "--replica" not in parts["opt"] and parts["argv"] == ["prog", "--seed=12", "50"]
    assert f"--output={tmp_path}/l/app-50_2-sweep-12.out" in parts["srun"]


def test_array_throttle_only_when_smaller_than_size():
    assert ArraySpec(size=3).flag == "--array=0-2"
    assert ArraySpec(size=3, throttle=3).flag == "--array=0-2"
    assert ArraySpec(size=3, throttle=1).flag == "--array=0-2%1"


def test_a_het_job_over_slurms_component_limit_is_refused_before_it_is_built(tmp_path):
    o = ForgeOpts.of(state_dir=str(tmp_path), python=sys.executable)
    build_request(AppDef("ok", roles=[role("a", MAX_HET_COMPONENTS - 1), role("b", 1)]), o)
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        build_request(AppDef("ddp", roles=[role("trainer", 100_000_000)]), o)
    assert time.monotonic() - start < HANG
    assert str(err.value).startswith("app 'ddp': its role(s) 'trainer' have 100,000,000 replicas: they run as one"
                                     " heterogeneous job, a component per replica, and Slurm takes at most 128")


def test_an_array_role_over_the_sweep_limit_is_refused_before_its_arrays_are_cut(tmp_path, monkeypatch):
    from torchx_forge.appdef.meta import ForgeMeta

    monkeypatch.delenv("FORGE_SWEEP_LIMIT", raising=False)
    o = ForgeOpts.of(state_dir=str(tmp_path), python=sys.executable)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"^app 'big' role 'sweep': the role has 1,000,000,000,000 replicas, more than"):
        build_request(AppDef("big", roles=[ForgeMeta(array=True).apply(role("sweep", 10**12))]), o)
    assert time.monotonic() - start < HANG


# -- how tasks start the launcher ------------------------------------------------------------


def start_words(lines: List[str]) -> List[str]:
    return bash_words("\n".join(lines) + '\nprintf "%s\\0" "${forge_launch[@]}"', {})


def test_the_launcher_starts_without_site_where_it_imports_this_torchx_forge(tmp_path):
    assert start_words(launch_lines(opts(tmp_path, python=sys.executable))) == ["-S", BOOT]


@pytest.mark.parametrize("kw", [{"python": "/opt/my py/bin/python3"}, {"state_dir": "s3://bucket/forge"},
                                {"container_runtime": "pyxis"}], ids=["other-python", "url-state-dir", "pyxis"])
def test_the_launcher_starts_as_a_module_where_another_torchx_forge_or_fsspec_may_be_needed(tmp_path, kw):
    o = opts(tmp_path, **{"python": sys.executable, **kw})
    assert start_words(launch_lines(o)) == ["-m", "torchx_forge.node.launch"]


def test_a_node_without_the_boot_file_starts_the_launcher_as_a_module(tmp_path):
    lines = [line.replace(shlex.quote(BOOT), shlex.quote(str(tmp_path / "gone.py"))) for line in
             launch_lines(opts(tmp_path, python=sys.executable))]
    assert start_words(lines) == ["-m", "torchx_forge.node.launch"]
