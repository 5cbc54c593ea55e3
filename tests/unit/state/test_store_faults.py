"""A state dir on a URL whose store stops answering: one-line errors naming the URL, answers kept
apart from silence, no history overwritten, and the compute-node side waiting the outage out.

The store here is fsspec's memory file system behind a switch that makes every call raise what
botocore raises when an endpoint is down (an exception that is not an OSError). The same paths
against a real S3 API server are in tests/unit/state/test_s3_store.py and tests/cluster/test_s3.py.
"""

from __future__ import annotations

import json
import time
import uuid

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from torchx_forge.core import layout, runtable
from torchx_forge.core.storage import StoreError, StoreUnreachableError, describe
from torchx_forge.slurm.options import state_dir_error
from torchx_forge.state import files
from torchx_forge.state.files import guarded, read_file, url_fs, write_file
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store
from torchx_forge.state.tables import read_table
from torchx_forge.state.taskfile import AttemptEntry, TaskFile
from torchx_forge.torchx_errors import is_user_error


class EndpointConnectionError(Exception):
    """Like botocore's EndpointConnectionError: not an OSError."""


class Flaky(MemoryFileSystem):
    """A memory file system that stops answering while ``Flaky.down`` is set (or for ``Flaky.fail_next`` calls)."""

    protocol = ("flaky",)
    down = False
    fail_next = 0
    calls = 0

    def _check(self) -> None:
        Flaky.calls += 1
        if Flaky.fail_next > 0:
            Flaky.fail_next -= 1
            raise EndpointConnectionError('Could not connect to the endpoint URL: "http://127.0.0.1:9/bucket/state/x.json?a=1"')
        if Flaky.down:
            raise EndpointConnectionError('Could not connect to the endpoint URL: "http://127.0.0.1:9/bucket/state/x.json?a=1"')

    def cat_file(self, path, *a, **kw):
        self._check()
        return super().cat_file(path, *a, **kw)

    def pipe_file(self, path, *a, **kw):
        self._check()
        return super().pipe_file(path, *a, **kw)

    def ls(self, path, *a, **kw):
        self._check()
        return super().ls(path, *a, **kw)

    def exists(self, path, *a, **kw):
        self._check()
        return super().exists(path, *a, **kw)

    def cat(self, path, *a, **kw):
        self._check()
        return super().cat(path, *a, **kw)

    def rm_file(self, path, *a, **kw):
        self._check()
        return super().rm_file(path, *a, **kw)


fsspec.register_implementation("flaky", Flaky, clobber=True)


@pytest.fixture
def flaky():
    Flaky.down, Flaky.fail_next, Flaky.calls = False, 0, 0
    files.be_patient(0)
    yield f"flaky://forge-{uuid.uuid4().hex}/state"
    Flaky.down, Flaky.fail_next = False, 0
    files.be_patient(0)


def test_urls_keep_their_scheme_so_a_node_can_open_what_the_record_names(flaky):
    store = Store(flaky)
    path = store.put_table(runtable.rows_table("x", "", [], {"r": []}))
    assert path.startswith("flaky://") and "/tables/" in path  # not "forge-.../state/tables/...": the node-side bug
    where = store.write_json("apps/1/record.json", {"a": 1})
    assert where.startswith("flaky://") and where.endswith("/state/apps/1/record.json")
    assert json.loads(read_file(where)) == {"a": 1}
    from torchx_forge.state import tables

    tables._WRITTEN.clear()  # as on a compute node: from the store, not this process's memory
    assert read_table(path).roles == {"r": []}


def test_a_store_that_does_not_answer_is_one_line_naming_the_url(flaky):
    store = Store(flaky)
    store.write_json("apps/1/record.json", {"a": 1})
    Flaky.down = True
    with pytest.raises(StoreUnreachableError) as e:
        store.read_json("apps/1/record.json")
    text = str(e.value)
    assert "\n" not in text and "apps/1/record.json" in text and text.startswith("flaky://")
    assert "EndpointConnectionError: Could not connect to the endpoint URL" in text
    assert '"http://127.0.0.1:9"' in text  # the endpoint, without the request's path
    assert isinstance(e.value, OSError) and is_user_error(e.value)  # every OSError handler copes; the CLI prints one line


def test_answers_are_not_silence(flaky):
    store = Store(flaky)
    assert store.read_json("apps/none/record.json") is None  # missing: an answer
    assert store.listdir("apps/none") == [] and not store.exists("apps/none/x")
    for exc, kind in [(FileNotFoundError("x"), FileNotFoundError), (PermissionError("denied"), PermissionError),
                      (OSError(5, "SlowDown"), OSError), (ValueError("bad path"), ValueError)]:
        with pytest.raises(kind) as got, guarded("s3://b/x"):
            raise exc
        assert type(got.value) is kind

    class ReadTimeoutError(OSError):  # requests' exceptions are OSErrors: the network, not an answer
        pass

    for exc in (ReadTimeoutError("Read timed out"), ConnectionRefusedError(111, "refused"), TimeoutError(),
                EndpointConnectionError("down")):
        with pytest.raises(StoreUnreachableError), guarded("s3://b/x"):
            raise exc


def test_after_one_silence_a_command_fails_at_once_for_a_while(flaky, monkeypatch):
    store = Store(flaky)
    store.write_json("a.json", 1)
    Flaky.down = True
    with pytest.raises(StoreUnreachableError):
        store.read_json("a.json")
    calls = Flaky.calls
    with pytest.raises(StoreUnreachableError) as e:
        store.listdir("apps")
    assert Flaky.calls == calls and f"{store.url_of('apps')}:" in str(e.value)  # no second wait, the right URL
    Flaky.down = False
    monkeypatch.setattr(time, "monotonic", lambda: 1e12)  # DOWN_FOR later
    assert store.read_json("a.json") == 1


def test_many_json_does_not_drop_files_the_store_did_not_give(flaky, monkeypatch):
    store = Store(flaky)
    for i in range(3):
        store.write_json(f"apps/1/tasks/t.{i}.json", {"i": i})
    monkeypatch.setattr(store.fs, "cat", lambda paths, **kw: {p: EndpointConnectionError("gone") for p in paths})
    with pytest.raises(StoreUnreachableError):
        store.read_many_json("apps/1/tasks")  # never {}: that would say no task has started


def test_the_node_side_waits_for_the_store_to_come_back(flaky, capsys):
    files.be_patient(30)
    Flaky.fail_next = 2  # the endpoint refuses twice, then answers
    start = time.monotonic()
    write_file(f"{flaky}/apps/1/tasks/t.0.json", b"{}")
    assert time.monotonic() - start < 10 and json.loads(read_file(f"{flaky}/apps/1/tasks/t.0.json")) == {}
    err = capsys.readouterr().err
    assert "trying again for up to" in err and "the store answers again" in err
    files.be_patient(0.5)
    Flaky.down = True
    with pytest.raises(StoreUnreachableError):
        read_file(f"{flaky}/apps/1/tasks/t.0.json")  # bounded: it gives up, naming the URL


def test_a_task_file_never_replaces_a_history_it_could_not_read(flaky, capsys):
    f = TaskFile(flaky, "7", "train", 0)
    f.write(AttemptEntry(attempt=0, job_key="7_0", state="FAILED", outcome="failed"))
    Flaky.down = True
    later = TaskFile(flaky, "7", "train", 0).load()  # attempt 1 starts while the store is down
    assert not later.loaded
    later.write(AttemptEntry(attempt=1, job_key="7_0", state="RUNNING", outcome="running"))
    assert "not written" in capsys.readouterr().err
    Flaky.down = False
    later.write(AttemptEntry(attempt=1, job_key="7_0", state="COMPLETED", outcome="completed"))  # back: merged
    stored = json.loads(read_file(f"{flaky}/{layout.task_file('7', 'train', 0)}"))
    assert [(h["attempt"], h["state"]) for h in stored["history"]] == [(0, "FAILED"), (1, "COMPLETED")]
    assert stored["state"] == "COMPLETED"


def test_records_of_an_unreachable_store_raise_rather_than_say_missing(flaky):
    records = Records(Store(flaky))
    Flaky.down = True
    for call in (lambda: records.load("1"), records.app_ids, lambda: records.task_reports("1"),
                 lambda: records.cancelled("1")):
        with pytest.raises(StoreUnreachableError):
            call()


def test_the_submit_side_says_what_to_check(flaky):
    err = state_dir_error("s3://bucket/state", StoreUnreachableError("s3://bucket/state/intents/x.json", "EndpointConnectionError: no"))
    text = str(err)
    assert text.startswith("state dir s3://bucket/state: the store did not answer (EndpointConnectionError: no) at s3://bucket/state/intents/x.json")
    assert "AWS_ENDPOINT_URL" in text and "\n" not in text


def test_a_scheme_without_its_backend_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here")
    with pytest.raises(StoreError) as e:
        url_fs("gs://bucket/state")
    assert "gs://bucket/state: no file system for gs:// is installed" in str(e.value)


def test_describe_keeps_the_endpoint_and_drops_the_request():
    e = EndpointConnectionError('Could not connect to the endpoint URL: "http://10.0.0.1:9000/b/k?list-type=2"\nmore')
    assert describe(e) == 'EndpointConnectionError: Could not connect to the endpoint URL: "http://10.0.0.1:9000"'
