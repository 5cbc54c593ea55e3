"""A sweep written in Python (torchx_forge.sweeps), submitted through the Runner API to the real cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchx import specs
from torchx.runner import get_runner

from conftest import wait_end
from torchx_forge import sweeps
from torchx_forge.experiment.sweep import expand

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def test_a_python_sweep_runs_on_the_cluster(state_dir: Path):
    exp = sweeps.Experiment(name="py", run=sweeps.Run(command=["echo"]),
                            sweep=sweeps.Sweep(random=sweeps.Random(4, {"run.args.lr": sweeps.loguniform(1e-4, 1e-2)}, seed=9)))
    with get_runner() as runner:
        handle = runner.run(sweeps.appdef(exp), scheduler="slurm_forge")
        assert runner.wait(handle, wait_interval=2).state == specs.AppState.SUCCEEDED
        lines = "".join(runner.log_lines(handle, "py", 3))
    lr = dict(expand(sweeps.experiment(exp))[3].params)["run.args.lr"]
    assert lines.strip() == f"--lr {lr}"
    assert wait_end(handle) == "SUCCEEDED"
