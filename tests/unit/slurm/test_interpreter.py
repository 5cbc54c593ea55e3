"""Runopt python is checked before sbatch where this machine can tell (a path), and on the node by
the batch script otherwise (a bare name: every task's log names it)."""

import os
import subprocess
import sys

import pytest
from torchx.specs import Resource, Role

from torchx_forge.errors import ConfigError
from torchx_forge.slurm.jobs import component_for
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.request import ArraySpec, JobRequest


def role(name="r", replicas=1) -> Role:
    return Role(name, image="img", entrypoint="prog", num_replicas=replicas, resource=Resource(cpu=1, gpu=0, memMB=0))


@pytest.mark.parametrize("python, problem", [("/nonexistent/python", "does not exist"), ("/tmp", "is not an executable file"),
                                             ("/etc/passwd", "is not an executable file")])
def test_an_interpreter_path_that_cannot_run_is_refused(tmp_path, python, problem):
    with pytest.raises(ConfigError) as err:
        ForgeOpts.of(state_dir=str(tmp_path), python=python).check_python()
    assert str(err.value).startswith(f"runopt 'python': {python} {problem}")
    assert "\n" not in str(err.value)


def test_what_forge_cannot_check_here_is_left_to_the_node(tmp_path):
    for ok in (sys.executable, "python3", "no-such-python-anywhere", "./venv/bin/python"):
        ForgeOpts.of(state_dir=str(tmp_path), python=ok).check_python()
    ForgeOpts.of(state_dir=str(tmp_path), python="/nonexistent/python", container_runtime="pyxis",
                 container_image="img").check_python()  # the image's interpreter
    assert ForgeOpts.of(state_dir=str(tmp_path), python="~/venv/bin/python").python == os.path.expanduser("~/venv/bin/python")


def run_script(tmp_path, python: str, **env: str) -> subprocess.CompletedProcess:
    """An array task's batch script, run by bash with srun replaced by a function that prints 'srun ran'."""
    o = ForgeOpts.of(state_dir=str(tmp_path / "state"), log_dir=str(tmp_path / "logs"), python=python)
    job = JobRequest("app", 0, (component_for(role("sweep"), None, o, "sweep", 1),), o, array=ArraySpec(size=2))
    script = tmp_path / "job.sh"
    script.write_text(job.materialize())
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "8", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "1", **env}
    return subprocess.run(["bash", "-c", 'srun() { echo srun ran; }; source "$1"', "bash", str(script)], env=env,
                          capture_output=True, text=True)


def test_on_the_node_a_missing_interpreter_fails_every_task_with_a_line_naming_it(tmp_path):
    p = run_script(tmp_path, "no-such-python-anywhere")
    assert p.returncode == 127 and "srun ran" not in p.stdout
    line = ("torchx-forge: runopt python: no-such-python-anywhere is not an executable on {} (nor a name on its PATH);"
            " set -cfg python=PATH to a Python that has torchx_forge installed on the compute nodes\n")
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert p.stderr == line.format(host)  # the batch log
    assert (tmp_path / "logs" / "app-7_1-sweep-1.err").read_text() == line.format(host)  # the task's, as torchx log shows it
    p = run_script(tmp_path, sys.executable)
    assert p.returncode == 0 and p.stdout.startswith("srun ran\n"), p.stderr
