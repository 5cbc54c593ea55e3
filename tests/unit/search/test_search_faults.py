"""A search's faults against FakeSlurm: a decision killed after its trial's sbatch, a search left
with no decision job (status gives it one), a trial preempted (pending, not failed, while its
decision may run), ``forge retry`` of a cancelled search (its trials asked again)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import List

import pytest

from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.search import SearchSpec, TrialState
from torchx_forge.slurm.resubmit import RETRY_BY_HAND
from torchx_forge.slurm.search import Search, decide_step
from torchx_forge.slurm.search_status import revive
from torchx_forge.state.records import AppRecord, Records
from torchx_forge.state.store import Store
from unit.fakeslurm import FINAL, FakeSlurm

REPO = Path(__file__).resolve().parents[3]
QUIET = {"say": lambda *a: None}


def _components():
    spec = importlib.util.spec_from_file_location("forge_components", REPO / "components" / "forge.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Lab:
    """A search of 4 trials, 2 at a time, submitted to FakeSlurm."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.chdir(tmp_path)
        app = _components().search("python", "height.py", space="width=interval(0,20);height=interval(-100,100)",
                                   trials=4, parallel=2, algorithm="tpe")
        self.cli = FakeSlurm()
        self.sched = SlurmForgeScheduler("s", cli=self.cli, state_dir=str(tmp_path / "state"))
        self.app_id = self.sched.schedule(self.sched.submit_dryrun(app, {"partition": "debug",
                                                                         "log_dir": str(tmp_path / "logs")}))
        self.records = Records(Store(str(tmp_path / "state")))

    @property
    def rec(self) -> AppRecord:
        rec = self.records.load(self.app_id)
        assert rec is not None
        return rec

    def jobs(self, kind: str) -> List:
        return [j for j in self.rec.jobs if j.kind == kind and not j.planned]

    def trials(self) -> List:
        spec = SearchSpec.from_json(self.records.store.read_json(f"{self.rec.meta.search}/spec.json")["spec"])
        return Search(self.cli, self.records, self.rec.meta.search, self.rec.submission, spec).trials()

    def end(self, job_id: str, state: str, task: int = -1, exit_code: str = "0:0") -> None:
        """Slurm ends (or starts) job ``job_id`` (its array task ``task``)."""
        for r in self.cli.slurm.queue:
            if r["i"].split("_")[0] == job_id:
                r.update(T=state, r="None", i=f"{job_id}_{task}" if task >= 0 else r["i"])
        for r in self.cli.slurm.acct:
            if r["JobID"].split("_")[0] == job_id:
                r.update(State=state, ExitCode=exit_code, JobID=f"{job_id}_{task}" if task >= 0 else r["JobID"],
                         Start="2026-12-05T18:00:00", End="2026-12-05T18:00:09" if state in FINAL else "Unknown")

    def complete(self, number: int) -> None:
        """Trial ``number`` reported and ended well."""
        self.records.store.write_json(f"{self.rec.meta.search}/reports/{number:06d}.json",
                                      {"format": 1, "steps": {"5": {"loss": 0.5 + number}}})
        job = next(j for j in self.jobs("array") if j.tasks == [number])
        self.end(job.job_id, "COMPLETED", number)

    def tagged(self, tag: str) -> List[dict]:
        return [r for r in self.cli.slurm.queue if f"forge:{tag}" in r["k"].split()]

    def state(self) -> str:
        return self.sched._describe_uncached(self.app_id)[0].state.name


def _killed_at_first(records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision's process dies right after its first sbatch went through (before it links the job)."""
    add = records.add_job

    def dies(app_id, job):
        monkeypatch.setattr(records, "add_job", add)
        raise SystemExit(-9)

    monkeypatch.setattr(records, "add_job", dies)


def test_a_decision_killed_after_its_trial_sbatch_is_run_again_and_submits_nothing_twice(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    lab.complete(0)
    _killed_at_first(lab.records, monkeypatch)
    with pytest.raises(SystemExit):
        decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET)
    sub = lab.rec.submission
    (held,) = lab.tagged(f"{sub}-t2r0a0")
    assert held["r"] == "JobHeldUser" and held["i"].split("_")[0] not in lab.rec.job_ids()  # submitted held, not linked
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0  # run again (in its job)
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0  # and once more: nothing new
    assert len(lab.tagged(f"{sub}-t2r0a0")) == 1 and len(lab.tagged(f"{sub}-t2r0a0d")) == 1
    assert held["r"] != "JobHeldUser"  # released once linked
    tags = [j.tag for j in lab.rec.jobs if j.tag]
    assert len(tags) == len(set(tags)) and f"{sub}-t2r0a0" in tags and f"{sub}-t2r0a0d" in tags
    assert [t.number for t in lab.trials()] == [0, 1, 2]
    decision = next(j for j in lab.jobs("decide") if j.tag == f"{sub}-t2r0a0d")
    assert "--requeue" in decision.argv and "for forge_try in 1 2 3" in decision.argv[-1]


def test_status_gives_a_search_left_without_decision_job_one_and_only_one(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    lab.complete(0)
    lab.complete(1)
    _killed_at_first(lab.records, monkeypatch)
    with pytest.raises(SystemExit):  # the decision after trial 0: its job is cancelled with it
        decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET)
    for d in lab.jobs("decide"):
        lab.end(d.job_id, "CANCELLED" if d is lab.jobs("decide")[0] else "COMPLETED")
    resp = lab.sched._describe_uncached(lab.app_id)[0]
    assert "had no decision job left" in resp.msg, resp.msg
    again = [j for j in lab.jobs("decide") if "-again-" in j.tag]
    assert len(again) == 1 and "--dependency=singleton" in again[0].argv
    assert resp.state.name == "RUNNING"  # trials 0 and 1 done, the rest pending: not CANCELLED
    lab.sched._describe_uncached(lab.app_id)  # a second status: one is pending already
    assert len([j for j in lab.jobs("decide") if "-again-" in j.tag]) == 1
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0  # the new decision job runs
    assert len(lab.tagged(f"{lab.rec.submission}-t2r0a0")) == 1  # the held one, linked and released
    assert {t.number for t in lab.trials()} == {0, 1, 2, 3}


def test_a_finished_or_cancelled_search_is_given_no_decision_job(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    for d in lab.jobs("decide"):
        lab.end(d.job_id, "COMPLETED")
    lab.records.mark_cancelled(lab.app_id)
    assert revive(lab.cli, lab.records, lab.rec) is None
    lab.records.store.remove(f"apps/{lab.app_id}/cancelled.json")
    for n in range(4):
        Search(lab.cli, lab.records, lab.rec.meta.search, lab.rec.submission, None).write_trial(
            type(lab.trials()[0])(n, {"run.args.width": 1.0}, state=TrialState.COMPLETE, value=1.0))
    assert revive(lab.cli, lab.records, lab.rec) is None


def test_a_decision_job_a_trials_script_submitted_keeps_status_from_adding_one_before_it_links_itself(
        tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    for d in lab.jobs("decide"):
        lab.end(d.job_id, "COMPLETED")
    sub = lab.rec.submission
    lab.cli.add_job("9001", "PENDING", name=f"forge-search-{lab.app_id}", comment=f"forge:{sub}-t0r0a0dr")
    assert revive(lab.cli, lab.records, lab.rec) is None  # decide.sh's decision, pending: not linked yet
    lab.end("9001", "COMPLETED")
    lab.cli.add_job("9002", "PENDING", name="height", comment=f"forge:{sub}-t2r0a0")  # a held trial: no decision
    assert "submitted decision job" in (revive(lab.cli, lab.records, lab.rec) or "")


def test_a_preempted_trial_is_pending_while_its_decision_may_run(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    trial0 = next(j for j in lab.jobs("array") if j.tasks == [0])
    decision0 = next(j for j in lab.jobs("decide") if j.tag == f"{trial0.tag}d")
    lab.end(trial0.job_id, "PREEMPTED", 0)
    view = next(v for v in lab.sched._describe_uncached(lab.app_id)[1] if v.replica == 0)
    assert view.state.name == "PENDING" and "runs it again from its checkpoint" in view.reason, view
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0
    again = [j for j in lab.jobs("array") if j.tasks == [0]]
    assert [j.tag[-2:] for j in again] == ["a0", "a1"] and again[1].retry_of == trial0.job_id  # attempt 1, same trial
    assert lab.trials()[0].attempts == 1 and lab.trials()[0].state is TrialState.ASKED
    lab.end(decision0.job_id, "COMPLETED")
    lab.end(again[1].job_id, "FAILED", 0, exit_code="1:0")
    view = next(v for v in lab.sched._describe_uncached(lab.app_id)[1] if v.replica == 0)
    assert view.state.name == "PENDING" and "decides what follows" in view.reason  # its own decision is pending
    lab.end(next(j for j in lab.jobs("decide") if j.tag == f"{again[1].tag}d").job_id, "COMPLETED")
    view = next(v for v in lab.sched._describe_uncached(lab.app_id)[1] if v.replica == 0)
    assert view.state.name == "FAILED" and view.attempts == 2, view  # decided: failed, after 2 attempts


def test_a_trial_slurm_says_failed_but_its_launcher_saw_stopped_from_outside_is_asked_again(tmp_path, monkeypatch):
    # a preemption with a grace time, of a job that may not be requeued: Slurm's SIGTERM, then FAILED
    lab = Lab(tmp_path, monkeypatch)
    trial0 = next(j for j in lab.jobs("array") if j.tasks == [0])
    lab.end(trial0.job_id, "FAILED", 0, exit_code="15:0")
    entry = {"attempt": 0, "job_key": f"{trial0.job_id}_0", "outcome": "stopped", "state": "KILLED", "stopped_by": 15,
             "exit_code": 143, "host": "n1", "job_id": trial0.job_id}
    lab.records.store.write_json(f"apps/{lab.app_id}/tasks/{trial0.role}.0.json",
                                 {"format": 1, "role": trial0.role, "replica": 0, **entry, "history": [entry]})
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0
    t = lab.trials()[0]
    assert (t.state, t.attempts) == (TrialState.ASKED, 1)
    again = [j for j in lab.jobs("array") if j.tasks == [0]]
    assert [j.tag[-2:] for j in again] == ["a0", "a1"]
    lab.end(again[1].job_id, "COMPLETED", 0)
    view = next(v for v in lab.sched._describe_uncached(lab.app_id)[1] if v.replica == 0)
    assert view.attempts == 2 and view.causes == ["KILLED"], view  # not FAILED: stopped from outside


def test_retry_of_a_cancelled_search_asks_its_trials_again_from_one_decision_job(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    lab.complete(0)
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0  # trial 2 asked
    for j in lab.jobs("array"):
        if j.tasks != [0]:
            lab.end(j.job_id, "RUNNING", j.tasks[0])
    lab.sched.cancel(lab.app_id)
    time.sleep(0.01)
    assert lab.state() == "CANCELLED"
    done = lab.sched.retry(lab.app_id)
    assert len(done) == 1 and "search[1], search[2] (asked again" in done[0][1][0], done
    assert not lab.records.cancelled(lab.app_id)
    (decision,) = [j for j in lab.jobs("decide") if "-retry-" in j.tag]
    assert decision.job_id == done[0][0] and "--reask" in decision.argv[-1] and "--dependency=singleton" in decision.argv
    assert lab.state() in ("PENDING", "RUNNING")  # the cancelled trials wait for the decision: not CANCELLED
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", again=RETRY_BY_HAND, **QUIET) == 0
    trials = lab.trials()
    assert [(t.number, t.state, t.attempts) for t in trials] == [
        (0, TrialState.COMPLETE, 0), (1, TrialState.ASKED, 1), (2, TrialState.ASKED, 1)]
    sub = lab.rec.submission
    assert len(lab.tagged(f"{sub}-t1r0a1")) == 1 and len(lab.tagged(f"{sub}-t2r0a1")) == 1
    resp = lab.sched._describe_uncached(lab.app_id)[0]
    assert resp.state.name in ("PENDING", "RUNNING") and resp.num_restarts == 1, resp.msg


def test_retry_of_a_search_that_ended_well_submits_nothing(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    for n in range(4):
        Search(lab.cli, lab.records, lab.rec.meta.search, lab.rec.submission, None).write_trial(
            type(lab.trials()[0])(n, {"run.args.width": 1.0}, state=TrialState.COMPLETE, value=1.0, told=True))
    for j in lab.jobs("array"):
        lab.end(j.job_id, "COMPLETED", j.tasks[0])
    before = len(lab.cli.submitted)
    assert lab.sched.retry(lab.app_id) == []
    assert len(lab.cli.submitted) == before


def test_retry_of_a_search_stopped_by_its_failure_cap_asks_the_failed_trials_again(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    for j in lab.jobs("array"):
        lab.end(j.job_id, "FAILED", j.tasks[0], exit_code="1:0")
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0
    assert [t.state for t in lab.trials()] == [TrialState.FAIL, TrialState.FAIL]  # 2 of 2 failed: stopped
    for d in lab.jobs("decide"):
        lab.end(d.job_id, "COMPLETED")
    resp = lab.sched._describe_uncached(lab.app_id)[0]
    assert resp.state.name == "FAILED" and "search stopped: 2 of 2 trials failed (max_failures 0.5)" in resp.msg
    assert "`torchx forge retry` asks the failed trials again" in resp.msg
    assert not [j for j in lab.jobs("decide") if "-again-" in j.tag]  # stopped is over: status gives it no decision
    ((job_id, what),) = lab.sched.retry(lab.app_id)
    assert what == ["search[0], search[1] (asked again by the search's decision job)"]
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", again=RETRY_BY_HAND, **QUIET) == 0
    assert [(t.state, t.attempts) for t in lab.trials()] == [(TrialState.ASKED, 1), (TrialState.ASKED, 1)]
    assert "search stopped" not in lab.sched._describe_uncached(lab.app_id)[0].msg


def test_retry_of_a_search_going_on_by_itself_submits_nothing(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)  # its trials run, their decision jobs wait
    before = len(lab.cli.submitted)
    assert lab.sched.retry(lab.app_id) == []
    assert len(lab.cli.submitted) == before


def test_a_search_whose_trials_all_ended_is_not_over_until_a_decision_has_taken_every_end(tmp_path, monkeypatch):
    # the last trial jobs ended COMPLETED, their decision jobs have not run yet: under asha one of them
    # may be promoted (a new job), and the best value is not written: running, not SUCCEEDED
    lab = Lab(tmp_path, monkeypatch)
    lab.complete(0)
    lab.complete(1)
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0  # trials 2 and 3 asked
    lab.complete(2)
    lab.complete(3)
    resp, views = lab.sched._describe_uncached(lab.app_id)
    assert resp.state.name == "RUNNING", resp
    view = next(v for v in views if v.replica == 3)
    assert view.state.name == "PENDING" and "decision job" in view.reason, view
    assert lab.records.load(lab.app_id).final is None  # nothing frozen
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0  # takes the ends of 2 and 3
    assert lab.state() == "SUCCEEDED"


def test_a_trial_that_ends_while_the_decision_asks_slurm_is_taken_with_its_last_report(tmp_path, monkeypatch):
    # trial 0 reports step 5, then writes step 6 and ends while the decision waits on squeue/sacct:
    # its value is step 6's (read before Slurm's answer, it was step 5's)
    import torchx_forge.slurm.status as status_mod

    lab = Lab(tmp_path, monkeypatch)
    report = f"{lab.rec.meta.search}/reports/000000.json"
    lab.records.store.write_json(report, {"format": 1, "steps": {"5": {"loss": 2.0}}})
    gather = status_mod.gather

    def trial_ends_meanwhile(*args, **kwargs):
        lab.records.store.write_json(report, {"format": 1, "steps": {"5": {"loss": 2.0}, "6": {"loss": 1.5}}})
        lab.end(next(j for j in lab.jobs("array") if j.tasks == [0]).job_id, "COMPLETED", 0)
        return gather(*args, **kwargs)

    monkeypatch.setattr(status_mod, "gather", trial_ends_meanwhile)
    assert decide_step(lab.cli, lab.records, lab.app_id, "python", **QUIET) == 0
    t = lab.trials()[0]
    assert (t.state, t.value) == (TrialState.COMPLETE, 1.5)


def test_cancel_also_cancels_a_decision_job_a_trials_script_submitted_before_it_linked_itself(tmp_path, monkeypatch):
    lab = Lab(tmp_path, monkeypatch)
    sub = lab.rec.submission
    lab.cli.add_job("9001", "PENDING", name=f"forge-search-{lab.app_id}", comment=f"forge:{sub}-t0r0a0dr")
    lab.cli.add_job("9002", "PENDING", name="other", comment="forge:another-submission-t0r0a0dr")
    lab.sched.cancel(lab.app_id)
    cancelled = {j for c in lab.cli.calls if c[0] == "scancel" for a in c[1:] for j in str(a).split(",")}
    assert "9001" in cancelled and "9002" not in cancelled
