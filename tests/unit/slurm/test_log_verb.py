"""``torchx log`` of an app without a readable record: TorchX asks describe for the app's state until it
gets one (for ever, for an unknown app) and then needs its roles, which only the record names. Inside
``torchx log`` (and only there) describe says why at once; ``torchx status`` keeps TorchX's own answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from torchx_forge.core.storage import StoreUnreachableError
from torchx_forge.errors import UnknownAppError
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm

DOWN = StoreUnreachableError("s3://bucket/state/apps/10/record.json", 'EndpointConnectionError: "http://127.0.0.1:9"')


def verb(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/bin/torchx", name, "slurm_forge://torchx/10"])


@pytest.mark.parametrize("app_id", ["999999", "y"])
def test_log_of_an_app_without_a_record_is_an_error_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_id: str):
    slurm = FakeSlurm()
    sched = SlurmForgeScheduler("torchx", cli=slurm, state_dir=str(tmp_path))
    assert sched.describe(app_id) is None  # the Runner API and `torchx status`: TorchX's "does not exist"
    verb(monkeypatch, "status")
    assert sched.describe(app_id) is None
    verb(monkeypatch, "log")
    asked = len(slurm.calls)
    with pytest.raises(UnknownAppError, match=f"no logs of app '{app_id}': slurm_forge has no record of it in {tmp_path}"):
        sched.describe(app_id)
    assert len(slurm.calls) == asked  # no Slurm call: the record decides


def test_log_of_a_job_only_slurm_knows_is_an_error_not_a_role_nobody_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sched = SlurmForgeScheduler("torchx", cli=FakeSlurm().add_job("10", "RUNNING", name="other"), state_dir=str(tmp_path))
    assert sched.describe("10") is not None  # status: what Slurm alone knows
    verb(monkeypatch, "log")
    with pytest.raises(UnknownAppError, match="no logs of app '10'"):
        sched.describe("10")


def test_log_while_the_store_does_not_answer_names_its_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sched = SlurmForgeScheduler("torchx", cli=FakeSlurm(fixtures=False).add_job("10", "RUNNING", name="sweep"),
                                state_dir=str(tmp_path))
    monkeypatch.setattr(Records, "load", lambda self, app_id: (_ for _ in ()).throw(DOWN))
    msg = sched.describe("10").msg  # status: Slurm alone, naming the URL; the counts are Slurm's
    assert "shown from Slurm alone" in msg and "s3://bucket/state/apps/10/record.json" in msg
    assert msg.startswith("sweep: 1 task(s) in 1 Slurm job(s) (1 RUNNING); its logs are not known without its record"), msg
    verb(monkeypatch, "log")
    with pytest.raises(StoreUnreachableError, match="s3://bucket/state/apps/10/record.json: the store did not answer"):
        sched.describe("10")


def test_log_of_a_recorded_app_reads_its_record_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    records = Records(Store(str(tmp_path)))
    records.save(AppRecord(app_id="10", name="sweep", jobs=[JobRecord("10", "array", role="sweep", size=2)],
                           roles=[RoleRecord("sweep", 2)], log_dir=str(tmp_path / "logs")))
    sched = SlurmForgeScheduler("torchx", cli=FakeSlurm().add_job("10_0", "PENDING", name="sweep"), state_dir=str(tmp_path))
    verb(monkeypatch, "log")
    loads = []
    real = Records.load
    monkeypatch.setattr(Records, "load", lambda self, app_id: loads.append(app_id) or real(self, app_id))
    for _ in range(3):  # TorchX polls while the app is PENDING
        resp = sched.describe("10")
        assert resp is not None and [r.name for r in resp.roles] == ["sweep"]
        sched._cache["10"] = (0.0, *sched._cache["10"][1:])  # the next poll asks Slurm again
    assert len(loads) == 4  # the record checked once, then one read per status
