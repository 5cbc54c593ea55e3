"""Trial files round-trip through JSON with their format; reports and final metrics fold into a trial."""

from __future__ import annotations

import json

import pytest

from torchx_forge.core import search_report
from torchx_forge.core.formats import NewerFormatError
from torchx_forge.search import Trial, TrialState, finished_value, with_report


def test_a_trial_round_trips_through_json():
    t = Trial(3, {"run.args.lr": 0.01, "run.args.opt": "adam"}, TrialState.PAUSED, budget=9, rung=2,
              intermediate={1: 0.9, 3: 0.5, 9: 0.31}, value=None, attempts=2, told=False)
    obj = json.loads(json.dumps(t.to_json()))
    assert obj["format"] == 1 and obj["state"] == "PAUSED" and obj["intermediate"] == {"1": 0.9, "3": 0.5, "9": 0.31}
    assert Trial.from_json(obj) == t
    assert t.last_step == 9 and t.objective == 0.31


def test_broken_and_newer_files_say_so():
    with pytest.raises(NewerFormatError, match="search trial t.json is format 2"):
        Trial.from_json({"format": 2, "number": 0, "params": {}}, "t.json")
    with pytest.raises(ValueError, match="search trial t.json: not a trial file"):
        Trial.from_json({"number": 0, "params": {}, "state": "SLEEPING"}, "t.json")
    with pytest.raises(ValueError, match="not a trial file"):
        Trial.from_json({"number": 0}, "t.json")


def test_a_report_file_folds_into_intermediate():
    text = search_report.dumps({1: {"loss": 0.9, "acc": 0.1}, 3: {"acc": 0.4}, 2: {"loss": 0.7}})
    t = with_report(Trial(0, {}, TrialState.RUNNING, intermediate={1: 5.0}), text, "loss")
    assert t.intermediate == {1: 0.9, 2: 0.7}
    with pytest.raises(ValueError, match="search report r.json: not JSON"):
        with_report(t, "{", "loss", "r.json")
    assert with_report(t, "", "loss").intermediate == t.intermediate  # not written yet


def test_a_finished_trial_takes_its_metric_else_its_last_report_else_fails():
    t = Trial(0, {}, TrialState.RUNNING, intermediate={5: 0.4})
    assert finished_value(t, {"loss": 0.3}, "loss") == Trial(0, {}, TrialState.COMPLETE, intermediate={5: 0.4}, value=0.3)
    assert finished_value(t, {"acc": 1}, "loss").value == 0.4
    assert finished_value(Trial(0, {}), {}, "loss").state == TrialState.FAIL
    assert finished_value(Trial(0, {}), {"loss": float("nan")}, "loss").state == TrialState.FAIL
