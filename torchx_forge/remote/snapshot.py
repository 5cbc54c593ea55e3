"""The workspace on the cluster's shared file system as an immutable snapshot named by its content.

:func:`scan` lists the workspace's files and digests them; :func:`ship` makes sure
``<remote_dir>/<digest[:16]>`` exists on the cluster: one remote call if it does, else one more that
takes a gzipped tar on stdin, extracts it next to the target, makes it read-only and renames it into
place (no job sees half a snapshot; two clients shipping one tree at once end with one snapshot).

Left out: ``.git/``, ``__pycache__/``, ``*.pyc``, then what the workspace's top-level ``.torchxignore``
says, with ``.gitignore`` rules (``!`` re-includes; as in git, nothing inside an excluded directory
can be: exclude ``data/*``, not ``data/``, to keep ``!data/small.csv``). Empty directories are not
shipped. A symlink to a file inside the workspace ships as a copy; one leading out of it, to a
directory or nowhere is refused unless excluded. The cluster needs ``sh``, ``tar``, ``gzip``,
``mktemp`` and GNU ``mv -T``; a ``<name>.tmp.*`` directory a killed client left there can be deleted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import stat
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple

import pathspec

from torchx_forge.core.errors import ForgeError

#: always left out; ``.torchxignore`` is read after these, so its ``!`` lines may re-include
DEFAULT_EXCLUDES = (".git/", "__pycache__/", "*.pyc")
#: how many hex digits of the digest name a snapshot directory (64 bits: no collision in practice)
NAME_LENGTH = 16

_CHECK = 'test -d "$1" && echo present || echo absent'
# $1: the snapshot's directory, $2: its name. Extracts into a temporary sibling, then renames it into place.
_EXTRACT = """set -eu
mkdir -p -- "$1"
final=$1/$2
tmp=$(mktemp -d "$final.tmp.XXXXXX"); chmod 755 "$tmp"
trap 'if test -e "$tmp"; then chmod -R u+w -- "$tmp"; rm -rf -- "$tmp"; fi' EXIT; trap 'exit 1' HUP INT TERM
tar -xzmf - --no-same-owner -C "$tmp"
chmod -R a-w -- "$tmp"
if mv -T -- "$tmp" "$final" 2>/dev/null; then echo shipped
elif test -d "$final"; then echo present
else echo "cannot rename $tmp to $final" >&2; exit 1
fi
"""


class SnapshotError(ForgeError):
    """The workspace cannot be snapshotted as it is, or the cluster did not take the snapshot."""


class Transport(Protocol):
    """Runs a command on the cluster side: over SSH, or (:class:`LocalTransport`) on this machine."""

    def run(self, argv: Sequence[str], input: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` (each item one argument, never split by a shell) with ``input`` on stdin; capture its output."""


class LocalTransport:
    """The cluster side is this machine (a login node, or tests)."""

    def run(self, argv: Sequence[str], input: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` here; output captured, a failure returned and not raised."""
        return subprocess.run(list(argv), input=input, capture_output=True, check=False)


@dataclass(frozen=True)
class File:
    """One shipped file: its path relative to the workspace (``/``-separated), size, exec bit and sha256."""

    path: str
    size: int
    executable: bool
    sha256: str


@dataclass(frozen=True)
class Tree:
    """A workspace's files after exclusion, sorted by path, and ``digest``, which names its snapshot: it
    changes with any file's path, exec bit or content, and not with times, owners or excluded files."""

    root: str
    files: Tuple[File, ...]
    digest: str

    @property
    def size(self) -> int:
        """The bytes of all files."""
        return sum(f.size for f in self.files)


def scan(root: str, ignore_file: str = ".torchxignore", cache: Optional[str] = None) -> Tree:
    """The files of the workspace at ``root`` that ship, and their digest.

    ``cache``: a JSON file (created if missing) keeping each file's hash by (path, size, mtime),
    so a rescan reads only the files that changed.
    """
    root = os.path.abspath(root)
    spec = _ignore_spec(os.path.join(root, ignore_file))
    known = _load_cache(cache)
    started = time.time_ns()
    files: List[File] = []
    fresh: Dict[str, List[object]] = {}
    for rel, st in _walk(root, spec):
        cached = known.get(rel)
        if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [st.st_size, st.st_mtime_ns]:
            digest = str(cached[2])
        else:
            digest = _hash_file(os.path.join(root, rel))
        if st.st_mtime_ns < started - 2_000_000_000:  # a file written within the clock's resolution may change unseen
            fresh[rel] = [st.st_size, st.st_mtime_ns, digest]
        files.append(File(rel, st.st_size, bool(st.st_mode & stat.S_IXUSR), digest))
    files.sort(key=lambda f: f.path)
    try:  # written whole, then renamed: a scan killed halfway leaves the old cache; one not written, none
        if cache:
            Path(f"{cache}.tmp{os.getpid()}").write_text(json.dumps(fresh), encoding="utf-8")
            os.replace(f"{cache}.tmp{os.getpid()}", cache)
    except OSError:
        pass
    return Tree(root, tuple(files), _digest(files))


def ship(transport: Transport, tree: Tree, remote_dir: str, progress: Optional[Callable[[str], None]] = None) -> str:
    """Make sure the snapshot of ``tree`` is in ``remote_dir`` on the cluster; return its path there.

    ``remote_dir``: a path the cluster's shell takes literally (no ``~``); a relative one is taken
    from the remote user's home directory. ``progress`` is told what is shipped, or that nothing is.
    """
    name = tree.digest[:NAME_LENGTH]
    path = posixpath.join(remote_dir, name)
    say = progress or (lambda _msg: None)
    check = _call(transport, ["sh", "-c", _CHECK, "sh", path], None, path)
    if check.splitlines()[-1:] == ["present"]:  # the last line: a login shell may print before it
        say(f"snapshot {name} is on the cluster already: {path}")
        return path
    data = archive(tree)
    say(f"shipping {len(tree.files)} files ({tree.size / 1e6:.1f} MB, {len(data) / 1e6:.1f} MB gzipped) to {path}")
    _call(transport, ["sh", "-c", _EXTRACT, "sh", posixpath.dirname(path) or ".", name], data, path)
    return path


def archive(tree: Tree) -> bytes:
    """The tree as a gzipped tar, the same bytes for the same tree: sorted, times and owners zeroed.

    Each file is hashed again as it is read: one changed since :func:`scan` is an error, not a
    snapshot whose name says other content."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for directory in _parents(tree.files):
            tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, 0))
        for f in tree.files:
            content = Path(tree.root, f.path).read_bytes()
            if hashlib.sha256(content).hexdigest() != f.sha256:
                raise SnapshotError(f"{f.path}: changed in workspace {tree.root} while it was being shipped: run the"
                                    " command again, or leave the file out in .torchxignore if it keeps changing"
                                    " (logs, checkpoints)")
            tar.addfile(_info(f.path, tarfile.REGTYPE, 0o755 if f.executable else 0o644, len(content)), io.BytesIO(content))
    return buf.getvalue()


def _ignore_spec(ignore_path: str) -> pathspec.GitIgnoreSpec:
    lines = list(DEFAULT_EXCLUDES)
    if os.path.isfile(ignore_path):
        lines += Path(ignore_path).read_text(encoding="utf-8").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _walk(root: str, spec: pathspec.GitIgnoreSpec) -> Iterator[Tuple[str, os.stat_result]]:
    """(relative path, stat of the content) of each file that ships; excluded directories are not entered."""
    real_root = os.path.realpath(root)
    for top, dirs, names in os.walk(root):
        rel_top = os.path.relpath(top, root).replace(os.sep, "/")
        prefix = "" if rel_top == "." else rel_top + "/"
        dirs[:] = [d for d in dirs if not spec.match_file(prefix + d + "/")]
        for d in dirs:
            if os.path.islink(os.path.join(top, d)):
                raise _link_error(prefix + d, "leads to a directory")
        for n in names:
            rel = prefix + n
            if not spec.match_file(rel):
                yield rel, _content_stat(os.path.join(top, n), rel, real_root)


def _content_stat(path: str, rel: str, real_root: str) -> os.stat_result:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath([target, real_root]) != real_root:
            raise _link_error(rel, f"leads out of the workspace (to {target})")
        if not os.path.exists(target):
            raise _link_error(rel, "leads nowhere")
        st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SnapshotError(f"{rel}: not a regular file, so it cannot be shipped; add it to .torchxignore")
    return st


def _link_error(rel: str, what: str) -> SnapshotError:
    hint = "only links to files inside the workspace ship (as copies): add it to .torchxignore or put its target there"
    return SnapshotError(f"{rel}: a symlink that {what}; {hint}")


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(files: Sequence[File]) -> str:
    h = hashlib.sha256()
    for f in files:  # a path holds no NUL: each record reads back one way only
        h.update(f.path.encode("utf-8", "surrogateescape") + b"\0" + (b"x" if f.executable else b"-") + f.sha256.encode() + b"\0")
    return h.hexdigest()


def _load_cache(cache: Optional[str]) -> Dict[str, List[object]]:
    try:  # a missing or damaged cache costs a full read, nothing else
        data = json.loads(Path(cache).read_text(encoding="utf-8")) if cache else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _call(transport: Transport, argv: List[str], data: Optional[bytes], path: str) -> str:
    p = transport.run(argv, input=data)
    if p.returncode != 0:
        err = (p.stderr.decode(errors="replace").strip() or "(no output)").splitlines()[0]
        raise SnapshotError(f"snapshot {path} on the cluster: remote command failed (exit code {p.returncode}): {err}")
    return p.stdout.decode(errors="replace").strip()


def _parents(files: Sequence[File]) -> List[str]:
    dirs = {f.path.rsplit("/", 1)[0] for f in files if "/" in f.path}
    return sorted({"/".join(d.split("/")[: i + 1]) for d in dirs for i in range(d.count("/") + 1)})


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size  # mtime, uid and gid 0, no owner names: TarInfo's defaults
    return info
