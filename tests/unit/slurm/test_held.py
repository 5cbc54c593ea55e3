"""Tasks Slurm held after a failed launch are released, a bounded number of times, never for a cancelled app."""

from torchx_forge.slurm.held import LAUNCHES, held_after_launch, release_held
from torchx_forge.slurm.merge import TaskView
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm, fail

HELD = "launch failed requeued held"


def view(key: str, state: str = "PENDING", reason: str = HELD, attempts: int = 2) -> TaskView:
    return TaskView(role="s", replica=int(key.rsplit("_", 1)[1]), key=key, slurm_state=state, reason=reason,
                    attempts=attempts)


def record() -> AppRecord:
    return AppRecord(app_id="20", name="sweep", jobs=[JobRecord("20", "array", role="s", size=4)],
                     roles=[RoleRecord("s", 4)], log_dir="/logs")


def test_only_pending_tasks_held_after_a_failed_launch_with_launches_left_are_taken():
    views = [view("20_0"), view("20_1", reason="JobHeldUser"), view("20_2", state="RUNNING"),
             view("20_3", attempts=LAUNCHES), view("20_4", attempts=LAUNCHES - 1)]
    assert [v.key for v in held_after_launch(views)] == ["20_0", "20_4"]


def test_held_tasks_are_released_in_one_call_with_a_note(tmp_path):
    slurm, records = FakeSlurm(), Records(Store(str(tmp_path)))
    rec = record()
    for key in ("20_0", "20_3"):
        slurm.add_job(key, "PENDING", reason=HELD)
    notes = release_held(slurm, records, rec, [view("20_0"), view("20_3"), view("20_1", state="COMPLETED")])
    assert [c for c in slurm.calls if c[0] == "scontrol"] == [["scontrol", "release", "20_0,20_3"]]
    assert len(notes) == 1 and "20_0, 20_3" in notes[0] and "released" in notes[0], notes
    slurm.calls.clear()  # the next command finds them released by another: a note, no error
    slurm.answer("scontrol release", fail("Job is no longer pending execution for job 20_0\n"))
    assert "could not release 20_0, 20_3" in release_held(slurm, records, rec, [view("20_0"), view("20_3")])[0]


def test_a_cancelled_app_is_not_released_and_nothing_held_costs_no_call(tmp_path):
    slurm, records = FakeSlurm(), Records(Store(str(tmp_path)))
    rec = record()
    assert release_held(slurm, records, rec, [view("20_0", state="RUNNING", reason="None")]) == []
    records.mark_cancelled("20")
    assert release_held(slurm, records, rec, [view("20_0")]) == []
    assert slurm.calls == []
