"""Status while the state dir's store does not answer: what Slurm alone knows, with the URL and why
in the message; never a traceback, never a status frozen from half the facts."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest

from torchx_forge.core.storage import StoreUnreachableError
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.slurm.status import gather, write_back
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm

DOWN = StoreUnreachableError("s3://bucket/state/apps/10/record.json", 'EndpointConnectionError: "http://127.0.0.1:9"')


def slurm() -> FakeSlurm:
    """sacct says job 10 (an array of 2) completed; squeue knows nothing (it left the queue)."""
    return FakeSlurm().add_accounting("10_0|sweep|COMPLETED|0:0|n1|2026-11-22T03:10:05|2026-11-22T03:10:11|None\n"
                                      "10_1|sweep|COMPLETED|0:0|n2|2026-11-22T03:10:05|2026-11-22T03:10:12|None")


def test_status_answers_from_slurm_naming_the_unreachable_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sched = SlurmForgeScheduler("torchx", cli=slurm(), state_dir=str(tmp_path))

    def down(self: Records, app_id: str) -> Optional[AppRecord]:
        raise DOWN

    monkeypatch.setattr(Records, "load", down)
    resp = sched.describe("10")
    assert resp is not None and resp.state.name == "SUCCEEDED"
    assert "s3://bucket/state/apps/10/record.json: the store did not answer" in resp.msg
    assert "shown from Slurm alone until it answers again" in resp.msg


def test_status_of_an_app_slurm_forgot_is_the_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sched = SlurmForgeScheduler("torchx", cli=FakeSlurm(), state_dir=str(tmp_path))  # neither squeue nor sacct knows 10
    monkeypatch.setattr(Records, "load", lambda self, app_id: (_ for _ in ()).throw(DOWN))
    with pytest.raises(StoreUnreachableError):  # not "no such app": the store may well know it
        sched.describe("10")


def test_unreadable_task_files_are_a_note_and_nothing_is_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    records = Records(Store(str(tmp_path)))
    rec = AppRecord(app_id="10", name="sweep", jobs=[JobRecord("10", "array", role="sweep", size=2, max_retries=1)],
                    roles=[RoleRecord("sweep", 2)], log_dir=str(tmp_path / "logs"))
    records.save(rec)
    monkeypatch.setattr(Records, "task_reports", lambda self, app_id: (_ for _ in ()).throw(DOWN))
    saved: List[str] = []
    monkeypatch.setattr(Records, "save", lambda self, r: saved.append(r.app_id))
    found = gather(slurm(), records, [rec])
    write_back(records, found)
    assert [v.slurm_state.value for v in found.views["10"]] == ["COMPLETED", "COMPLETED"]
    assert any("the tasks' state files cannot be read (s3://bucket/state" in n for n in found.notes), found.notes
    assert saved == [] and rec.final is None
