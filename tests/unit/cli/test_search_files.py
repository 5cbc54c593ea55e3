"""``torchx forge validate`` and ``preview`` of experiment files with a ``search:`` section: errors at
file:line, and the space, algorithm, budget, rungs and first wave shown (the trials a submit asks first)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

import pytest

from torchx_forge.search import apply, decide
from torchx_forge.searches import load_search
from unit.forge_cli import run_forge as forge

REPO = Path(__file__).resolve().parents[3]
ASHA = REPO / "examples" / "height_asha.yaml"


def test_validate_a_search_file_says_what_it_searches(capsys):
    assert forge("validate", "--config", str(ASHA)) == 0
    assert capsys.readouterr().out == (f"{ASHA}: OK, search asha (min loss): 16 trial(s), 4 at a time, over"
                                       " run.args.height, run.args.width; rungs at 1, 3, 9, 27 steps\n")
    assert forge("validate", "--config", str(ASHA), "search.algorithm=tpe", "--set", "search.trials=8") == 0
    assert "OK, search tpe (min loss): 8 trial(s), 4 at a time, over run.args.height, run.args.width\n" in capsys.readouterr().out


GOOD = """\
name: s
run:
  command: [python, train.py]
  args: {steps: 27}
search:
  algorithm: asha
  metric: loss
  trials: 8
  budget: run.args.steps
  space:
    run.args.lr: tag(log, interval(1e-5, 1e-1))
    run.args.layers: int(interval(1, 8))
    run.args.opt: choice(adam, sgd)
"""


@pytest.mark.parametrize("old, new, message", [
    ("algorithm: asha", "algorithm: bayes", "s.yaml:6: search.algorithm: expected one of random, tpe, asha, hyperband, got 'bayes'"),
    ("tag(log, interval(1e-5, 1e-1))", "interval(1, 0)", "s.yaml:11: search.space.run.args.lr: the low bound 1.0 is above the high bound 0.0"),
    ("tag(log, interval(1e-5, 1e-1))", "tag(log, interval(0, 1))", "s.yaml:11: search.space.run.args.lr: a log scale needs bounds > 0, got 0"),
    ("int(interval(1, 8))", "gauss(1, 8)", "s.yaml:12: search.space.run.args.layers: unknown distribution gauss()"),
    ("run.args.opt: choice", "opt: choice", "s.yaml:13: search.space.opt: 'opt' is not a key a search can set"),
    ("budget: run.args.steps", "budget: run.args.epochs", "s.yaml:9: search.budget: run.args.epochs has no value"),
    ("  trials: 8", "  trials: 8\n  trails: 4", "s.yaml:9: search.trails: unknown key"),
    ("  metric: loss\n", "", "s.yaml:5: search: missing key 'metric'"),
    ("  trials: 8", "  trials: 0", "s.yaml:8: search.trials: expected a whole number >= 1, got 0"),
    ("search:", "sweep: {shared_axes: {run.args.x: [1, 2]}}\nsearch:", "s.yaml:5: sweep: a search picks its own trials"),
])
@pytest.mark.parametrize("verb", ["validate", "preview"])
def test_a_bad_search_file_is_one_error_at_its_line(tmp_path: Path, capsys, verb: str, old: str, new: str, message: str):
    assert old in GOOD
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    assert forge(verb, "--config", str(path)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"torchx forge {verb}: error: {tmp_path}/{message}"), captured.err
    assert len(captured.err.splitlines()) == 1
    path.write_text(GOOD)
    assert forge(verb, "--config", str(path)) == 0


def wave_of(path: Path, *overrides: str) -> List[dict]:
    _, spec = load_search(str(path), overrides)
    return [{"trial": t.number, "budget": t.budget, "params": t.params} for t in apply([], decide(spec, [], 0))]


def test_preview_shows_the_space_algorithm_budget_rungs_and_the_first_wave(capsys):
    assert forge("preview", "--config", str(ASHA)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:7] == [
        f"{ASHA}:",
        "  search asha: min loss",
        "  trials: 16, 4 at a time; sampler random, seed 0; stops when more than 0.5 of them fail",
        "  space:",
        "    run.args.height  interval(-100, 100)  (uniform)",
        "    run.args.width   interval(0, 20)  (uniform)",
        "  budget: run.args.steps = 27 steps; rungs (steps): 1, 3, 9, 27 (eta 3: the best 1/3 of a rung go on)",
    ]
    assert out[7].startswith("first wave: 4 trial(s), as the first decision asks them")
    assert out[8].split() == ["TRIAL", "BUDGET", "run.args.height", "run.args.width", "COMMAND"]
    wave = wave_of(ASHA)
    assert len(out) == 13 and len(wave) == 4
    for line, t in zip(out[9:], wave):
        cells = line.split()
        assert cells[:2] == [str(t["trial"]), "1"]
        h, w = t["params"]["run.args.height"], t["params"]["run.args.width"]
        assert [float(c) for c in cells[2:4]] == [pytest.approx(h, rel=1e-5), pytest.approx(w, rel=1e-5)]
        assert cells[4:] == ["python", "height.py", "--steps", "27", "--sleep", "0.2", "--height", repr(h), "--width", repr(w)]


def test_preview_json_is_the_first_wave_and_hyperband_starts_trials_in_brackets(capsys):
    assert forge("preview", "--config", str(ASHA), "--json") == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == wave_of(ASHA)
    assert forge("preview", "--config", str(ASHA), "--json", "search.algorithm=hyperband", "run.args.steps=81") == 0
    hyper = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hyper == wave_of(ASHA, "search.algorithm=hyperband", "run.args.steps=81")
    assert {t["budget"] for t in hyper} <= {1, 3, 9, 27, 81} and len({t["budget"] for t in hyper}) > 1
    assert forge("preview", "--config", str(ASHA), "search.algorithm=tpe", "search.parallel=2") == 0
    out = capsys.readouterr().out
    assert "  search tpe: min loss\n  trials: 16, 2 at a time; sampler tpe," in out and "rungs" not in out
    assert "first wave: 2 trial(s)" in out and "BUDGET" not in out


def test_preview_first_wave_is_what_a_submit_asks_first(tmp_path: Path, monkeypatch, capsys):
    """The first trials a submit writes (FakeSlurm) are the preview's."""
    import importlib.util

    from torchx_forge.scheduler import SlurmForgeScheduler
    from torchx_forge.slurm.search_status import read_search
    from torchx_forge.state.records import Records
    from torchx_forge.state.store import Store
    from unit.fakeslurm import FakeSlurm

    for name in ("height_asha.yaml", "height.py"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("forge_components", REPO / "components" / "forge.py")
    components = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(components)
    app = components.search(config=str(tmp_path / "height_asha.yaml"), set="search.seed=3")
    sched = SlurmForgeScheduler("s", cli=FakeSlurm(), state_dir=str(tmp_path / "state"))
    app_id = sched.schedule(sched.submit_dryrun(app, {"partition": "debug", "log_dir": str(tmp_path / "logs")}))
    records = Records(Store(str(tmp_path / "state")))
    _, trials = read_search(records, records.load(app_id))
    assert forge("preview", "--config", "height_asha.yaml", "--json", "search.seed=3") == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown == [{"trial": t.number, "budget": t.budget, "params": t.params} for t in trials]
    assert shown != wave_of(tmp_path / "height_asha.yaml")  # the seed matters
