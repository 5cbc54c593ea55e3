"""Installing torchx-forge adds slurm_forge and takes nothing away from TorchX users."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from torchx.schedulers import DEFAULT_SCHEDULER_MODULES, get_scheduler_factories
from torchx.specs.finder import ModuleComponentsFinder, get_components

from conftest import run_torchx
from torchx_forge.scheduler import SlurmForgeScheduler


def test_every_builtin_scheduler_is_still_registered():
    factories = get_scheduler_factories()
    assert "slurm_forge" in factories
    missing = set(DEFAULT_SCHEDULER_MODULES) - set(factories)
    assert not missing, f"installing torchx-forge hid built-in schedulers: {missing}"


def test_slurm_forge_factory_builds_our_scheduler():
    sched = get_scheduler_factories()["slurm_forge"]("sess")
    assert isinstance(sched, SlurmForgeScheduler)
    assert sched.backend == "slurm_forge" and sched.session_name == "sess"


def test_every_builtin_component_keeps_its_name():
    builtin = {c.name for c in ModuleComponentsFinder("torchx.components", "").find() if not c.validation_errors}
    assert {"utils.echo", "dist.ddp", "utils.sh"} <= builtin
    names = set(get_components())
    assert builtin <= names, f"hidden: {builtin - names}"


def test_without_the_shipped_torchxconfig_the_default_is_aws_batch(tmp_path: Path):
    # documented in the README: entry points are written sorted by name
    p = subprocess.run(
        [sys.executable, "-c", "from torchx.schedulers import get_default_scheduler_name as g; print(g())"],
        cwd=tmp_path, capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert p.stdout.strip() == "aws_batch", p.stderr


def test_shipped_torchxconfig_pins_slurm_forge(tmp_path: Path):
    repo = Path(__file__).resolve().parent.parent
    text = (repo / ".torchxconfig").read_text()
    assert "[cli:run]" in text and "scheduler = slurm_forge" in text
    out = run_torchx("runopts", "slurm_forge", cwd=tmp_path)
    assert out.returncode == 0 and "sbatch_args" in out.stdout


def test_no_top_level_components_package_is_installed(tmp_path: Path):
    p = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('components'), u.find_spec('torchx_forge_components') is not None)"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert p.stdout.split() == ["None", "True"], p.stdout + p.stderr
