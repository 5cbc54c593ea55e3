"""Pipelines: Seq/Par wiring, DAG checks, the AppDef's dependency metadata, the plan preview,
and experiment files with ``stages:`` (build_pipeline)."""

import textwrap

import pytest
from torchx import specs

from torchx_forge.appdef.meta import META_KEY
from torchx_forge.appdef.pipeline import Par, Pipeline, Seq, Step
from torchx_forge.appdef.stages import StepInfo, build_pipeline, pipeline_appdef
from torchx_forge.cli.plan import critical_path, render_tree
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.stages import topological_order
from torchx_forge.state.store import Store
from torchx_forge.state.tables import read_table


def app(name, *roles):
    roles = roles or (name,)
    return specs.AppDef(name=name, roles=[specs.Role(name=r, image="/tmp", entrypoint="echo", args=[r]) for r in roles])


def step(name, **kw):
    return Step(name, app(f"{name}-app", "main"), **kw)


# -- Seq / Par wiring ------------------------------------------------------------------------


def test_seq_par_wiring():
    pipe = Pipeline("p", Seq(step("a"), Par(step("b"), step("c")), step("d")))
    after = {n: s.after for n, s in pipe.steps.items()}
    assert after == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert pipe.order.index("a") < pipe.order.index("b") < pipe.order.index("d")
    assert pipe.order.index("c") < pipe.order.index("d")
    assert sorted(pipe.order) == ["a", "b", "c", "d"]


def test_nested_groups():
    pipe = Pipeline("p", Seq(step("a"), Par(Seq(step("b1"), step("b2")), step("c")), Par(step("d"), step("e"))))
    after = {n: s.after for n, s in pipe.steps.items()}
    assert after == {"a": [], "b1": ["a"], "b2": ["b1"], "c": ["a"], "d": ["b2", "c"], "e": ["b2", "c"]}


def test_par_at_the_root_has_no_parents():
    pipe = Pipeline("p", Par(step("x"), step("y")))
    assert {n: s.after for n, s in pipe.steps.items()} == {"x": [], "y": []}


def test_wiring_keeps_explicit_after_and_does_not_touch_the_input():
    b = step("b", after=["a"])
    pipe = Pipeline("p", Seq(step("a"), b))
    assert pipe.steps["b"].after == ["a"]  # no duplicate "a"
    c = step("c")
    Pipeline("p", Seq(step("a"), c))
    assert c.after == []  # the caller's Step is not modified


def test_list_of_steps_with_after():
    pipe = Pipeline("p", [step("d", after=["b", "c"]), step("b", after=["a"]), step("c", after=["a"]), step("a")])
    order = pipe.order
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("a") < order.index("c") < order.index("d")


def test_duplicate_step_names():
    with pytest.raises(ConfigError, match="two steps are named 'a'"):
        Pipeline("p", Seq(step("a"), Par(step("b"), step("a"))))


def test_unknown_step_name():
    with pytest.raises(ConfigError) as e:
        Pipeline("p", [step("a"), step("b", after=["zzz"])])
    assert "'zzz'" in str(e.value) and "step 'b'" in str(e.value)
    assert "a, b" in str(e.value)


def test_cycle_is_spelled_out():
    with pytest.raises(ConfigError) as e:
        Pipeline("p", [step("a", after=["c"]), step("b", after=["a"]), step("c", after=["b"]), step("x")])
    assert "cycle" in str(e.value)
    assert "a -> c -> b -> a" in str(e.value)


def test_self_cycle():
    with pytest.raises(ConfigError, match="a -> a"):
        topological_order({"a": ["a"]}, "w")


def test_topological_order_is_deterministic():
    after = {"z": [], "y": ["z"], "x": [], "w": ["x", "y"]}
    assert topological_order(after, "w") == ["z", "y", "x", "w"]


def test_bad_when_and_per_run():
    with pytest.raises(ConfigError, match="afterok, afterany, afternotok"):
        Pipeline("p", [step("a", when="all_ok")])
    with pytest.raises(ConfigError, match="per_run follows exactly one step"):
        Pipeline("p", [step("a"), step("b"), step("c", after=["a", "b"], per_run=True)])
    with pytest.raises(ConfigError, match="per_run follows exactly one step"):
        Pipeline("p", [step("a", per_run=True)])


# -- to_appdef ------------------------------------------------------------------------------


def test_to_appdef_metadata():
    pipe = Pipeline("exp", Seq(step("a"), Par(step("b"), Step("c", app("c-app", "r1", "r2"), when="afterany")), step("d")))
    pipe.steps["d"].external = ["123"]
    ad = pipe.to_appdef()
    assert ad.name == "exp"
    assert ad.metadata["forge/pipeline"] == ",".join(pipe.order)
    roles = {r.name: r for r in ad.roles}
    assert set(roles) == {"a", "b", "c.r1", "c.r2", "d"}
    meta = {n: r.metadata[META_KEY] for n, r in roles.items()}
    assert meta["a"] == {"stage": "a", "after": [], "pipeline": True}
    assert meta["b"]["after"] == [{"stage": "a", "type": "afterok", "per_run": False}]
    assert meta["c.r1"]["stage"] == "c" and meta["c.r2"]["stage"] == "c"
    assert meta["c.r1"]["after"] == [{"stage": "a", "type": "afterany", "per_run": False}]
    assert meta["d"]["after"] == [
        {"stage": "b", "type": "afterok", "per_run": False},
        {"stage": "c", "type": "afterok", "per_run": False},
        {"job": "123", "type": "afterok"},
    ]
    # roles come in dependency order
    names = [r.name for r in ad.roles]
    assert names.index("a") < names.index("b") < names.index("d")
    assert names.index("c.r1") < names.index("d")


def test_to_appdef_role_names():
    pipe = Pipeline("p", [Step("a", app("x", "main")), Step("b", app("b", "b-0")), Step("c", app("c", "c")),
                          Step("d", app("d", "d-0", "d-1"))])
    assert [r.name for r in pipe.to_appdef().roles] == ["a", "b-0", "c", "d-0", "d-1"]  # experiment steps (<step>-k) are named already


def test_to_appdef_per_run_and_existing_metadata_kept():
    a = app("train")
    a.roles[0].metadata = {META_KEY: {"array": True, "nodes": 2}, "other": 1}
    pipe = Pipeline("p", [Step("train", a), Step("eval", app("eval"), after=["train"], per_run=True)])
    ad = pipe.to_appdef()
    train, ev = ad.roles
    assert train.metadata["other"] == 1
    assert train.metadata[META_KEY]["array"] is True and train.metadata[META_KEY]["nodes"] == 2
    assert train.metadata[META_KEY]["stage"] == "train"
    assert ev.metadata[META_KEY]["after"] == [{"stage": "train", "type": "afterok", "per_run": True}]
    # the step's own AppDef is not modified
    assert META_KEY not in pipe.steps["eval"].app.roles[0].metadata
    assert a.roles[0].metadata[META_KEY] == {"array": True, "nodes": 2}


# -- critical path and preview ----------------------------------------------------------------


def infos(**limits):
    """Diamond a -> (b, c) -> d with the given time limits."""
    after = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
    return {n: StepInfo(n, after[n], 1, "1 node(s), 1 cpu", limits.get(n)) for n in "abcd"}


ORDER = ["a", "b", "c", "d"]


def test_step_seconds():
    assert StepInfo("x", (), 1, "", "48:00:00").seconds == 48 * 3600
    assert StepInfo("x", (), 1, "", "90:00").seconds == 90 * 60
    assert StepInfo("x", (), 1, "", "1-12").seconds == 36 * 3600
    assert StepInfo("x", (), 1, "", "60").seconds == 3600
    assert StepInfo("x", (), 1, "", None).seconds is None


def test_critical_path_slurm_times():
    steps = infos(a="48:00:00", b="90:00", c="1-12", d="60")
    total, path, missing = critical_path(steps, ORDER)
    assert path == ["a", "c", "d"]
    assert total == (48 + 36 + 1) * 3600
    assert missing == []


def test_critical_path_other_branch():
    steps = infos(a="10", b="1-00", c="90:00", d="60")
    total, path, missing = critical_path(steps, ORDER)
    assert path == ["a", "b", "d"]
    assert total == (10 + 24 * 60 + 60) * 60


def test_critical_path_without_limits():
    steps = infos(a="48:00:00", b=None, c="1-12", d=None)
    total, path, missing = critical_path(steps, ORDER)
    assert total is None
    assert missing == ["b", "d"]
    assert path[0] == "a" and path[-1] == "d"


def test_critical_path_empty():
    assert critical_path({}, []) == (0, [], [])


def test_render_tree():
    steps = infos(a="48:00:00", b="90:00", c="1-12", d="60")
    text = render_tree("exp", steps, ORDER)
    lines = text.splitlines()
    assert lines[0] == "exp"
    for n, limit in (("a", "48:00:00"), ("b", "90:00"), ("c", "1-12"), ("d", "60")):
        assert any(f"{n}: 1 run(s)" in line and limit in line for line in lines), n
    assert "(after b, c)" in text
    assert lines[-1] == "critical path: a -> c -> d = 3-13:00:00 best case (queue time excluded)"


def test_render_tree_without_estimate():
    steps = infos(a="10", b=None, c="10", d=None)
    text = render_tree("exp", steps, ORDER)
    assert "no time limit" in text
    assert text.splitlines()[-1].startswith("critical path: a -> ")
    assert text.splitlines()[-1].endswith("no estimate: no time limit on b, d")


# -- build_pipeline from a file ---------------------------------------------------------------

PIPE = """\
name: pipe
cluster: {time_limit: "00:10:00"}
stages:
  prepare: {run: {command: [sh, -c, "date > prepared"]}}
  train:
    after: [prepare]
    run: {command: [python3, train.py], args: {lr: 0.1}}
    sweep: {shared_axes: {run.args.lr: [0.1, 0.01, 0.001]}}
  eval:
    after: [train]
    per_run: true
    inputs: {checkpoint: best, metric_file: metrics.json, metric: val_loss, mode: min, arg: --checkpoint}
    run: {command: [python3, eval.py]}
  compare: {after: [eval], when: all_ok, run: {command: [python3, compare.py]}, cluster: {time_limit: "1:00:00"}}
"""


@pytest.fixture
def build(tmp_path):
    def _build(text, overrides=()):
        p = tmp_path / "pipe.yaml"
        p.write_text(textwrap.dedent(text))
        return build_pipeline(str(p), list(overrides), Store(str(tmp_path / "state")).put_table)

    return _build


def table(step):
    """The step's run table as it is stored."""
    return read_table(step.app.metadata["forge/table"]).to_json()


def run_ids(step):
    return [r["run_id"] for r in table(step)["runs"]]


def test_build_pipeline(build):
    pipe, info = build(PIPE)
    assert pipe.name == "pipe"
    assert pipe.order == ["prepare", "train", "eval", "compare"]
    assert {n: s.after for n, s in pipe.steps.items()} == {
        "prepare": [], "train": ["prepare"], "eval": ["train"], "compare": ["eval"],
    }
    assert [info[n].runs for n in pipe.order] == [1, 3, 3, 1]
    assert info["eval"].per_run and not info["train"].per_run
    assert info["train"].time_limit == "00:10:00"  # from the file's defaults
    assert info["compare"].time_limit == "1:00:00"  # its own key
    assert pipe.steps["train"].app.roles[0].env["FORGE_STAGE"] == "train"
    # compare waits for all of eval's runs
    up = table(pipe.steps["compare"])["runs"][0]["upstream"]
    assert up[0]["stage"] == "eval" and [r[1] for r in up[0]["runs"]] == run_ids(pipe.steps["eval"])


def test_per_run_step_mirrors_upstream_runs(build):
    pipe, _ = build(PIPE)
    train, ev = pipe.steps["train"], pipe.steps["eval"]
    assert run_ids(ev) == run_ids(train)
    assert len(set(run_ids(train))) == 3
    rows = table(ev)["runs"]
    assert [r["index"] for r in rows] == [0, 1, 2]
    # eval's own command, not train's
    assert all(r["argv"] == ["python3", "eval.py"] for r in rows)
    # run i of eval follows run i of train only, and carries the inputs policy
    for r, rid in zip(rows, run_ids(train)):
        assert r["upstream"] == [{"stage": "train", "runs": [[r["index"], rid]], "checkpoint_dir": None}]
        assert r["inputs"]["checkpoint"] == "best" and r["inputs"]["metric"] == "val_loss"
    ad = pipe.to_appdef()
    ev_role = next(r for r in ad.roles if r.metadata[META_KEY]["stage"] == "eval")
    assert ev_role.metadata[META_KEY]["after"] == [{"stage": "train", "type": "afterok", "per_run": True}]
    assert ev_role.num_replicas == 3


def test_per_run_mirrors_every_role_of_a_multi_shape_sweep(build):
    pipe, _ = build("""\
        name: pipe
        stages:
          train:
            run: {command: [t]}
            sweep: {shared_axes: {cluster.nodes: [1, 2], run.args.lr: [1, 2]}}
          eval: {after: [train], per_run: true, run: {command: [e]}}
        """)
    t_roles = table(pipe.steps["train"])["roles"]
    e_roles = table(pipe.steps["eval"])["roles"]
    assert list(t_roles) == ["train-0", "train-1"]
    assert list(e_roles) == ["eval-0", "eval-1"]
    assert list(e_roles.values()) == list(t_roles.values())
    assert run_ids(pipe.steps["eval"]) == run_ids(pipe.steps["train"])


def test_per_run_with_its_own_sweep_is_rejected(build):
    text = PIPE.replace("    run: {command: [python3, eval.py]}",
                        "    run: {command: [python3, eval.py]}\n    sweep: {shared_axes: {run.args.x: [1, 2]}}")
    with pytest.raises(ConfigError) as e:
        build(text)
    assert "stages.eval.per_run" in e.value.where
    assert "remove its sweep" in str(e.value)


def test_per_run_with_two_upstream_steps_is_rejected(build):
    text = PIPE.replace("    after: [train]\n    per_run: true", "    after: [train, prepare]\n    per_run: true")
    with pytest.raises(ConfigError) as e:
        build(text)
    assert "stages.eval.per_run" in e.value.where
    assert "exactly one step" in str(e.value)


def test_external_job_dependencies(build):
    pipe, info = build("""\
        name: pipe
        stages:
          a: {after: ["job:123", "job:45_6"], run: {command: [x]}}
          b: {after: [a, "job:9"], run: {command: [y]}}
        """)
    assert pipe.steps["a"].after == [] and pipe.steps["a"].external == ["123", "45_6"]
    assert pipe.steps["b"].after == ["a"] and pipe.steps["b"].external == ["9"]
    assert info["b"].after == ("a",)
    ad = pipe.to_appdef()
    meta = {r.name: r.metadata[META_KEY] for r in ad.roles}
    assert meta["a"]["after"] == [{"job": "123", "type": "afterok"}, {"job": "45_6", "type": "afterok"}]
    assert meta["b"]["after"] == [{"stage": "a", "type": "afterok", "per_run": False}, {"job": "9", "type": "afterok"}]


@pytest.mark.parametrize("bad", ['"job:abc"', '"job:"', "[true]", "{x: 1}"])
def test_bad_after(build, bad):
    with pytest.raises(ConfigError) as e:
        build(f"name: p\nstages:\n  a: {{after: {bad}, run: {{command: [x]}}}}\n")
    assert "stages.a.after" in e.value.where


def test_after_a_single_string(build):
    pipe, _ = build("name: p\nstages:\n  a: {run: {command: [x]}}\n  b: {after: a, run: {command: [x]}}\n")
    assert pipe.steps["b"].after == ["a"]


@pytest.mark.parametrize("when,dep", [("any_done", "afterany"), ("all_ok", "afterok"), ("afternotok", "afternotok"),
                                      ("afterany", "afterany")])
def test_when_maps_to_slurm_dependency(build, when, dep):
    pipe, info = build(f"""\
        name: p
        stages:
          a: {{run: {{command: [x]}}, sweep: {{shared_axes: {{run.args.s: [1, 2]}}}}}}
          join: {{after: [a], when: {when}, run: {{command: [y]}}}}
        """)
    assert pipe.steps["join"].when == dep
    assert info["join"].when == dep
    role = [r for r in pipe.to_appdef().roles if r.name == "join"][0]
    assert role.metadata[META_KEY]["after"] == [{"stage": "a", "type": dep, "per_run": False}]
    assert dep in pipe.steps["join"].app.roles[0].args[pipe.steps["join"].app.roles[0].args.index("--wait-for") + 1]


def test_bad_when(build):
    with pytest.raises(ConfigError) as e:
        build("name: p\nstages:\n  a: {run: {command: [x]}}\n  b: {after: [a], when: sometimes, run: {command: [x]}}\n")
    assert "stages.b.when" in e.value.where and "any_done" in str(e.value)


@pytest.mark.parametrize(
    "inputs,words",
    [
        ("{checkpoint: best}", "needs metric"),
        ("{checkpoint: best, metric_file: m.json}", "needs metric"),
        ("{checkpoint: explicit}", "needs path"),
        ("{checkpoint: newest}", "latest, best, explicit"),
        ("{checkpoint: best, metric: loss, mode: lowest}", "min or max"),
        ("{checkpoint: latest, colour: red}", "unknown key"),
    ],
)
def test_inputs_validation(build, inputs, words):
    text = f"""\
name: p
stages:
  a: {{run: {{command: [x]}}}}
  b: {{after: [a], per_run: true, inputs: {inputs}, run: {{command: [x]}}}}
"""
    with pytest.raises(ConfigError) as e:
        build(text)
    assert "stages.b.inputs" in e.value.where
    assert words in str(e.value)


@pytest.mark.parametrize(
    "inputs,expected",
    [
        ("{checkpoint: best, metric: acc, mode: max}", {"checkpoint": "best", "metric": "acc", "mode": "max"}),
        ("{checkpoint: explicit, path: '{checkpoint_dir}/final.pt'}",
         {"checkpoint": "explicit", "path": "{checkpoint_dir}/final.pt"}),
        ("{arg: --ckpt}", {"checkpoint": "latest", "arg": "--ckpt"}),
    ],
)
def test_inputs_valid(build, inputs, expected):
    pipe, _ = build(f"""\
name: p
stages:
  a: {{run: {{command: [x]}}}}
  b: {{after: [a], per_run: true, inputs: {inputs}, run: {{command: [x]}}}}
""")
    assert table(pipe.steps["b"])["runs"][0]["inputs"] == expected


def test_stage_errors_name_the_stage_and_line(build, tmp_path):
    with pytest.raises(ConfigError) as e:
        build("name: p\nstages:\n  a:\n    run: {command: [x]}\n    bogus: 1\n")
    assert e.value.where == f"{tmp_path / 'pipe.yaml'}:5: stages.a.bogus"
    with pytest.raises(ConfigError) as e:
        build("name: p\nstages:\n  a:\n    run: {command: [x]}\n    cluster: {nodes: 0}\n")
    assert "stages.a.cluster.nodes" in e.value.where


def test_stage_cycle_and_unknown_in_file(build):
    with pytest.raises(ConfigError, match="a -> b -> a"):
        build("name: p\nstages:\n  a: {after: [b], run: {command: [x]}}\n  b: {after: [a], run: {command: [x]}}\n")
    with pytest.raises(ConfigError, match="'nope', which is not a step"):
        build("name: p\nstages:\n  a: {after: [nope], run: {command: [x]}}\n")


def test_pipeline_file_top_level_checks(build):
    with pytest.raises(ConfigError, match="unknown key in a pipeline file"):
        build("name: p\nrun: {command: [x]}\nstages:\n  a: {run: {command: [x]}}\n")
    with pytest.raises(ConfigError, match="mapping of step name to step"):
        build("name: p\nstages: {}\n")
    with pytest.raises(ConfigError, match="missing key 'name'"):
        build("stages:\n  a: {run: {command: [x]}}\n")


def test_stage_overrides(build):
    pipe, info = build(PIPE, ["stages.train.sweep.shared_axes.run.args.lr=[1, 2]", "stages.train.run.args.lr=5"])
    assert info["train"].runs == 2 and info["eval"].runs == 2
    assert run_ids(pipe.steps["eval"]) == run_ids(pipe.steps["train"])


def test_stage_cluster_comes_from_defaults_plus_own_keys_only(build):
    _, info = build("""\
        name: p
        cluster: {partition: cpu, cpus_per_task: 2}
        stages:
          a: {run: {command: [x]}, cluster: {gpus_per_node: 1, partition: gpu}}
          b: {after: [a], run: {command: [x]}}
        """)
    assert "1 gpu" in info["a"].resources and "partition gpu" in info["a"].resources
    assert "gpu" not in info["b"].resources.replace("partition", "")
    assert "partition cpu" in info["b"].resources and "2 cpu" in info["b"].resources


def test_pipeline_appdef(tmp_path):
    p = tmp_path / "pipe.yaml"
    p.write_text(PIPE)
    ad = pipeline_appdef(str(p), [], Store(str(tmp_path / "state")).put_table)
    assert ad.metadata["forge/pipeline"] == "prepare,train,eval,compare"
    assert [r.metadata[META_KEY]["stage"] for r in ad.roles] == ["prepare", "train", "eval", "compare"]
