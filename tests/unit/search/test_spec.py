"""The search: section: every error names its file, line and key path; the space maps to optuna's distributions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import REPO
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.source import read_yaml
from torchx_forge.search import SearchSpec

BASE = {"run": {"args": {"steps": 27}}}
SECTION = {
    "algorithm": "asha", "metric": "loss", "mode": "min", "trials": 64, "parallel": 8, "seed": 0,
    "budget": "run.args.steps",
    "space": {
        "run.args.width": "interval(0, 20)",
        "run.args.lr": "tag(log, interval(1e-5, 1e-1))",
        "run.args.layers": "int(interval(1, 8))",
        "run.args.units": "tag(log, int(interval(16, 512)))",
        "run.args.opt": "choice(adam, sgd)",
        "run.env.MODE": ["fast", "slow"],
    },
}


def error(section, base=BASE):
    with pytest.raises(ConfigError) as e:
        SearchSpec.from_section(section, base=base)
    return str(e.value)


def test_the_issue_example_validates_with_its_defaults():
    spec = SearchSpec.from_section(SECTION, base=BASE)
    assert (spec.algorithm, spec.metric, spec.trials, spec.parallel, spec.max_budget) == ("asha", "loss", 64, 8, 27)
    assert (spec.min_budget, spec.eta, spec.max_failures, spec.sampler_name) == (1, 3, 0.5, "random")
    assert [k for k, _ in spec.space] == sorted(SECTION["space"])  # key order, whatever the file's
    assert spec.rungs == (1, 3, 9, 27)
    assert SearchSpec.from_json(spec.to_json()) == spec


def test_the_space_maps_to_optuna_distributions():
    d = SearchSpec.from_section(SECTION, base=BASE).distributions()
    assert d["run.args.width"] == FloatDistribution(0.0, 20.0)
    assert d["run.args.lr"] == FloatDistribution(1e-5, 1e-1, log=True)
    assert d["run.args.layers"] == IntDistribution(1, 8)
    assert d["run.args.units"] == IntDistribution(16, 512, log=True)
    assert d["run.args.opt"] == CategoricalDistribution(["adam", "sgd"])
    assert d["run.env.MODE"] == CategoricalDistribution(["fast", "slow"])


@pytest.mark.parametrize("change, where, words", [
    ({"algorithm": "bayes"}, "search.algorithm", "expected one of random, tpe, asha, hyperband"),
    ({"mode": "minimize"}, "search.mode", "expected one of min, max"),
    ({"trials": 0}, "search.trials", ">= 1"),
    ({"parallel": "4"}, "search.parallel", "whole number"),
    ({"eta": 1}, "search.eta", ">= 2"),
    ({"max_failures": 1.5}, "search.max_failures", "fraction"),
    ({"sampler": "cmaes"}, "search.sampler", "random, tpe"),
    ({"color": "red"}, "search.color", "unknown key"),
    ({"space": {"run.args.lr": "interval(1, 0)"}}, "search.space.run.args.lr", "low bound"),
    ({"space": {"run.args.lr": "tag(log, interval(0, 1))"}}, "search.space.run.args.lr", "log scale needs bounds > 0"),
    ({"space": {"run.args.lr": "gauss(0, 1)"}}, "search.space.run.args.lr", "unknown distribution gauss()"),
    ({"space": {"run.args.lr": "linspace(0, 1, 5)"}}, "search.space.run.args.lr", "grid of values"),
    ({"space": {"model.lr": "interval(0, 1)"}}, "search.space.model.lr", "not a key a search can set"),
    ({"space": {}}, "search.space", "expected a mapping"),
    ({"space": {"run.args.steps": "int(interval(1, 9))"}}, "search.budget", "also in search.space"),
    ({"budget": "steps"}, "search.budget", "run.args.steps"),
    ({"min_budget": 30}, "search.min_budget", "above the full length 27"),
    ({"max_trials": 8}, "search.max_trials", "expected a whole number >= trials (64), got 8"),
])
def test_errors_name_the_key_path(change, where, words):
    text = error({**SECTION, **change})
    assert text.startswith(f"<config>: {where}: "), text
    assert words in text, text


def test_missing_keys_say_what_they_are():
    for key in ("algorithm", "metric", "trials", "space"):
        text = error({k: v for k, v in SECTION.items() if k != key})
        assert f"missing key {key!r}" in text, text


def test_rung_algorithms_need_a_budget_with_a_value():
    assert "search: missing key 'budget': asha stops trials at rungs" in error({k: v for k, v in SECTION.items() if k != "budget"})
    text = error(SECTION, base={"run": {"args": {}}})
    assert "run.args.steps has no value" in text and "max_budget" in text
    spec = SearchSpec.from_section({**SECTION, "max_budget": 81}, base=None)
    assert spec.max_budget == 81 and spec.rungs == (1, 3, 9, 27, 81)
    tpe = SearchSpec.from_section({**SECTION, "algorithm": "tpe"}, base=BASE)
    assert tpe.sampler_name == "tpe" and tpe.rungs == (27,)
    plain = {k: v for k, v in SECTION.items() if k != "budget"}
    assert SearchSpec.from_section({**plain, "algorithm": "random"}).max_budget is None


def test_errors_in_a_file_give_its_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent("""\
        name: height
        run:
          command: [python, height.py]
          args: {steps: 27}
        search:
          algorithm: asha
          metric: loss
          trials: 64
          budget: run.args.steps
          space:
            run.args.width: interval(0, 20)
            run.args.height: interval(100, -100)
        """))
    cfg, source = read_yaml(str(path))
    with pytest.raises(ConfigError) as e:
        SearchSpec.from_section(cfg["search"], "search", source, base=cfg)
    assert str(e.value).startswith(f"{path}:12: search.space.run.args.height: "), e.value
    cfg["search"]["algorithm"] = "bohb"
    with pytest.raises(ConfigError) as e:
        SearchSpec.from_section(cfg["search"], "search", source, base=cfg)
    assert str(e.value).startswith(f"{path}:6: search.algorithm: expected one of"), e.value


def test_without_optuna_the_error_names_the_extra():
    code = textwrap.dedent("""\
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "optuna":
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        from torchx_forge.search import SearchSpec, decide
        from torchx_forge.errors import ConfigError
        spec = SearchSpec("tpe", "loss", 4, SearchSpec.from_json({"algorithm": "tpe", "metric": "loss", "trials": 4,
            "space": [["run.args.x", {"kind": "uniform", "low": 0, "high": 1}]]}).space)
        try:
            decide(spec, [])
        except ConfigError as e:
            print(e)
        """)
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert "pip install 'torchx-forge[search]'" in p.stdout, p.stdout + p.stderr
