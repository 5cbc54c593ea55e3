"""Today's code reads the state dirs acc0daf wrote (format 1, tests/fixtures/state-format1), and
writes back the same layout plus ``format``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from conftest import REPO
from torchx_forge.core import layout, runrow, runtable
from torchx_forge.core.states import FileState, Outcome
from torchx_forge.node.checkpoint import STATE_FILE, CheckpointState, latest_checkpoint
from torchx_forge.node.handoff import choose_input, upstream_status
from torchx_forge.node.summary import SUMMARY, RunSummary, read_summary
from torchx_forge.slurm.limits import CACHE, ClusterLimits
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.records import AppRecord, JobRecord, Records
from torchx_forge.state.store import Store
from torchx_forge.state.tables import read_table
from torchx_forge.state.taskfile import TaskFile, TaskState

FIXTURES = REPO / "tests" / "fixtures" / "state-format1"
#: where each state dir was when it was written
ORIGINS = {"demo-acc0daf": "/root/.torchx_forge", "local-acc0daf": "/tmp/forge-format1/local"}


def state_dir(name: str, tmp_path: Path) -> Path:
    """A copy of fixture ``name`` whose files name the copy's path where they named the original's."""
    copy = tmp_path / name
    shutil.copytree(FIXTURES / name, copy)
    for path in copy.rglob("*.json"):
        path.chmod(0o600)
        path.write_text(path.read_text().replace(ORIGINS[name], str(copy)))
    return copy


def json_files(name: str) -> Iterator[Tuple[Path, Any]]:
    for path in sorted((FIXTURES / name).rglob("*.json")):
        yield path, json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(ORIGINS))
def test_the_fixtures_are_format_1(name: str):
    found = list(json_files(name))
    assert found
    for path, obj in found:
        assert not isinstance(obj, dict) or obj.get("format") in (None, "space"), path


def without_format(obj: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "format"}


# -- demo-acc0daf: a 9-run sweep on the real cluster -------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return state_dir("demo-acc0daf", tmp_path)


def test_demo_record_tasks_and_limits(demo: Path):
    records = Records(Store(str(demo)))
    rec = records.load("2")
    assert rec is not None and rec.name == "demo" and rec.format == AppRecord.FORMAT
    [job] = rec.jobs
    assert (job.kind, job.size, job.role, job.signal, job.max_retries) == ("array", 9, "demo", "USR1@90", 0)
    assert [k for k, *_ in rec.tasks()] == [f"2_{i}" for i in range(9)]
    assert rec.log_path("demo", 4, "out") == f"{demo}/logs/demo-2_4-demo-4.out"
    assert rec.meta.code is not None and rec.meta.code.commit.startswith("acc0daf") and not rec.meta.code.dirty
    assert rec.tables == [f"{demo}/tables/19259720b1fb55d1f400c1d0413b5016be0dd026df723cb3ab6ddb6390fe45b6.json"]
    assert rec.final is not None and len(rec.final["tasks"]) == 9
    reports = records.task_reports("2")
    assert sorted(reports) == [f"demo.{i}" for i in range(9)]
    assert {(r.state, r.outcome, r.exit_code, r.attempts) for r in reports.values()} == {
        (FileState.COMPLETED, Outcome.COMPLETED, 0, 1)}
    assert reports["demo.4"].host == "n2" and reports["demo.4"].history[0].job_key == "2_4"
    limits = ClusterLimits.cached(Store(str(demo)))
    assert limits is not None and (limits.max_array_size, limits.slurm_version) == (1001, "22.05.8")
    assert limits.max_submit("cap100") == 100


def test_demo_table_rows_match_the_summaries_the_runs_wrote(demo: Path):
    rec = Records(Store(str(demo))).load("2")
    assert rec is not None
    table = read_table(rec.tables[0])
    assert runtable.is_space(table) and runtable.run_count(table) == 9
    for k in range(9):
        row = runtable.find_run(table, "demo", k)
        assert row.argv[:3] == ("python3", "-c", "import sys; print('args', sys.argv[1:])") and row.workdir == "/work/main"
        summary = read_summary(f"{demo}/results/2/{row.run_id}")
        assert summary is not None and summary.state == "COMPLETED" and summary.exit_code == 0
        assert (summary.index, summary.case, summary.replica, summary.job) == (row.index, row.case, k, f"2_{k}")
        assert summary.params == dict(row.params)


# -- local-acc0daf: a pipeline with retries, waves, an intent, written without Slurm ------------------


@pytest.fixture
def local(tmp_path: Path) -> Path:
    return state_dir("local-acc0daf", tmp_path)


def test_local_record_with_retries_and_waves(local: Path):
    records = Records(Store(str(local)))
    rec = records.load("101")
    assert rec is not None
    assert [(j.job_id, j.kind, j.linked) for j in rec.jobs] == [
        ("101", "array", False), ("104", "array", False), ("107", "wave", False), ("wave1.2", "het", False),
        ("108", "array", True), ("110", "het", True)]
    first, retry = rec.jobs[0], rec.jobs[4]
    assert first.companion == "106" and first.policy().max_retries == 1 and first.policy().warning is not None
    assert (retry.retry_of, retry.tasks, retry.extra_retries) == ("101", [1], 1)
    assert rec.jobs[5].replaces == "wave1.2" and rec.waves == 2 and rec.unsubmitted_waves() == []
    assert rec.stages() == [("train", ["train"]), ("eval", ["eval"]), ("compare", ["compare"])]
    assert rec.all_keys()[("train", 1)] == ["101_1", "108_1"]  # the retry resubmits array task 1
    assert records.load("200") is not None and records.cancelled("200") and not records.cancelled("101")


def test_local_task_files_of_a_warned_requeued_run_and_of_one_out_of_retries(local: Path):
    reports = Records(Store(str(local))).task_reports("101")
    warned = reports["train.0"]
    assert (warned.state, warned.attempts, warned.exit_code) == (FileState.COMPLETED, 2, 0)
    assert [(h.attempt, h.outcome, h.warned_by) for h in warned.history] == [
        (0, Outcome.INTERRUPTED, "USR1"), (1, Outcome.COMPLETED, "")]
    assert warned.resumed_from.endswith("/step_1.json")
    spent = reports["train.1"]
    assert (spent.state, spent.attempts) == (FileState.INTERRUPTED, 2)
    assert spent.note == "retries exhausted: 2 attempt(s), max_retries=1"
    assert {reports[f"eval.{i}"].state for i in (0, 1)} == {FileState.COMPLETED}
    f = TaskFile(str(local), "101", "train", 0).load()
    assert f.attempt_for("101_0", "1") == (1, "101_0") and f.attempt_for("108_0", "0") == (2, "101_0")
    assert f.last.saved is False and f.history[0].saved is True and f.history[0].stopped_by is None


@pytest.mark.parametrize("task", ["train.0", "train.1", "eval.0"])
def test_a_format_1_task_file_written_again_keeps_its_layout(local: Path, task: str):
    path = local / layout.task_files("101") / f"{task}.json"
    before = json.loads(path.read_text())
    role, replica = task.split(".")
    f = TaskFile(str(local), "101", role, int(replica)).load()
    f.note("a note")
    after = json.loads(path.read_text())
    assert after["format"] == TaskState.FORMAT == 1
    expected = {**before, "note": "a note", "history": [*before["history"][:-1], {**before["history"][-1], "note": "a note"}]}
    assert without_format({**after, "time": 0}) == {**expected, "time": 0}


def test_local_tables_both_forms_with_pipeline_links(local: Path):
    tables = {t.experiment: t for t in (read_table(str(p)) for p in sorted((local / "tables").iterdir()))}
    assert sorted(tables) == ["compare", "eval", "lrs", "train"]
    sweep = tables["lrs"]
    assert runtable.is_space(sweep) and runtable.run_count(sweep) == 3
    assert runtable.find_run(sweep, "lrs", 2).artifacts == ("ckpt/*.pt",)
    assert runtable.find_run(sweep, "lrs", 2).argv == ("python3", "train.py", "--epochs", "2", "--lr", "0.001")
    train = runtable.find_run(tables["train"], "train", 1)
    assert (train.stage, train.artifacts, json.loads(train.params_json)) == ("train", ("*.log",), {"run.args.lr": 0.01})
    ev = runtable.find_run(tables["eval"], "eval", 0)
    assert ev.inputs == runrow.Inputs("best", metric="val_loss", mode="min", arg="--ckpt")
    assert ev.upstream == (runrow.Upstream("train", ((0, "run-098d99f0"),)),)
    compare = runtable.find_run(tables["compare"], "compare", 0)
    assert compare.upstream[0].runs == ((0, "run-098d99f0"), (1, "run-1587c4e9"))


@pytest.mark.parametrize("name", sorted(ORIGINS))
def test_format_1_tables_written_again_are_the_same_but_their_format(name: str):
    for path in sorted((FIXTURES / name / "tables").iterdir()):
        before = json.loads(path.read_text())
        after = runtable.decode(path.read_bytes(), str(path)).to_json()
        assert after["format"] == runtable.RunTable.FORMAT == 2
        assert without_format(after) == without_format(before), path


def test_local_handoff_reads_the_upstream_summaries_and_checkpoints(local: Path):
    table = read_table(str(next(p for p in (local / "tables").iterdir() if read_table(str(p)).experiment == "eval")))
    env = {"FORGE_STATE_DIR": str(local), "FORGE_APP_ID": "101", "FORGE_STAGE": "eval"}
    row = runtable.find_run(table, "eval", 0)
    ok, failed, dirs, ended = upstream_status(row, env)
    assert (ok, failed, ended) == ([0], [], True) and dirs == [f"{local}/results/101/train/run-098d99f0"]
    assert choose_input(row, env) == f"{local}/checkpoints/101/train/run-098d99f0/step_2.json"  # the lowest val_loss
    assert upstream_status(runtable.find_run(table, "eval", 1), env)[3] is False  # its train run was left interrupted
    summary = read_summary(f"{local}/results/101/train/run-098d99f0")
    assert summary == RunSummary("COMPLETED", 0, 2, "run-098d99f0", 0, "", "train", "train", 0, {"run.args.lr": 0.1},
                                 "101_0", "101", "", ["train.log"])
    ckpt = local / "checkpoints" / "101" / "train" / "run-098d99f0"
    assert latest_checkpoint(str(ckpt)) == f"{ckpt}/step_2.json"


def test_local_intent_and_added_jobs(local: Path):
    intents = Intents(Store(str(local)))
    [intent] = intents.pending()
    assert intent == intents.load("20261205-091500-5e6f7a8b")
    assert (intent.jobs, intent.guard, intent.host, intent.pid, intent.app_id) == (["111", "112"], "113", "login1", 4242, "")


# -- every kind, read and written again: the same but its format ---------------------------------------


def _readers(root: Path) -> Iterator[Tuple[Path, Any]]:
    """(file, what today's code writes back after reading it) for every versioned file in ``root``."""
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        obj = json.loads(path.read_text())
        if rel.endswith(layout.RECORD):
            yield path, AppRecord.from_json(obj, str(path)).to_json()
        elif "/jobs/" in rel:
            yield path, JobRecord.from_file(obj, str(path)).to_file()
        elif "/tasks/" in rel:
            yield path, TaskState.from_json(obj, str(path)).to_json()
        elif rel.startswith("intents/"):
            intent = Intent.from_json(obj, str(path))
            assert intent is not None and not intent.direct  # format 1: a held submission
            out = intent.to_json()
            assert out.pop("direct") is False and out.pop("record") == {} and out["format"] == Intent.FORMAT == 2
            yield path, {**out, "format": 1}  # format 2 only added those two fields
        elif rel.endswith(SUMMARY):
            summary = RunSummary.from_json(obj, str(path))
            assert summary is not None
            yield path, summary.to_json()
        elif rel.endswith(STATE_FILE):
            yield path, CheckpointState.from_json(obj, str(path)).to_json()
        elif rel == CACHE:
            out = ClusterLimits.from_json(obj, str(path)).to_json()
            assert out.pop("submit_time") == 0 and out["format"] == ClusterLimits.FORMAT == 2
            yield path, {**out, "format": 1}  # format 2 only added submit_time (0: not read)


@pytest.mark.parametrize("name", sorted(ORIGINS))
def test_every_kind_read_and_written_again_is_the_same_but_its_format(name: str):
    seen = set()
    for path, written in _readers(FIXTURES / name):
        assert written.pop("format") == 1, path
        assert written == json.loads(path.read_text()), path
        seen.add(path.parent.name if path.parent.name in ("tasks", "jobs", "intents") else path.name)
    assert {"record.json", "tasks"} <= seen
