"""LocalFiles answers as fsspec's LocalFileSystem does, for every call a Store makes on a local dir."""

from __future__ import annotations

import os

import pytest
from fsspec.implementations.local import LocalFileSystem

from torchx_forge.state.localfs import LocalFiles
from torchx_forge.state.store import Store


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_bytes(b'{"a": 1}')
    (tmp_path / "d" / "b.json").write_bytes(b"")
    (tmp_path / "f").write_bytes(b"x\n")
    return tmp_path


@pytest.mark.parametrize("name", ["d", "d/a.json", "f", "missing", "d/missing"])
def test_exists_and_ls_match_fsspec(tree, name):
    path, ours, theirs = str(tree / name), LocalFiles(), LocalFileSystem()
    assert ours.exists(path) == theirs.exists(path)
    try:
        want = sorted(str(p) for p in theirs.ls(path, detail=False))
    except FileNotFoundError:
        with pytest.raises(FileNotFoundError):
            ours.ls(path)
        return
    assert sorted(ours.ls(path)) == want


def test_cat_returns_bytes_and_errors_in_place_like_fsspec(tree):
    paths = [str(tree / "d" / "a.json"), str(tree / "d" / "b.json"), str(tree / "d" / "gone.json")]
    ours, theirs = LocalFiles().cat(paths, on_error="return"), LocalFileSystem().cat(paths, on_error="return")
    assert set(ours) == set(theirs)
    for p in paths[:2]:
        assert ours[p] == theirs[p]
    assert isinstance(ours[paths[2]], FileNotFoundError) and isinstance(theirs[paths[2]], FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        LocalFiles().cat(paths)
    with pytest.raises(FileNotFoundError):
        LocalFiles().cat_file(paths[2])


def test_rm_and_makedirs(tree):
    fs = LocalFiles()
    fs.rm_file(str(tree / "f"))
    assert not os.path.exists(tree / "f")
    with pytest.raises(FileNotFoundError):
        fs.rm_file(str(tree / "f"))
    fs.makedirs(str(tree / "x" / "y"), exist_ok=True)
    fs.makedirs(str(tree / "x" / "y"), exist_ok=True)
    assert (tree / "x" / "y").is_dir()


@pytest.mark.parametrize("spelled", ["{p}", "{p}/", "file://{p}"])
def test_a_local_store_has_the_root_fsspec_gave_it(tmp_path, spelled):
    url = spelled.format(p=tmp_path)
    store = Store(url)
    assert store.local and isinstance(store.fs, LocalFiles)
    assert store.root == str(tmp_path)
    assert store.write_json("r/one.json", {"k": [1]}) == str(tmp_path / "r" / "one.json")
    assert store.read_json("r/one.json") == {"k": [1]} and store.read_json("r/two.json") is None
    assert store.listdir("r") == ["one.json"] and store.listdir("nothing") == []


def test_a_relative_and_a_home_path_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Store("rel/state").root == str(tmp_path / "rel" / "state")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Store("~/s").root == str(tmp_path / "s")
