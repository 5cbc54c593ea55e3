"""Which rows are an app's jobs (tags, not ids), and which jobs Slurm lost (no Slurm)."""

from __future__ import annotations

from datetime import datetime

from torchx_forge.core.states import SlurmState
from torchx_forge.slurm import identity
from torchx_forge.slurm.merge import is_settled, task_views
from torchx_forge.slurm.parse import SACCT_FIELDS, SUBMIT_LINE, parse_sacct, parse_squeue
from torchx_forge.state.records import AppRecord, JobRecord, RoleRecord
from torchx_forge.state.taskfile import TaskReport

SUB = "20261205-120000-abcd1234"


def sweep(created: float = 1000.0) -> AppRecord:
    job = JobRecord("20", "array", role="s", offset=0, size=2, created=created)
    return AppRecord(app_id="20", name="sweep", jobs=[job], roles=[RoleRecord("s", 2)], log_dir="/logs", submission=SUB)


def sacct_line(key: str, state: str, submit_line: str) -> str:
    return f"{key}|s|{state}|0:0|n1|Unknown|Unknown|None|{submit_line}"


def sacct(*lines: str):
    return parse_sacct("\n".join(lines), (*SACCT_FIELDS, SUBMIT_LINE))


def test_tags_come_from_squeue_comments_and_sacct_submit_lines():
    (q,) = parse_squeue(f"20_0|RUNNING|None|n1|s|my words forge:{SUB}-0")
    assert q.tags == f"forge:{SUB}-0"
    (plain,) = parse_squeue("21|RUNNING|None|n1|x|(null)")
    assert plain.tags == ""
    (old,) = parse_squeue("22|RUNNING|None|n1|x")  # a line without %k: unknown, not empty
    assert old.tags is None
    rows = sacct(sacct_line("20_0", "PENDING", f"sbatch --parsable --comment=forge:{SUB}-0 --wrap a|b /s.sh"),
                 sacct_line("20_1", "PENDING", ""))
    assert [r.tags for r in rows] == [f"forge:{SUB}-0", ""]  # a | in the command line does not shift fields
    # (a job without a submit line is a salloc or srun allocation: no tag; without the field, tags are unknown)
    assert parse_sacct(sacct_line("20_0", "PENDING", "").rsplit("|", 1)[0])[0].tags is None
    assert rows[0].state is SlurmState.PENDING and rows[0].reason == "None"


def test_only_rows_tagged_by_the_apps_submission_or_its_resubmissions_are_its_own():
    owner = identity.Owner(sweep())
    rows = parse_squeue("\n".join([
        f"20_0|RUNNING|None|n1|s|forge:{SUB}-0",
        "20_1|RUNNING|None|n1|s|forge:20-again-1234abcd",
        "20|RUNNING|None|n1|other|forge:20261205-130000-ffffffff-0",
        "20|RUNNING|None|n1|other|(null)",
    ]))
    found = identity.own_rows(owner, rows)
    assert [r.key for r in found.rows or []] == ["20_0", "20_1"] and found.foreign == ["20"]
    assert identity.own_rows(owner, None).rows is None
    untagged = sweep()
    untagged.submission = ""  # a record of a version without submissions: nothing to check against
    assert len(identity.own_rows(identity.Owner(untagged), rows).rows or []) == 4


def test_a_job_neither_queued_nor_ended_is_lost_when_the_controller_started_after_it():
    rec = sweep(created=1000.0)
    live = parse_squeue("")
    history = sacct(sacct_line("20_1", "PENDING", f"sbatch --comment=forge:{SUB}-0 /s.sh"))
    unseen = identity.unseen(rec, live, history)
    assert [k for k, _ in unseen] == ["20_0", "20_1"]
    assert set(identity.lost(unseen, booted=1500.0)) == {"20_0", "20_1"}
    assert identity.lost(unseen, booted=900.0) == {}  # submitted after the restart: a lag, not a loss
    assert identity.lost(unseen, booted=None) == {}
    assert identity.unseen(rec, None, history) == []  # squeue did not answer: nothing is called lost
    assert [k for k, _ in identity.unaccounted(unseen, ended=["20_0"])] == ["20_1"]
    ended = sacct(sacct_line("20_0", "COMPLETED", ""), sacct_line("20_1", "COMPLETED", ""))
    assert identity.unseen(rec, live, ended) == []


def test_lost_tasks_show_lost_until_cancelled_and_are_never_frozen():
    rec = sweep()
    lost = identity.lost(identity.unseen(rec, [], []), booted=2000.0)
    views = task_views(rec, [], [], {}, lost=lost)
    assert [v.slurm_state for v in views] == [SlurmState.LOST] * 2 and "retry" in views[0].reason
    assert not is_settled(views)
    cancelled = task_views(rec, [], [], {}, cancelled=True, lost=lost)
    assert [v.slurm_state for v in cancelled] == [SlurmState.CANCELLED] * 2 and is_settled(cancelled)


def test_an_end_the_launcher_reported_beats_accounting_that_has_not_caught_up():
    """slurmdbd back after an outage says RUNNING for a while; squeue forgot the tasks: the status
    that was SUCCEEDED stays SUCCEEDED."""
    rec = sweep()
    history = sacct(sacct_line("20_0", "RUNNING", ""), sacct_line("20_1", "RUNNING", ""))
    reports = {f"s.{i}": TaskReport.from_json({"state": "COMPLETED", "exit_code": 0, "host": "n1", "attempt": 0, "history": [
        {"attempt": 0, "job_key": f"20_{i}", "outcome": "completed"}]}) for i in (0, 1)}
    views = task_views(rec, [], history, reports)
    assert [(v.slurm_state, v.source) for v in views] == [(SlurmState.COMPLETED, "state file")] * 2


def test_boot_time_is_read_from_scontrol_show_config():
    assert identity.boot_time({"BOOT_TIME": "2026-12-05T11:53:06"}) == datetime(2026, 12, 5, 11, 53, 6).timestamp()
    assert identity.boot_time({}) is None


def test_a_job_that_keeps_its_tag_is_known_by_that_tag_alone():
    """A resubmission of the app may get the id of an earlier job of the same app (a lost one): its
    rows are not that job's rows, though both carry the app's tags."""
    rec = sweep()
    rec.jobs[0].tag = f"{SUB}-0"
    owner = identity.Owner(rec)
    mine, again = parse_squeue(f"20_0|PENDING|None||s|forge:{SUB}-0\n20_1|PENDING|None||s|forge:20-again-1234abcd")
    assert owner(mine) and not owner(again)
    (elsewhere,) = parse_squeue("31|PENDING|None||s|forge:20-again-1234abcd")  # a job without a tag on record
    assert owner(elsewhere)


def test_the_retry_policy_takes_a_loss_as_a_node_failure_while_attempts_are_left():
    from torchx_forge.slurm.lost import to_retry

    rec = sweep()
    lost = identity.lost(identity.unseen(rec, [], []), booted=2000.0)
    views = task_views(rec, [], [], {}, lost=lost)
    assert to_retry(rec, views) == {}  # no retries asked for: `torchx forge retry` brings them back
    rec.jobs[0].max_retries = 1
    assert [v.key for v in to_retry(rec, views)["20"]] == ["20_0", "20_1"]
    views[1].attempts = 2  # its one retry used already
    assert [v.key for v in to_retry(rec, views)["20"]] == ["20_0"]
    rec.jobs[0].retry_on = ["FAILED"]  # a loss is retried when a kill from outside (timeout, preemption, node) is
    assert to_retry(rec, views) == {}


def test_a_resubmission_decision_is_found_by_its_own_tag_only(tmp_path):
    from torchx_forge.slurm.resubmit import live_tagged
    from unit.fakeslurm import FakeSlurm

    cli = FakeSlurm()
    other = cli.sbatch(["sbatch", "--parsable", "--wrap", "true"], tag="123-lost-1234-aa")  # job 1234's, not 123's
    mine = cli.sbatch(["sbatch", "--parsable", "--wrap", "true"], tag="123-lost-123-bb")
    assert live_tagged(cli, "123-lost-123") == [mine] and live_tagged(cli, "123-lost-1234") == [other]
    cli.cancel([mine])
    assert live_tagged(cli, "123-lost-123") == []  # a cancelled rival does not count


def test_a_death_by_signal_does_not_override_accounting_that_lags():
    """A cancel kills the program (exit 128 + 15): until accounting records CANCELLED, that report is
    not taken for a FAILED end of the program's own."""
    rec = sweep()
    history = sacct(sacct_line("20_0", "RUNNING", ""), sacct_line("20_1", "RUNNING", ""))
    reports = {f"s.{i}": TaskReport.from_json({"state": "FAILED", "exit_code": 143, "host": "n1", "attempt": 0, "history": [
        {"attempt": 0, "job_key": f"20_{i}", "outcome": "failed"}]}) for i in (0, 1)}
    views = task_views(rec, [], history, reports, cancelled=True)
    assert [v.slurm_state for v in views] == [SlurmState.RUNNING] * 2 and not is_settled(views)
