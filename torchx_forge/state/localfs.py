"""A local state dir read with ``os`` alone: the few fsspec calls :class:`~torchx_forge.state.store.Store`
makes, with the same answers as fsspec's ``LocalFileSystem``.

Importing fsspec costs 50-70 ms, paid by every command and by every job of forge that opens the
state dir (a search's decision and relay jobs, which stand between a trial's end and the next
trial's start). A local directory needs none of it; fsspec stays for URLs.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Union


class LocalFiles:
    """The subset of an fsspec file system a :class:`~torchx_forge.state.store.Store` uses, on local paths."""

    async_impl = False

    def cat_file(self, path: str) -> bytes:
        """The bytes of ``path``; FileNotFoundError when it does not exist."""
        with open(path, "rb") as f:
            return f.read()

    def cat(self, paths: Sequence[str], on_error: str = "raise") -> Dict[str, Union[bytes, BaseException]]:
        """path -> bytes of each of ``paths``; with ``on_error="return"``, the error in place of a file
        that could not be read (as fsspec's ``cat`` of a list)."""
        out: Dict[str, Union[bytes, BaseException]] = {}
        for path in paths:
            try:
                out[path] = self.cat_file(path)
            except OSError as e:
                if on_error != "return":
                    raise
                out[path] = e
        return out

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def ls(self, path: str, detail: bool = False) -> List[Any]:
        """The full paths of the entries of directory ``path`` (``[path]`` for a file);
        FileNotFoundError when it does not exist."""
        if detail:
            raise NotImplementedError("LocalFiles.ls lists names only (detail=False)")
        if not os.path.isdir(path):
            if os.path.lexists(path):
                return [path]
            raise FileNotFoundError(path)
        return [os.path.join(path, name) for name in os.listdir(path)]

    def rm_file(self, path: str) -> None:
        os.remove(path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        os.makedirs(path, exist_ok=exist_ok)
