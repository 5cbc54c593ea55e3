"""Forge's errors are its own: plain Exceptions, adapted to TorchX's types only where TorchX needs them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from torchx.specs.finder import ComponentValidationException

from conftest import REPO
from torchx_forge.core.storage import StoreError, StoreUnreachableError
from torchx_forge.errors import ConfigError, ForgeError, SlurmError, SlurmNotFoundError, UnknownAppError
from torchx_forge.torchx_errors import component_errors, is_user_error


def test_every_forge_error_is_a_forge_error_and_none_is_a_torchx_exception():
    errors = [ConfigError("runopt 'x'", "bad"), SlurmError(["sbatch"], 1, "sbatch: error: no"),
              SlurmNotFoundError("sbatch"), UnknownAppError("no app '1'"), StoreUnreachableError("s3://b", "timeout")]
    for e in errors:
        assert isinstance(e, ForgeError) and is_user_error(e)
        assert not isinstance(e, ComponentValidationException), type(e)
    assert isinstance(errors[0], ValueError) and isinstance(errors[-1], (OSError, StoreError))
    assert not is_user_error(RuntimeError("a bug")) and not is_user_error(OSError("disk"))


def test_a_component_reports_forge_errors_as_torchx_component_errors():
    with pytest.raises(ComponentValidationException) as e, component_errors():
        raise ConfigError("exp.yaml:3", "sweep.max_runs: expected a whole number")
    assert str(e.value) == "exp.yaml:3: sweep.max_runs: expected a whole number"
    assert isinstance(e.value.__cause__, ConfigError)
    with pytest.raises(KeyError), component_errors():  # a bug stays itself
        raise KeyError("x")


def test_the_shipped_components_raise_torchx_component_errors_for_bad_input(tmp_path):
    spec = importlib.util.spec_from_file_location("forge_components_under_test", REPO / "components" / "forge.py")
    forge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(forge)
    with pytest.raises(ComponentValidationException, match="cannot read the experiment file"):
        forge.sweep(config=str(tmp_path / "nonexistent.yaml"))
    with pytest.raises(ComponentValidationException, match="give the command to sweep after --"):
        forge.grid(axes="lr=[1,2]")
    with pytest.raises(ComponentValidationException, match="cannot read"):
        forge.pipeline(config=str(tmp_path / "nonexistent.yaml"))


def test_inside_the_torchx_program_importing_forge_leaves_the_excepthook_alone_using_slurm_forge_sets_it():
    code = ("import sys, threading; sys.argv[0] = '/usr/bin/torchx'; before = (sys.excepthook, threading.excepthook)\n"
            "import torchx_forge.cli, torchx_forge.scheduler\n"
            "print((sys.excepthook, threading.excepthook) == before)\n"
            "torchx_forge.scheduler.create_scheduler('s')\n"
            "print(sys.excepthook is not before[0] and threading.excepthook is not before[1])\n"
            "from torchx_forge.errors import UnknownAppError\n"
            "raise UnknownAppError('no app 12')\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.stdout.split() == ["True", "True"], p.stderr
    assert p.returncode == 1 and p.stderr == "torchx: error: no app 12\n"


def test_the_torchx_verb_is_read_past_torchx_own_options(monkeypatch):
    from torchx_forge.torchx_errors import torchx_verb

    for argv, verb in ((["/usr/bin/torchx", "log", "slurm_forge://torchx/1"], "log"),
                       (["torchx", "--log_level", "DEBUG", "status", "h"], "status"),
                       (["torchx", "--log_level=DEBUG", "log", "h"], "log"), (["torchx"], ""),
                       (["/usr/bin/python3", "log"], "")):  # not the torchx program
        monkeypatch.setattr(sys, "argv", argv)
        assert torchx_verb() == verb, argv
