"""Compact axes and random search in experiment files and on the command line."""

import itertools
import textwrap

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from torchx_forge.core.axes import IntRange, Linspace, Listed, Logspace
from torchx_forge.core.sampling import Dist
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.generators import Call, distribution, grid_values, parse_call
from torchx_forge.experiment.spec import load_experiment
from torchx_forge.experiment.sweep import count_runs, expand, resolve


def test_parse_calls_with_keywords_strings_and_nesting():
    assert parse_call("range(0, 10, step=2)") == Call("range", (0, 10), (("step", 2),))
    assert parse_call("choice(adam, 'sgd m', 1e-5, true, null)") == Call("choice", ("adam", "sgd m", 1e-5, True, None))
    assert parse_call("tag(log, int(interval(1, 1024)))") == Call(
        "tag", ("log", Call("int", (Call("interval", (1, 1024)),))))


@pytest.mark.parametrize("text", ["range(0,", "range(0 10)", "range(0, 10))", "range(step=1, 3)", "nope"])
def test_malformed_calls_are_errors(text):
    with pytest.raises(ValueError):
        parse_call(text)


def test_grid_values():
    assert grid_values(parse_call("range(3)")) == IntRange(0, 3)
    assert grid_values(parse_call("range(start=1, stop=4)")) == IntRange(1, 4)
    assert grid_values(parse_call("linspace(0, 1, 3)")) == Linspace(0, 1, 3)
    assert grid_values(parse_call("logspace(1e-5, 1e-1, 5)")) == Logspace(1e-5, 1e-1, 5)
    assert grid_values(parse_call("choice(a, b)")) == Listed(("a", "b"))


def test_distributions():
    assert distribution("interval(0, 1)") == Dist("uniform", 0.0, 1.0)
    assert distribution("tag(log, interval(1e-5, 1e-1))") == Dist("loguniform", 1e-5, 1e-1)
    assert distribution("int(interval(1, 8))") == Dist("int", 1, 8)
    assert distribution("tag(log, int(interval(1, 1024)))") == Dist("logint", 1, 1024)
    assert distribution("choice(32, 64)") == Dist("choice", choices=(32, 64))
    assert distribution([32, 64]) == Dist("choice", choices=(32, 64))
    assert distribution("range(1, 9)") == Dist("int", 1, 8)


@pytest.mark.parametrize("text, words", [
    ("interval(0, 1)", "distribution"), ("tag(log, interval(0, 1))", "> 0"), ("gauss(0, 1)", "unknown"),
])
def test_wrong_kind_of_call_in_a_grid_says_what_to_use(text, words):
    with pytest.raises(ValueError) as err:
        grid_values(parse_call(text)) if text.startswith("interval") else distribution(text)
    assert words in str(err.value)


def write(tmp_path, body):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_generators_in_an_experiment_file(tmp_path):
    path = write(tmp_path, """\
        name: gen
        run: {command: [python, train.py]}
        sweep:
          shared_axes:
            run.args.seed: range(0, 1000)
            run.args.lr: logspace(1e-4, 1e-1, 4)
    """)
    exp = load_experiment(path)
    assert count_runs(exp) == 4000
    runs = expand(exp)
    # sorted by key, first key outermost: lr changes slowest, seed fastest
    assert runs[0].params == (("run.args.lr", 0.0001), ("run.args.seed", 0))
    assert runs[1].params == (("run.args.lr", 0.0001), ("run.args.seed", 1))
    assert runs[1000].params == (("run.args.lr", 0.001), ("run.args.seed", 0))
    assert resolve(exp, runs[3999]).argv == ("python", "train.py", "--lr", "0.1", "--seed", "999")


def test_random_search_in_an_experiment_file_is_deterministic(tmp_path):
    path = write(tmp_path, """\
        name: rnd
        run: {command: [python, train.py]}
        sweep:
          shared_axes: {run.args.seed: [0, 1]}
          random:
            samples: 100
            seed: 3
            params:
              run.args.lr: tag(log, interval(1e-5, 1e-1))
              run.args.layers: int(interval(1, 8))
              run.args.opt: [adam, sgd]
    """)
    runs = expand(load_experiment(path))
    assert len(runs) == 200 and len({r.run_id for r in runs}) == 200
    # samples are the innermost axis, and the same samples come with each seed
    assert [dict(r.params)["run.args.seed"] for r in runs[:101]] == [0] * 100 + [1]
    first = [{k: v for k, v in r.params if k != "run.args.seed"} for r in runs[:100]]
    second = [{k: v for k, v in r.params if k != "run.args.seed"} for r in runs[100:]]
    assert first == second
    assert all(1e-5 <= p["run.args.lr"] <= 1e-1 and 1 <= p["run.args.layers"] <= 8 for p in first)
    assert [r.run_id for r in expand(load_experiment(path))] == [r.run_id for r in runs]


@pytest.mark.parametrize("axis, line, words", [
    ("run.args.x: range(5, 1)", 5, "is empty"),
    ("run.args.x: logspace(0, 1, 3)", 5, "> 0"),
    ("run.args.x: linspace(0, 1, 0)", 5, "num must be"),
    ("run.args.x: gauss(0, 1)", 5, "unknown generator"),
    ("run.args.x: interval(0, 1)", 5, "sweep.random.params"),
    ("cluster.cpus_per_task: linspace(1, 2, 3)", 5, "whole number"),
])
def test_bad_generators_name_file_line_and_key(tmp_path, axis, line, words):
    path = write(tmp_path, f"""\
        name: bad
        run: {{command: [python, train.py]}}
        sweep:
          shared_axes:
            {axis}
    """)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    key = axis.split(":")[0]
    assert err.value.where == f"{path}:{line}: sweep.shared_axes.{key}"
    assert words in str(err.value)


@pytest.mark.parametrize("params, words", [
    ("run.args.lr: normal(0, 1)", "unknown distribution"),
    ("run.args.lr: tag(log, interval(0, 1))", "> 0"),
    ("run.args.lr: range(0, 5)", None),
    ("run.args.lr: linspace(0, 1, 3)", "grid of values"),
])
def test_bad_distributions_name_file_line_and_key(tmp_path, params, words):
    path = write(tmp_path, f"""\
        name: bad
        run: {{command: [python, train.py]}}
        sweep:
          random:
            samples: 10
            params:
              {params}
    """)
    if words is None:
        assert count_runs(load_experiment(path)) == 10
        return
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.where == f"{path}:7: sweep.random.params.run.args.lr"
    assert words in str(err.value)


def test_null_is_a_value_in_axes_and_set(tmp_path):
    path = write(tmp_path, """\
        name: nulls
        run: {command: [prog], env: {MODE: fast}}
        sweep:
          shared_axes:
            run.args.warmup: [null, 100]
            run.env.MODE: [null, slow]
          cases:
            - {name: a, set: {run.args.flag: null}}
    """)
    exp = load_experiment(path)
    runs = expand(exp)
    assert len(runs) == 4
    argv = [resolve(exp, r).argv for r in runs]
    assert argv[0] == ("prog", "--flag", "--warmup")  # null: a bare flag
    assert argv[3] == ("prog", "--flag", "--warmup", "100")
    envs = [dict(resolve(exp, r).env) for r in runs]
    assert "MODE" not in envs[0] and envs[1]["MODE"] == "slow"  # null: the variable is not set


# -- the order of runs is slurmforge 0.2.0's ------------------------------------------------------

KEYS = ["run.args.a", "run.args.b", "run.args.c", "run.args.d", "cluster.nodes"]


def slurmforge_order(shared, cases, max_runs):
    """slurmforge 0.2.0's iter_sweep_expansions, transcribed: per case its set values (sorted by
    key), then the product of shared + case axes sorted by key, the first key outermost; islice."""
    out = []
    for name, set_values, axes in cases:
        merged = sorted(list(shared.items()) + list(axes.items()), key=lambda kv: kv[0])
        keys = [k for k, _ in merged]
        for combo in itertools.product(*[v for _, v in merged]):
            out.append((name, tuple(sorted(set_values.items())) + tuple(zip(keys, combo))))
    return out[:max_runs] if max_runs else out


@st.composite
def sweep_blocks(draw):
    keys = draw(st.permutations(KEYS))
    n_shared = draw(st.integers(0, 3))
    values = st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True)
    shared = {k: draw(values) for k in keys[:n_shared]}
    rest = keys[n_shared:]
    cases = []
    for c in range(draw(st.integers(0, 3))):
        own = draw(st.lists(st.sampled_from(rest), unique=True, max_size=2)) if rest else []
        left = [k for k in rest if k not in own]
        fixed = draw(st.lists(st.sampled_from(left), unique=True, max_size=1)) if left else []
        cases.append((f"c{c}", dict.fromkeys(fixed, 9), {k: draw(values) for k in own}))
    if not shared and not cases:
        shared = {keys[0]: [1, 2]}
    return shared, cases, draw(st.one_of(st.none(), st.integers(1, 30)))


@settings(max_examples=150, deadline=None)
@given(block=sweep_blocks())
def test_runs_come_in_slurmforges_order_and_max_runs_keeps_the_same_ones(tmp_path_factory, block):
    shared, cases, max_runs = block
    sweep = {"shared_axes": shared} if shared else {}
    if cases:
        sweep["cases"] = [{"name": n, "set": s, "axes": a} for n, s, a in cases]
    if max_runs:
        sweep["max_runs"] = max_runs
    path = tmp_path_factory.mktemp("order") / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "o", "run": {"command": ["x"]}, "sweep": sweep}))
    expected = slurmforge_order(shared, cases or [("", {}, {})], max_runs)
    got = [(r.case, r.params) for r in expand(load_experiment(str(path)))]
    assert got == expected


def test_an_unquoted_call_in_a_flow_mapping_gets_a_hint(tmp_path):
    path = write(tmp_path, """\
        name: flow
        run: {command: [x]}
        sweep: {shared_axes: {run.args.lr: logspace(1e-5, 1e-1, 5)}}
    """)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.where.endswith(":3: sweep.shared_axes.run.args.lr")
    assert "quote the call" in str(err.value)
