"""Every FORGE_* variable is declared once (torchx_forge/core/envvars.py), used through that
declaration, and documented in docs/contract.md with who sets it."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from conftest import REPO
from torchx_forge.core import envvars
from torchx_forge.core.envvars import ALL, BY_NAME, PREFIX, EnvVar, SetBy

NAME = re.compile(r"\bFORGE_[A-Z0-9_]*")
DECLARATION = REPO / "torchx_forge" / "core" / "envvars.py"
#: user programs shipped as examples: they read the contract as any program does
USER_CODE = ("starters", "examples")


def test_the_declaration_is_complete_and_unambiguous():
    declared = [v for v in vars(envvars).values() if isinstance(v, EnvVar)]
    assert list(ALL) == declared
    assert len(BY_NAME) == len(ALL), "a name is declared twice"
    for v in ALL:
        assert re.fullmatch(r"FORGE_[A-Z0-9_]+", v.name) and v.name.startswith(PREFIX)
        assert v.meaning and v.set_by and len(set(v.set_by)) == len(v.set_by), v
        assert all(isinstance(s, SetBy) for s in v.set_by), v
    by_const = {k: v for k, v in vars(envvars).items() if isinstance(v, EnvVar)}
    assert all(v.name == PREFIX + k for k, v in by_const.items()), "a constant is named after its variable"


# -- docs/contract.md --------------------------------------------------------------------------------


def _rows(text: str) -> Iterator[Tuple[str, List[str], str]]:
    """(section, variables, set-by cell) of every table row that names FORGE_ variables."""
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 3 and cells[0].startswith("`FORGE_"):
            yield section, re.findall(r"`(FORGE_[A-Z0-9_]+)`", cells[0]), cells[1]


def test_contract_documents_every_variable_with_who_sets_it():
    text = (REPO / "docs" / "contract.md").read_text()
    documented: Dict[str, Tuple[str, Set[str]]] = {}
    for section, names, set_by in _rows(text):
        for name in names:
            assert name not in documented, f"docs/contract.md lists {name} twice"
            documented[name] = (section, {s.strip() for s in set_by.split(",")})
    missing = [v.name for v in ALL if v.name not in documented]
    assert not missing, f"docs/contract.md does not document {missing}"
    for v in ALL:
        section, set_by = documented[v.name]
        assert set_by == {s.value for s in v.set_by}, (
            f"docs/contract.md says {v.name} is set by {sorted(set_by)}; envvars.py: {[s.value for s in v.set_by]}")
        assert (section == "Internal variables") == v.internal, f"{v.name} is in the wrong table ({section})"


def _names_in(text: str) -> Set[str]:
    return set(NAME.findall(text))


def _stale(names: Set[str]) -> List[str]:
    """Names no declaration has (a ``FORGE_UPSTREAM_*`` style prefix counts when some name has it)."""
    return sorted(n for n in names if n not in BY_NAME and not (n.endswith("_") and any(v.startswith(n) for v in BY_NAME)))


def test_no_stale_name_in_the_docs_or_the_shipped_examples():
    pages = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
    shipped = [p for d in USER_CODE for p in sorted((REPO / "torchx_forge" / d).rglob("*"))
               if p.is_file() and "__pycache__" not in p.parts]
    for path in [*pages, *shipped, *sorted((REPO / "components").rglob("*.py"))]:
        stale = _stale(_names_in(path.read_text()))
        assert not stale, f"{path.relative_to(REPO)} names undeclared variables {stale}"


# -- the code uses the declaration -----------------------------------------------------------------


def _docstrings(tree: ast.AST) -> Set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def literals(path: Path) -> List[str]:
    """``line: text`` of every string constant (f-string parts included; docstrings not) and keyword
    argument (``env.update(FORGE_X=...)``) in ``path`` that names a FORGE_ variable."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if NAME.search(node.value):
                out.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith(PREFIX):
            out.append(f"{node.lineno}: {node.arg}=")
    return out


def test_literals_finds_what_it_must(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('def f(env, x):\n    """FORGE_X in a docstring is fine."""\n    env.update(FORGE_A=1)  # FORGE_Y\n'
                     '    return f"--export=FORGE_B={x}", "$FORGE_C", "FORGE"\n')
    assert sorted(line.split(":")[0] for line in literals(probe)) == ["3", "4", "4"]


def test_no_forge_name_is_spelled_out_in_the_code():
    found = []
    for path in sorted((REPO / "torchx_forge").rglob("*.py")):
        rel = path.relative_to(REPO / "torchx_forge")
        if path == DECLARATION or rel.parts[0] in USER_CODE:
            continue
        found += [f"torchx_forge/{rel}:{hit}" for hit in literals(path)]
    assert not found, "use torchx_forge.core.envvars instead of:\n" + "\n".join(found)
