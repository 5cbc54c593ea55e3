"""Run tables in the state dir: read them (any process), and remember the ones this process wrote.

The format is :mod:`torchx_forge.core.runtable`'s; :meth:`Store.put_table` writes them. A dry
run or preview of a big sweep reads back the table it has just built from memory, not from disk.
Standard library only (fsspec for URLs): the sweep-point runner reads its table with this.
"""

from __future__ import annotations

from typing import Dict

from torchx_forge.core import runtable
from torchx_forge.state.files import read_file

_WRITTEN: Dict[str, runtable.RunTable] = {}


def remember(path: str, table: runtable.RunTable) -> None:
    """Keep ``table``, just written to ``path``, for :func:`read_table` in this process."""
    _WRITTEN[path] = table


def read_table(path: str) -> runtable.RunTable:
    """The run table at ``path`` (a local path or URL); OSError or ValueError when unreadable,
    NewerFormatError when a newer torchx-forge wrote it."""
    hit = _WRITTEN.get(path)
    return hit if hit is not None else runtable.decode(read_file(path), path)
