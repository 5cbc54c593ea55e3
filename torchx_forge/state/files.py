"""Small files where forge keeps state: a local path (``file://`` allowed) or any fsspec URL.

Local writes are atomic (a temporary file in the same directory, fsync, rename), so a
reader never sees half a record and a crash never leaves one; on object stores one
PUT is atomic already. Standard library only unless the path is a URL: the task
launcher uses this on every compute node.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Optional, Tuple


def is_url(path: str) -> bool:
    """True for fsspec URLs such as ``s3://b/x``; local paths and ``file://`` are not."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    """``file://~/x`` or ``~/x`` -> the local path."""
    return os.path.expanduser(path.replace("file://", "", 1))


def absolute(path: str) -> str:
    """A local path made absolute (tasks run in another directory); URLs are kept."""
    return path if is_url(path) else os.path.abspath(local_path(path))


def private_makedirs(path: str) -> None:
    """``mkdir -p`` with 0700 on every directory it creates (os.makedirs skips intermediates)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        private_makedirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


def dir_problem(path: str, min_free: int = 1 << 20) -> Optional[str]:
    """Why the local directory ``path`` cannot take new files (None when it can): it is created
    when missing, written to once, and must have ``min_free`` bytes free."""
    try:
        private_makedirs(path)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".forge-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot write there ({e.strerror})"
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < min_free:
        return f"its file system is full ({free // 1024} KiB free)"
    return None


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace the local file ``path`` with ``data`` atomically, readable per ``mode``."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def url_fs(url: str) -> Tuple[Any, str]:
    """(fsspec file system, path in it) of a URL. fsspec is imported here, for URLs only: the
    launcher starts on every node without it."""
    import fsspec  # noqa: PLC0415

    fs, path = fsspec.core.url_to_fs(url)  # type: ignore[no-untyped-call]
    return fs, str(path)


def write_file(path: str, data: bytes, mode: int = 0o600, dir_mode: int = 0o777) -> None:
    """Write ``data`` to a local path (creating its directory) or a URL, atomically."""
    if is_url(path):
        fs, root = url_fs(path)
        fs.pipe_file(root, data)
        return
    local = local_path(path)
    os.makedirs(os.path.dirname(local), mode=dir_mode, exist_ok=True)
    atomic_write(local, data, mode)


def read_file(path: str) -> bytes:
    """The bytes of a local path or URL (FileNotFoundError/OSError when missing)."""
    if is_url(path):
        fs, root = url_fs(path)
        data: bytes = fs.cat_file(root)
        return data
    with open(local_path(path), "rb") as f:
        return f.read()
