"""Handing results between pipeline steps (summaries, upstream status, input checkpoints) and artifacts."""

import json
import os
import uuid

import pytest

from torchx_forge.core.runrow import RunRow
from torchx_forge.node import contract
from torchx_forge.node.artifacts import collect, globs_from_env, matches
from torchx_forge.node.checkpoint import STATE_FILE, CheckpointError
from torchx_forge.node.handoff import (
    choose_input,
    upstream_env,
    upstream_runs,
    upstream_status,
    wait_for_upstream,
)
from torchx_forge.node.summary import SUMMARY, RunSummary, read_summary, write_summary


@pytest.fixture
def env(tmp_path):
    return {"FORGE_STATE_DIR": str(tmp_path / "state"), "FORGE_APP_ID": "7", "FORGE_STAGE": "eval"}


def result_dir(tmp_path, stage, run_id):
    return str(tmp_path / "state" / "results" / "7" / stage / run_id)


def ckpt_dir(tmp_path, stage, run_id):
    return str(tmp_path / "state" / "checkpoints" / "7" / stage / run_id)


# -- summaries -------------------------------------------------------------------------------


def test_summary_round_trip(tmp_path):
    d = str(tmp_path / "r" / "new")
    s = RunSummary("COMPLETED", 0, 2, run_id="a-1", params={"lr": 0.1}, artifacts=["x"])
    write_summary(d, s)
    assert read_summary(d) == s
    assert sorted(os.listdir(d)) == [SUMMARY]  # no temporary file left
    write_summary(d, RunSummary("FAILED"))
    assert read_summary(d) == RunSummary("FAILED")


def test_read_summary_missing_or_broken(tmp_path):
    assert read_summary(str(tmp_path / "nope")) is None
    (tmp_path / SUMMARY).write_text("{half")
    assert read_summary(str(tmp_path)) is None


def test_summary_on_memory_url():
    d = f"memory://forge-handoff-{uuid.uuid4().hex}/res"
    write_summary(d, RunSummary("COMPLETED", replica=1))
    assert read_summary(d) == RunSummary("COMPLETED", replica=1)
    assert read_summary(f"memory://forge-handoff-{uuid.uuid4().hex}/none") is None


# -- upstream status -----------------------------------------------------------------------------


def as_row(obj):
    """A run table row with these fields (as the table's JSON gives them)."""
    return RunRow.from_json({"index": 0, "run_id": "r", **obj})


ROW = as_row({"upstream": [{"stage": "train", "runs": [[0, "r0"], [1, "r1"], [2, "r2"], [3, "r3"]], "checkpoint_dir": None}]})


def test_upstream_runs_use_the_upstream_stage(tmp_path, env):
    runs = upstream_runs(ROW, env)
    assert runs[0] == ("train", 0, "r0", result_dir(tmp_path, "train", "r0"))
    assert [r[1] for r in runs] == [0, 1, 2, 3]
    assert runs[0][3] == contract.result_dir({**env, "FORGE_STAGE": "train"}, "r0")


def test_upstream_status(tmp_path, env):
    write_summary(result_dir(tmp_path, "train", "r0"), RunSummary("COMPLETED"))
    write_summary(result_dir(tmp_path, "train", "r1"), RunSummary("FAILED", 1))
    write_summary(result_dir(tmp_path, "train", "r3"), RunSummary("OUT_OF_MEMORY"))
    ok, failed, dirs, ended = upstream_status(ROW, env)
    assert ok == [0]
    assert failed == [1, 3]
    assert dirs == [result_dir(tmp_path, "train", "r0")]
    assert ended is False  # r2 has no summary yet
    write_summary(result_dir(tmp_path, "train", "r2"), RunSummary("COMPLETED"))
    ok, failed, dirs, ended = upstream_status(ROW, env)
    assert ok == [0, 2] and failed == [1, 3] and ended is True
    assert dirs == [result_dir(tmp_path, "train", "r0"), result_dir(tmp_path, "train", "r2")]


@pytest.mark.parametrize("state", ["RUNNING", "INTERRUPTED", None])
def test_upstream_not_ended(tmp_path, env, state):
    row = as_row({"upstream": [{"stage": "train", "runs": [[0, "r0"]], "checkpoint_dir": None}]})
    write_summary(result_dir(tmp_path, "train", "r0"), RunSummary(state) if state else RunSummary(exit_code=0))
    ok, failed, dirs, ended = upstream_status(row, env)
    assert (ok, failed, dirs, ended) == ([], [], [], False)


def test_upstream_status_without_upstream(env):
    assert upstream_status(as_row({}), env) == ([], [], [], True)


def test_upstream_env(tmp_path, env):
    write_summary(result_dir(tmp_path, "train", "r0"), RunSummary("COMPLETED"))
    write_summary(result_dir(tmp_path, "train", "r1"), RunSummary("FAILED"))
    write_summary(result_dir(tmp_path, "train", "r2"), RunSummary("COMPLETED"))
    e = dict(env)
    upstream_env(ROW, e)
    assert e["FORGE_UPSTREAM_RUNS_OK"] == "0,2"
    assert e["FORGE_UPSTREAM_RUNS_FAILED"] == "1"
    assert e["FORGE_UPSTREAM_RESULT_DIRS"].split(os.pathsep) == [
        result_dir(tmp_path, "train", "r0"), result_dir(tmp_path, "train", "r2"),
    ]
    e2 = dict(env)
    upstream_env(as_row({}), e2)
    assert e2 == env


def test_wait_for_upstream_returns_when_all_ended(tmp_path, env):
    row = as_row({"upstream": [{"stage": "train", "runs": [[0, "r0"], [1, "r1"]], "checkpoint_dir": None}]})
    write_summary(result_dir(tmp_path, "train", "r0"), RunSummary("COMPLETED"))
    write_summary(result_dir(tmp_path, "train", "r1"), RunSummary("TIMEOUT"))
    assert wait_for_upstream(row, env, poll=0.01) == ([0], [1])


# -- choose_input --------------------------------------------------------------------------------


def per_run_row(inputs, run_id="r5", index=5, checkpoint_dir=None):
    return as_row({"upstream": [{"stage": "train", "runs": [[index, run_id]], "checkpoint_dir": checkpoint_dir}],
                   "inputs": inputs})


def make_ckpts(directory, *names):
    os.makedirs(directory, exist_ok=True)
    for n in names:
        with open(os.path.join(directory, n), "w") as f:
            f.write("x")


def test_choose_input_latest(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d, "step_10.pt", "step_200.pt", "step_30.pt")
    assert choose_input(per_run_row({"checkpoint": "latest"}), env) == f"{d}/step_200.pt"
    # the default policy is latest
    assert choose_input(per_run_row({"arg": "--ckpt"}), env) == f"{d}/step_200.pt"


def test_choose_input_latest_follows_the_state_file(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d, "step_10.pt", "step_200.pt")
    with open(os.path.join(d, STATE_FILE), "w") as f:
        json.dump({"latest": "step_10.pt", "step": 10}, f)
    assert choose_input(per_run_row({"checkpoint": "latest"}), env) == f"{d}/step_10.pt"


def test_choose_input_latest_none_saved(env):
    assert choose_input(per_run_row({"checkpoint": "latest"}), env) is None


def test_choose_input_uses_the_upstream_checkpoint_template(tmp_path, env):
    tmpl = str(tmp_path / "ck" / "{run_id}")
    make_ckpts(str(tmp_path / "ck" / "r5"), "ckpt_3.pt")
    assert choose_input(per_run_row({"checkpoint": "latest"}, checkpoint_dir=tmpl), env) == \
        f"{tmp_path}/ck/r5/ckpt_3.pt"


@pytest.mark.parametrize(
    "row",
    [
        {"upstream": [{"stage": "t", "runs": [[0, "a"]]}]},  # no inputs
        {"upstream": [{"stage": "t", "runs": [[0, "a"], [1, "b"]]}], "inputs": {"checkpoint": "latest"}},
        {"upstream": [{"stage": "t", "runs": [[0, "a"]]}, {"stage": "u", "runs": [[0, "b"]]}],
         "inputs": {"checkpoint": "latest"}},
        {"inputs": {"checkpoint": "latest"}},
    ],
)
def test_choose_input_only_for_per_run_steps(env, row):
    assert choose_input(as_row(row), env) is None


def test_choose_input_explicit(tmp_path, env):
    row = per_run_row({"checkpoint": "explicit", "path": "{checkpoint_dir}/final/{run_id}.pt"})
    assert choose_input(row, env) == f"{ckpt_dir(tmp_path, 'train', 'r5')}/final/r5.pt"
    row = per_run_row({"checkpoint": "explicit", "path": "/models/{run_id}"}, run_id="sgd-1234")
    assert choose_input(row, env) == "/models/sgd-1234"


@pytest.mark.parametrize(
    "mode,expected",
    [("min", "step_200.pt"), ("max", "step_300.pt")],
)
def test_choose_input_best_json_object(tmp_path, env, mode, expected):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d, "step_100.pt", "step_200.pt", "step_300.pt")
    with open(os.path.join(d, "metrics.json"), "w") as f:
        json.dump({"step_100.pt": {"val_loss": 0.5, "acc": 0.7},
                   "step_200.pt": {"val_loss": 0.2, "acc": 0.8},
                   "step_300.pt": {"val_loss": 0.3, "acc": 0.9}}, f)
    metric = "val_loss" if mode == "min" else "acc"
    row = per_run_row({"checkpoint": "best", "metric": metric, "mode": mode})
    assert choose_input(row, env) == os.path.join(d, expected)


def test_choose_input_best_json_object_of_numbers_and_default_mode(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    with open(os.path.join(d, "scores.json"), "w") as f:
        json.dump({"a.pt": 3, "b.pt": 1.5, "/abs/c.pt": 2}, f)
    row = per_run_row({"checkpoint": "best", "metric": "loss", "metric_file": "scores.json"})
    assert choose_input(row, env) == os.path.join(d, "b.pt")
    row = per_run_row({"checkpoint": "best", "metric": "loss", "metric_file": "scores.json", "mode": "max"})
    assert choose_input(row, env) == os.path.join(d, "a.pt")
    with open(os.path.join(d, "scores.json"), "w") as f:
        json.dump({"a.pt": 3, "/abs/c.pt": 9}, f)
    assert choose_input(row, env) == "/abs/c.pt"  # absolute names are kept


@pytest.mark.parametrize("mode,expected", [("min", "ckpt_2"), ("max", "ckpt_1")])
def test_choose_input_best_json_lines(tmp_path, env, mode, expected):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    lines = [
        {"checkpoint": "ckpt_1", "val_loss": 0.9, "step": 1},
        {"checkpoint": "ckpt_2", "val_loss": 0.1, "step": 2},
        {"checkpoint": "ckpt_3", "val_loss": 0.4, "step": 3},
    ]
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write("\n".join(json.dumps(x) for x in lines) + "\n\n")
    row = per_run_row({"checkpoint": "best", "metric": "val_loss", "metric_file": "metrics.jsonl", "mode": mode})
    assert choose_input(row, env) == os.path.join(d, expected)


def test_choose_input_best_single_json_line(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        f.write(json.dumps({"checkpoint": "ckpt_7.pt", "val_loss": 0.25}) + "\n")
    row = per_run_row({"checkpoint": "best", "metric": "val_loss"})
    assert choose_input(row, env) == os.path.join(d, "ckpt_7.pt")


def test_choose_input_best_single_json_line_numeric_checkpoint(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        f.write(json.dumps({"checkpoint": "1200", "val_loss": 0.25}) + "\n")
    row = per_run_row({"checkpoint": "best", "metric": "val_loss"})
    assert choose_input(row, env) == os.path.join(d, "1200")


def test_choose_input_best_missing_metric_file(tmp_path, env):
    row = per_run_row({"checkpoint": "best", "metric": "val_loss"})
    with pytest.raises(CheckpointError, match="metrics.json"):
        choose_input(row, env)


def test_choose_input_best_metric_missing_in_json_object(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        json.dump({"a.pt": {"acc": 1.0}}, f)
    with pytest.raises(CheckpointError, match="val_loss"):
        choose_input(per_run_row({"checkpoint": "best", "metric": "val_loss"}), env)


def test_choose_input_best_empty_object(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        f.write("{}")
    with pytest.raises(CheckpointError, match="lists no checkpoint"):
        choose_input(per_run_row({"checkpoint": "best", "metric": "val_loss"}), env)


def test_choose_input_best_metric_missing_in_json_lines(tmp_path, env):
    d = ckpt_dir(tmp_path, "train", "r5")
    make_ckpts(d)
    with open(os.path.join(d, "metrics.json"), "w") as f:
        f.write('{"checkpoint": "a.pt", "val_loss": 0.5}\n{"checkpoint": "b.pt", "acc": 0.1}\n')
    with pytest.raises(CheckpointError, match="val_loss"):
        choose_input(per_run_row({"checkpoint": "best", "metric": "val_loss"}), env)


# -- artifacts -------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path):
    w = tmp_path / "work"
    for rel in ("out/a.csv", "out/sub/b.csv", "out/sub/deep/c.csv", "out/img.png", "out/partial.csv.tmp",
                "out/x.tmp", "top.csv", "out/sub/d.txt"):
        p = w / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    (w / "out" / "dir.csv").mkdir()  # a directory matching a glob is not a file
    return w


def test_matches_recursive_globs(workdir):
    assert matches(["**/*.csv"], str(workdir)) == ["out/a.csv", "out/sub/b.csv", "out/sub/deep/c.csv", "top.csv"]
    assert matches(["out/**/*.csv"], str(workdir)) == ["out/a.csv", "out/sub/b.csv", "out/sub/deep/c.csv"]
    assert matches(["out/*.csv"], str(workdir)) == ["out/a.csv"]


def test_matches_dedups_sorts_and_skips_tmp_and_dirs(workdir):
    found = matches(["out/*", "out/**/*", "*.csv", "out/a.csv"], str(workdir))
    assert found == sorted(set(found))
    assert "out/a.csv" in found and "top.csv" in found and "out/img.png" in found
    assert not any(".tmp" in f for f in found)
    assert "out/dir.csv" not in found
    assert matches(["nothing/*"], str(workdir)) == []


def test_matches_absolute_globs(tmp_path, workdir):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "e.log").write_text("e")
    (other / "e.log.tmp").write_text("e")
    assert matches([str(other / "*.log*")], str(workdir)) == [str(other / "e.log")]
    # an absolute glob under the workdir gives relative names
    assert matches([str(workdir / "out" / "*.png")], str(workdir)) == ["out/img.png"]


def test_collect_copies_keeping_relative_paths(tmp_path, workdir):
    res = tmp_path / "res"
    copied = collect(["**/*.csv", "out/*.tmp"], str(workdir), str(res))
    assert copied == ["out/a.csv", "out/sub/b.csv", "out/sub/deep/c.csv", "top.csv"]
    for rel in copied:
        assert (res / "artifacts" / rel).read_text() == rel
    assert not (res / "artifacts" / "out" / "x.tmp").exists()


def test_collect_absolute(tmp_path, workdir):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "e.log").write_text("elog")
    res = tmp_path / "res"
    copied = collect([str(other / "*.log")], str(workdir), str(res))
    name = str(other / "e.log").lstrip("/")
    assert copied == [name]
    assert (res / "artifacts" / name).read_text() == "elog"


def test_collect_to_memory_url(workdir):
    import fsspec

    url = f"memory://forge-art-{uuid.uuid4().hex}/res"
    copied = collect(["out/sub/**/*.csv"], str(workdir), url)
    assert copied == ["out/sub/b.csv", "out/sub/deep/c.csv"]
    fs, root = fsspec.core.url_to_fs(url)
    assert fs.cat_file(f"{root}/artifacts/out/sub/deep/c.csv") == b"out/sub/deep/c.csv"


def test_globs_from_env():
    assert globs_from_env(" a/*.csv ; **/*.png;;") == ["a/*.csv", "**/*.png"]
    assert globs_from_env("") == []


def test_choose_input_best_and_latest_on_an_object_store_url():
    """A pipeline whose checkpoint dirs are URLs (s3://...): the eval step gets a URL to open."""
    import fsspec

    state = f"memory://forge-best-{uuid.uuid4().hex}/state"
    env = {"FORGE_STATE_DIR": state, "FORGE_APP_ID": "7", "FORGE_STAGE": "eval"}
    d = contract.checkpoint_dir({**env, "FORGE_STAGE": "train"}, "r5")
    assert d == f"{state}/checkpoints/7/train/r5"
    fs, root = fsspec.core.url_to_fs(d)
    for name in ("step_100.pt", "step_200.pt", "step_300.pt"):
        fs.pipe_file(f"{root}/{name}", b"x")
    fs.pipe_file(f"{root}/metrics.json", json.dumps({"step_100.pt": 0.5, "step_200.pt": 0.2, "step_300.pt": 0.3}).encode())
    assert choose_input(per_run_row({"checkpoint": "best", "metric": "val_loss"}), env) == f"{d}/step_200.pt"
    assert choose_input(per_run_row({"checkpoint": "latest"}), env) == f"{d}/step_300.pt"
    fs.rm_file(f"{root}/metrics.json")
    with pytest.raises(CheckpointError, match=r"best needs memory://.*/metrics\.json, which does not exist"):
        choose_input(per_run_row({"checkpoint": "best", "metric": "val_loss"}), env)


def test_collect_gives_up_on_the_rest_once_the_store_does_not_answer(workdir, monkeypatch, capsys):
    from torchx_forge.core.storage import StoreUnreachableError
    from torchx_forge.node import artifacts

    tried = []

    def down(src, dst):
        tried.append(src)
        raise StoreUnreachableError(dst, "EndpointConnectionError: no")

    monkeypatch.setattr(artifacts, "put_file", down)
    assert collect(["out/**/*.csv"], str(workdir), "s3://bucket/res") == []
    assert len(tried) == 1  # each would wait FORGE_STORE_WAIT again
    assert "cannot collect 3 artifact(s)" in capsys.readouterr().err


def test_upstream_result_dirs_split_right_when_they_are_urls(monkeypatch):
    from torchx_forge import runtime
    from torchx_forge.node.handoff import split_result_dirs

    assert split_result_dirs("/a/r0:/a/r1") == ["/a/r0", "/a/r1"]
    assert split_result_dirs("s3://b/res/7/train/r0:s3://b/res/7/train/r1") == ["s3://b/res/7/train/r0", "s3://b/res/7/train/r1"]
    assert split_result_dirs("") == []
    monkeypatch.setenv("FORGE_UPSTREAM_RESULT_DIRS", "s3://b/x:gs://c/y")
    assert runtime.upstream_result_dirs() == ["s3://b/x", "gs://c/y"]
