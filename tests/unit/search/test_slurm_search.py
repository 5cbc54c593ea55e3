"""The Slurm side of a search against FakeSlurm: the submit, and a decision killed before its sbatch, run twice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from torchx_forge.errors import SlurmError
from torchx_forge.scheduler import SlurmForgeScheduler
from torchx_forge.search import TrialState
from torchx_forge.slurm.search import Search, decide_step
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm, fail

REPO = Path(__file__).resolve().parents[3]


def _components():
    spec = importlib.util.spec_from_file_location("forge_components", REPO / "components" / "forge.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_submit_then_a_decision_killed_before_its_sbatch_submits_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    app = _components().search("python", "height.py", space="width=interval(0,20);height=interval(-100,100)",
                               trials=6, parallel=2, algorithm="tpe")
    cli = FakeSlurm()
    sched = SlurmForgeScheduler("s", cli=cli, state_dir=str(tmp_path / "state"))
    app_id = sched.schedule(sched.submit_dryrun(app, {"partition": "debug", "log_dir": str(tmp_path / "logs")}))
    records = Records(Store(str(tmp_path / "state")))
    rec = records.load(app_id)
    trial_jobs = [j for j in rec.jobs if j.kind == "array" and not j.planned]
    assert len(trial_jobs) == 2 and len([j for j in rec.jobs if j.kind == "decide"]) == 2
    search = Search(cli, records, rec.meta.search, rec.submission, None)
    # trial 0 ended well with a report
    records.store.write_json(f"{rec.meta.search}/reports/000000.json", {"format": 1, "steps": {"5": {"loss": 0.5}}})
    cli.add_job(f"{trial_jobs[0].job_id}_0", "COMPLETED", comment=f"forge:{trial_jobs[0].tag}")
    before = len([c for c in cli.calls if c[0] == "sbatch"])
    cli.answer("sbatch", fail("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified"))
    with pytest.raises(SlurmError):  # killed halfway: the trial files written, its sbatch failed
        decide_step(cli, records, app_id, "python", say=lambda *a: None)
    search.spec = None
    assert decide_step(cli, records, app_id, "python", say=lambda *a: None) == 0
    assert decide_step(cli, records, app_id, "python", say=lambda *a: None) == 0  # run again: nothing new
    rec = records.load(app_id)
    tags = [j.tag for j in rec.jobs if j.tag]
    assert len(tags) == len(set(tags))
    from torchx_forge.search import SearchSpec
    spec = SearchSpec.from_json(records.store.read_json(f"{rec.meta.search}/spec.json")["spec"])
    trials = Search(cli, records, rec.meta.search, rec.submission, spec).trials()
    assert [t.state for t in trials][:1] == [TrialState.COMPLETE] and len(trials) == 3
    assert len([j for j in rec.jobs if j.kind == "array" and not j.planned]) == 3
    assert len([c for c in cli.calls if c[0] == "sbatch"]) - before <= 4


def _search_app(tmp_path, monkeypatch, **kw):
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    app = _components().search("python", "height.py", space="width=interval(0,20);height=interval(-100,100)",
                               algorithm="tpe", **kw)
    cli = FakeSlurm()
    sched = SlurmForgeScheduler("s", cli=cli, state_dir=str(tmp_path / "state"))
    app_id = sched.schedule(sched.submit_dryrun(app, {"partition": "debug", "log_dir": str(tmp_path / "logs")}))
    return cli, sched, Records(Store(str(tmp_path / "state"))), app_id


def test_each_trial_has_a_relay_job_that_submits_its_singleton_decision_once(tmp_path, monkeypatch):
    # a singleton job waits for every job of its name submitted before it, pending ones too: decisions
    # submitted with their trials ran in the trials' start order (seen on the lab: a trial that ended
    # first waited for the decision of the one started before it, still running)
    from torchx_forge.slurm.search import relay

    cli, _, records, app_id = _search_app(tmp_path, monkeypatch, trials=4, parallel=2)
    rec = records.load(app_id)
    trials = [j for j in rec.jobs if j.kind == "array" and not j.planned]
    relays = [j for j in rec.jobs if j.kind == "decide"]
    for trial, job in zip(trials, relays, strict=True):
        assert f"--dependency=afterany:{trial.job_id}" in job.argv and not any("singleton" in a for a in job.argv)
        assert f"--job-name=forge-relay-{app_id}" in job.argv
        assert f"--relay {trial.tag}dr" in job.argv[-1] and job.tag == f"{trial.tag}d"
    tag = f"{trials[1].tag}dr"
    for _ in range(2):  # a relay run again submits nothing more
        assert relay(cli, records, app_id, tag) == 0
    decisions = [j for j in records.load(app_id).jobs if j.tag == tag]
    assert len(decisions) == 1
    argv = decisions[0].argv
    assert "--dependency=singleton" in argv and f"--job-name=forge-search-{app_id}" in argv and "--relay" not in argv[-1]
    records.store.write_json(f"apps/{app_id}/cancelled.json", {})
    assert relay(cli, records, app_id, f"{trials[0].tag}dr") == 0  # cancelled: no decision
    assert not [j for j in records.load(app_id).jobs if j.tag == f"{trials[0].tag}dr"]


def test_budget_raised_within_max_trials_adds_planned_trials_and_one_decision(tmp_path, monkeypatch):
    from torchx_forge.errors import ForgeError
    from torchx_forge.slurm.search_status import read_search

    cli, sched, records, app_id = _search_app(tmp_path, monkeypatch, trials=4, parallel=2)
    with pytest.raises(ForgeError, match=r"submitted for at most 4 trials \(search.max_trials\): give --trials 4 or less"):
        sched.raise_budget(app_id, 6)
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "state2"))
    cli, sched, records, app_id = _search_app(tmp_path, monkeypatch, trials=4, parallel=2, max_trials=10)
    rec = records.load(app_id)
    assert rec.roles[0].num_replicas == 4
    with pytest.raises(ForgeError, match="has a budget of 4 trials already"):
        sched.raise_budget(app_id, 4)
    before, job = sched.raise_budget(app_id, 7)
    assert before == 4
    spec, _ = read_search(records, records.load(app_id))
    assert (spec.trials, spec.ceiling) == (7, 10)
    rec = records.load(app_id)
    (decision,) = [j for j in rec.jobs if j.job_id == job]
    assert "--dependency=singleton" in decision.argv
    planned = [j for j in rec.jobs if j.planned]
    assert sorted(r for j in planned for _, _, r, _ in j.task_keys()) == list(range(7))  # trials 4-6 listed
    views = sched.task_views(app_id)
    assert sorted(v.replica for v in views) == list(range(7))
    with pytest.raises(ForgeError, match="give more"):
        sched.raise_budget(app_id, 7)
    # a decision asks up to the new budget
    decide_step(cli, records, app_id, "python", say=lambda *a: None)


def test_spec_json_carries_its_format_and_a_newer_one_is_one_clear_line(tmp_path, monkeypatch):
    from torchx_forge.core.formats import NewerFormatError
    from torchx_forge.slurm.search import SPEC_FORMAT, read_head

    _, _, records, app_id = _search_app(tmp_path, monkeypatch, trials=2, parallel=1)
    sdir = records.load(app_id).meta.search
    head = records.store.read_json(f"{sdir}/spec.json")
    assert head["format"] == SPEC_FORMAT == 1
    records.store.write_json(f"{sdir}/spec.json", {k: v for k, v in head.items() if k != "format"})
    assert read_head(records, sdir)["submission"] == head["submission"]  # written before formats: read as 1
    records.store.write_json(f"{sdir}/spec.json", {**head, "format": 2})
    with pytest.raises(NewerFormatError, match="search spec .*spec.json"):
        read_head(records, sdir)


def _end_trial(cli, records, rec, job, number, loss):
    records.store.write_json(f"{rec.meta.search}/reports/{number:06d}.json", {"format": 1, "steps": {"27": {"loss": loss}}})
    cli.add_job(f"{job.job_id}_{number}", "COMPLETED", comment=f"forge:{job.tag}")


def test_a_decision_looks_again_and_takes_a_trial_that_ended_while_it_ran(tmp_path, monkeypatch):
    # trial 1 ends while the decision taking trial 0's end submits its successor: the same decision
    # job takes it in its next round (the next decision job would start a scheduling cycle later)
    cli, _, records, app_id = _search_app(tmp_path, monkeypatch, trials=6, parallel=2)
    rec = records.load(app_id)
    t0, t1 = [j for j in rec.jobs if j.kind == "array" and not j.planned]
    _end_trial(cli, records, rec, t0, 0, 0.5)
    submit = Search.submit_trial
    calls = []

    def submit_and_end_trial_1(self, *a, **kw):
        ids = submit(self, *a, **kw)
        if ids and not calls:
            _end_trial(cli, records, rec, t1, 1, 0.25)
        calls.extend([a[2].number] if ids else [])
        return ids

    monkeypatch.setattr(Search, "submit_trial", submit_and_end_trial_1)
    said = []
    assert decide_step(cli, records, app_id, "python", say=said.append) == 0
    assert calls == [2, 3]  # trial 2 in the first round, trial 3 in the second
    from torchx_forge.search import SearchSpec

    spec = SearchSpec.from_json(records.store.read_json(f"{rec.meta.search}/spec.json")["spec"])
    trials = Search(cli, records, rec.meta.search, rec.submission, spec).trials()
    assert [(t.state, t.told) for t in trials[:2]] == [(TrialState.COMPLETE, True)] * 2
    assert len([s for s in said if " decision: " in s]) == 2  # the third round had nothing to do: silent


def test_a_relay_whose_trial_end_a_decision_took_adds_no_decision_job(tmp_path, monkeypatch):
    from torchx_forge.slurm.search import end_taken, open_search, relay

    cli, _, records, app_id = _search_app(tmp_path, monkeypatch, trials=6, parallel=2)
    rec = records.load(app_id)
    t0, t1 = [j for j in rec.jobs if j.kind == "array" and not j.planned]
    search = open_search(cli, records, rec)[0]
    assert not end_taken(search, f"{t0.tag}dr")
    _end_trial(cli, records, rec, t0, 0, 0.5)
    assert decide_step(cli, records, app_id, "python", say=lambda *a: None) == 0
    assert end_taken(search, f"{t0.tag}dr") and not end_taken(search, f"{t1.tag}dr")
    assert not end_taken(search, "not-a-relay-tag")
    assert relay(cli, records, app_id, f"{t0.tag}dr") == 0
    assert not [j for j in records.load(app_id).jobs if j.tag == f"{t0.tag}dr"]
    assert relay(cli, records, app_id, f"{t1.tag}dr") == 0  # trial 1 runs on: its end is not taken
    assert [j for j in records.load(app_id).jobs if j.tag == f"{t1.tag}dr"]


def test_a_trials_script_submits_its_decision_job_through_decide_sh_and_a_sweeps_does_not(tmp_path, monkeypatch):
    cli, sched, records, app_id = _search_app(tmp_path, monkeypatch, trials=4, parallel=2)
    rec = records.load(app_id)
    trial = next(j for j in rec.jobs if j.kind == "array" and not j.planned)
    script = Path(trial.script).read_text().splitlines()
    assert script[-1] == "exit $rc" and any("FORGE_SEARCH_DECIDE" in line for line in script[-8:])
    decide_sh = Path(records.store.path(f"{rec.meta.search}/decide.sh"))
    export = next(a for a in trial.argv if a.startswith("--export="))
    assert f"FORGE_SEARCH_TAG={trial.tag}" in export and f"FORGE_SEARCH_DECIDE={decide_sh}" in export
    text = decide_sh.read_text()
    assert f"--job-name=forge-search-{app_id}" in text and "--dependency=singleton" in text
    assert "--comment=forge:@TAG@" in text and "--tag @TAG@" in text
    grid = _components().grid("python", "t.py", axes="run.args.x=range(0,3)")
    req = sched.submit_dryrun(grid, {"partition": "debug", "log_dir": str(tmp_path / "logs")})
    assert "FORGE_SEARCH_DECIDE" not in req.request.jobs[0].materialize()


def test_a_decision_job_decide_sh_submitted_links_itself_to_the_app_once(tmp_path, monkeypatch):
    from torchx_forge.slurm.search_end import record_self

    _, _, records, app_id = _search_app(tmp_path, monkeypatch, trials=4, parallel=2)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for _ in range(2):  # the decision run again in its job (a try that died): linked once
        record_self(records, app_id, "sub-t0r0a0dr")
    linked = [j for j in records.load(app_id).jobs if j.job_id == "4242"]
    assert [(j.kind, j.tag) for j in linked] == [("decide", "sub-t0r0a0dr")]
