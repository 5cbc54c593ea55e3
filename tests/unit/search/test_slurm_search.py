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
