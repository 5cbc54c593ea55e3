"""The pure parts of launching from a laptop: the app as JSON, its laptop paths made the cluster's,
ssh's failures as one line, the notes a laptop keeps."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from torchx.specs import AppDef, AppState, ReplicaStatus, Resource, RetryPolicy, Role, RoleStatus
from torchx.specs.api import BindMount

from torchx_forge.core.errors import ConfigError
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.remote import ssh
from torchx_forge.remote.appdef import cluster_app, cluster_tables, table_path
from torchx_forge.remote.notes import Note, Notes
from torchx_forge.remote.wire import app_from_json, app_to_json, describe_from_json, describe_to_json
from torchx_forge.state.store import Store

HOSTILE = ["$(touch /tmp/x)", "`id`", "a b;c", "it's \"q\"", "é\n✓", "$HOME *"]


def app() -> AppDef:
    role = Role("train", image="/laptop/ws", entrypoint=sys.executable, args=["train.py", *HOSTILE, "/laptop/ws/data"],
                env={"SECRET_TOKEN": "s$(x)", "DATA": "/laptop/ws/data"}, num_replicas=3, max_retries=2,
                retry_policy=RetryPolicy.REPLICA, resource=Resource(cpu=2, gpu=1, memMB=1024, capabilities={"a": 1}),
                mounts=[BindMount("/src", "/dst", read_only=True)], port_map={"x": 1})
    return AppDef("sweep", roles=[role], metadata={"k": "v"})


def test_an_app_survives_json_unchanged_hostile_values_included():
    sent = json.loads(json.dumps(app_to_json(app())))
    back = app_from_json(sent)
    assert back == app()


def test_a_status_survives_json():
    from torchx.schedulers.api import DescribeAppResponse

    resp = DescribeAppResponse(app_id="12", state=AppState.RUNNING, num_restarts=1, msg="table\nrows",
                               roles_statuses=[RoleStatus("r", [ReplicaStatus(0, AppState.SUCCEEDED, "r", "n1")])],
                               roles=[Role("r", image="", num_replicas=1)])
    back = describe_from_json(json.loads(json.dumps(describe_to_json(resp))), "12@lab")
    assert back.app_id == "12@lab" and back.state is AppState.RUNNING and back.msg == "table\nrows"
    assert back.roles_statuses[0].replicas[0].hostname == "n1" and back.roles[0].num_replicas == 1


def test_the_laptop_paths_become_the_clusters_and_nothing_else_does():
    paths = {"/laptop/ws": "/cluster/snap/abc"}
    there = cluster_app(app(), paths, "/cluster/python3", "/cluster/snap/abc").roles[0]
    assert there.image == "/cluster/snap/abc" and there.entrypoint == "/cluster/python3"
    assert there.args == ["train.py", *HOSTILE, "/cluster/snap/abc/data"]
    assert there.env == {"SECRET_TOKEN": "s$(x)", "DATA": "/cluster/snap/abc/data"}
    swept = Role("s", image="", entrypoint="py", metadata={"forge": {"array": True, "table": "/laptop/ws/t.json"}})
    assert cluster_app(AppDef("a", roles=[swept]), paths, "py", None).roles[0].metadata == {
        "forge": {"array": True, "table": "/cluster/snap/abc/t.json"}}
    docker = Role("r", image="ghcr.io/pytorch/torchx:0.7.0", entrypoint="echo", args=["/laptop/wsX"])  # a prefix, not a path
    moved = cluster_app(AppDef("a", roles=[docker]), paths, "py", "/cluster/snap/abc").roles[0]
    assert moved.image == "/cluster/snap/abc" and moved.args == ["/laptop/wsX"]
    kept = cluster_app(AppDef("a", roles=[docker]), paths, "py", None).roles[0]  # a container runtime: its image stays
    assert kept.image == docker.image


def test_a_run_table_is_rewritten_and_named_by_its_new_content(tmp_path: Path):
    tables = tmp_path / "state" / "tables"
    tables.mkdir(parents=True)
    local = tables / "t1.json"
    local.write_text(json.dumps({"base": {"workdir": "/laptop/ws", "command": ["sh", "x.sh"]}, "n": 1}))
    a = AppDef("a", roles=[Role("r", image="", entrypoint="py", args=["--table", str(local)])])
    out = cluster_tables(a, str(tmp_path / "state"), "/cluster/state", {"/laptop/ws": "/cluster/snap"})
    data = out[str(local)]
    assert json.loads(data)["base"]["workdir"] == "/cluster/snap"
    assert table_path("/cluster/state", data).startswith("/cluster/state/tables/") and table_path(
        "/cluster/state", data) != table_path("/cluster/state", local.read_bytes())


@pytest.mark.parametrize("stderr, says", [
    ("Host key verification failed.", "host key is unknown"),
    ("root@h: Permission denied (publickey).", "authentication failed"),
    ("ssh: Could not resolve hostname lab: Name or service not known", "no such host"),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "does not answer"),
    ("Connection closed by 127.0.0.1 port 22", "connection closed"),
    ("something else entirely", "ssh failed"),
])
def test_each_ssh_failure_is_one_line_naming_the_destination_and_what_to_do(stderr, says):
    err = str(ssh.failure("lab", stderr))
    assert err.startswith("login lab: ") and says in err and "\n" not in err


@pytest.mark.parametrize("dest", ["-oProxyCommand=x", "a b", "host:22", "ssh://h", "", "a;b"])
def test_a_destination_ssh_could_take_as_an_option_or_with_a_port_is_refused(dest):
    with pytest.raises(ConfigError, match="runopt 'login'"):
        ssh.check_destination(dest)


def test_the_master_socket_fits_a_unix_socket_path(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HOME", "/h")
    assert ssh.default_control_dir() == "/h/.cache/torchx-forge/ssh"
    monkeypatch.setenv("HOME", str(tmp_path / ("x" * 60)))
    long = ssh.default_control_dir()
    assert long.startswith(f"/tmp/torchx-forge-ssh-{os.getuid()}-") and len(long) + 1 + ssh.SOCKET_NAME_LENGTH + 17 <= 103
    monkeypatch.setenv("HOME", str(tmp_path / ("y" * 60)))
    assert ssh.default_control_dir() != long  # one per home directory
    a, b = ssh.Login("lab").control_path, ssh.Login("lab-2").control_path
    assert a != b and a.endswith("-%C") and len(os.path.basename(a)) - 2 + 40 == ssh.SOCKET_NAME_LENGTH


def test_notes_remember_the_last_settings_and_skip_what_is_no_note(tmp_path: Path):
    notes = Notes(Store(str(tmp_path)))
    first = Note.new("lab", "/p1", "/s1", "a")
    notes.save(first)
    second = Note.new("lab", "/p2", "", "b")
    notes.save(second)
    (tmp_path / "remote" / "lab" / "old.json").write_text(json.dumps({"app_id": "1@lab"}))  # an older format
    assert [n.name for n in notes.of("lab")] == ["a", "b"]
    assert notes.settings("lab") == {"python": "/p2", "state_dir": ""} and notes.settings("other") == {}
    assert notes.logins() == ["lab"]
    newer = {**json.loads((tmp_path / "remote" / "lab" / f"{first.token}.json").read_text()), "format": 2}
    (tmp_path / "remote" / "lab" / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(NewerFormatError, match="laptop note .*newer.json is format 2"):
        notes.of("lab")
