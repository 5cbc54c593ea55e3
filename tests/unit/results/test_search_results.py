"""`torchx forge results` of a search (forge.search submitted to FakeSlurm, trial files written by hand):
one row per trial with its parameters and metric, the best COMPLETE trial marked, CSV/JSON, the
objective by trial, and the same results through the laptop's JSON path."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Tuple

import pytest

from torchx_forge import agent
from torchx_forge import results as rs
from torchx_forge.errors import ForgeError
from torchx_forge.laptop import LaptopScheduler
from torchx_forge.search import Trial, TrialState
from torchx_forge.slurm.search import Search
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm
from unit.forge_cli import run_forge

REPO = Path(__file__).resolve().parents[3]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
W, H = "run.args.width", "run.args.height"

# trial 1 was pruned at its first rung with a lower loss than any complete trial: it is not the best
TRIALS = [
    Trial(0, {W: 3.0, H: 1.0}, TrialState.COMPLETE, budget=27, rung=3, intermediate={1: 2.0, 27: 0.5}, value=0.5),
    Trial(1, {W: 9.0, H: -4.0}, TrialState.PRUNED, budget=1, rung=0, intermediate={1: 0.1}),
    Trial(2, {W: 7.5, H: 0.25}, TrialState.COMPLETE, budget=27, rung=3, intermediate={1: 1.5, 27: 0.3}, value=0.3),
    Trial(3, {W: 1.0, H: 2.0}, TrialState.ASKED, budget=1),
]


def _components():
    spec = importlib.util.spec_from_file_location("forge_components", REPO / "components" / "forge.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def search_app(tmp_path: Path, monkeypatch) -> Tuple[LaptopScheduler, str]:
    """An ASHA search of 5 trials submitted to FakeSlurm; trials 0-3 as TRIALS, trial 4 not asked;
    trial 2's run wrote metrics.json with another metric."""
    state = tmp_path / "state"
    monkeypatch.setenv("FORGE_STATE_DIR", str(state))
    monkeypatch.chdir(tmp_path)
    app = _components().search("python", "height.py", space="width=interval(0,20);height=interval(-100,100)",
                               trials=5, parallel=2, algorithm="asha", budget="steps=27", name="height")
    sched = LaptopScheduler("s", cli=FakeSlurm(), state_dir=str(state))
    app_id = sched.schedule(sched.submit_dryrun(app, {"partition": "debug", "log_dir": str(tmp_path / "logs")}))
    records = Records(Store(str(state)))
    rec = records.load(app_id)
    search = Search(sched.cli, records, rec.meta.search, rec.submission, None)
    for t in TRIALS:
        search.write_trial(t)
    result_dir = Path(sched.load_results(app_id).runs[2].result_dir)
    result_dir.mkdir(parents=True, exist_ok=True)
    (result_dir / "metrics.json").write_text('{"acc": 0.9}')
    return sched, app_id


def test_one_row_per_trial_with_params_and_metric_and_the_best_complete_trial(search_app):
    sched, app_id = search_app
    res = sched.load_results(app_id)
    info = res.search
    assert (info.algorithm, info.metric, info.mode, info.trials, info.best) == ("asha", "loss", "min", 5, 2)
    assert info.spec["algorithm"] == "asha" and [t["number"] for t in info.trial_files] == [0, 1, 2, 3]
    assert [r.index for r in res.runs] == [0, 1, 2, 3]
    assert [r.state for r in res.runs] == ["COMPLETE", "PRUNED", "COMPLETE", "ASKED"]
    assert [dict(r.params) for r in res.runs] == [t.params for t in TRIALS]
    assert [r.metrics for r in res.runs] == [{"loss": 0.5}, {"loss": 0.1}, {"acc": 0.9, "loss": 0.3}, {}]
    assert [(r.rung, r.last_step, r.budget) for r in res.runs] == [(3, 27, 27), (0, 1, 1), (3, 27, 27), (0, None, 1)]
    assert len({r.run_id for r in res.runs}) == 4 and all(r.run_id and r.result_dir for r in res.runs)
    assert "1 of the search's 5 trials not asked (yet)" in res.notes
    table = rs.trial_table(res, rs.search_metrics(res, None))
    assert table[0] == ["", "TRIAL", "STATE", "RUNG", "STEPS", "loss", "acc", H, W]
    assert table[1:] == [
        ["", "0", "COMPLETE", "3", "27", "0.5", "-", "1", "3"],
        ["", "1", "PRUNED", "0", "1", "0.1", "-", "-4", "9"],
        ["*", "2", "COMPLETE", "3", "27", "0.3", "0.9", "0.25", "7.5"],
        ["", "3", "ASKED", "0", "-", "-", "-", "2", "1"],
    ]
    assert rs.best_line(res) == f"best (*): trial 2, loss 0.3 ({H}=0.25, {W}=7.5)"


def test_search_results_travel_as_json_from_a_login_node(search_app, monkeypatch):
    sched, app_id = search_app
    here = sched.load_results(app_id)
    assert rs.Results.from_json(json.loads(json.dumps(dataclasses.asdict(here)))) == here

    class Wire:  # the agent on the login answers through JSON, as over SSH
        def call(self, op, **req):
            return json.loads(json.dumps(agent.OPS[op](req)))

    monkeypatch.setattr(agent, "_scheduler", lambda req: sched)
    monkeypatch.setattr(LaptopScheduler, "agent", lambda self, login, *a: Wire())
    there = sched.load_results(f"{app_id}@login1")
    assert there == here and there.search is not None and there.search.best == 2
    # a newer agent's fields are left out, not an error
    newer = json.loads(json.dumps(dataclasses.asdict(here)))
    newer["runs"][0]["someday"] = 1
    newer["search"]["someday"] = 1
    assert rs.Results.from_json(newer) == here


def forge(monkeypatch, sched, *argv: str) -> int:
    import torchx_forge.laptop

    monkeypatch.setattr(torchx_forge.laptop, "create_scheduler", lambda *a, **k: sched)
    return run_forge(*argv)


def test_cli_lists_every_trial_and_writes_csv_json_and_the_objective_by_trial(search_app, monkeypatch, capsys, tmp_path):
    sched, app_id = search_app
    out = {k: str(tmp_path / f"r.{k}") for k in ("csv", "json", "png")}
    assert forge(monkeypatch, sched, "results", f"slurm_forge://s/{app_id}", "--csv", out["csv"], "--json", out["json"],
                 "--plot", out["png"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"height ({app_id}): search asha, min loss: 4 of 5 trial(s)"
    assert lines[1].split() == ["TRIAL", "STATE", "RUNG", "STEPS", "loss", "acc", H, W]
    assert lines[4].split()[:3] == ["*", "2", "COMPLETE"] and lines[2].split()[0] == "0"
    assert lines[6] == f"best (*): trial 2, loss 0.3 ({H}=0.25, {W}=7.5)"
    assert f"wrote {out['png']} (loss by trial, 3 point(s))" in captured.out
    assert "not asked (yet)" in captured.err and "metrics.json" not in captured.err
    rows = list(csv.DictReader(Path(out["csv"]).open()))
    assert list(rows[0]) == ["trial", "state", "rung", "steps", "loss", "acc", H, W, "best", "run_id", "result_dir"]
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["loss"] for r in rows] == ["0.5", "0.1", "0.3", ""]
    assert [r["best"] for r in rows] == ["False", "False", "True", "False"]
    assert all(r[W] and r[H] for r in rows)
    assert json.loads(Path(out["json"]).read_text())[2] == {**{k: v for k, v in zip(rows[0], [None] * 11)},
                                                            "trial": 2, "state": "COMPLETE", "rung": 3, "steps": 27,
                                                            "loss": 0.3, "acc": 0.9, H: 0.25, W: 7.5, "best": True,
                                                            "run_id": rows[2]["run_id"], "result_dir": rows[2]["result_dir"]}
    assert Path(out["png"]).read_bytes().startswith(PNG_MAGIC)
    # against a parameter, as for sweeps; --x trial says the same as no --x
    assert forge(monkeypatch, sched, "results", f"slurm_forge://s/{app_id}", "--plot", str(tmp_path / "w.png"), "--x", W) == 0
    assert f"(loss vs {W}, 3 point(s))" in capsys.readouterr().out
    assert forge(monkeypatch, sched, "results", f"slurm_forge://s/{app_id}", "--plot", str(tmp_path / "t.png"), "--x", "trial") == 0
    assert "(loss by trial, 3 point(s))" in capsys.readouterr().out


def test_optuna_writes_the_study_for_optuna_dashboard_from_a_laptop_too(search_app, monkeypatch, capsys, tmp_path):
    import optuna

    sched, app_id = search_app
    db = tmp_path / "study.db"
    for _ in range(2):  # written again: the study replaced, not duplicated
        assert forge(monkeypatch, sched, "results", f"slurm_forge://s/{app_id}", "--optuna", str(db)) == 0
        assert f"optuna-dashboard sqlite:///{db}" in capsys.readouterr().out
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert (summary.study_name, summary.n_trials) == (f"height-{app_id}", 4)
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "RUNNING"]
    assert study.best_trial.number == 2 and study.best_value == 0.3 and study.trials[0].intermediate_values == {1: 2.0, 27: 0.5}
    assert study.trials[2].params == {W: 7.5, H: 0.25} and study.user_attrs["metric"] == "loss"
    # the results that came as JSON (a laptop's) carry what the study is rebuilt from
    there = rs.Results.from_json(json.loads(json.dumps(dataclasses.asdict(sched.load_results(app_id)))))
    assert rs.export_optuna(there, str(tmp_path / "laptop.db")).endswith("laptop.db")


@pytest.mark.parametrize("argv, message", [
    (["--plot", "x.png", "--x", "run.args.lr"], "--x 'run.args.lr' is not a parameter of these runs; parameters: run.args.height, run.args.width"),
    (["--plot", "x.png", "--metric", "acc2"], "no trial reported metric 'acc2'; metrics found: acc, loss"),
    (["--x", "trial"], "--x goes with --plot FILE.png"),
])
def test_cli_errors_of_a_search_write_nothing(search_app, monkeypatch, capsys, argv, message):
    sched, app_id = search_app
    assert forge(monkeypatch, sched, "results", f"slurm_forge://s/{app_id}", *argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not Path("x.png").exists()


def test_best_so_far_counts_complete_trials_only_in_trial_order():
    points = [(0, 0.5, "COMPLETE"), (1, 0.1, "PRUNED"), (2, 0.3, "COMPLETE"), (3, 0.4, "COMPLETE"), (4, 0.2, "FAIL")]
    assert rs.best_so_far(points, "min") == [(0, 0.5), (2, 0.3), (3, 0.3)]
    assert rs.best_so_far(points, "max") == [(0, 0.5), (2, 0.5), (3, 0.5)]
    assert rs.best_so_far([], "min") == []


def test_an_asked_trial_whose_job_runs_shows_running_and_a_missing_value_is_no_metric():
    run = rs.RunResult(0, "r0", "", [("run.env.SEARCH_TRIAL", 0)], "height", 0, "/res/r0", state="RUNNING")
    plain = rs.Results("7", "height", "", [run])
    info = rs.SearchInfo("tpe", "loss", "min", 2)
    res = rs.with_trials(plain, info, [Trial(0, {W: 1.0})])
    assert [(r.state, r.params, r.metrics, r.run_id) for r in res.runs] == [("RUNNING", [(W, 1.0)], {}, "r0")]
    assert res.notes == ["1 of the search's 2 trials not asked (yet)"] and rs.best_run(res) is None
    assert rs.best_line(res) == "best: none complete yet"
    with pytest.raises(ForgeError, match="nothing to plot"):
        rs.plot_trials(res, "loss", "/nonexistent/x.png")
