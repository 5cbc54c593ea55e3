"""The state dir as a store of small files: a local directory or any fsspec URL.

Every write is atomic (temporary file + rename, or a single PUT on object stores) and, on a
local file system, readable only by the user (0600 files, 0700 directories). On an object store
(``s3://bucket/forge``, with ``pip install 'torchx-forge[s3]'``) credentials and the endpoint
come from the backend's usual environment and config files (``AWS_*``, ``~/.aws``); forge never
writes them anywhere. A store that does not answer raises
:class:`~torchx_forge.core.storage.StoreUnreachableError` naming the URL; after one such error a
command's further calls fail at once for a few seconds instead of waiting for the same timeout
again (except where :func:`~torchx_forge.state.files.be_patient` made the process wait for it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from torchx_forge.core import layout, runtable
from torchx_forge.core.storage import StoreUnreachableError
from torchx_forge.state import files, tables
from torchx_forge.state.files import atomic_write, is_url, local_path, private_makedirs, timed, url_fs
from torchx_forge.state.localfs import LocalFiles

T = TypeVar("T")
#: seconds a command takes a store that did not answer for down, without asking it again
DOWN_FOR = 10.0


class Store:
    """A directory (local or fsspec URL) holding forge's state, written atomically.

    Args:
        url: a local path (``~`` expanded), ``file://...`` or any fsspec URL such as ``s3://b/forge``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = not is_url(url)  # a local directory is read with os alone: fsspec for URLs only
        fs, root = (LocalFiles(), os.path.abspath(local_path(url))) if self.local else url_fs(url)
        self.fs: Any = fs
        self.root: str = root.rstrip("/")
        self._down: Optional[Tuple[float, StoreUnreachableError]] = None

    def path(self, *parts: str) -> str:
        """The path of ``parts`` in the store's file system (no scheme: ``bucket/state/x`` on S3)."""
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        """Where ``parts`` lives, for anyone else to open: a local path, or a URL with its scheme
        (``s3://bucket/state/x``). What goes into scripts, records and run arguments."""
        return self.path(*parts) if self.local else files.full_url(self.fs, self.path(*parts))

    def _io(self, rel: str, action: Callable[[], T]) -> T:
        """``action()`` on ``rel``; on a URL, guarded (one-line errors naming it) and, once the store
        did not answer, failing at once for :data:`DOWN_FOR` seconds in a process that does not wait."""
        if self.local:
            return action()
        url = self.url_of(rel) if rel else self.url
        if self._down is not None and time.monotonic() < self._down[0] and not files.patience():
            raise StoreUnreachableError(url, self._down[1].cause)
        try:
            found = files.call(url, action)
        except StoreUnreachableError as e:
            self._down = (time.monotonic() + DOWN_FOR, e)
            raise
        self._down = None
        return found

    def make_root(self) -> None:
        """Create the state dir if it is not there (a local one: object stores have no directories).
        OSError when it cannot be used: it cannot be made (under /proc, a read-only disk), or it is
        not a directory this user can read."""
        if not self.local:
            return
        private_makedirs(self.root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), self.root)
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), self.root)

    def _ensure_dir(self, path: str) -> None:
        if self.local:
            private_makedirs(path)
        else:
            self.fs.makedirs(path, exist_ok=True, **timed(self.fs))

    def write_bytes(self, rel: str, data: bytes, mode: int = 0o600) -> str:
        """Atomically write ``data`` to ``rel``; returns where it went (:meth:`url_of`)."""
        path = self.path(rel)

        def write() -> None:
            self._ensure_dir(path.rsplit("/", 1)[0])
            if self.local:
                atomic_write(path, data, mode)
            else:
                self.fs.pipe_file(path, data, **timed(self.fs))

        self._io(rel, write)
        return self.url_of(rel)

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_bytes(rel, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def read_bytes(self, rel: str) -> Optional[bytes]:
        """The bytes of ``rel``; None when it does not exist."""
        def read() -> Optional[bytes]:
            try:
                data: bytes = self.fs.cat_file(self.path(rel), **timed(self.fs))
                return data
            except FileNotFoundError:
                return None

        return self._io(rel, read)

    def read_json(self, rel: str) -> Optional[Any]:
        data = self.read_bytes(rel)
        return None if data is None else json.loads(data)

    def remove(self, rel: str) -> None:
        """Delete ``rel`` (nothing when it is gone already)."""
        def rm() -> None:
            try:
                self.fs.rm_file(self.path(rel), **timed(self.fs))
            except FileNotFoundError:
                pass

        self._io(rel, rm)

    def exists(self, rel: str) -> bool:
        return bool(self._io(rel, lambda: self.fs.exists(self.path(rel), **timed(self.fs))))

    def listdir(self, rel: str) -> List[str]:
        """Names directly under ``rel`` (empty if it does not exist)."""
        def ls() -> List[str]:
            try:
                entries = self.fs.ls(self.path(rel), detail=False, **timed(self.fs))
            except FileNotFoundError:
                return []
            return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

        return self._io(rel, ls)

    def read_many_json(self, rel_dir: str) -> Dict[str, Any]:
        """Every ``*.json`` directly under ``rel_dir``, by file stem.

        The files come in one batched ``cat`` (fetched concurrently by fsspec's async file systems
        such as s3/gcs): a 1,000-task sweep is not 1,000 round trips per status on an object store.
        """
        names = [n for n in self.listdir(rel_dir) if n.endswith(".json") and not n.startswith(".")]
        if not names:
            return {}

        def cat() -> Dict[str, Any]:
            got = self.fs.cat([self.path(rel_dir, n) for n in names], on_error="return", **timed(self.fs))
            out = {}
            for path, blob in got.items():
                if isinstance(blob, FileNotFoundError):  # removed since the listing
                    continue
                if isinstance(blob, BaseException):  # the store's silence, not a missing file
                    raise blob
                out[str(path).rsplit("/", 1)[-1]] = blob
            return out

        data = self._io(rel_dir, cat)
        return {n[: -len(".json")]: json.loads(blob) for n, blob in sorted(data.items())}

    def put_content_addressed(self, subdir: str, data: bytes, suffix: str = ".json") -> Tuple[str, str]:
        """Store ``data`` under its sha256 (read-only, written once); returns (digest, :meth:`url_of` it)."""
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{subdir}/{digest}{suffix}"
        if not self.exists(rel):
            self.write_bytes(rel, data, mode=0o400)
        return digest, self.url_of(rel)

    def put_table(self, table: runtable.RunTable) -> str:
        """Store a run table (see :mod:`torchx_forge.core.runtable`), content-addressed; returns
        where the tasks read it (a local path or a URL with its scheme)."""
        _, data = runtable.encode(table)
        path = self.put_content_addressed(layout.TABLES, data)[1]
        tables.remember(path, table)
        return path
