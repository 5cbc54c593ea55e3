"""runtime.report: a no-op outside a search; under one it replaces the trial's report file atomically
and says when the trial's budget is reached."""

from __future__ import annotations

import json
import os
import threading

import pytest

from torchx_forge import runtime
from torchx_forge.core import envvars, search_report


@pytest.fixture
def search_env(tmp_path, monkeypatch):
    path = tmp_path / "reports" / "trial-3.json"
    monkeypatch.setenv(envvars.SEARCH_REPORT.name, str(path))
    monkeypatch.setenv(envvars.SEARCH_BUDGET.name, "9")
    for name in ("RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_outside_a_search_it_does_nothing(tmp_path, monkeypatch):
    for v in (envvars.SEARCH_REPORT, envvars.SEARCH_BUDGET):
        monkeypatch.delenv(v.name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert runtime.report(10**6, loss=0.1) is False
    assert os.listdir(tmp_path) == []


def test_it_records_each_step_and_says_stop_at_the_budget(search_env):
    stops = [runtime.report(step, loss=1.0 / step, acc=step / 10) for step in range(1, 10)]
    assert stops == [False] * 8 + [True]
    steps = search_report.loads(search_env.read_text())
    assert sorted(steps) == list(range(1, 10)) and steps[9] == {"loss": 1.0 / 9, "acc": 0.9}
    assert os.listdir(search_env.parent) == [search_env.name]  # no temporary file left behind
    assert runtime.report(12, loss=0.05) is True  # past the budget: still stop


def test_a_resumed_trial_adds_to_its_earlier_steps(search_env, monkeypatch):
    runtime.report(3, loss=0.5)
    monkeypatch.setenv(envvars.SEARCH_BUDGET.name, "27")  # promoted: the next rung
    assert runtime.report(4, loss=0.4) is False
    assert search_report.values_of(search_report.loads(search_env.read_text()), "loss") == {3: 0.5, 4: 0.4}


def test_only_rank_0_writes_but_every_rank_hears_stop(search_env, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert runtime.report(9, loss=0.1) is True
    assert not search_env.exists()


def test_values_must_be_numbers(search_env):
    with pytest.raises(TypeError, match=r"loss=\.\.\.\): expected a number, got str"):
        runtime.report(1, loss="low")
    with pytest.raises(ValueError, match="step must be a whole number"):
        runtime.report(-1, loss=1.0)


def test_a_reader_never_sees_half_a_file(search_env):
    runtime.report(0, loss=1.0)
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(len(json.loads(search_env.read_text())["steps"]))  # raises on a torn file

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for step in range(1, 300):
            runtime.report(step, loss=1.0 / step, padding=float(step) * 1e-9)
    finally:
        stop.set()
        reader.join()
    assert seen and seen == sorted(seen)
