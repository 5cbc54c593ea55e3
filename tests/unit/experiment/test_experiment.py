"""Experiment files (load, override, validate) and sweep expansion (count, expand, ids, resolve)."""

import os
import textwrap

import pytest
import yaml

from torchx_forge.core.axes import Listed
from torchx_forge.core.runrow import render_value
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.overrides import get_path, parse_overrides, set_path
from torchx_forge.experiment.source import Source, read_yaml, split_path
from torchx_forge.experiment.spec import load_experiment
from torchx_forge.experiment.sweep import Run, count_runs, expand, render_args, resolve, run_id_of

DEMO = """\
name: demo
run:
  command: ["python3", "train.py"]
  args: {lr: 0.1, epochs: 2}
sweep:
  shared_axes: {run.args.lr: [0.1, 0.01, 0.001]}
  cases:
    - {name: adam, set: {run.args.opt: adam}}
    - {name: sgd, set: {run.args.opt: sgd}, axes: {run.args.momentum: [0.0, 0.9]}}
"""


@pytest.fixture
def write(tmp_path):
    def _write(text, name="exp.yaml"):
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return str(p)

    return _write


def load_error(path, overrides=()):
    with pytest.raises(ConfigError) as e:
        load_experiment(path, overrides)
    return e.value


# -- overrides -------------------------------------------------------------------------------


def test_parse_overrides_typed_as_yaml():
    assert parse_overrides(["a.b=1;c=[1,2]", "d=x"]) == [("a.b", 1), ("c", [1, 2]), ("d", "x")]


@pytest.mark.parametrize(
    "text,value",
    [
        ("k=0.5", 0.5),
        ("k=true", True),
        ("k=false", False),
        ("k=null", None),
        ("k=~", None),
        ("k='1'", "1"),
        ("k=hello world", "hello world"),
        ("k={a: 1, b: [x]}", {"a": 1, "b": ["x"]}),
        ("k=", ""),
        ("k=a=b", "a=b"),
    ],
)
def test_parse_overrides_values(text, value):
    assert parse_overrides([text]) == [("k", value)]


def test_parse_overrides_semicolons_inside_brackets_and_quotes():
    assert parse_overrides(["a=[x;y, z];b='p;q';c=\"r;s\";d={k: 'u;v'};e=2"]) == [
        ("a", ["x;y", "z"]),
        ("b", "p;q"),
        ("c", "r;s"),
        ("d", {"k": "u;v"}),
        ("e", 2),
    ]


def test_parse_overrides_skips_empty_items_and_strips():
    assert parse_overrides([" a = 1 ; ; b=2 ;", ""]) == [("a", 1), ("b", 2)]


def test_parse_overrides_keys_with_dashes_and_underscores():
    assert parse_overrides(["run.args.max-len=3", "_x.y_z=4"]) == [("run.args.max-len", 3), ("_x.y_z", 4)]


@pytest.mark.parametrize(
    "raw",
    [
        "[1, 2, 3]",
        "[ -1 , 0.5, 2.25, -0.125 ]",
        "[" + ", ".join(str(i) for i in range(2000)) + "]",
        "[" + ",".join(f"{i}.{i % 7}" for i in range(-500, 500)) + "]",
        "[0, -0, 10, 100]",
    ],
)
def test_big_numeric_lists_match_yaml(raw):
    [(key, value)] = parse_overrides([f"run.args.x={raw}"])
    expected = yaml.safe_load(raw)
    assert value == expected
    assert [type(v) for v in value] == [type(v) for v in expected]


def test_numeric_list_with_leading_zeros_matches_yaml():
    assert parse_overrides(["seeds=[010, 2]"]) == [("seeds", yaml.safe_load("[010, 2]"))]


@pytest.mark.parametrize("item", ["novalue", "=1", "1a=2", "a b=1", "a=[1,2", "a={b: 1", "a.b!=3", "a='x"])
def test_parse_overrides_bad_items(item):
    with pytest.raises(ConfigError) as e:
        parse_overrides([item])
    assert "override" in e.value.where


# -- split_path / set_path ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,keys",
    [
        ("run.args.x.y", ["run", "args", "x.y"]),
        ("run.args.lr", ["run", "args", "lr"]),
        ("run.env.A.B", ["run", "env", "A.B"]),
        ("sweep.shared_axes.run.args.lr", ["sweep", "shared_axes", "run.args.lr"]),
        ("cluster.partition", ["cluster", "partition"]),
        ("stages.train.run.args.lr", ["stages", "train", "run", "args", "lr"]),
        ("stages.train.run.args.a.b", ["stages", "train", "run", "args", "a.b"]),
        ("stages.train", ["stages", "train"]),
        ("stages.eval.cluster.time_limit", ["stages", "eval", "cluster", "time_limit"]),
    ],
)
def test_split_path(path, keys):
    assert split_path(path) == keys


def test_set_path_creates_and_overrides():
    cfg = {"run": {"args": {"lr": 0.1}}, "stages": {"train": {"run": {"args": {"lr": 1}}}}}
    set_path(cfg, "run.args.x.y", 3)
    set_path(cfg, "run.args.lr", 0.5)
    set_path(cfg, "stages.train.run.args.lr", 0.01)
    set_path(cfg, "cluster.nodes", 2)
    assert cfg == {
        "run": {"args": {"lr": 0.5, "x.y": 3}},
        "stages": {"train": {"run": {"args": {"lr": 0.01}}}},
        "cluster": {"nodes": 2},
    }
    assert get_path(cfg, "stages.train.run.args.lr") == 0.01
    assert get_path(cfg, "run.args.x.y") == 3
    assert get_path(cfg, "run.args.missing", "d") == "d"


def test_set_path_through_a_scalar_is_an_error():
    cfg = {"run": {"args": 5}}
    with pytest.raises(ConfigError) as e:
        set_path(cfg, "run.args.lr", 1)
    assert e.value.where == "run.args"
    assert "int" in str(e.value)


# -- read_yaml -------------------------------------------------------------------------------


def test_read_yaml_lines(write):
    path = write(DEMO)
    data, src = read_yaml(path)
    assert data["name"] == "demo"
    assert src.lines["name"] == 1
    assert src.lines["run.args"] == 4
    assert src.lines["run.args.lr"] == 4
    assert src.lines["sweep.shared_axes.run.args.lr"] == 6
    assert src.lines["sweep.cases.1"] == 9
    assert src.where("sweep.cases.1.axes.run.args.momentum") == f"{path}:9: sweep.cases.1.axes.run.args.momentum"


def test_list_values_keep_their_line_without_one_entry_each_on_the_lists_line(write):
    path = write("name: x\nsweep:\n  shared_axes:\n    run.env.I: [0, 1,\n      2, {a: 1}]\n"
                 "    run.env.J:\n      - 5\n      - 6\n")
    data, src = read_yaml(path)
    assert data["sweep"]["shared_axes"]["run.env.I"] == [0, 1, 2, {"a": 1}]
    key = "sweep.shared_axes.run.env.I"
    assert f"{key}.1" not in src.lines  # on the key's own line: no entry of its own (100,000 values, one line)
    assert src.where(f"{key}.1") == f"{path}:4: {key}.1"
    assert src.where(f"{key}.2") == f"{path}:5: {key}.2"  # a later line is kept
    assert src.where(f"{key}.3.a") == f"{path}:5: {key}.3.a"
    assert src.where("sweep.shared_axes.run.env.J.1") == f"{path}:8: sweep.shared_axes.run.env.J.1"


def test_read_yaml_syntax_error_has_line(write):
    path = write("name: x\nrun:\n  args: {lr: [1, 2}\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    assert e.value.where == f"{path}:3"
    assert "YAML syntax error" in str(e.value)


def test_read_yaml_duplicate_keys_rejected(write):
    path = write("name: x\nrun:\n  args:\n    lr: 1\n    lr: 2\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(path)
    assert e.value.where == f"{path}:5: run.args.lr"
    assert "duplicate key" in str(e.value) and "line 4" in str(e.value)


def test_read_yaml_duplicate_top_level_key_rejected(write):
    path = write("name: a\nname: b\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:2: name: duplicate key"):
        read_yaml(path)


def test_read_yaml_top_level_must_be_mapping(write):
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        read_yaml(write("- a\n- b\n"))


def test_read_yaml_empty_file_is_empty(write):
    assert read_yaml(write(""))[0] == {}


def test_read_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the experiment file"):
        read_yaml(str(tmp_path / "nope.yaml"))


# -- load_experiment errors --------------------------------------------------------------------


def test_load_demo(write):
    exp = load_experiment(write(DEMO))
    assert exp.name == "demo"
    assert exp.run["command"] == ["python3", "train.py"]
    assert exp.sweep is not None and [c.name for c in exp.sweep.cases] == ["adam", "sgd"]
    assert exp.sweep.shared_axes == (("run.args.lr", Listed((0.1, 0.01, 0.001))),)


def test_unknown_key_names_file_line_and_key_path(write):
    path = write("name: x\nrun:\n  command: [a]\n  bogus: 1\n")
    err = load_error(path)
    assert err.where == f"{path}:4: run.bogus"
    assert "unknown key" in str(err) and "command" in str(err)


def test_unknown_top_level_key(write):
    path = write("name: x\nrun: {command: [a]}\ncluser: {nodes: 1}\n")
    err = load_error(path)
    assert err.where == f"{path}:3: cluser"
    assert "cluster" in str(err)


def test_unknown_cluster_key(write):
    path = write("name: x\nrun: {command: [a]}\ncluster:\n  partition: p\n  gpus: 2\n")
    assert load_error(path).where == f"{path}:5: cluster.gpus"


@pytest.mark.parametrize(
    "snippet,key,words",
    [
        ("cluster: {nodes: two}", "cluster.nodes", "whole number"),
        ("cluster: {nodes: 0}", "cluster.nodes", ">= 1"),
        ("cluster: {nodes: true}", "cluster.nodes", "whole number"),
        ("cluster: {exclusive: 1}", "cluster.exclusive", "true or false"),
        ("cluster: {time_limit: 'soon'}", "cluster.time_limit", "not a Slurm time"),
        ("cluster: {mem: lots}", "cluster.mem", "memory size"),
        ("cluster: {partition: [a]}", "cluster.partition", "expected text"),
        ("cluster: {extra_sbatch_args: [--x, true]}", "cluster.extra_sbatch_args.1", "quote it"),
        ("retry: {max_retries: -1}", "retry.max_retries", ">= 0"),
        ("retry: {signal: KILL@10}", "retry.signal", "cannot serve as a warning"),
        ("retry: {retry_on: [TIMEOUT, BOGUS]}", "retry.retry_on", "BOGUS"),
        ("name2: 1", "name2", "unknown key"),
    ],
)
def test_wrong_types(write, snippet, key, words):
    path = write(f"name: x\nrun: {{command: [a]}}\n{snippet}\n")
    err = load_error(path)
    assert err.where == f"{path}:3: {key}"
    assert words in str(err)


@pytest.mark.parametrize(
    "run,key,words",
    [
        ("{command: []}", "run.command", "empty"),
        ("{command: [a], args: [1]}", "run.args", "mapping"),
        ("{command: [a], args: {x: {y: 1}}}", "run.args.x", "scalar"),
        ("{command: [a], env: {1BAD: x}}", "run.env.1BAD", "environment variable"),
        ("{command: [a], env: {A: null}}", "run.env.A", "scalar"),
        ("{command: [a], resume_arg: resume}", "run.resume_arg", "flag"),
        ("{args: {lr: 1}}", "run", "run.command"),
    ],
)
def test_wrong_run_types(write, run, key, words):
    path = write(f"name: x\nrun: {run}\n")
    err = load_error(path)
    assert err.where == f"{path}:2: {key}"
    assert words in str(err)


def test_missing_name(write):
    path = write("run: {command: [a]}\n")
    assert "missing key 'name'" in str(load_error(path))


def test_bad_name(write):
    path = write("name: 'my exp'\nrun: {command: [a]}\n")
    assert load_error(path).where == f"{path}:1: name"


def test_empty_axis(write):
    path = write("""\
        name: x
        run: {command: [a]}
        sweep:
          shared_axes:
            run.args.lr: []
        """)
    err = load_error(path)
    assert err.where == f"{path}:5: sweep.shared_axes.run.args.lr"
    assert "non-empty list" in str(err)


def test_axis_not_a_list(write):
    path = write("name: x\nrun: {command: [a]}\nsweep: {shared_axes: {run.args.lr: 0.1}}\n")
    assert "non-empty list" in str(load_error(path))


def test_axis_on_a_key_a_sweep_cannot_set(write):
    path = write("name: x\nrun: {command: [a]}\nsweep: {shared_axes: {name: [a, b]}}\n")
    err = load_error(path)
    assert "not a key a sweep can set" in str(err)
    assert "sweep.shared_axes.name" in err.where


def test_axis_values_are_type_checked(write):
    path = write("name: x\nrun: {command: [a]}\nsweep: {shared_axes: {cluster.nodes: [1, 0]}}\n")
    err = load_error(path)
    assert "sweep.shared_axes.cluster.nodes.1" in err.where
    assert ">= 1" in str(err)


@pytest.mark.parametrize(
    "sweep",
    [
        "{shared_axes: {run.args.a: [1, 2], run.args.a.b: [3]}}",
        "{shared_axes: {run.args.a: [1, 2]}, cases: [{name: c, set: {run.args.a: 3}}]}",
        "{shared_axes: {run.args.a: [1, 2]}, cases: [{name: c, axes: {run.args.a: [3]}}]}",
        "{cases: [{name: c, set: {run.args.a: 1}, axes: {run.args.a: [3, 4]}}]}",
        "{cases: [{name: ok, set: {run.args.b: 1}}, {name: c, set: {run.args.a: 1, run.args.a.x: 2}}]}",
    ],
    ids=["nested-in-shared", "shared-and-set", "shared-and-case-axes", "set-and-axes", "second-case"],
)
def test_overlapping_keys(write, sweep):
    path = write(f"name: x\nrun: {{command: [a]}}\nsweep: {sweep}\n")
    err = load_error(path)
    assert "dot-path keys overlap" in str(err)
    assert "'run.args.a" in str(err)


def test_overlap_error_points_at_the_case(write):
    path = write("""\
        name: x
        run: {command: [a]}
        sweep:
          shared_axes: {run.args.lr: [1, 2]}
          cases:
            - {name: fine, set: {run.args.opt: sgd}}
            - {name: clash, set: {run.args.lr: 3}}
        """)
    assert load_error(path).where == f"{path}:7: sweep.cases.1"


@pytest.mark.parametrize("value", [0, -3])
def test_max_runs_must_be_positive(write, value):
    path = write(f"name: x\nrun: {{command: [a]}}\nsweep: {{max_runs: {value}, shared_axes: {{run.args.lr: [1]}}}}\n")
    err = load_error(path)
    assert err.where == f"{path}:3: sweep.max_runs"
    assert ">= 1" in str(err)


def test_sweep_without_axes_or_cases(write):
    path = write("name: x\nrun: {command: [a]}\nsweep: {max_runs: 3}\n")
    err = load_error(path)
    assert err.where == f"{path}:3: sweep"
    assert "shared_axes, cases or random" in str(err)


def test_case_without_name_and_duplicate_case_names(write):
    path = write("name: x\nrun: {command: [a]}\nsweep: {cases: [{set: {run.args.a: 1}}]}\n")
    assert "every case needs a name" in str(load_error(path))
    path = write("name: x\nrun: {command: [a]}\nsweep: {cases: [{name: a}, {name: a}]}\n")
    assert "duplicate case name" in str(load_error(path))


def test_enabled_false_turns_the_sweep_off(write):
    exp = load_experiment(write(DEMO.replace("sweep:\n", "sweep:\n  enabled: false\n")))
    assert exp.sweep is None
    assert count_runs(exp) == 1
    [run] = expand(exp)
    assert run.params == () and run.index == 0


def test_enabled_false_by_override(write):
    exp = load_experiment(write(DEMO), ["sweep.enabled=false"])
    assert exp.sweep is None


def test_enabled_false_alone_turns_the_sweep_off(write):
    exp = load_experiment(write("name: x\nrun: {command: [a]}\nsweep: {enabled: false}\n"))
    assert exp.sweep is None


def test_overrides_apply_before_validation(write):
    path = write(DEMO)
    exp = load_experiment(path, ["run.args.epochs=5;cluster.nodes=2", "sweep.shared_axes.run.args.lr=[1, 2]"])
    assert exp.run["args"]["epochs"] == 5
    assert exp.cluster["nodes"] == 2
    assert count_runs(exp) == 2 * 3
    err = load_error(path, ["cluster.nodes=zero"])
    assert "cluster.nodes" in err.where and "whole number" in str(err)


# -- count_runs / expand ---------------------------------------------------------------------


def test_demo_expands_to_9_runs_in_case_shared_case_axes_order(write):
    exp = load_experiment(write(DEMO))
    runs = expand(exp)
    assert count_runs(exp) == len(runs) == 9
    assert [r.index for r in runs] == list(range(9))
    assert [r.case for r in runs] == ["adam"] * 3 + ["sgd"] * 6
    assert [r.params for r in runs] == [
        (("run.args.opt", "adam"), ("run.args.lr", 0.1)),
        (("run.args.opt", "adam"), ("run.args.lr", 0.01)),
        (("run.args.opt", "adam"), ("run.args.lr", 0.001)),
        (("run.args.opt", "sgd"), ("run.args.lr", 0.1), ("run.args.momentum", 0.0)),
        (("run.args.opt", "sgd"), ("run.args.lr", 0.1), ("run.args.momentum", 0.9)),
        (("run.args.opt", "sgd"), ("run.args.lr", 0.01), ("run.args.momentum", 0.0)),
        (("run.args.opt", "sgd"), ("run.args.lr", 0.01), ("run.args.momentum", 0.9)),
        (("run.args.opt", "sgd"), ("run.args.lr", 0.001), ("run.args.momentum", 0.0)),
        (("run.args.opt", "sgd"), ("run.args.lr", 0.001), ("run.args.momentum", 0.9)),
    ]
    assert len({r.run_id for r in runs}) == 9
    assert all(r.run_id.startswith(f"{r.case}-") for r in runs)


@pytest.mark.parametrize("cap,n", [(1, 1), (4, 4), (9, 9), (100, 9)])
def test_max_runs_caps_in_order(write, cap, n):
    full = expand(load_experiment(write(DEMO)))
    exp = load_experiment(write(DEMO), [f"sweep.max_runs={cap}"])
    runs = expand(exp)
    assert count_runs(exp) == len(runs) == n
    assert runs == full[:n]


def test_shared_axes_only_multiply(write):
    exp = load_experiment(write("""\
        name: x
        run: {command: [a]}
        sweep:
          shared_axes: {run.args.a: [1, 2, 3], run.args.b: [x, y], cluster.nodes: [1, 2]}
        """))
    runs = expand(exp)
    assert count_runs(exp) == len(runs) == 12
    # slurmforge 0.2.0's order: keys sorted, the first outermost (not the order they are written in)
    assert runs[0].params == (("cluster.nodes", 1), ("run.args.a", 1), ("run.args.b", "x"))
    assert runs[1].params == (("cluster.nodes", 1), ("run.args.a", 1), ("run.args.b", "y"))
    assert runs[-1].params == (("cluster.nodes", 2), ("run.args.a", 3), ("run.args.b", "y"))
    assert all(r.case == "" and r.run_id.startswith("run-") for r in runs)


def test_cases_only(write):
    exp = load_experiment(write("""\
        name: x
        run: {command: [a]}
        sweep:
          cases:
            - {name: small, set: {cluster.nodes: 1}}
            - {name: big, set: {cluster.nodes: 4}, axes: {run.args.bs: [1, 2, 4]}}
        """))
    assert count_runs(exp) == len(expand(exp)) == 4


def test_no_sweep_is_one_run(write):
    exp = load_experiment(write("name: x\nrun: {command: [a]}\n"))
    assert exp.sweep is None
    assert count_runs(exp) == 1
    assert expand(exp) == (Run(0, run_id_of("", ()), "", ()),)


# -- run ids -----------------------------------------------------------------------------------


def test_run_ids_stable_across_calls_and_loads(write):
    path = write(DEMO)
    a = [r.run_id for r in expand(load_experiment(path))]
    b = [r.run_id for r in expand(load_experiment(path))]
    assert a == b
    exp = load_experiment(path)
    assert [r.run_id for r in expand(exp)] == [r.run_id for r in expand(exp)]


def test_run_ids_unchanged_when_unrelated_keys_change(write):
    base = {r.params: r.run_id for r in expand(load_experiment(write(DEMO)))}
    changed = DEMO.replace("name: demo", "name: other\ndescription: hi\ncluster: {partition: gpu, nodes: 3}")
    changed = changed.replace("args: {lr: 0.1, epochs: 2}", "args: {lr: 0.5, epochs: 20}\n  env: {A: b}")
    changed = changed.replace('["python3", "train.py"]', '["python3", "other.py"]')
    other = {r.params: r.run_id for r in expand(load_experiment(write(changed, "other.yaml")))}
    assert other == base


def test_run_id_unchanged_when_cap_or_other_cases_change(write):
    base = {r.params: r.run_id for r in expand(load_experiment(write(DEMO)))}
    capped = expand(load_experiment(write(DEMO), ["sweep.max_runs=2"]))
    assert all(base[r.params] == r.run_id for r in capped)
    # a new learning rate adds runs but does not rename the existing ones
    more = expand(load_experiment(write(DEMO), ["sweep.shared_axes.run.args.lr=[0.1, 0.01, 0.001, 1.0]"]))
    assert len(more) == 12
    for r in more:
        if r.params in base:
            assert base[r.params] == r.run_id


def test_run_id_does_not_depend_on_axis_order():
    assert run_id_of("c", (("a", 1), ("b", 2))) == run_id_of("c", (("b", 2), ("a", 1)))


@pytest.mark.parametrize(
    "other",
    [
        ("c", (("a", 2), ("b", 2))),
        ("d", (("a", 1), ("b", 2))),
        ("c", (("a", 1.0), ("b", 2))),
        ("c", (("a", True), ("b", 2))),
        ("c", (("a", "1"), ("b", 2))),
        ("c", (("a", 1),)),
        ("c", (("x", 1), ("b", 2))),
    ],
)
def test_run_id_differs_when_params_differ(other):
    base = run_id_of("c", (("a", 1), ("b", 2)))
    assert run_id_of(*other) != base


def test_run_id_format():
    rid = run_id_of("adam", (("run.args.lr", 0.1),))
    prefix, _, digest = rid.partition("-")
    assert prefix == "adam" and len(digest) == 8 and int(digest, 16) >= 0
    assert run_id_of("", ()).startswith("run-")


# -- render_args -----------------------------------------------------------------------------


def test_render_args():
    assert render_args({"lr": 0.1, "fast": True, "slow": False, "tags": ["a", "b"], "flag": None, "n": 3}) == [
        "--lr", "0.1", "--fast", "true", "--slow", "false", "--tags", "a", "b", "--flag", "--n", "3",
    ]


def test_render_args_lists_of_booleans_and_numbers():
    assert render_args({"m": [True, 1, 2.5, "x"]}) == ["--m", "true", "1", "2.5", "x"]
    assert render_args({}) == []


def test_render_value():
    assert render_value(True) == "true" and render_value(False) == "false"
    assert render_value(0) == "0" and render_value("x") == "x"


# -- resolve ---------------------------------------------------------------------------------


def test_resolve_keeps_base_arg_order_then_set_then_axes(write):
    exp = load_experiment(write(DEMO))
    runs = expand(exp)
    assert resolve(exp, runs[0]).argv == ("python3", "train.py", "--lr", "0.1", "--epochs", "2", "--opt", "adam")
    assert resolve(exp, runs[4]).argv == (
        "python3", "train.py", "--lr", "0.1", "--epochs", "2", "--opt", "sgd", "--momentum", "0.9",
    )


def test_resolve_applies_env_cluster_and_command(write, tmp_path):
    path = write("""\
        name: x
        run:
          command: "python3 train.py --base"
          args: {seed: 1}
          env: {A: "1", FLAG: true}
          workdir: sub
        cluster: {partition: cpu, nodes: 1, mem: 1G}
        sweep:
          cases:
            - {name: one, set: {run.env.A: "2", run.env.NEW: 5, cluster.nodes: 2}}
            - {name: two, set: {run.command: "python3 other.py", cluster.partition: gpu, run.workdir: /abs}}
        """)
    exp = load_experiment(path)
    one, two = expand(exp)
    r1 = resolve(exp, one)
    assert r1.argv == ("python3", "train.py", "--base", "--seed", "1")
    assert dict(r1.env) == {"A": "2", "FLAG": "true", "NEW": "5"}
    assert list(r1.env) == sorted(r1.env)
    assert dict(r1.cluster) == {"partition": "cpu", "nodes": 2, "mem": 1024}
    assert r1.workdir == str(tmp_path / "sub")
    r2 = resolve(exp, two)
    assert r2.argv == ("python3", "other.py", "--seed", "1")
    assert dict(r2.env) == {"A": "1", "FLAG": "true"}
    assert dict(r2.cluster) == {"partition": "gpu", "nodes": 1, "mem": 1024}
    assert r2.workdir == "/abs"
    # the base experiment is not modified by resolving runs
    assert exp.run["env"] == {"A": "1", "FLAG": "true"}
    assert exp.cluster == {"partition": "cpu", "nodes": 1, "mem": 1024}
    assert exp.run["args"] == {"seed": 1}


def test_resolve_default_workdir_and_json(write, tmp_path):
    exp = load_experiment(write("name: x\nrun: {command: [a], args: {n: null}, resume_arg: true}\n"))
    [run] = expand(exp)
    r = resolve(exp, run, default_workdir=str(tmp_path / "wd"))
    assert r.workdir == str(tmp_path / "wd")
    assert r.argv == ("a", "--n")
    assert r.resume_arg == "--resume_from_checkpoint"
    j = r.row().to_json()
    assert j["run_id"] == run.run_id and j["argv"] == ["a", "--n"] and j["index"] == 0
    assert j["resume_arg"] == "--resume_from_checkpoint"
    assert resolve(exp, run).workdir == os.getcwd()


def test_resolve_list_args(write):
    exp = load_experiment(write("""\
        name: x
        run: {command: [a], args: {layers: [1, 2]}}
        sweep: {shared_axes: {run.args.layers: [[3, 4], [5]]}}
        """))
    assert [resolve(exp, r).argv for r in expand(exp)] == [("a", "--layers", "3", "4"), ("a", "--layers", "5")]


def test_source_where_without_lines():
    s = Source("f.yaml", {"a": 3})
    assert s.where("a.b.c") == "f.yaml:3: a.b.c"
    assert s.where("z") == "f.yaml: z"
    assert s.under("stages.t.").where("run") == "f.yaml: stages.t.run"
