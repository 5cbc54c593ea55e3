"""Workspace snapshots: what is shipped, what names it, and that the cluster side ends with one read-only copy.

Real files under tmp_path; the "cluster" is this machine (LocalTransport), its shared file system another tmp dir.
"""

from __future__ import annotations

import gzip
import io
import os
import shlex
import stat
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import List, Optional, Sequence

import pytest

from torchx_forge.core.errors import ForgeError
from torchx_forge.remote.snapshot import LocalTransport, SnapshotError, Tree, archive, scan, ship


class CountingTransport(LocalTransport):
    """LocalTransport that keeps the argv and the output of each call."""

    def __init__(self) -> None:
        self.calls: List[List[str]] = []
        self.outputs: List[str] = []

    def run(self, argv: Sequence[str], input: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
        self.calls.append(list(argv))
        p = super().run(argv, input)
        self.outputs.append(p.stdout.decode().strip())
        return p


class ShellTransport(LocalTransport):
    """What ssh does with argv: one string, shlex-joined, that the remote user's shell parses again."""

    def run(self, argv: Sequence[str], input: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
        return super().run(["sh", "-c", shlex.join(argv)], input)


def write(root: Path, rel: str, content: bytes = b"x", executable: bool = False) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if executable:
        path.chmod(0o755)
    return path


def paths(tree: Tree) -> List[str]:
    return [f.path for f in tree.files]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write(root, "train.py", b"print('train')\n")
    write(root, "run.sh", b"#!/bin/sh\necho run\n", executable=True)
    write(root, "pkg/model.py", b"class M: ...\n")
    return root


def test_excluded_by_default_and_by_torchxignore_with_reinclusion(ws: Path):
    for rel in [".git/HEAD", "pkg/__pycache__/model.cpython-311.pyc", "stray.pyc", "vendor/blob.pyc",
                "ckpt/step1.pt", "ckpt/keep.txt", "pkg/ckpt/step2.pt", "data/big.bin", "data/small.csv",
                "a.log", "pkg/deep/er/b.log", "pkg/deep/er/keep.log", "top.txt", "pkg/top.txt"]:
        write(ws, rel)
    (ws / ".torchxignore").write_text(
        "# checkpoints anywhere, data but one file, logs but keep.log\n"
        "ckpt/\n!ckpt/keep.txt\ndata/*\n!data/small.csv\n*.log\n!keep.log\n/top.txt\n!vendor/*.pyc\n"
    )
    assert paths(scan(str(ws))) == [
        ".torchxignore", "data/small.csv", "pkg/deep/er/keep.log", "pkg/model.py", "pkg/top.txt", "run.sh",
        "train.py", "vendor/blob.pyc",
    ]  # ckpt/keep.txt stays out: as in git, nothing inside an excluded directory is re-included


def test_another_ignore_file_name(ws: Path):
    write(ws, "notes.md")
    (ws / ".shipignore").write_text("*.md\n")
    assert "notes.md" in paths(scan(str(ws)))
    assert "notes.md" not in paths(scan(str(ws), ignore_file=".shipignore"))


def test_files_carry_size_and_exec_bit(ws: Path):
    files = {f.path: f for f in scan(str(ws)).files}
    assert files["run.sh"].executable and not files["train.py"].executable
    assert files["train.py"].size == len(b"print('train')\n")


def test_digest_is_stable_and_ignores_times_and_excluded_files(ws: Path):
    first = scan(str(ws))
    assert scan(str(ws)).digest == first.digest
    os.utime(ws / "train.py", ns=(1, 1))
    write(ws, "__pycache__/x.pyc", b"new")
    assert scan(str(ws)).digest == first.digest


@pytest.mark.parametrize("change", ["content", "exec bit", "rename", "new file", "removed file"])
def test_digest_changes_with_content_exec_bit_and_names(ws: Path, change: str):
    before = scan(str(ws)).digest
    if change == "content":
        (ws / "train.py").write_bytes(b"print('Train')\n")
    elif change == "exec bit":
        (ws / "train.py").chmod(0o755)
    elif change == "rename":
        (ws / "train.py").rename(ws / "train2.py")
    elif change == "new file":
        write(ws, "pkg/__init__.py", b"")
    else:
        (ws / "pkg/model.py").unlink()
    assert scan(str(ws)).digest != before


def test_ship_twice_copies_once_and_the_second_time_is_one_call(ws: Path, tmp_path: Path):
    remote, said = tmp_path / "shared" / "snapshots", []
    tree = scan(str(ws))
    transport = CountingTransport()
    path = ship(transport, tree, str(remote), said.append)
    assert path == f"{remote}/{tree.digest[:16]}"
    assert len(transport.calls) == 2 and said == [f"shipping 3 files (0.0 MB, 0.0 MB gzipped) to {path}"]
    transport.calls.clear()
    assert ship(transport, scan(str(ws)), str(remote), said.append) == path
    assert len(transport.calls) == 1
    assert said[-1] == f"snapshot {tree.digest[:16]} is on the cluster already: {path}"
    assert os.listdir(remote) == [tree.digest[:16]]


@pytest.mark.parametrize("transport", [LocalTransport(), ShellTransport()], ids=["argv", "through a shell"])
def test_shipped_files_are_byte_identical_whatever_their_names(ws: Path, tmp_path: Path, transport: LocalTransport):
    odd = ["with space.txt", "quo'te\"s.txt", "$HOME and `id`.txt", "naïve/ünïcode €.py", "back\\slash", "-dash",
           "semi;colon|pipe&.txt", "new\nline.txt", "a" * 120 + "/" + "b" * 120 + ".txt"]
    for i, rel in enumerate(odd):
        write(ws, rel, bytes(range(256)) * (i + 1), executable=i % 2 == 1)
    remote = tmp_path / "shared dir with $pace 'n \"quotes\""
    path = Path(ship(transport, scan(str(ws)), str(remote)))
    shipped = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert shipped == sorted(["train.py", "run.sh", "pkg/model.py", *odd])
    for rel in shipped:
        assert (path / rel).read_bytes() == (ws / rel).read_bytes(), rel
        assert os.access(path / rel, os.X_OK) == os.access(ws / rel, os.X_OK), rel


def test_the_snapshot_is_read_only(ws: Path, tmp_path: Path):
    path = Path(ship(LocalTransport(), scan(str(ws)), str(tmp_path / "shared")))
    for p in [path, *path.rglob("*")]:
        assert p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0, p
    assert stat.S_IMODE(path.stat().st_mode) == 0o555  # readable by the jobs of others too
    assert stat.S_IMODE((path / "run.sh").stat().st_mode) == 0o555


def test_two_clients_shipping_one_tree_at_once_end_with_one_snapshot(ws: Path, tmp_path: Path):
    remote = tmp_path / "shared"
    both_checked = threading.Barrier(2, timeout=30)

    class RacingTransport(CountingTransport):
        def run(self, argv: Sequence[str], input: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
            if input is not None:
                both_checked.wait()  # each saw no snapshot: both upload and extract
            return super().run(argv, input)

    transports = [RacingTransport(), RacingTransport()]
    results: List[str] = []
    errors: List[BaseException] = []
    tree = scan(str(ws))

    def client(t: RacingTransport) -> None:
        try:
            results.append(ship(t, tree, str(remote)))
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(t,)) for t in transports]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert [t.outputs[0] for t in transports] == ["absent", "absent"]
    assert sorted(t.outputs[1] for t in transports) == ["present", "shipped"]  # the second rename found the first's
    assert os.listdir(remote) == [tree.digest[:16]]
    assert (Path(results[0]) / "train.py").read_bytes() == b"print('train')\n"


def test_a_failed_remote_call_names_the_snapshot_and_the_first_line_of_stderr(ws: Path, tmp_path: Path):
    write(tmp_path, "not-a-dir")
    with pytest.raises(SnapshotError) as e:
        ship(LocalTransport(), scan(str(ws)), str(tmp_path / "not-a-dir" / "snaps"))
    text = str(e.value)
    assert isinstance(e.value, ForgeError) and "\n" not in text
    assert f"{tmp_path}/not-a-dir/snaps/" in text and "mkdir" in text and "exit code 1" in text
    assert sorted(os.listdir(tmp_path)) == ["not-a-dir", "ws"]


def test_a_symlink_to_a_file_inside_ships_as_a_copy(ws: Path, tmp_path: Path):
    (ws / "latest.py").symlink_to("pkg/model.py")
    tree = scan(str(ws))
    assert "latest.py" in paths(tree)
    path = Path(ship(LocalTransport(), tree, str(tmp_path / "shared")))
    assert not (path / "latest.py").is_symlink() and (path / "latest.py").read_bytes() == b"class M: ...\n"


@pytest.mark.parametrize(("make", "said"), [
    (lambda ws, out: (ws / "secrets").symlink_to(out / "id_rsa"), "secrets: a symlink that leads out of the workspace"),
    (lambda ws, out: (ws / "datasets").symlink_to(out), "datasets: a symlink that leads to a directory"),
    (lambda ws, out: (ws / "pkg" / "inner").symlink_to(ws / "pkg"), "pkg/inner: a symlink that leads to a directory"),
    (lambda ws, out: (ws / "gone").symlink_to(ws / "nothing"), "gone: a symlink that leads nowhere"),
])
def test_other_symlinks_are_refused_with_what_to_do(ws: Path, tmp_path: Path, make, said: str):
    outside = tmp_path / "outside"
    write(outside, "id_rsa")
    make(ws, outside)
    with pytest.raises(SnapshotError, match=said) as e:
        scan(str(ws))
    assert ".torchxignore" in str(e.value)


def test_an_excluded_symlink_is_no_problem(ws: Path, tmp_path: Path):
    write(tmp_path / "outside", "big.bin")
    (ws / "data").symlink_to(tmp_path / "outside")
    (ws / "weights.bin").symlink_to(tmp_path / "outside" / "big.bin")
    (ws / ".torchxignore").write_text("data/\n*.bin\n")
    assert paths(scan(str(ws))) == [".torchxignore", "pkg/model.py", "run.sh", "train.py"]


def test_the_archive_is_the_same_bytes_each_time_with_times_and_owners_zeroed(ws: Path):
    tree = scan(str(ws))
    data = archive(tree)
    assert archive(scan(str(ws))) == data
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["pkg", "pkg/model.py", "run.sh", "train.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, 0, "", "")}
    assert [members[n].mode for n in ["pkg", "pkg/model.py", "run.sh"]] == [0o755, 0o644, 0o755]


def test_the_hash_cache_spares_reading_unchanged_files(ws: Path, tmp_path: Path):
    cache = str(tmp_path / "hashes.json")
    old = 1_000_000_000_000_000_000
    for p in ws.rglob("*"):
        os.utime(p, ns=(old, old))
    first = scan(str(ws), cache=cache)
    assert scan(str(ws), cache=cache) == first
    # same size, same mtime, other content: the cache answers (that is how it spares the reads) ...
    (ws / "train.py").write_bytes(b"print('TRAIN')\n")
    os.utime(ws / "train.py", ns=(old, old))
    assert scan(str(ws), cache=cache).digest == first.digest
    assert scan(str(ws)).digest != first.digest
    # ... and a snapshot is never built of content its name does not say
    with pytest.raises(SnapshotError, match="train.py: changed in workspace .* while it was being shipped"):
        archive(scan(str(ws), cache=cache))


def test_a_file_just_written_is_not_cached(ws: Path, tmp_path: Path):
    cache = tmp_path / "hashes.json"
    scan(str(ws), cache=str(cache))
    assert cache.read_text() == "{}"  # mtimes within the clock's resolution: rehashed next time
    cache.write_text("{not json")
    assert scan(str(ws), cache=str(cache)) == scan(str(ws))  # a damaged cache is no cache
    assert scan(str(ws), cache=str(tmp_path / "absent" / "hashes.json")) == scan(str(ws))  # nor one that cannot be written
