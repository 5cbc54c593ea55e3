"""Container runtimes as far as the generated script (no runtime is installed here)."""

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.errors import ConfigError
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.options import ForgeOpts, build_runopts


def script(tmp_path, image="ghcr.io/pytorch/torchx:0.7.0", gpu=0, **opts):
    role = Role("train", image=image, entrypoint="python", args=["train.py", "--lr", "0.1"],
                resource=Resource(cpu=1, gpu=gpu, memMB=0))
    o = ForgeOpts(state_dir=str(tmp_path), python="py", **opts)
    return build_request(AppDef("app", roles=[role]), o).jobs[0].materialize()


def srun_line(text):
    return next(line for line in text.splitlines() if line.startswith("srun "))


def test_apptainer_wraps_only_the_program(tmp_path):
    line = srun_line(script(tmp_path, container_runtime="apptainer", container_mounts="/data:/data,/scratch:/s", gpu=1))
    launcher, program = line.split(" -- ", 1)
    assert '"$forge_python" "${forge_launch[@]}" --role train' in launcher  # the launcher stays on the host
    assert program == "apptainer exec --nv --bind /data:/data,/scratch:/s docker://ghcr.io/pytorch/torchx:0.7.0 python train.py --lr 0.1"


def test_singularity_with_a_sif_file_and_no_gpu(tmp_path):
    line = srun_line(script(tmp_path, image="/images/torch.sif", container_runtime="singularity"))
    assert line.endswith("-- singularity exec /images/torch.sif python train.py --lr 0.1")
    assert "--chdir" not in line  # an image path is not a working directory here


def test_pyxis_puts_the_image_on_srun(tmp_path):
    line = srun_line(script(tmp_path, container_runtime="pyxis", container_image="nvcr.io#nvidia/pytorch:24.01-py3",
                            container_mounts="/data:/data"))
    assert "--container-image=nvcr.io#nvidia/pytorch:24.01-py3" in line and "--container-mounts=/data:/data" in line
    assert line.split(" -- ", 1)[1] == "python train.py --lr 0.1"


def test_without_a_runtime_an_absolute_image_dir_is_the_workdir(tmp_path):
    assert "--chdir=/work/project" in srun_line(script(tmp_path, image="/work/project"))
    assert "--chdir" not in srun_line(script(tmp_path))  # TorchX's default image name is ignored


def test_unknown_runtime_is_a_clear_error():
    opts = build_runopts()
    with pytest.raises(ConfigError, match="container_runtime.*docker.*expected one of none, apptainer, singularity, pyxis"):
        opts.resolve(opts.cfg_from_str("container_runtime=docker"))


def test_runtime_without_any_image_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="needs an image"):
        script(tmp_path, image="", container_runtime="apptainer")
