"""Files forge reads again carry a format: what they write, and a newer format is one clear line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from torchx_forge.core import formats, layout, runrow
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store


def one_line(e: BaseException, kind: str, path: object, found: int, known: int) -> None:
    text = str(e)
    assert text == (f"{kind} {path} is format {found}; this torchx-forge reads up to format {known}: upgrade torchx-forge")
    assert "\n" not in text


def newer(path: Path, by: int = 1) -> None:
    """Make the file at ``path`` look written by a torchx-forge ``by`` formats ahead."""
    obj = json.loads(path.read_text())
    obj["format"] = obj.get("format", 1) + by
    path.chmod(0o600)
    path.write_text(json.dumps(obj))


def test_format_of_reads_unnumbered_files_as_format_1_and_refuses_newer_ones():
    assert formats.format_of({}, "thing", "/x.json", 1) == 1
    assert formats.format_of({"format": 2}, "thing", "/x.json", 3) == 2
    with pytest.raises(NewerFormatError) as e:
        formats.format_of({"format": 3}, "thing", "/x.json", 2)
    one_line(e.value, "thing", "/x.json", 3, 2)
    assert (e.value.found, e.value.known, e.value.path) == (3, 2, "/x.json")
    for bad in ("2", 0, True, None, 1.5):
        with pytest.raises(ValueError, match="is not a format number"):
            formats.format_of({"format": bad}, "thing", "/x.json", 2)
    assert not isinstance(e.value, (OSError, ValueError))  # never taken for a missing or broken file
    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)


def test_the_command_line_prints_it_as_one_line():
    from torchx_forge.torchx_errors import is_user_error

    assert is_user_error(NewerFormatError("app record", "/s/apps/1/record.json", 2, 1))


def record(app_id: str = "10") -> AppRecord:
    return AppRecord(app_id=app_id, name="app", jobs=[JobRecord(app_id, "array", role="s", size=3)],
                     roles=[RoleRecord("s", 3)], log_dir="/logs")


def test_records_jobs_and_cancel_marks_are_written_with_their_format(tmp_path: Path):
    records = Records(Store(str(tmp_path)))
    records.save(record())
    records.add_job("10", JobRecord("12", "array", role="s", size=1, retry_of="10"))
    records.mark_cancelled("10")
    saved = json.loads((tmp_path / layout.record("10")).read_text())
    assert saved["format"] == AppRecord.FORMAT == 1 and saved["version"] == 1
    assert "format" not in saved["jobs"][0]  # the record's format covers the jobs it lists
    assert json.loads((tmp_path / layout.added_job("10", "12")).read_text())["format"] == JobRecord.FORMAT == 1
    assert json.loads((tmp_path / layout.cancelled("10")).read_text())["format"] == 1
    assert [j.job_id for j in records.load("10").jobs] == ["10", "12"]


def test_a_newer_record_or_added_job_is_one_clear_line(tmp_path: Path):
    records = Records(Store(str(tmp_path)))
    records.save(record())
    records.add_job("10", JobRecord("12", "array", role="s", size=1, retry_of="10"))
    newer(tmp_path / layout.added_job("10", "12"))
    with pytest.raises(NewerFormatError) as e:
        records.load("10")
    one_line(e.value, "job record", tmp_path / layout.added_job("10", "12"), 2, 1)
    newer(tmp_path / layout.record("10"), by=2)
    with pytest.raises(NewerFormatError) as e:
        records.load("10")
    one_line(e.value, "app record", tmp_path / layout.record("10"), 3, 1)


def test_intents_carry_their_format_and_a_newer_one_is_left_to_its_writer(tmp_path: Path):
    intents = Intents(Store(str(tmp_path)))
    intents.save(Intent("mine", "app", str(tmp_path), "/logs"))
    intents.save(Intent("theirs", "app", str(tmp_path), "/logs"))
    assert json.loads((tmp_path / layout.intent("mine")).read_text())["format"] == Intent.FORMAT == 2
    newer(tmp_path / layout.intent("theirs"))
    with pytest.raises(NewerFormatError) as e:
        intents.load("theirs")
    one_line(e.value, "intent", tmp_path / layout.intent("theirs"), 3, 2)
    assert [i.submission for i in intents.pending()] == ["mine"]  # a later command does not block on it


# -- task state files --------------------------------------------------------------------------------


def test_task_files_carry_their_format_and_a_newer_one_is_neither_read_nor_written_over(tmp_path: Path, capsys):
    from torchx_forge.node import decide
    from torchx_forge.state.taskfile import AttemptEntry, TaskFile

    f = TaskFile(str(tmp_path), "10", "s", 0)
    f.write(AttemptEntry(attempt=0, job_key="10_0", state="FAILED", outcome="failed"))
    path = tmp_path / layout.task_file("10", "s", 0)
    assert json.loads(path.read_text())["format"] == 1
    newer(path)
    before = path.read_text()
    with pytest.raises(NewerFormatError) as e:
        Records(Store(str(tmp_path))).task_reports("10")
    one_line(e.value, "task state file", path, 2, 1)
    with pytest.raises(NewerFormatError):
        TaskFile(str(tmp_path), "10", "s", 0).load()
    env = {"FORGE_STATE_DIR": str(tmp_path), "FORGE_APP_ID": "10", "FORGE_MAX_RETRIES": "3"}
    assert decide.run(["s:0"], env) == 1  # no requeue
    assert capsys.readouterr().out.strip() == f"torchx-forge: not requeueing ({e.value})"
    assert path.read_text() == before


def test_the_launcher_refuses_a_task_whose_state_file_is_newer(tmp_path: Path):
    import os
    import subprocess
    import sys

    path = tmp_path / layout.task_file("77", "r", 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 5, "history": []}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FORGE"))}
    env.update(SLURM_JOB_ID="77", FORGE_APP_ID="77", FORGE_STATE_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "torchx_forge.node.launch", "--role", "r", "--replica", "0", "--",
                        sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "ran" not in p.stdout
    assert p.stderr.strip() == (f"torchx-forge: task state file {path} is format 5; this torchx-forge reads up to"
                                " format 1: upgrade torchx-forge; not starting")
    assert json.loads(path.read_text()) == {"format": 5, "history": []}


# -- run tables ----------------------------------------------------------------------------------------


def test_run_tables_are_format_2_and_a_newer_one_is_one_clear_line(tmp_path: Path):
    import os
    import subprocess
    import sys

    from torchx_forge.core import runtable
    from torchx_forge.state import tables

    store = Store(str(tmp_path))
    row = runrow.RunRow(0, "r-0", argv=(sys.executable, "-c", "print('ran')"), workdir=str(tmp_path))
    url = store.put_table(runtable.rows_table("t", "", [row], {"r": [0]}))
    obj = json.loads(Path(url).read_text())
    assert obj["format"] == runtable.RunTable.FORMAT == 2 and "space" not in obj
    newer(Path(url))
    tables._WRITTEN.clear()  # read from the file, as a node does
    with pytest.raises(NewerFormatError) as e:
        tables.read_table(url)
    one_line(e.value, "run table", url, 3, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FORGE"))}
    p = subprocess.run([sys.executable, "-m", "torchx_forge.node.task", "--table", url, "--role", "r", "--replica", "0"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "ran" not in p.stdout
    assert p.stderr.strip() == f"torchx-forge: cannot load run r/0 from {url}: {e.value}"


# -- summaries, checkpoint state, the limits cache -----------------------------------------------------


def test_run_summaries_carry_their_format_and_a_newer_one_is_one_clear_line(tmp_path: Path):
    from torchx_forge.node.summary import SUMMARY, RunSummary, read_summary, write_summary

    write_summary(str(tmp_path), RunSummary("COMPLETED", 0, 1, run_id="a-1"))
    assert json.loads((tmp_path / SUMMARY).read_text())["format"] == RunSummary.FORMAT == 1
    newer(tmp_path / SUMMARY)
    with pytest.raises(NewerFormatError) as e:
        read_summary(str(tmp_path))
    one_line(e.value, "run summary", f"{tmp_path}/{SUMMARY}", 2, 1)


def test_a_newer_checkpoint_state_is_a_checkpoint_error_before_the_program_starts(tmp_path: Path):
    from torchx_forge.node.checkpoint import STATE_FILE, CheckpointError, commit, latest_checkpoint

    (tmp_path / "step_3.pt").write_text("x")
    commit(str(tmp_path), str(tmp_path / "step_3.pt"), 3)
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"latest": "step_3.pt", "step": 3, "format": 1}
    assert latest_checkpoint(str(tmp_path)) == f"{tmp_path}/step_3.pt"
    newer(tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError) as e:
        latest_checkpoint(str(tmp_path))
    one_line(e.value, "checkpoint state", f"{tmp_path}/{STATE_FILE}", 2, 1)


def test_a_limits_cache_a_newer_torchx_forge_wrote_is_a_miss(tmp_path: Path):
    from torchx_forge.slurm.limits import CACHE, ClusterLimits

    store = Store(str(tmp_path))
    store.write_json(CACHE, ClusterLimits(max_array_size=5, time=1.0).to_json())
    assert json.loads((tmp_path / CACHE).read_text())["format"] == ClusterLimits.FORMAT == 2
    assert ClusterLimits.cached(store).max_array_size == 5
    newer(tmp_path / CACHE)
    assert ClusterLimits.cached(store) is None  # read from Slurm again (and written as this version reads it)


def test_the_torchx_command_line_says_it_in_one_line_without_a_traceback(tmp_path: Path):
    from conftest import run_torchx

    records = Records(Store(str(tmp_path)))
    records.save(record("5"))
    newer(tmp_path / layout.record("5"))
    message = (f"app record {tmp_path / layout.record('5')} is format 2; this torchx-forge reads up to format 1:"
               " upgrade torchx-forge")
    env = {"FORGE_STATE_DIR": str(tmp_path)}
    for argv, prefix in ((["status", "slurm_forge://torchx/5"], "torchx: error: "),
                         (["forge", "results", "slurm_forge://torchx/5"], "torchx forge results: error: ")):
        p = run_torchx(*argv, env=env)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.strip() == prefix + message
