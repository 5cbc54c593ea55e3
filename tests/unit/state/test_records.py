"""Stores and app records: atomic private writes, content addressing, record round trips."""

import json
import os
import stat
import subprocess
import sys
import uuid

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.state.files import private_makedirs
from torchx_forge.state.records import (
    AppMeta,
    AppRecord,
    CodeVersion,
    JobRecord,
    Records,
    RoleRecord,
)
from torchx_forge.state.store import Store


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def mem_store():
    return Store(f"memory://forge-test-{uuid.uuid4().hex}/state")


def record(**kw) -> AppRecord:
    jobs = kw.pop("jobs", [JobRecord("10", "het", components=[["a", 0], ["a", 1], ["b", 0]]),
                           JobRecord("11", "array", role="s", offset=5, size=3)])
    return AppRecord(app_id="10", name="app", jobs=jobs, roles=[RoleRecord("a", 2), RoleRecord("b", 1), RoleRecord("s", 8)],
                     log_dir="/logs", **kw)


# -- Store -------------------------------------------------------------------------------


def test_private_makedirs_makes_every_level_0700(tmp_path):
    old = os.umask(0o022)  # the usual umask, under which os.makedirs would give 0755 intermediates
    try:
        private_makedirs(str(tmp_path / "a" / "b" / "c"))
    finally:
        os.umask(old)
    for p in ("a", "a/b", "a/b/c"):
        assert mode(tmp_path / p) == 0o700


def test_write_json_is_private_and_readable(tmp_path):
    s = Store(str(tmp_path / "st"))
    path = s.write_json("apps/1/record.json", {"x": [1, "two"]})
    assert path == str(tmp_path / "st" / "apps" / "1" / "record.json")
    assert mode(path) == 0o600
    for d in ("st", "st/apps", "st/apps/1"):
        assert mode(tmp_path / d) == 0o700
    assert s.read_json("apps/1/record.json") == {"x": [1, "two"]}
    assert json.loads(open(path).read()) == {"x": [1, "two"]}


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    s = Store(str(tmp_path))
    s.write_json("r.json", {"v": 1})
    s.write_json("r.json", {"v": 2})
    assert s.read_json("r.json") == {"v": 2}
    assert os.listdir(tmp_path) == ["r.json"]


def test_missing_files_and_dirs(tmp_path):
    s = Store(str(tmp_path))
    assert s.read_json("nope.json") is None and s.read_bytes("a/b") is None
    assert s.listdir("nope") == [] and not s.exists("nope")


def test_listdir_and_read_many_json(tmp_path):
    s = Store(str(tmp_path))
    s.write_json("d/b.json", 2)
    s.write_json("d/a.json", 1)
    s.write_bytes("d/notes.txt", b"x")
    (tmp_path / "d" / ".tmp-half.json").write_text("{")
    assert s.listdir("d") == [".tmp-half.json", "a.json", "b.json", "notes.txt"]
    assert s.read_many_json("d") == {"a": 1, "b": 2}


def test_read_many_json_on_an_object_store_reads_every_file_in_one_batch(mem_store, monkeypatch):
    for i in range(30):
        mem_store.write_json(f"apps/7/tasks/t.{i}.json", {"i": i})
    mem_store.write_bytes("apps/7/tasks/notes.txt", b"x")
    calls = []
    cat = mem_store.fs.cat
    monkeypatch.setattr(mem_store.fs, "cat", lambda paths, **kw: calls.append(len(paths)) or cat(paths, **kw))
    assert mem_store.read_many_json("apps/7/tasks") == {f"t.{i}": {"i": i} for i in range(30)}
    assert calls == [30]
    assert mem_store.read_many_json("apps/8/tasks") == {}


def test_store_expands_user_and_accepts_file_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Store("~/st").write_json("x.json", 1) == str(tmp_path / "st" / "x.json")
    assert Store(f"file://{tmp_path}/st").read_json("x.json") == 1


def test_content_addressed_is_idempotent_and_read_only(tmp_path):
    s = Store(str(tmp_path))
    digest, path = s.put_content_addressed("tables", b'{"a": 1}')
    assert len(digest) == 64 and path.endswith(f"tables/{digest}.json")
    assert mode(path) == 0o400
    assert s.put_content_addressed("tables", b'{"a": 1}') == (digest, path)
    other, _ = s.put_content_addressed("tables", b'{"a": 2}')
    assert other != digest and s.listdir("tables") == sorted([f"{digest}.json", f"{other}.json"])


def test_memory_store(mem_store):
    assert not mem_store.local
    mem_store.write_json("apps/1/record.json", {"a": 1})
    assert mem_store.read_json("apps/1/record.json") == {"a": 1}
    assert mem_store.listdir("apps") == ["1"] and mem_store.listdir("missing") == []
    digest, _ = mem_store.put_content_addressed("tables", b"[]")
    assert mem_store.put_content_addressed("tables", b"[]")[0] == digest
    assert mem_store.read_bytes(f"tables/{digest}.json") == b"[]"


# -- AppRecord -----------------------------------------------------------------------------


def test_app_record_json_round_trip():
    rec = record(cfg={"nodes": 2}, meta=AppMeta(["t.json"], [("train", ["a"])], CodeVersion("c0ffee", True, "d.patch")),
                 final={"tasks": []})
    back = AppRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert back == rec


def test_from_json_ignores_unknown_keys():
    obj = {**record().to_json(), "added_in_v2": 1}
    assert AppRecord.from_json(obj).app_id == "10"


def test_task_keys_for_het_and_array_jobs():
    keys = [(k, r, i) for k, r, i, _ in record().tasks()]
    assert keys == [("10+0", "a", 0), ("10+1", "a", 1), ("10+2", "b", 0), ("11_0", "s", 5), ("11_1", "s", 6), ("11_2", "s", 7)]
    single = record(jobs=[JobRecord("12", "het", components=[["a", 0]])])
    assert [k for k, *_ in single.tasks()] == ["12"]


def test_log_path_for_het_and_array_jobs():
    rec = record()
    assert rec.log_path("a", 1, "out") == "/logs/app-10-a-1.out"
    assert rec.log_path("b", 0, "err") == "/logs/app-10-b-0.err"
    assert rec.log_path("s", 6, "out") == "/logs/app-11_1-s-6.out"
    with pytest.raises(KeyError):
        rec.log_path("s", 8, "out")


def test_log_path_matches_what_the_script_writes(tmp_path):
    app = AppDef("my app", roles=[Role("a", image="img", entrypoint="prog", resource=Resource(cpu=1, gpu=0, memMB=0))])
    req = build_request(app, ForgeOpts(state_dir=str(tmp_path), log_dir=str(tmp_path / "logs"), python=sys.executable))
    script = tmp_path / "job.sh"
    script.write_text(req.jobs[0].materialize())
    out = subprocess.run(["bash", "-c", 'srun() { printf "%s\\n" "$@"; }; source "$1"', "bash", str(script)],
                         env={"PATH": os.environ["PATH"], "SLURM_JOB_ID": "7"}, capture_output=True, text=True, check=True)
    written = next(w for w in out.stdout.splitlines() if w.startswith("--output="))[len("--output="):]
    rec = AppRecord(app_id="7", name=req.app_name, jobs=[JobRecord("7", "het", components=[["a", 0]])], roles=[],
                    log_dir=req.opts.logs)
    assert rec.log_path("a", 0, "out") == written


# -- Records -------------------------------------------------------------------------------


def test_records_save_load_and_ids(tmp_path):
    r = Records(Store(str(tmp_path)))
    rec = record(cfg={"partition": "gpu"})
    r.save(rec)
    assert r.load("10") == rec
    assert r.app_ids() == ["10"]
    assert r.load("99") is None and r.load("../10") is None and r.load("") is None


def test_task_states_and_cancel_marker(tmp_path):
    s = Store(str(tmp_path))
    r = Records(s)
    s.write_json("apps/10/tasks/a.0.json", {"state": "COMPLETED", "exit_code": 0})
    s.write_json("apps/10/tasks/s.5.json", {"state": "RUNNING"})
    reports = r.task_reports("10")
    assert sorted(reports) == ["a.0", "s.5"]
    assert (reports["a.0"].state, reports["a.0"].exit_code) == ("COMPLETED", 0) and reports["s.5"].state == "RUNNING"
    assert r.task_reports("11") == {}
    assert not r.cancelled("10")
    r.mark_cancelled("10")
    assert r.cancelled("10") and not r.cancelled("11")
    assert mode(tmp_path / "apps" / "10" / "cancelled.json") == 0o600
