"""The package's shape holds: its import contracts (pyproject.toml), modules of a readable size, and a task's start-up stays light."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

#: the most lines a module of the package may have: a longer one does more than one thing
MAX_LINES = 400


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


def test_a_search_decision_on_a_local_state_dir_loads_neither_torchx_nor_fsspec(tmp_path):
    """Decision and relay jobs stand between a trial's end and the next trial's start: each 60 ms
    import is a slot left idle that long."""
    code = (
        "import json, sys\n"
        "import torchx_forge.slurm.search, torchx_forge.slurm.status, torchx_forge.slurm.search_status\n"
        "from torchx_forge.state.store import Store\n"
        f"s = Store({str(tmp_path)!r})\n"
        "s.write_json('a/b.json', {'x': 1}); assert s.read_many_json('a') == {'b': {'x': 1}}\n"
        "assert s.exists('a/b.json') and s.listdir('a') == ['b.json']; s.remove('a/b.json')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torchx', 'fsspec'))))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_no_module_is_over_400_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in (REPO / "torchx_forge").rglob("*.py")}
    assert len(sizes) > 50
    too_long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these by responsibility (at most {MAX_LINES} lines each): {too_long}"
