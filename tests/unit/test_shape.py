"""The package's shape holds: its import contracts (pyproject.toml), and a task's start-up stays light."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_import_contracts_are_kept():
    # the `lint-imports` command, run by the interpreter running the tests
    run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    p = subprocess.run([sys.executable, "-c", run, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout


def test_what_runs_on_every_task_loads_neither_torchx_nor_yaml_nor_fsspec():
    code = (
        "import json, sys\n"
        "import torchx_forge.node.launch, torchx_forge.node.task, torchx_forge.node.decide, torchx_forge.node.runtime\n"
        "import torchx_forge.runtime\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torchx', 'yaml', 'fsspec'))))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(p.stdout) == []
