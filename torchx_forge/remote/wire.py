"""TorchX's objects as JSON, for the laptop and the login node to pass each other.

Both ends may run different TorchX versions (0.7 on one, main on the other): a field one side
does not have is left out, never guessed. Standard JSON only; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional

from torchx.schedulers.api import DescribeAppResponse, ListAppResponse
from torchx.specs import AppDef, AppState, ReplicaStatus, Resource, Role, RoleStatus
from torchx.specs import api as specs_api

from torchx_forge.core.record import fields, is_record

#: Role fields forge carries (workspace and overrides are TorchX main's, and the laptop's own)
ROLE_FIELDS = ("name", "image", "min_replicas", "base_image", "entrypoint", "args", "env", "num_replicas",
               "max_retries", "retry_policy", "resource", "port_map", "metadata", "mounts")


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.name
    if (dataclasses.is_dataclass(value) or is_record(value)) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **{f.name: _plain(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def app_to_json(app: AppDef) -> Dict[str, Any]:
    """``app`` as JSON: its name, metadata and roles (the fields of :data:`ROLE_FIELDS` it has)."""
    roles = [{f: _plain(getattr(r, f)) for f in ROLE_FIELDS if hasattr(r, f)} for r in app.roles]
    return {"name": app.name, "metadata": dict(app.metadata), "roles": roles}


def _mount(obj: Mapping[str, Any]) -> Any:
    cls = getattr(specs_api, str(obj.get("__type__")), None)
    if cls is None:
        raise ValueError(f"unknown mount type {obj.get('__type__')!r}")
    return cls(**{k: v for k, v in obj.items() if k != "__type__"})


def app_from_json(obj: Mapping[str, Any]) -> AppDef:
    """The AppDef :func:`app_to_json` wrote; fields this TorchX's Role lacks are left out."""
    known = {f.name for f in dataclasses.fields(Role)}
    roles = []
    for r in obj["roles"]:
        kw = {k: v for k, v in r.items() if k in known}
        res = dict(kw.get("resource") or {})
        res.pop("__type__", None)
        kw["resource"] = Resource(**{k: v for k, v in res.items() if k in {f.name for f in dataclasses.fields(Resource)}})
        if "retry_policy" in kw:
            kw["retry_policy"] = specs_api.RetryPolicy[kw["retry_policy"]]
        kw["mounts"] = [_mount(m) for m in kw.get("mounts") or []]
        roles.append(Role(**kw))
    return AppDef(name=obj["name"], roles=roles, metadata=dict(obj.get("metadata") or {}))


def describe_to_json(resp: DescribeAppResponse) -> Dict[str, Any]:
    """What `torchx status` prints of ``resp``: state, restarts, message, roles' replica states."""
    return {
        "app_id": resp.app_id, "state": resp.state.name, "num_restarts": resp.num_restarts, "msg": resp.msg,
        "structured_error_msg": resp.structured_error_msg, "ui_url": resp.ui_url,
        "roles_statuses": [{"role": rs.role, "replicas": [
            {"id": r.id, "state": r.state.name, "role": r.role, "hostname": r.hostname,
             "structured_error_msg": r.structured_error_msg} for r in rs.replicas]} for rs in resp.roles_statuses],
        "roles": [{"name": r.name, "num_replicas": r.num_replicas} for r in resp.roles],
    }


def describe_from_json(obj: Mapping[str, Any], app_id: Optional[str] = None) -> DescribeAppResponse:
    """The DescribeAppResponse :func:`describe_to_json` wrote, under ``app_id`` (the laptop's id)."""
    statuses = [RoleStatus(rs["role"], [ReplicaStatus(r["id"], AppState[r["state"]], r["role"], r["hostname"],
                                                      r["structured_error_msg"]) for r in rs["replicas"]])
                for rs in obj["roles_statuses"]]
    roles = [Role(name=r["name"], image="", num_replicas=r["num_replicas"]) for r in obj["roles"]]
    return DescribeAppResponse(app_id=app_id or obj["app_id"], state=AppState[obj["state"]],
                               num_restarts=obj["num_restarts"], msg=obj["msg"],
                               structured_error_msg=obj["structured_error_msg"], ui_url=obj["ui_url"],
                               roles_statuses=statuses, roles=roles)


def list_to_json(items: List[ListAppResponse]) -> List[Dict[str, Any]]:
    return [{"app_id": i.app_id, "state": i.state.name, "name": getattr(i, "name", "")} for i in items]
