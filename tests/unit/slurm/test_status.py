"""Per-task status from squeue, sacct and the launcher's state files (all handmade, no Slurm)."""

import json
from typing import Optional

from torchx.specs import AppState

from torchx_forge.slurm.merge import TaskView, app_state, freeze, is_settled, task_views, thaw
from torchx_forge.slurm.parse import JobRow
from torchx_forge.slurm.report import describe_response, status_message
from torchx_forge.slurm.status import gather, write_back
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from torchx_forge.state.taskfile import TaskReport
from unit.fakeslurm import FakeSlurm


def views_of(rec, squeue, sacct, files, cancelled=False):
    """task_views with task state files given as the JSON the launcher writes."""
    return task_views(rec, squeue, sacct, {k: TaskReport.from_json(v) for k, v in files.items()}, cancelled)


def het_record(*components, job_id="10") -> AppRecord:
    comps = [list(c) for c in components] or [["a", 0], ["a", 1]]
    roles = sorted({c[0] for c in comps})
    return AppRecord(app_id=job_id, name="app", jobs=[JobRecord(job_id, "het", components=comps)],
                     roles=[RoleRecord(r, sum(c[0] == r for c in comps), resource={"cpu": 1, "gpu": 0, "memMB": 64}) for r in roles],
                     log_dir="/logs")


def array_record(size=3, offset=5) -> AppRecord:
    return AppRecord(app_id="20", name="sweep", jobs=[JobRecord("20", "array", role="s", offset=offset, size=size)],
                     roles=[RoleRecord("s", offset + size)], log_dir="/logs")


def row(key: str, state: str, **kw) -> JobRow:
    if "_" in key:
        base, task = key.split("_")
        return JobRow(base=base, task=int(task), state=state, **kw)
    if "+" in key:
        base, het = key.split("+")
        return JobRow(base=base, het=int(het), state=state, **kw)
    return JobRow(base=key, state=state, **kw)


def view(state: str, **kw) -> TaskView:
    return TaskView(role=kw.pop("role", "a"), replica=kw.pop("replica", 0), key="1", slurm_state=state, **kw)


# -- sources --------------------------------------------------------------------------------


def test_squeue_beats_lagging_sacct_for_live_task():
    rec = het_record()
    sq = [row("10+0", "RUNNING", nodes="n1"), row("10+1", "RUNNING", nodes="n2")]
    sa = [row("10+0", "PENDING"), row("10+1", "REQUEUED", exit_code=0, signal=15, nodes="n1")]
    a0, a1 = views_of(rec, sq, sa, {})
    assert (a0.slurm_state, a0.source, a0.host) == ("RUNNING", "squeue", "n1")
    assert (a1.slurm_state, a1.exit_code, a1.signal, a1.host) == ("RUNNING", None, None, "n2")
    assert not is_settled([a0, a1])


def test_sacct_exit_codes_and_attempts():
    rec = het_record()
    sa = [row("10+0", "COMPLETED", exit_code=0, nodes="n1"),
          row("10+1", "REQUEUED", exit_code=0, signal=15, nodes="n1"),
          row("10+1", "FAILED", exit_code=3, nodes="n2", reason="None")]
    a0, a1 = views_of(rec, [], sa, {})
    assert (a0.state, a0.exit_code, a0.attempts, a0.source) == (AppState.SUCCEEDED, 0, 1, "sacct")
    assert (a1.state, a1.exit_code, a1.attempts, a1.host, a1.reason) == (AppState.FAILED, 3, 2, "n2", "")
    assert is_settled([a0, a1])


def test_terminal_squeue_row_with_sacct_history_uses_sacct():
    rec = het_record(["a", 0])
    (v,) = views_of(rec, [row("10", "FAILED", nodes="n1")], [row("10", "FAILED", exit_code=7, signal=None, nodes="n1")], {})
    assert (v.slurm_state, v.exit_code, v.source) == ("FAILED", 7, "sacct")
    assert is_settled([v])


def test_an_end_squeue_shows_beats_sacct_still_saying_running():
    # slurmdbd just came back: sacct still has the tasks RUNNING, squeue lists them COMPLETED (the
    # controller keeps a job until accounting has it): the status must not go back to RUNNING
    rec = array_record(size=2, offset=0)
    sq = [row("20_0", "COMPLETED", nodes="n1"), row("20_1", "COMPLETED", nodes="n1")]
    sa = [row("20_0", "RUNNING", nodes="n1"), row("20_1", "RUNNING", nodes="n1")]
    files = {"s.1": {"state": "COMPLETED", "exit_code": 0, "host": "n1"}}
    v0, v1 = views_of(rec, sq, sa, files)
    assert (v0.slurm_state, v0.source, v1.slurm_state, v1.exit_code) == ("COMPLETED", "squeue", "COMPLETED", 0)
    assert app_state([v0, v1]) == AppState.SUCCEEDED
    assert not is_settled([v0, v1])  # accounting has not recorded the ends yet: not frozen


def test_terminal_squeue_row_without_history_is_not_settled_and_takes_file_exit_code():
    rec = het_record(["a", 0])
    (v,) = views_of(rec, [row("10", "FAILED", nodes="n1")], [], {"a.0": {"state": "FAILED", "exit_code": 4, "host": "n1"}})
    assert (v.slurm_state, v.exit_code, v.source) == ("FAILED", 4, "squeue")
    assert not is_settled([v])


def test_pending_in_squeue_with_reason():
    rec = het_record(["a", 0])
    (v,) = views_of(rec, [row("10", "PENDING", reason="Priority")], [], {})
    assert (v.state, v.reason, v.host) == (AppState.PENDING, "Priority", "")


# -- no accounting: state files ------------------------------------------------------------------


def test_no_accounting_state_files_give_final_states():
    rec = het_record()
    files = {"a.0": {"state": "COMPLETED", "exit_code": 0, "host": "n1", "attempt": 0},
             "a.1": {"state": "FAILED", "exit_code": 3, "host": "n2", "attempt": 1}}
    a0, a1 = views_of(rec, [], None, files)
    assert (a0.state, a0.exit_code, a0.host, a0.source) == (AppState.SUCCEEDED, 0, "n1", "state file")
    assert (a1.state, a1.exit_code, a1.host, a1.attempts) == (AppState.FAILED, 3, "n2", 2)
    assert is_settled([a0, a1])


def test_running_file_with_job_gone_is_lost():
    rec = het_record(["a", 0])
    (v,) = views_of(rec, [], None, {"a.0": {"state": "RUNNING", "host": "n1"}})
    assert v.slurm_state == "LOST" and v.state == AppState.FAILED and v.final
    assert "without reporting" in v.reason and "no accounting" in v.reason


def test_killed_file_with_job_gone_is_lost_with_signal_and_exit_code():
    rec = het_record(["a", 0])
    file = {"state": "KILLED", "stopped_by": 15, "exit_code": 143, "host": "n1"}
    (v,) = views_of(rec, [], None, {"a.0": file})
    assert (v.slurm_state, v.state, v.exit_code) == ("LOST", AppState.FAILED, 143)
    assert "signal 15" in v.reason
    (c,) = views_of(rec, [], None, {"a.0": file}, cancelled=True)
    assert (c.state, c.reason) == (AppState.CANCELLED, "")


def test_running_file_with_job_gone_after_cancel_is_cancelled():
    rec = het_record(["a", 0])
    (v,) = views_of(rec, [], None, {"a.0": {"state": "RUNNING", "host": "n1"}}, cancelled=True)
    assert v.slurm_state == "CANCELLED" and v.state == AppState.CANCELLED and v.reason == ""


def test_running_file_while_job_still_queued_keeps_squeue_state():
    rec = het_record(["a", 0])
    (v,) = views_of(rec, [row("10", "RUNNING", nodes="n5")], None, {"a.0": {"state": "RUNNING", "host": "n1"}})
    assert (v.slurm_state, v.host, v.source) == ("RUNNING", "n5", "squeue")


def test_unknown_task_of_cancelled_app_is_cancelled():
    (v,) = views_of(het_record(["a", 0]), [], None, {}, cancelled=True)
    assert v.state == AppState.CANCELLED
    (w,) = views_of(het_record(["a", 0]), [], None, {})
    assert w.state == AppState.UNKNOWN and not is_settled([w])


# -- arrays -----------------------------------------------------------------------------------


def test_array_keys_map_to_offset_replicas():
    rec = array_record(size=3, offset=5)
    sq = [row("20_1", "RUNNING", nodes="n1"), row("20_2", "PENDING", reason="JobArrayTaskLimit")]
    sa = [row("20_0", "COMPLETED", exit_code=0, nodes="n2")]
    views = views_of(rec, sq, sa, {"s.7": {"state": "RUNNING", "attempt": 2}})
    assert [(v.key, v.role, v.replica, v.slurm_state) for v in views] == [
        ("20_0", "s", 5, "COMPLETED"), ("20_1", "s", 6, "RUNNING"), ("20_2", "s", 7, "PENDING")]
    assert views[2].attempts == 3  # from the state file of replica 7


def test_array_files_without_accounting_use_replica_names():
    views = views_of(array_record(size=2, offset=3), [], None, {"s.3": {"state": "COMPLETED", "exit_code": 0}, "s.4": {"state": "FAILED", "exit_code": 1}})
    assert [(v.replica, v.state) for v in views] == [(3, AppState.SUCCEEDED), (4, AppState.FAILED)]


# -- app state ---------------------------------------------------------------------------------


def test_app_state_rules():
    S = view
    assert app_state([]) == AppState.UNKNOWN
    assert app_state([S("RUNNING"), S("PENDING"), S("FAILED")]) == AppState.RUNNING
    assert app_state([S("PENDING"), S("PENDING")]) == AppState.PENDING
    assert app_state([S("PENDING"), S("COMPLETED")]) == AppState.RUNNING
    assert app_state([S("COMPLETED"), S("CANCELLED"), S("FAILED")]) == AppState.FAILED
    assert app_state([S("COMPLETED"), S("CANCELLED")]) == AppState.CANCELLED
    assert app_state([S("COMPLETED"), S("LOST")]) == AppState.FAILED
    assert app_state([S("COMPLETED"), S("COMPLETED")]) == AppState.SUCCEEDED
    assert app_state([S("COMPLETED"), S("UNKNOWN")]) == AppState.UNKNOWN


def test_is_settled_needs_final_tasks_from_a_lasting_source():
    assert not is_settled([])
    assert is_settled([view("COMPLETED", source="sacct"), view("LOST", source="state file")])
    assert not is_settled([view("COMPLETED", source="sacct"), view("RUNNING", source="squeue")])
    assert not is_settled([view("COMPLETED", source="squeue")])


# -- messages and responses ---------------------------------------------------------------------


def test_status_message_table():
    rec = het_record()
    views = [view("COMPLETED", replica=0, exit_code=0, host="n1", attempts=1),
             view("FAILED", replica=1, exit_code=9, signal=9, host="n7", attempts=3, reason="OOM?",
                  causes=["PREEMPTED", "NODE_FAIL"])]
    msg = status_message(rec, views)
    head, table = msg.split("\n", 1)
    assert head == "app: 2 task(s) in 1 Slurm job(s) (1 FAILED, 1 SUCCEEDED); logs in /logs"
    assert table.splitlines()[0].split() == ["TASK", "SLURM", "ID", "SLURM", "STATE", "EXIT", "HOST", "ATTEMPTS",
                                             "RESUMED", "FROM", "RETRIED", "AFTER", "NOTE"]
    assert table.splitlines()[1].split()[-1] == "-"  # nothing retried
    assert table.splitlines()[2].split() == ["a[1]", "1", "FAILED", "9", "(signal", "9)", "n7", "3", "-",
                                             "PREEMPTED,NODE_FAIL", "OOM?"]


def test_status_message_for_many_tasks_lists_only_the_odd_ones():
    views = [view("COMPLETED", replica=i, exit_code=0) for i in range(50)]
    views[17] = view("FAILED", replica=17, exit_code=2, host="n3")
    msg = status_message(array_record(size=50, offset=0), views)
    assert "showing 1 of 1 task(s) not SUCCEEDED" in msg and "(1 FAILED, 49 SUCCEEDED)" in msg
    rows = msg.splitlines()[3:]
    assert len(rows) == 1 and rows[0].split()[:4] == ["a[17]", "1", "FAILED", "2"]


def test_status_message_small_apps_list_every_task():
    views = [view("COMPLETED", replica=i) for i in range(40)]
    assert len(status_message(array_record(size=40, offset=0), views).splitlines()) == 42


def test_describe_response():
    rec = het_record(["a", 0], ["a", 1], ["b", 0])
    sa = [row("10+0", "COMPLETED", exit_code=0, nodes="n1"), row("10+1", "FAILED", exit_code=1, nodes="n2"),
          row("10+1", "FAILED", exit_code=1, nodes="n3"), row("10+2", "COMPLETED", exit_code=0, nodes="n4")]
    resp = describe_response(rec, views_of(rec, [], sa, {}))
    assert resp.app_id == "10" and resp.state == AppState.FAILED and resp.num_restarts == 1
    assert [r.name for r in resp.roles] == ["a", "b"] and resp.roles[0].resource.memMB == 64
    status = {s.role: [(r.id, r.state, r.hostname) for r in s.replicas] for s in resp.roles_statuses}
    assert status == {"a": [(0, AppState.SUCCEEDED, "n1"), (1, AppState.FAILED, "n3")], "b": [(0, AppState.SUCCEEDED, "n4")]}
    assert "a[1]" in resp.msg


def test_freeze_thaw_round_trip_through_json():
    views = [view("COMPLETED", exit_code=0, host="n1", source="sacct"), view("LOST", replica=1, attempts=2, reason="why")]
    frozen = json.loads(json.dumps(freeze(views)))
    assert isinstance(frozen["time"], float)
    assert thaw(frozen) == views
    assert thaw({}) == []


def _retried(extra_retries: int):
    """A task that timed out twice while its companion job still waits."""
    job = JobRecord("20", "array", role="s", size=1, companion="21", max_retries=1, retry_on=["TIMEOUT"],
                    extra_retries=extra_retries)
    rec = AppRecord(app_id="20", name="sweep", jobs=[job], roles=[RoleRecord("s", 1)], log_dir="/logs")
    sacct = [row("20_0", "TIMEOUT", exit_code=0, signal=15), row("20_0", "TIMEOUT", exit_code=0, signal=15)]
    (v,) = views_of(rec, [row("21", "PENDING", reason="Dependency")], sacct, {})
    return v


def test_retry_pending_counts_the_retries_granted_by_hand():
    # max_retries=1: a second TIMEOUT has used the budget ...
    assert _retried(0).state == AppState.FAILED and not _retried(0).retry_pending
    # ... unless `torchx forge retry` granted one more: the companion will resubmit it
    v = _retried(1)
    assert v.retry_pending and v.state == AppState.PENDING and "companion job 21" in v.reason


def test_status_shows_the_retry_policy_in_effect():
    job = JobRecord("20", "array", role="s", size=1, max_retries=2, retry_on=["FAILED"], signal="USR1@90", grace=60)
    rec = AppRecord(app_id="20", name="sweep", jobs=[job], roles=[RoleRecord("s", 1)], log_dir="/logs")
    msg = status_message(rec, views_of(rec, [], [row("20_0", "FAILED", exit_code=1)], {}))
    assert "retries: max_retries=2 on FAILED; warning USR1@90, grace 60 s" in msg.splitlines()


# -- what ended each attempt -----------------------------------------------------------------


def test_each_earlier_attempt_is_named_from_sacct_or_the_launchers_record():
    rec = array_record(size=1, offset=0)
    sacct = [row("20_0", "NODE_FAIL"), row("20_0", "REQUEUED"), row("20_0", "REQUEUED"), row("20_0", "PREEMPTED"),
             row("20_0", "RUNNING")]
    files = {"s.0": {"state": "RUNNING", "attempt": 4, "history": [
        {"attempt": 0, "job_key": "20_0", "outcome": "stopped"},
        {"attempt": 1, "job_key": "20_0", "outcome": "interrupted", "warned_by": "USR1"},
        {"attempt": 2, "job_key": "20_0", "outcome": "interrupted", "warned_by": "TERM"},
        {"attempt": 3, "job_key": "20_0", "outcome": "interrupted", "warned_by": "TERM"},
        {"attempt": 4, "job_key": "20_0", "outcome": "running"}]}}
    (v,) = views_of(rec, [row("20_0", "RUNNING")], sacct, files)
    assert v.causes == ["NODE_FAIL", "warned", "PREEMPTED", "PREEMPTED"]


def test_without_accounting_the_causes_come_from_the_launchers_record():
    files = {"s.0": {"state": "COMPLETED", "attempt": 2, "history": [
        {"attempt": 0, "job_key": "20_0", "outcome": "interrupted", "warned_by": "USR1"},
        {"attempt": 1, "job_key": "20_0", "outcome": "failed"},
        {"attempt": 2, "job_key": "20_0", "outcome": "completed"}]}}
    (v,) = views_of(array_record(size=1, offset=0), [], None, files)
    assert v.causes == ["warned", "FAILED"] and v.attempts == 3


# -- one gatherer, and what it does when Slurm does not answer --------------------------------------


def deaf(*daemons: str) -> FakeSlurm:
    """Slurm with these daemons stopped: squeue and/or sacct fail the way real Slurm's do then."""
    fake = FakeSlurm()
    for daemon in daemons:
        fake.down(daemon)
    return fake


def _running_app(tmp_path):
    records = Records(Store(str(tmp_path)))
    rec = het_record(["a", 0])
    records.save(rec)
    records.store.write_json("apps/10/tasks/a.0.json", {"state": "RUNNING", "host": "n1", "attempt": 0})
    return records, rec


def test_with_slurmdbd_down_status_comes_from_squeue_and_state_files(tmp_path):
    records, rec = _running_app(tmp_path)
    got = gather(deaf("slurmdbd"), records, [rec])
    (v,) = got.views["10"]
    assert v.slurm_state == "LOST"  # squeue answered: the job left the queue without reporting an end
    assert got.notes == ["accounting (slurmdbd) is unreachable: states come from squeue and the tasks' state files"
                         " (sacct: sacct: error: slurm_persist_conn_open_without_init: failed to open persistent"
                         " connection to host:localhost:6819: Connection refused)"]
    assert got.settled == []
    write_back(records, got)
    assert records.load("10").final is None  # nothing frozen while a source is missing


def test_with_slurmctld_down_a_running_task_is_running_as_of_its_last_report(tmp_path):
    records, rec = _running_app(tmp_path)
    got = gather(deaf("slurmctld", "slurmdbd"), records, [rec])
    (v,) = got.views["10"]
    assert (v.slurm_state, v.host) == ("RUNNING", "n1") and "last report" in v.reason
    assert len(got.notes) == 2 and "may be stale" in got.notes[0]


def _ended_while_the_controller_was_down(file_state: str, sacct_state: Optional[str], exit_code: int, **job):
    """A task whose launcher reported an end that accounting never heard of (slurmctld down);
    ``sacct_state`` None: accounting has no row at all (the controller went down before it told
    slurmdbd of the job)."""
    rec = AppRecord(app_id="10", name="app", jobs=[JobRecord("10", "het", components=[["a", 0]], **job)],
                    roles=[RoleRecord("a", 1)], log_dir="/logs")
    entry = {"attempt": 0, "job_key": "10", "outcome": "completed" if exit_code == 0 else "failed"}
    files = {"a.0": {"state": file_state, "exit_code": exit_code, "host": "n1", "attempt": 0, "history": [entry]}}
    (v,) = views_of(rec, None, [row("10", sacct_state)] if sacct_state else [], files)
    return v


def test_with_slurmctld_down_an_end_the_launcher_reported_beats_lagging_accounting():
    # sacct stuck at PENDING or RUNNING (the controller never told slurmdbd more): the file's end wins,
    # or `torchx log`, which waits for a started app, waited for ever (seen in CI)
    for sacct_state in ("PENDING", "RUNNING", None):
        v = _ended_while_the_controller_was_down("COMPLETED", sacct_state, 0)
        assert (v.state, v.exit_code, v.source) == (AppState.SUCCEEDED, 0, "state file"), sacct_state
        assert "last report" in v.reason
        v = _ended_while_the_controller_was_down("FAILED", sacct_state, 3)
        assert (v.state, v.exit_code) == (AppState.FAILED, 3)


def test_with_slurmctld_down_a_failure_that_may_be_retried_is_not_taken_for_the_end():
    for sacct_state in ("RUNNING", None):
        v = _ended_while_the_controller_was_down("FAILED", sacct_state, 3, max_retries=1, retry_on=["FAILED"])
        assert v.state == AppState.RUNNING and "a retry may follow" in v.reason, sacct_state
    # a stop by a signal (time limit, preemption, cancel): only Slurm knows which, so accounting stays
    v = _ended_while_the_controller_was_down("KILLED", "RUNNING", 143)
    assert v.state == AppState.RUNNING


def test_a_report_of_an_earlier_job_of_the_replica_does_not_override_accounting():
    rec = AppRecord(app_id="10", name="app", jobs=[JobRecord("10", "het", components=[["a", 0]])],
                    roles=[RoleRecord("a", 1)], log_dir="/logs")
    files = {"a.0": {"state": "COMPLETED", "exit_code": 0, "attempt": 0,
                     "history": [{"attempt": 0, "job_key": "9", "outcome": "completed"}]}}
    (v,) = views_of(rec, None, [row("10", "PENDING")], files)
    assert v.state == AppState.PENDING


# -- a settled answer: decided by the pure merge, listed by the gatherer, frozen by the write-back ----


def test_an_answer_settles_only_when_every_source_answered_and_a_lasting_one_told_every_end():
    from torchx_forge.slurm.merge import settles

    rec = het_record(["a", 0])
    done = [row("10", "COMPLETED", exit_code=0)]
    views = views_of(rec, [], done, {})
    assert settles(rec, views, done, asked_live=False, complete=True)  # sacct alone told the end
    assert settles(rec, views, done, asked_live=True, complete=True)
    assert not settles(rec, views, done, asked_live=True, complete=False)  # a source did not answer
    running = views_of(rec, [row("10", "RUNNING")], [row("10", "RUNNING")], {})
    assert not settles(rec, running, [row("10", "RUNNING")], asked_live=True, complete=True)


class AnsweringCli(FakeSlurm):
    """Job 10 has left squeue and sacct says it completed; every sacct is counted."""

    def __init__(self) -> None:
        super().__init__(fixtures=False)
        self.asked = 0

    def sacct(self, job_ids, clusters=None):
        self.asked += 1
        return [row("10", "COMPLETED", exit_code=0)]


def test_gather_only_reads_and_the_write_back_freezes_what_settled(tmp_path):
    records = Records(Store(str(tmp_path)))
    rec = het_record(["a", 0])
    records.save(rec)
    cli = AnsweringCli()
    found = gather(cli, records, [rec])
    assert [r.app_id for r in found.settled] == ["10"] and found.views["10"][0].slurm_state == "COMPLETED"
    assert records.load("10").final is None and rec.final is None  # reading wrote nothing
    write_back(records, found)
    assert thaw(records.load("10").final) == found.views["10"]
    again = gather(cli, records, [records.load("10")])  # answered from the record: no Slurm call
    assert cli.asked == 1 and again.views["10"] == found.views["10"] and again.settled == []


def test_the_scheduler_writes_a_settled_status_back_after_reading_it(tmp_path):
    from torchx_forge.scheduler import SlurmForgeScheduler

    records = Records(Store(str(tmp_path)))
    records.save(het_record(["a", 0]))
    cli = AnsweringCli()
    sched = SlurmForgeScheduler("torchx", cli=cli, state_dir=str(tmp_path))
    assert sched.describe("10").state == AppState.SUCCEEDED
    assert records.load("10").final is not None
    fresh = SlurmForgeScheduler("torchx", cli=cli, state_dir=str(tmp_path))
    assert fresh.describe("10").state == AppState.SUCCEEDED and cli.asked == 1


# -- squeue first: sacct only for what squeue no longer tells ----------------------------------------


def _kinds(cli: FakeSlurm):
    return [c[0] for c in cli.calls]


def test_a_queued_array_is_told_by_squeue_alone(tmp_path):
    records = Records(Store(str(tmp_path)))
    rec = AppRecord(app_id="300", name="sweep", jobs=[JobRecord("300", "array", role="s", offset=0, size=1000)],
                    roles=[RoleRecord("s", 1000)], log_dir="/logs")
    records.save(rec)
    cli = FakeSlurm(fixtures=False).add_queue("300_[2-999]|PENDING|Priority|||\n300_0|RUNNING|None|n1||\n"
                                              "300_1|RUNNING|None|n2||\n")
    found = gather(cli, records, [rec])
    assert _kinds(cli) == ["squeue"]  # no sacct, no state file read
    views = found.views["300"]
    assert len(views) == 1000 and [v.slurm_state for v in views[:3]] == ["RUNNING", "RUNNING", "PENDING"]
    assert views[2].reason == "Priority" and views[0].host == "n1" and found.settled == []


def test_a_task_squeue_no_longer_lists_is_asked_of_sacct_in_the_second_call(tmp_path):
    records = Records(Store(str(tmp_path)))
    rec = array_record(size=3, offset=0)
    records.save(rec)
    cli = FakeSlurm(fixtures=False).add_job("20_0", "COMPLETED", queued=False).add_job("20_1", "RUNNING")
    cli.add_job("20_2", "PENDING")
    found = gather(cli, records, [rec])
    assert _kinds(cli) == ["squeue", "sacct"]
    assert [v.slurm_state for v in found.views["20"]] == ["COMPLETED", "RUNNING", "PENDING"]


def test_an_app_with_retries_asks_sacct_for_its_earlier_attempts(tmp_path):
    records = Records(Store(str(tmp_path)))
    rec = het_record(["a", 0])
    rec.jobs[0].max_retries = 2
    records.save(rec)
    cli = FakeSlurm(fixtures=False).add_job("10", "RUNNING")
    gather(cli, records, [rec])
    assert _kinds(cli) == ["squeue", "sacct"]


def test_a_finished_app_is_two_calls_then_none(tmp_path):
    records = Records(Store(str(tmp_path)))
    rec = het_record(["a", 0])
    records.save(rec)
    cli = FakeSlurm(fixtures=False).add_job("10", "COMPLETED", queued=False)
    found = gather(cli, records, [rec])
    assert _kinds(cli) == ["squeue", "sacct"] and [r.app_id for r in found.settled] == ["10"]
    write_back(records, found)
    gather(cli, records, [records.load("10")])
    assert _kinds(cli) == ["squeue", "sacct"]  # frozen: no call
