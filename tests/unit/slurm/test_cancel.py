"""Cancel while the Slurm controller does not answer: nothing is cancelled, nothing is marked, and
the one line says so and what to do (the same on the real cluster: tests/cluster/test_verbs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchx_forge.core import layout
from torchx_forge.errors import SlurmError
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm, unreachable


def recorded(tmp_path: Path) -> Records:
    records = Records(Store(str(tmp_path)))
    records.save(AppRecord(app_id="10", name="sweep", jobs=[JobRecord("10", "array", role="sweep", size=2)],
                           roles=[RoleRecord("sweep", 2)], log_dir=str(tmp_path / "logs")))
    return records


def running() -> FakeSlurm:
    return FakeSlurm(fixtures=False).add_job("10_0", "RUNNING", name="sweep").add_job("10_1", "RUNNING", name="sweep")


def test_cancel_while_the_controller_is_down_cancels_nothing_and_says_to_run_it_again(tmp_path: Path):
    records = recorded(tmp_path)
    slurm = running().down("slurmctld")
    sched = SlurmForgeScheduler("torchx", cli=slurm, state_dir=str(tmp_path))
    with pytest.raises(SlurmError) as e:
        sched.cancel("10")
    text = str(e.value)
    assert text.startswith("app 10: nothing was cancelled: the Slurm controller does not answer (squeue: ") and "\n" not in text
    assert text.endswith("run the same cancel again once `sinfo` answers") and "submit" not in text
    assert slurm.called("scancel") == [] and not records.cancelled("10")  # no minute of scancel retries, no mark
    slurm.up("slurmctld")
    sched.cli._unanswered.clear()  # a later process: the controller answers again
    sched.cancel("10")
    assert slurm.cancelled == ["10"] and records.cancelled("10")


def test_a_cancel_whose_scancel_gets_no_answer_takes_its_mark_back(tmp_path: Path):
    records = recorded(tmp_path)
    slurm = running().always("scancel", unreachable(["scancel", "10"]))  # squeue answered; scancel does not
    sched = SlurmForgeScheduler("torchx", cli=slurm, state_dir=str(tmp_path))
    with pytest.raises(SlurmError) as e:
        sched.cancel("10")
    assert str(e.value).startswith("app 10: nothing was cancelled: the Slurm controller does not answer (scancel: ")
    assert "run the same cancel again" in str(e.value) and "submit" not in str(e.value)
    assert not records.store.exists(layout.cancelled("10"))
