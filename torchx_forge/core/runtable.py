"""The run table of a sweep: the resolved runs every task of it reads (format owner, pure).

A table is JSON written once, content-addressed and read-only (``tables/<sha256>.json`` in the
state dir), so tasks read a snapshot, never the experiment file, which may change while they
pend::

    {"experiment": NAME, "source": FILE,
     "runs": [{"index", "run_id", "case", "params": [[key, value], ...], "argv", "env", "workdir",
               optional "resume_arg", "checkpoint_dir", "stage", "params_json", "upstream",
               "inputs", "artifacts"}, ...],
     "roles": {ROLE: [position in runs of replica 0, of replica 1, ...]}}
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Mapping, Tuple

Table = Dict[str, Any]


def encode(table: Mapping[str, Any]) -> Tuple[str, bytes]:
    """(sha256, bytes) of a table: rows are built in a fixed key order, so equal tables give equal bytes."""
    data = json.dumps(table, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest(), data


def decode(data: bytes) -> Table:
    table = json.loads(data)
    if not isinstance(table, dict) or "runs" not in table or "roles" not in table:
        raise ValueError("not a run table (expected an object with 'runs' and 'roles')")
    return table


def find_run(table: Mapping[str, Any], role: str, replica: int) -> Dict[str, Any]:
    """Run ``replica`` of ``role`` (LookupError naming what exists)."""
    indices: List[int] = table["roles"].get(role, [])
    if not 0 <= replica < len(indices):
        raise LookupError(f"role {role!r} has {len(indices)} run(s); there is no replica {replica}")
    run: Dict[str, Any] = table["runs"][indices[replica]]
    return run
