"""decide.sh and the trial script's last lines: a trial whose tasks ended submits its decision job from bash."""

from __future__ import annotations

import os
import stat
import subprocess

from torchx_forge.slurm.search_end import PLACEHOLDER, decide_script, epilogue

# prints each argument on a line of its own (newlines inside one shown as \n), then what it inherited
STUB = """#!/bin/bash
for a in "$@"; do printf '%s\\n' "${a//$'\\n'/\\\\n}"; done
echo "env SLURM_JOB_ID=${SLURM_JOB_ID:-unset} SBATCH_ACCOUNT=${SBATCH_ACCOUNT:-unset} SLURM_CONF=${SLURM_CONF:-unset} KEEP=${KEEP:-unset}"
"""


def _run(tmp_path, argv, tag):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "sbatch").write_text(STUB)
    (bin_dir / "sbatch").chmod(stat.S_IRWXU)
    script = tmp_path / "decide.sh"
    script.write_text(decide_script(argv))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SBATCH_ACCOUNT": "a",
           "SLURM_CONF": "/etc/slurm/x.conf", "KEEP": "yes"}
    return subprocess.run(["bash", str(script), tag], env=env, capture_output=True, text=True)


def test_decide_sh_submits_with_the_trials_tag_every_word_unchanged_and_without_the_jobs_slurm_vars(tmp_path):
    wrap = f"for t in 1 2; do '/opt/my py/python' -m m --app 'it'\"'\"'s $HOME `x`' --tag {PLACEHOLDER} && exit 0; done"
    argv = ["sbatch", "--parsable", f"--comment=forge:{PLACEHOLDER}", "--output=/logs/a b/%j.log", f"--wrap={wrap}\nline 2"]
    p = _run(tmp_path, argv, "20261206-abc-t3r1a0")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:4] == ["--parsable", "--comment=forge:20261206-abc-t3r1a0dr", "--output=/logs/a b/%j.log",
                         "--wrap=" + wrap.replace(PLACEHOLDER, "20261206-abc-t3r1a0dr") + "\\nline 2"]
    assert lines[4] == "env SLURM_JOB_ID=unset SBATCH_ACCOUNT=unset SLURM_CONF=/etc/slurm/x.conf KEEP=yes"


def test_decide_sh_refuses_a_tag_it_could_not_put_in_a_comment(tmp_path):
    for tag in ["", "a b", "x;rm -rf /", "t$(id)"]:
        p = _run(tmp_path, ["sbatch", f"--comment=forge:{PLACEHOLDER}"], tag)
        assert p.returncode == 2 and "a trial's tag expected" in p.stderr and not p.stdout


def test_the_epilogue_runs_decide_sh_only_where_it_exists_and_says_what_it_submitted(tmp_path):
    script = tmp_path / "decide.sh"
    body = "\n".join(["set -u", *epilogue(), "echo end"])
    env = {"PATH": os.environ["PATH"], "FORGE_SEARCH_DECIDE": str(script), "FORGE_SEARCH_TAG": "s-t0r0a0"}
    p = subprocess.run(["bash", "-c", body], env=env, capture_output=True, text=True)
    assert p.stdout == "end\n"  # no decide.sh (an object store): the relay job decides
    script.write_text('echo "1234 for $1"\n')
    p = subprocess.run(["bash", "-c", body], env=env, capture_output=True, text=True)
    assert "the trial ended: decision job 1234 for s-t0r0a0" in p.stdout and p.stdout.endswith("end\n")
    script.write_text("exit 3\n")
    p = subprocess.run(["bash", "-c", body], env=env, capture_output=True, text=True)
    assert "not submitted (exit 3): the relay job submits it" in p.stdout
    p = subprocess.run(["bash", "-c", body], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True)
    assert p.stdout == "end\n" and p.returncode == 0  # not a search's trial
    script.write_text('echo "1234 for $1"\n')
    p = subprocess.run(["bash", "-c", "forge_stopped=1\n" + body], env=env, capture_output=True, text=True)
    assert p.stdout == "end\n"  # Slurm is stopping the job (preemption, cancel): its relay takes the end
