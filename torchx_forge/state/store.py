"""The state dir as a store of small files: a local directory or any fsspec URL.

Every write is atomic (temporary file + rename, or a single PUT on object stores) and, on a
local file system, readable only by the user (0600 files, 0700 directories).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from fsspec.implementations.local import LocalFileSystem

from torchx_forge.core import layout, runtable
from torchx_forge.state import tables
from torchx_forge.state.files import atomic_write, private_makedirs, url_fs


class Store:
    """A directory (local or fsspec URL) holding forge's state, written atomically.

    Args:
        url: a local path (``~`` expanded), ``file://...`` or any fsspec URL such as ``s3://b/forge``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = url_fs(os.path.expanduser(url))
        self.fs = fs
        self.root: str = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _ensure_dir(self, path: str) -> None:
        if self.local:
            private_makedirs(path)
        else:
            self.fs.makedirs(path, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes, mode: int = 0o600) -> str:
        """Atomically write ``data`` to ``rel``; returns the full path."""
        path = self.path(rel)
        self._ensure_dir(path.rsplit("/", 1)[0])
        if self.local:
            atomic_write(path, data, mode)
        else:
            self.fs.pipe_file(path, data)
        return path

    def write_json(self, rel: str, obj: Any) -> str:
        return self.write_bytes(rel, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def read_bytes(self, rel: str) -> Optional[bytes]:
        try:
            with self.fs.open(self.path(rel), "rb") as f:
                data: bytes = f.read()
                return data
        except FileNotFoundError:
            return None

    def read_json(self, rel: str) -> Optional[Any]:
        data = self.read_bytes(rel)
        return None if data is None else json.loads(data)

    def remove(self, rel: str) -> None:
        """Delete ``rel`` (nothing when it is gone already)."""
        try:
            self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def listdir(self, rel: str) -> List[str]:
        """Names directly under ``rel`` (empty if it does not exist)."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def read_many_json(self, rel_dir: str) -> Dict[str, Any]:
        """Every ``*.json`` directly under ``rel_dir``, by file stem.

        The files come in one batched ``cat`` (fetched concurrently by fsspec's async file systems
        such as s3/gcs): a 1,000-task sweep is not 1,000 round trips per status on an object store.
        """
        names = [n for n in self.listdir(rel_dir) if n.endswith(".json") and not n.startswith(".")]
        got = self.fs.cat([self.path(rel_dir, n) for n in names], on_error="omit") if names else {}
        data = {str(path).rsplit("/", 1)[-1]: blob for path, blob in got.items()}
        return {n[: -len(".json")]: json.loads(blob) for n, blob in sorted(data.items())}

    def put_content_addressed(self, subdir: str, data: bytes, suffix: str = ".json") -> Tuple[str, str]:
        """Store ``data`` under its sha256 (read-only, written once); returns (digest, path)."""
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{subdir}/{digest}{suffix}"
        if not self.exists(rel):
            self.write_bytes(rel, data, mode=0o400)
        return digest, self.path(rel)

    def put_table(self, table: runtable.Table) -> str:
        """Store a run table (see :mod:`torchx_forge.core.runtable`), content-addressed; returns its path."""
        _, data = runtable.encode(table)
        path = self.put_content_addressed(layout.TABLES, data)[1]
        tables.remember(path, table)
        return path
