"""A sweep bigger than the limit is refused at once, naming the key and its size, wherever it is
written: an experiment file, forge.grid's --axes, a pipeline step, the Python API."""

import importlib.util
import itertools
import textwrap
from pathlib import Path

import pytest
from torchx.specs.finder import ComponentValidationException

from conftest import REPO
from torchx_forge import sweeps
from torchx_forge.errors import ConfigError
from torchx_forge.experiment.spec import load_experiment
from torchx_forge.experiment.stages import load_stages
from torchx_forge.experiment.sweep import count_runs
from unit import bounds

HUGE = "range(0, 1000000000000)"


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv("FORGE_SWEEP_LIMIT", raising=False)


def refused(make, *expected: str) -> str:
    """``make()`` raises a one-line error holding ``expected``, in well under a second."""
    return bounds.refused(make, *expected, errors=(ConfigError, ComponentValidationException))


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text("name: big\nrun: {command: [python3, train.py]}\n" + textwrap.dedent(body))
    return str(path)


def test_an_axis_over_the_limit_in_a_file_names_file_line_key_and_size(tmp_path):
    path = write(tmp_path, f"sweep:\n  shared_axes:\n    run.args.seed: '{HUGE}'\n")
    refused(lambda: load_experiment(path), f"{path}:5: sweep.shared_axes.run.args.seed: {HUGE} has 1,000,000,000,000 values",
            "more than the 1,000,000 runs a sweep may have ($FORGE_SWEEP_LIMIT)")


def test_an_axis_over_the_limit_is_refused_even_with_max_runs(tmp_path):
    path = write(tmp_path, f"sweep:\n  max_runs: 10\n  cases: [{{name: a, axes: {{run.args.seed: '{HUGE}'}}}}]\n")
    refused(lambda: load_experiment(path), "sweep.cases.0.axes.run.args.seed", "1,000,000,000,000 values")


def test_axes_each_under_the_limit_whose_product_is_over_it(tmp_path):
    path = write(tmp_path, """\
        sweep:
          shared_axes: {run.args.a: 'range(0, 1000)', run.args.b: 'linspace(0, 1, 1001)'}
        """)
    refused(lambda: load_experiment(path), f"{path}:3: sweep: the sweep has 1,001,000 runs", "sweep.max_runs")
    assert count_runs(load_experiment(path, ["sweep.max_runs=1000000"])) == 1_000_000


def test_random_samples_and_a_random_range_with_a_step(tmp_path):
    path = write(tmp_path, """\
        sweep:
          random: {samples: 1000000000000, params: {run.args.lr: 'interval(0, 1)'}}
        """)
    refused(lambda: load_experiment(path), "sweep.random.samples: the random search has 1,000,000,000,000 samples")
    path = write(tmp_path, """\
        sweep:
          random: {samples: 4, params: {run.args.k: 'range(0, 1000000000000, 2)'}}
        """)
    refused(lambda: load_experiment(path), "sweep.random.params.run.args.k", "500,000,000,000 values to choose from")
    path = write(tmp_path, """\
        sweep:
          random: {samples: 4, params: {run.args.k: 'range(0, 1000000000000)'}}
        """)
    assert count_runs(load_experiment(path)) == 4  # a step of 1: drawn as whole numbers, never listed


def test_the_limit_can_be_raised_or_lowered(tmp_path, monkeypatch):
    path = write(tmp_path, "sweep:\n  shared_axes: {run.args.a: 'range(0, 2000000)'}\n")
    refused(lambda: load_experiment(path), "2,000,000 values")
    monkeypatch.setenv("FORGE_SWEEP_LIMIT", "3000000")
    assert count_runs(load_experiment(path)) == 2_000_000
    monkeypatch.setenv("FORGE_SWEEP_LIMIT", "10")
    refused(lambda: load_experiment(path, ["sweep.shared_axes.run.args.a=range(0, 11)"]), "more than the 10 runs")


def test_a_pipeline_step(tmp_path):
    path = tmp_path / "pipe.yaml"
    path.write_text(f"name: p\nstages:\n  train:\n    run: {{command: [python3]}}\n    sweep: {{shared_axes: {{run.args.s: '{HUGE}'}}}}\n")
    refused(lambda: load_stages(str(path)), "stages.train.sweep.shared_axes.run.args.s", "1,000,000,000,000 values")


def test_forge_grid(tmp_path):
    spec = importlib.util.spec_from_file_location("forge_components_under_test", REPO / "components" / "forge.py")
    forge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(forge)
    refused(lambda: forge.grid("python3", "-c", "pass", axes="x=range(0,1000000000000)"),
            "forge.grid: sweep.shared_axes.run.args.x: range(0,1000000000000) has 1,000,000,000,000 values")
    refused(lambda: forge.grid("true", axes="x=range(0,1001);y=range(0,1000)"), "the sweep has 1,001,000 runs")
    refused(lambda: forge.grid("true", axes="x=[1,2]", random="lr=interval(0,1)", samples=10**12),
            "sweep.random.samples", "1,000,000,000,000 samples")


def test_the_python_api_counts_ranges_and_reads_iterators_only_up_to_the_limit():
    def exp(axis, rnd=None):
        return sweeps.Experiment(name="py", run=sweeps.Run(command="python3 train.py"),
                                 sweep=sweeps.Sweep(shared_axes={"run.args.x": axis}, random=rnd))

    refused(lambda: sweeps.experiment(exp(range(10**12))), "sweep.shared_axes.run.args.x", "1,000,000,000,000 values")
    refused(lambda: sweeps.experiment(exp(range(10**30))), "1,000,000,000,000,000,000,000,000,000,000 values")
    refused(lambda: sweeps.experiment(exp(itertools.count())), "sweep.shared_axes.run.args.x: the count gives more than")
    refused(lambda: sweeps.experiment(exp(sweeps.linspace(0, 1, 10**12))), "1,000,000,000,000 values")
    assert count_runs(sweeps.experiment(exp(x for x in range(3)))) == 3
    refused(lambda: sweeps.experiment(exp([1], sweeps.Random(10**12, {"run.args.lr": sweeps.uniform(0, 1)}))),
            "1,000,000,000,000 samples")
    refused(lambda: sweeps.experiment(exp([1], sweeps.Random(2, {"run.args.k": range(0, 10**12, 2)}))),
            "sweep.random.params.run.args.k", "500,000,000,000 values")
    drawn = sweeps.experiment(exp([1], sweeps.Random(3, {"run.args.k": range(10**12)})))
    assert count_runs(drawn) == 3  # a step of 1: whole numbers, never listed
    listed = sweeps.experiment(exp([1], sweeps.Random(50, {"run.args.k": range(5)})))
    as_ints = sweeps.experiment(exp([1], sweeps.Random(50, {"run.args.k": "int(interval(0, 4))"})))
    from torchx_forge.experiment.sweep import expand
    assert [r.params for r in expand(listed)] == [r.params for r in expand(as_ints)]


def test_a_pipeline_is_bounded_in_runs_and_in_the_upstream_runs_its_tables_list(tmp_path):
    path = tmp_path / "pipe.yaml"
    head = "name: p\nstages:\n  a:\n    run: {command: [python3]}\n    sweep: {shared_axes: {run.args.s: 'range(0, 10000)'}}\n"
    path.write_text(head + "  b:\n    after: [a]\n    run: {command: [python3]}\n    sweep: {shared_axes: {run.args.t: 'range(0, 1000)'}}\n")
    refused(lambda: load_stages(str(path)), f"{path}:7: stages.b.after: each of its 1,000 runs waits for all 10,000 runs of a",
            "more than the 1,000,000 such links", "per_run")
    path.write_text(head + "  b: {after: [a], per_run: true, run: {command: [python3]}}\n"
                           "  c: {after: [b], run: {command: [python3]}}\n")
    assert [s.name for s in load_stages(str(path))[1]] == ["a", "b", "c"]
    path.write_text(head.replace("10000", "60000") + "  b: {after: [a], per_run: true, run: {command: [python3]}}\n")
    refused(lambda: load_stages(str(path)), f"{path}:2: stages: the pipeline has 120,000 runs (a: 60,000, b: 60,000),"
                                            " more than the 100,000 a pipeline may have")
