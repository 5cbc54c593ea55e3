"""Installing torchx-forge adds slurm_forge and takes nothing away from TorchX users, on torchx 0.7
(entry points) and on TorchX main (its ``torchx_plugins`` registry)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest
from torchx.schedulers import DEFAULT_SCHEDULER_MODULES, get_scheduler_factories
from torchx.specs.finder import get_components

from conftest import REPO, run_torchx
from torchx_forge.compat import HAS_PLUGIN_REGISTRY, component_names
from torchx_forge.scheduler import SlurmForgeScheduler

#: TorchX main's torchx_plugins registry: .ci/nightly runs these; on torchx 0.7 they are deselected (conftest)
main_only = pytest.mark.torchx_main(available=HAS_PLUGIN_REGISTRY)


def python(code: str, cwd: Path, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter away from the repo, with no .torchxconfig in reach."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"HOME": str(cwd), "PATH": "/usr/bin:/bin", **(env or {})})


def test_every_builtin_scheduler_is_still_registered():
    factories = get_scheduler_factories()
    assert "slurm_forge" in factories
    missing = set(DEFAULT_SCHEDULER_MODULES) - set(factories)
    assert not missing, f"installing torchx-forge hid built-in schedulers: {missing}"


def test_no_scheduler_is_registered_that_this_torchx_lacks():
    # torchx 0.7: its ten built-ins, registered again; TorchX main deleted six of them
    assert set(get_scheduler_factories()) == set(DEFAULT_SCHEDULER_MODULES) | {"slurm_forge"}


def test_slurm_forge_factory_builds_our_scheduler():
    sched = get_scheduler_factories()["slurm_forge"]("sess")
    assert isinstance(sched, SlurmForgeScheduler)
    assert sched.backend == "slurm_forge" and sched.session_name == "sess"


def test_every_builtin_component_keeps_its_name():
    builtin = set(component_names("torchx.components"))
    assert {"utils.echo", "dist.ddp", "utils.sh"} <= builtin
    names = set(get_components())
    assert builtin <= names, f"hidden: {builtin - names}"


def test_without_a_torchxconfig_the_default_scheduler_exists(tmp_path: Path):
    p = python("from torchx.schedulers import get_default_scheduler_name as g, get_scheduler_factories as f\n"
               "name = g(); f()[name]('s'); print(name)", tmp_path)
    assert p.returncode == 0, p.stderr
    # TorchX main puts plugins first; torchx 0.7 takes the first entry point, and packaging tools
    # write them sorted by name (docs/torchx-versions.md says so, and that .torchxconfig pins slurm_forge)
    assert p.stdout.strip() == ("slurm_forge" if HAS_PLUGIN_REGISTRY else "aws_batch")


def test_without_a_torchxconfig_a_dryrun_of_a_builtin_component_is_clean(tmp_path: Path):
    p = run_torchx("run", "--dryrun", "utils.echo", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert "Traceback" not in p.stderr and "ModuleNotFoundError" not in p.stderr, p.stderr
    if HAS_PLUGIN_REGISTRY:  # torchx 0.7's default, aws_batch, asks for its queue instead
        assert p.returncode == 0 and "torchx_forge.node.launch" in p.stdout


def test_shipped_torchxconfig_pins_slurm_forge(tmp_path: Path):
    text = (REPO / ".torchxconfig").read_text()
    assert "[cli:run]" in text and "scheduler = slurm_forge" in text
    out = run_torchx("runopts", "slurm_forge", cwd=tmp_path)
    assert out.returncode == 0 and "sbatch_args" in out.stdout


def test_no_top_level_components_package_is_installed(tmp_path: Path):
    p = python("import importlib.util as u; print(u.find_spec('components'), u.find_spec('torchx_forge_components') is not None)",
               tmp_path)
    assert p.stdout.split() == ["None", "True"], p.stdout + p.stderr


def test_the_namespace_plugin_is_installed_and_builds_our_scheduler(tmp_path: Path):
    p = python("import torchx_plugins.schedulers.slurm_forge as m; print(type(m.slurm_forge('s')).__name__)", tmp_path)
    assert p.stdout.strip() == "SlurmForgeScheduler", p.stderr


@main_only
def test_torchx_main_finds_slurm_forge_in_its_namespace_registry_alone(tmp_path: Path):
    p = python("from torchx.schedulers import get_scheduler_factories as f; print(sorted(f()))", tmp_path,
               env={"TORCHX_PLUGINS_SOURCE": "1"})
    assert p.stdout.strip() == str(sorted([*DEFAULT_SCHEDULER_MODULES, "slurm_forge"])), p.stderr


@main_only
@pytest.mark.parametrize("source", ["3", "1", "2"])
def test_torchx_main_registers_slurm_forge_once_and_no_dead_builtin(tmp_path: Path, source: str):
    p = run_torchx("runopts", cwd=tmp_path, env={"HOME": str(tmp_path), "TORCHX_PLUGINS_SOURCE": source})
    assert p.returncode == 0, p.stderr
    assert "registered via both" not in p.stderr and "No module named" not in p.stdout + p.stderr
    assert "slurm_forge" in p.stdout and "aws_batch" not in p.stdout


@main_only
def test_torchx_main_registry_reports_no_error():
    from torchx import plugins

    assert plugins.registry().load_errors(plugins.PluginType.SCHEDULER) == []
