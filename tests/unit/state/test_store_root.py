"""A state dir that cannot be used is an error for every verb, ``torchx list`` too (it used to print an
empty table): the store makes its root when it is missing, and says when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchx_forge.errors import ConfigError
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm


def test_a_missing_state_dir_is_made_one_that_cannot_be_is_an_oserror(tmp_path: Path):
    Store(str(tmp_path / "new" / "state")).make_root()
    assert (tmp_path / "new" / "state").is_dir()
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file", tmp_path / "file" / "state", Path("/proc/nope")):
        with pytest.raises(OSError):
            Store(str(bad)).make_root()


def test_list_of_an_unusable_state_dir_is_one_line_naming_it_and_where_it_came_from(tmp_path: Path, monkeypatch):
    (tmp_path / "file").write_text("")
    bad = str(tmp_path / "file" / "state")
    monkeypatch.setenv("FORGE_STATE_DIR", bad)
    with pytest.raises(ConfigError) as e:
        SlurmForgeScheduler("torchx", cli=FakeSlurm()).list_apps()
    assert str(e.value).startswith(f"state dir {bad}: cannot write there (") and "$FORGE_STATE_DIR" in str(e.value)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "fresh"))  # one not made yet: an empty list
    assert SlurmForgeScheduler("torchx", cli=FakeSlurm()).list_apps() == []
