"""The code version an app was submitted from: git commit and, if dirty, the diff.

Recorded with every app (``record.json`` ``meta.code``); the diff is stored
content-addressed in the state dir, so re-submitting the same dirty tree
stores it once. Outside a git work tree nothing is recorded.
"""

from __future__ import annotations

import subprocess
from typing import Optional

from torchx_forge.core import layout
from torchx_forge.state.records import CodeVersion
from torchx_forge.state.store import Store


def _git(cwd: str, *args: str) -> Optional[str]:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def code_version(cwd: str, store: Store) -> Optional[CodeVersion]:
    """The commit of the git tree at ``cwd`` and, when it is dirty, its diff; None outside a git tree."""
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    if not status:
        return CodeVersion(commit.strip())
    diff = _git(cwd, "diff", "HEAD", "--binary") or ""
    _, path = store.put_content_addressed(layout.DIFFS, diff.encode(), suffix=".patch")
    return CodeVersion(commit.strip(), dirty=True, diff=path)
