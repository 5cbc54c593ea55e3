"""The Python API for sweeps: dicts or dataclasses, the files' validation and errors, AppDefs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from torchx_forge import sweeps
from torchx_forge.appdef.meta import ForgeMeta
from torchx_forge.core import runtable
from torchx_forge.core.sampling import Dist
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


# -- searches ----------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _shape(app):
    """An AppDef as comparable data: its role with the run table's path left out, the table's contents."""
    from torchx_forge.core.record import replace

    (role,) = app.roles
    meta = ForgeMeta.from_role(role)
    table = read_table(meta.table)
    args = [a if a != meta.table else "TABLE" for a in role.args]
    others = {k: v for k, v in role.metadata.items() if k != "forge"}
    return (app.name, role.name, role.entrypoint, args, role.env, role.resource, role.num_replicas, others,
            replace(meta, table="TABLE"), replace(table, source="").to_json())


def test_a_search_from_python_is_the_same_appdef_as_from_its_file(tmp_path: Path, monkeypatch):
    from torchx_forge.searches import load_search, search_appdef
    from torchx_forge.slurm.search import SEARCH_META

    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "file"))
    exp, spec = load_search(str(EXAMPLES / "height_asha.yaml"))
    from_file = _shape(search_appdef(exp, spec))
    run = sweeps.Run(command=["python", "height.py"], workdir=".", args={"steps": 27, "sleep": 0.2})
    cluster = {"cpus_per_task": 1, "mem": "256M", "time_limit": "00:10:00"}
    section = sweeps.Search(algorithm="asha", metric="loss", mode="min", trials=16, parallel=4, seed=0,
                            budget="run.args.steps",
                            space={"run.args.width": sweeps.uniform(0, 20), "run.args.height": "interval(-100, 100)"})
    as_classes = sweeps.search(sweeps.Experiment(name="height", run=run, cluster=cluster), section,
                               state_dir=str(tmp_path / "py"), base_dir=str(EXAMPLES))
    as_dict = sweeps.search({"name": "height", "run": {"command": ["python", "height.py"], "workdir": ".",
                                                        "args": {"steps": 27, "sleep": 0.2}}, "cluster": cluster,
                             "search": {"algorithm": "asha", "metric": "loss", "trials": 16, "parallel": 4,
                                        "budget": "run.args.steps", "space": {"run.args.width": "interval(0, 20)",
                                                                              "run.args.height": sweeps.uniform(-100, 100)}}},
                            state_dir=str(tmp_path / "py2"), base_dir=str(EXAMPLES))
    assert _shape(as_classes) == from_file == _shape(as_dict)
    assert as_classes.roles[0].metadata[SEARCH_META] == spec.to_json()
    assert (tmp_path / "py" / "tables").is_dir() and not (tmp_path / "py2" / "searches").exists()


def test_python_search_spaces_take_the_sweeps_values(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path))  # the run table goes to the configured state dir
    exp = {"name": "s", "run": {"command": ["python", "t.py"]}}
    app = sweeps.search(exp, {"algorithm": "tpe", "metric": "acc", "mode": "max", "trials": 4, "space": {
        "run.args.lr": sweeps.loguniform(1e-5, 1e-1), "run.args.layers": range(1, 9), "run.args.opt": sweeps.choice("adam", "sgd"),
        "run.args.bs": [16, 32], "run.env.W": sweeps.logint(1, 64), "run.args.d": sweeps.randint(0, 3)}})
    from torchx_forge.slurm.search import spec_of

    spec = spec_of(app)
    assert dict(spec.space) == {
        "run.args.lr": sweeps.loguniform(1e-5, 1e-1), "run.args.layers": sweeps.randint(1, 8),
        "run.args.opt": Dist("choice", choices=("adam", "sgd")), "run.args.bs": Dist("choice", choices=(16, 32)),
        "run.env.W": sweeps.logint(1, 64), "run.args.d": sweeps.randint(0, 3)}
    assert (spec.algorithm, spec.metric, spec.mode, spec.trials, spec.parallel) == ("tpe", "acc", "max", 4, 1)


@pytest.mark.parametrize("exp, search, message", [
    ({"name": "s", "run": {"command": ["x"]}}, {"algorithm": "bayes", "metric": "loss", "trials": 2, "space": {"run.args.a": [1, 2]}},
     "experiment 's': search.algorithm: expected one of random, tpe, asha, hyperband, got 'bayes'"),
    ({"name": "s", "run": {"command": ["x"]}}, sweeps.Search("tpe", "loss", 2, {"run.args.a": "interval(2, 1)"}),
     "experiment 's': search.space.run.args.a: the low bound 2.0 is above the high bound 1.0"),
    ({"name": "s", "run": {"command": ["x"]}}, sweeps.Search("tpe", "loss", 2, {"a": [1, 2]}),
     "experiment 's': search.space.a: 'a' is not a key a search can set"),
    ({"name": "s", "run": {"command": ["x"]}}, sweeps.Search("asha", "loss", 2, {"run.args.a": [1, 2]}),
     "experiment 's': search: missing key 'budget': asha stops trials at rungs"),
    ({"name": "s", "run": {"command": ["x"]}}, sweeps.Search("tpe", "loss", 0, {"run.args.a": [1, 2]}),
     "experiment 's': search.trials: expected a whole number >= 1, got 0"),
    ({"name": "s", "run": {"command": ["x"]}, "search": {}}, sweeps.Search("tpe", "loss", 2, {"run.args.a": [1, 2]}),
     "search: given twice"),
    ({"name": "s", "run": {"command": ["x"]}}, None, "experiment 's': missing key 'search'"),
    ({"name": "s", "run": {"command": ["x"]}, "sweep": {"shared_axes": {"run.args.b": [1]}}},
     sweeps.Search("tpe", "loss", 2, {"run.args.a": [1, 2]}), "experiment 's': sweep: a search picks its own trials"),
    ({"name": "s", "run": {"command": ["x"], "argz": 1}}, sweeps.Search("tpe", "loss", 2, {"run.args.a": [1, 2]}),
     "experiment 's': run.argz: unknown key"),
])
def test_bad_python_searches_get_the_files_errors_with_key_paths(tmp_path: Path, monkeypatch, exp, search, message: str):
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        sweeps.search(exp, search, state_dir=str(tmp_path))
    assert str(e.value).startswith(message), str(e.value)


def test_a_python_search_submits_to_slurm_forge(tmp_path: Path, monkeypatch):
    """What runner.run(app, 'slurm_forge', cfg) does, against FakeSlurm: the first wave asked and submitted."""
    from torchx_forge.scheduler import SlurmForgeScheduler
    from torchx_forge.slurm.search_status import read_search
    from torchx_forge.state.records import Records
    from torchx_forge.state.store import Store
    from unit.fakeslurm import FakeSlurm

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORGE_STATE_DIR", str(tmp_path / "state"))  # where the submit writes the record
    (tmp_path / "t.py").write_text("print(1)\n")
    app = sweeps.search({"name": "s", "run": {"command": ["python", "t.py"]}},
                        sweeps.Search("random", "loss", 5, {"run.args.a": sweeps.uniform(0, 1)}, parallel=2),
                        state_dir=str(tmp_path / "state"))
    sched = SlurmForgeScheduler("s", cli=FakeSlurm(), state_dir=str(tmp_path / "state"))
    app_id = sched.schedule(sched.submit_dryrun(app, {"partition": "debug", "log_dir": str(tmp_path / "logs")}))
    records = Records(Store(str(tmp_path / "state")))
    spec, trials = read_search(records, records.load(app_id))
    assert spec.trials == 5 and [t.number for t in trials] == [0, 1] and all(0 <= t.params["run.args.a"] <= 1 for t in trials)
