"""The app a laptop submits, made the cluster's: its laptop paths rewritten, its run tables shipped.

A component run on the laptop names laptop paths: the directory ``torchx run`` ran in (the
workspace: a role's image, a run's working directory), the laptop's interpreter, the run tables
it wrote into the laptop's state dir. The cluster gets the same app with each of those replaced
by its place there: the workspace's snapshot, the cluster's interpreter, the tables copied into
the cluster's state dir (named by their new content). Nothing else is guessed: an absolute path
outside the workspace is left as written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from torchx.specs import AppDef, CfgVal, Role

if TYPE_CHECKING:  # a type only: `torchx status` imports this module and needs no snapshot code
    from torchx_forge.remote import snapshot


def _rewrite(value: str, paths: Mapping[str, str]) -> str:
    for local, remote in paths.items():
        if value == local or value.startswith(local.rstrip("/") + "/"):
            return remote + value[len(local):]
    return value


def cluster_app(app: AppDef, paths: Mapping[str, str], python: str, workdir: Optional[str]) -> AppDef:
    """``app`` with the laptop's paths (``paths``: laptop prefix -> cluster prefix) in image,
    entrypoint, args and env rewritten, and the laptop's interpreter replaced by ``python``.
    A role whose image is no directory (TorchX's default docker image name) runs in ``workdir``
    (the workspace's snapshot), as it would have run in the directory ``torchx run`` ran in."""
    roles: List[Role] = []
    for r in app.roles:
        entry = python if r.entrypoint in (sys.executable, os.path.realpath(sys.executable)) else _rewrite(r.entrypoint, paths)
        image = _rewrite(r.image, paths) if r.image.startswith("/") or not workdir else workdir
        roles.append(replace(r, image=image, entrypoint=entry,
                             args=[_rewrite(a, paths) for a in r.args],
                             env={k: _rewrite(v, paths) for k, v in r.env.items()},
                             metadata=_rewrite_all(r.metadata, paths)))  # a sweep role's run table is named there too
    return AppDef(name=app.name, roles=roles, metadata=_rewrite_all(dict(app.metadata), paths))


def _tables_in(app: AppDef, laptop_state: str) -> List[str]:
    tables = os.path.join(laptop_state, "tables") + "/"
    return sorted({a for r in app.roles for a in r.args if a.startswith(tables) and os.path.isfile(a)})


def _rewrite_all(obj: Any, paths: Mapping[str, str]) -> Any:
    if isinstance(obj, str):
        return _rewrite(obj, paths)
    if isinstance(obj, list):
        return [_rewrite_all(v, paths) for v in obj]
    if isinstance(obj, dict):
        return {k: _rewrite_all(v, paths) for k, v in obj.items()}
    return obj


def cluster_tables(app: AppDef, laptop_state: str, remote_state: str, paths: Mapping[str, str]) -> Dict[str, bytes]:
    """The run tables ``app`` names (the components wrote them on the laptop), with the laptop's
    paths in them (a run's working directory: the workspace) rewritten, each named by its new
    content in the cluster's state dir: laptop path -> (cluster path, bytes), as {laptop path: ...}."""
    out: Dict[str, bytes] = {}
    for local in _tables_in(app, laptop_state):
        with open(local, "rb") as f:
            data = json.dumps(_rewrite_all(json.loads(f.read()), paths), sort_keys=True).encode()
        out[local] = data
    return out


def table_path(remote_state: str, data: bytes) -> str:
    return f"{remote_state}/tables/{hashlib.sha256(data).hexdigest()}.json"


@dataclass
class RemoteRequest:
    """What ``torchx run`` sends to a login node: the app with the cluster's paths, its options,
    and what must be shipped first (the workspace snapshot, the run tables)."""

    login: str
    python: str
    state_dir: str
    app: AppDef
    cfg: Dict[str, CfgVal]
    workspace: Optional[snapshot.Tree] = None
    snapshot_dir: str = ""
    tables: Dict[str, bytes] = field(default_factory=dict)  # cluster path -> content
    preview: str = ""

    def __repr__(self) -> str:
        head = [f"# on login {self.login} (python {self.python})"]
        if self.workspace is not None:
            head.append(f"# workspace {self.workspace.root} -> {self.snapshot_dir} ({len(self.workspace.files)} files)")
        return "\n".join(head + [self.preview])
