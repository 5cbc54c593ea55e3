"""Finding the checkpoint to resume from: deterministic, never by modification time.

In a run's checkpoint directory (a local path or any fsspec URL):

1. ``checkpoint_state.json`` is authoritative when present:
   ``{"latest": "step_1200.pt", "step": 1200}`` (``latest`` relative to the
   directory, or absolute). Write it with :func:`commit` after each save.
2. Otherwise the entry with the highest step number in its name wins:
   ``global_step_1200``, ``step1200``, ``step-1200``, ``checkpoint-1200``,
   ``ckpt_1200``, ``epoch_3`` ... with or without extensions (files or directories).
   Hidden and temporary entries (``.x``, ``x.tmp``, ``x.partial``, ``x~``,
   ``tmp*``) are ignored.
3. A single entry without a step number is used; several are an error, as is a
   tie between two names with the same step: we never guess.

``checkpoint_state.json`` is a :class:`CheckpointState` (format 1, also when it has no ``format``
key, as the files written before formats were numbered and by hand; see
:mod:`torchx_forge.core.formats`).

Standard library only unless the directory is a URL (then fsspec).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from torchx_forge.core import formats
from torchx_forge.core.record import record
from torchx_forge.core.storage import StoreError, StoreUnreachableError
from torchx_forge.state.files import exists, is_url, list_names, modified, read_file, write_file

STATE_FILE = "checkpoint_state.json"

_STEP_RE = re.compile(
    r"^(?:global[_-]?step|step|checkpoint|ckpt|iter(?:ation)?|epoch)[_-]?(\d+)(?:\.[A-Za-z0-9._-]+)?$",
    re.IGNORECASE,
)
_TEMP_SUFFIXES = (".tmp", ".temp", ".partial", ".incomplete", ".lock", "~")


@record
class CheckpointState:
    """``checkpoint_state.json``: which checkpoint in the directory is the latest."""

    FORMAT: ClassVar[int] = 1
    KIND: ClassVar[str] = "checkpoint state"

    latest: str  # relative to the directory, or absolute (a path or URL)
    step: Optional[int] = None
    format: int = FORMAT

    def to_json(self) -> Dict[str, Any]:
        return {"latest": self.latest, "step": self.step, formats.KEY: self.FORMAT}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> CheckpointState:
        """The state read from ``where``: ValueError when it is none, NewerFormatError when a newer
        torchx-forge wrote it."""
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        formats.format_of(obj, cls.KIND, where, cls.FORMAT)
        latest, step = obj["latest"], obj.get("step")
        if not isinstance(latest, str) or not latest:
            raise ValueError("'latest' must be a non-empty string")
        return cls(latest, step if isinstance(step, int) and not isinstance(step, bool) else None)


class CheckpointError(Exception):
    """The checkpoint directory is ambiguous or unreadable; the message says how to fix it.
    ``unreachable``: its store did not answer, so trying again later may well work."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _list(directory: str) -> Optional[List[str]]:
    """Entry names in ``directory``; None when it does not exist."""
    return list_names(directory)


def _exists(path: str) -> bool:
    return exists(path)


def _join(directory: str, name: str) -> str:
    if os.path.isabs(name) or is_url(name):
        return name
    return directory.rstrip("/") + "/" + name


def step_of(name: str) -> Optional[int]:
    """``global_step_1200.pt`` -> 1200; None when the name carries no step."""
    m = _STEP_RE.match(name)
    return int(m.group(1)) if m else None


def _ignored(name: str) -> bool:
    low = name.lower()
    return name.startswith(".") or low.startswith("tmp") or low.endswith(_TEMP_SUFFIXES) or name == STATE_FILE


def latest_checkpoint(directory: str) -> Optional[str]:
    """The checkpoint to resume from in ``directory``, or None when there is none.

    Raises:
        CheckpointError: ambiguous names, or an unreadable / dangling checkpoint_state.json.
    """
    try:
        names = _list(directory)
    except StoreError as e:  # names the URL already
        raise CheckpointError(f"cannot list the checkpoint dir: {e}", isinstance(e, StoreUnreachableError)) from None
    except OSError as e:
        raise CheckpointError(f"cannot list checkpoint dir {directory}: {e}") from None
    if names is None:
        return None
    if STATE_FILE in names:
        return _from_state_file(directory)
    numbered: List[Tuple[int, str]] = []
    unnumbered: List[str] = []
    for name in sorted(names):
        if _ignored(name):
            continue
        step = step_of(name)
        (numbered.append((step, name)) if step is not None else unnumbered.append(name))
    if numbered:
        numbered.sort()
        best_step = numbered[-1][0]
        best = [n for s, n in numbered if s == best_step]
        if len(best) > 1:
            raise CheckpointError(
                f"ambiguous checkpoints in {directory}: {', '.join(best)} all have step {best_step};"
                f" keep one, or write {STATE_FILE} naming the latest (torchx_forge.runtime.commit_checkpoint)"
            )
        return _join(directory, best[0])
    if len(unnumbered) > 1:
        raise CheckpointError(
            f"several checkpoints without a step number in {directory}: {', '.join(unnumbered)};"
            f" name them with a step (e.g. step_1200.pt) or write {STATE_FILE} naming the latest"
        )
    return _join(directory, unnumbered[0]) if unnumbered else None


def _from_state_file(directory: str) -> str:
    path = _join(directory, STATE_FILE)
    try:
        latest = CheckpointState.from_json(json.loads(read_file(path)), path).latest
    except StoreError as e:
        raise CheckpointError(f"cannot read the checkpoint state: {e}", isinstance(e, StoreUnreachableError)) from None
    except formats.NewerFormatError as e:
        raise CheckpointError(str(e)) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"unreadable {path}: {e}; expected {{\"latest\": \"<file or dir in this directory>\", \"step\": N}}"
        ) from None
    target = _join(directory, latest)
    if not _exists(target):
        raise CheckpointError(f"{path} points to {latest!r}, which does not exist")
    return target


def _mtime(path: str) -> Optional[float]:
    return modified(path)


def saved_since(directory: str, since: float, before: Optional[str] = None) -> bool:
    """Was a checkpoint written in ``directory`` at ``since`` or later? ``before``: the checkpoint
    resume picked when the attempt started (a different one now counts where times are unknown)."""
    try:
        latest = latest_checkpoint(directory)
    except CheckpointError:
        return True  # new, ambiguous names: something was saved; the next attempt explains the problem
    if latest is None:
        return False
    stamps = [t for t in (_mtime(latest), _mtime(_join(directory, STATE_FILE))) if t is not None]
    if stamps:
        return max(stamps) >= since - 2  # the file server's clock may lag a little
    return latest != before


def commit(directory: str, checkpoint: str, step: Optional[int] = None) -> None:
    """Atomically record ``checkpoint`` (a path in ``directory``) as the latest one."""
    if is_url(directory):
        prefix = directory.rstrip("/") + "/"
        rel = checkpoint[len(prefix):] if checkpoint.startswith(prefix) else checkpoint
    else:
        rel = os.path.relpath(checkpoint, directory) if os.path.isabs(checkpoint) else checkpoint
    write_file(directory.rstrip("/") + "/" + STATE_FILE, json.dumps(CheckpointState(rel, step).to_json()).encode())
