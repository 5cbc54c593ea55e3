"""The Python API for sweeps: dicts or dataclasses, the files' validation and errors, AppDefs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from torchx_forge import sweeps
from torchx_forge.appdef.meta import ForgeMeta
from torchx_forge.core import runtable
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.spec import load_experiment
from torchx_forge.experiment.sweep import expand
from torchx_forge.state.tables import read_table


def dataclass_exp(**sweep_kw) -> sweeps.Experiment:
    return sweeps.Experiment(
        name="lr",
        run=sweeps.Run(command=["python3", "train.py"], args={"epochs": 3}),
        cluster={"cpus_per_task": 1},
        sweep=sweeps.Sweep(**sweep_kw),
    )


def test_the_same_experiment_as_a_file_as_a_dict_and_as_dataclasses(tmp_path: Path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent("""\
        name: lr
        run: {command: [python3, train.py], args: {epochs: 3}}
        cluster: {cpus_per_task: 1}
        sweep:
          shared_axes: {run.args.lr: 'logspace(1e-4, 1e-1, 4)', run.args.seed: 'range(0, 3)'}
          cases: [{name: adam, set: {run.args.opt: adam}}, {name: sgd, set: {run.args.opt: sgd}, axes: {run.args.m: [0.0, 0.9]}}]
          random: {samples: 5, seed: 1, params: {run.args.wd: 'tag(log, interval(1e-6, 1e-2))'}}
    """))
    from_file = expand(load_experiment(str(path)))
    as_dict = {
        "name": "lr", "run": {"command": ["python3", "train.py"], "args": {"epochs": 3}}, "cluster": {"cpus_per_task": 1},
        "sweep": {"shared_axes": {"run.args.lr": sweeps.logspace(1e-4, 1e-1, 4), "run.args.seed": range(3)},
                  "cases": [{"name": "adam", "set": {"run.args.opt": "adam"}},
                            {"name": "sgd", "set": {"run.args.opt": "sgd"}, "axes": {"run.args.m": (x / 10 for x in (0, 9))}}],
                  "random": {"samples": 5, "seed": 1, "params": {"run.args.wd": sweeps.loguniform(1e-6, 1e-2)}}},
    }
    classes = dataclass_exp(
        shared_axes={"run.args.lr": "logspace(1e-4, 1e-1, 4)", "run.args.seed": [0, 1, 2]},
        cases=[sweeps.Case("adam", set={"run.args.opt": "adam"}), sweeps.Case("sgd", {"run.args.opt": "sgd"}, {"run.args.m": [0.0, 0.9]})],
        random=sweeps.Random(samples=5, seed=1, params={"run.args.wd": "tag(log, interval(1e-6, 1e-2))"}),
    )
    for exp in (as_dict, classes):
        assert expand(sweeps.experiment(exp)) == from_file
    assert len(from_file) == 12 * 5 + 24 * 5


def test_python_axes_numpy_like_iterables_and_distributions():
    class Scalar:  # what a numpy scalar looks like
        def __init__(self, v):
            self.v = v

        def item(self):
            return self.v

    exp = sweeps.experiment(dataclass_exp(shared_axes={"run.args.b": iter([Scalar(1), Scalar(2)])},
                                          random=sweeps.Random(3, {"run.args.n": sweeps.randint(1, 4),
                                                                   "run.args.o": sweeps.choice("a", "b")})))
    runs = expand(exp)
    assert len(runs) == 6 and {dict(r.params)["run.args.b"] for r in runs} == {1, 2}
    assert all(1 <= dict(r.params)["run.args.n"] <= 4 and dict(r.params)["run.args.o"] in "ab" for r in runs)


@pytest.mark.parametrize("sweep_kw, where, words", [
    ({"shared_axes": {"run.args.lr": []}}, "experiment 'lr': sweep.shared_axes.run.args.lr", "non-empty list"),
    ({"shared_axes": {"run.argz.lr": [1]}}, "experiment 'lr': sweep.shared_axes.run.argz.lr", "not a key a sweep can set"),
    ({"shared_axes": {"cluster.nodes": [0]}}, "experiment 'lr': sweep.shared_axes.cluster.nodes.0", "whole number >= 1"),
    ({"random": sweeps.Random(0, {"run.args.x": sweeps.uniform(0, 1)})}, "experiment 'lr': sweep.random.samples", ">= 1"),
    ({"shared_axes": {"run.args.x": "range(5, 1)"}}, "experiment 'lr': sweep.shared_axes.run.args.x", "is empty"),
])
def test_bad_python_experiments_get_the_files_errors(sweep_kw, where, words):
    with pytest.raises(ConfigError) as err:
        sweeps.experiment(dataclass_exp(**sweep_kw))
    assert err.value.where == where and words in err.value.msg


def test_bad_generators_in_python_are_clear_errors():
    with pytest.raises(ConfigError, match=r"logspace\(0, 1, 3\): both bounds must be > 0"):
        sweeps.logspace(0, 1, 3)
    with pytest.raises(ConfigError, match=r"uniform\(2, 1\): the low bound 2.0 is above the high bound 1.0"):
        sweeps.uniform(2, 1)


def test_appdef_and_pipeline_build_tables_the_nodes_read(tmp_path: Path):
    app = sweeps.appdef(dataclass_exp(shared_axes={"run.args.lr": sweeps.linspace(0.1, 0.3, 3)}), state_dir=str(tmp_path))
    (role,) = app.roles
    table = read_table(ForgeMeta.from_role(role).table)
    assert role.num_replicas == 3 and runtable.find_run(table, "lr", 2).argv == (
        "python3", "train.py", "--epochs", "3", "--lr", "0.3")
    pipe = sweeps.pipeline({"name": "p", "stages": {
        "train": {"run": {"command": ["echo", "train"]}, "sweep": sweeps.Sweep(shared_axes={"run.args.lr": range(2)})},
        "eval": {"run": {"command": ["echo", "eval"]}, "after": ["train"], "per_run": True},
    }}, state_dir=str(tmp_path))
    assert [r.name for r in pipe.roles] == ["train", "eval"] and [r.num_replicas for r in pipe.roles] == [2, 2]
    with pytest.raises(ConfigError, match="waits for 'nope', which is not a step"):
        sweeps.pipeline({"name": "p", "stages": {"a": {"run": {"command": ["x"]}, "after": ["nope"]}}}, state_dir=str(tmp_path))
