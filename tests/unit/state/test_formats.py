"""Files forge reads again carry a format: what they write, and a newer format is one clear line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from torchx_forge.core import formats, layout
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
    from torchx_forge.errors import _is_forge

    assert _is_forge(NewerFormatError("app record", "/s/apps/1/record.json", 2, 1))


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
    assert json.loads((tmp_path / layout.intent("mine")).read_text())["format"] == Intent.FORMAT == 1
    newer(tmp_path / layout.intent("theirs"))
    with pytest.raises(NewerFormatError) as e:
        intents.load("theirs")
    one_line(e.value, "intent", tmp_path / layout.intent("theirs"), 2, 1)
    assert [i.submission for i in intents.pending()] == ["mine"]  # a later command does not block on it
