"""`torchx forge results` (torchx_forge.results, and the command) on a handmade state dir: records, run tables and result dirs built in tmp (no Slurm)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from torchx_forge import results as rs
from torchx_forge.errors import ForgeError
from torchx_forge.node.summary import RunSummary
from torchx_forge.slurm.merge import TaskView
from torchx_forge.slurm.report import format_table
from torchx_forge.state.records import AppMeta, AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store
from unit.forge_cli import run_forge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 2 cases x lrs; run 3 wrote nothing, run 2 wrote metrics.csv (several epochs), the rest metrics.json
RUNS = [
    ("adam", {"run.args.opt": "adam", "run.args.lr": 0.1}),
    ("adam", {"run.args.opt": "adam", "run.args.lr": 0.001}),
    ("sgd", {"run.args.opt": "sgd", "run.args.lr": 0.1}),
    ("sgd", {"run.args.opt": "sgd", "run.args.lr": 0.0001}),
]


def put_table(store: Store, name: str, roles: Dict[str, List[int]], runs=RUNS, stage: str = "") -> str:
    rows = []
    for i, (case, params) in enumerate(runs):
        row = {"index": i, "run_id": f"{case}-{i:08x}", "case": case, "params": [[k, v] for k, v in params.items()],
               "argv": ["train"], "env": {}, "workdir": "/w"}
        if stage:
            row["stage"] = stage
        rows.append(row)
    table = {"experiment": name, "source": "exp.yaml", "runs": rows, "roles": roles}
    return store.put_content_addressed("tables", json.dumps(table).encode())[1]


def sweep_role(name: str, n: int, table: str, stage: str = "") -> RoleRecord:
    args = ["-m", "torchx_forge.node.task", "--table", table, "--role", name, "--replica", "${replica_id}"]
    return RoleRecord(name, n, entrypoint="python", args=args + (["--stage", stage] if stage else []),
                      env={"FORGE_STAGE": stage} if stage else {})


def save(store: Store, rec: AppRecord) -> AppRecord:
    Records(store).save(rec)
    return rec


def sweep_app(store: Store, app_id: str = "100") -> AppRecord:
    table = put_table(store, "lrs", {"lrs": [0, 1, 2, 3]})
    return save(store, AppRecord(app_id, "lrs", [JobRecord(app_id, "array", role="lrs", size=4)],
                                 [sweep_role("lrs", 4, table)], log_dir="/logs", meta=AppMeta([table])))


def result_dir(state: Path, app_id: str, run_id: str, stage: str = "") -> Path:
    d = state / "results" / app_id / (f"{stage}/" if stage else "") / run_id
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_metrics(state: Path, app_id: str = "100", stage: str = "") -> None:
    result_dir(state, app_id, "adam-00000000", stage).joinpath("metrics.json").write_text('{"val_loss": 0.31, "acc": 0.9}')
    result_dir(state, app_id, "adam-00000001", stage).joinpath("metrics.json").write_text('{"val_loss": 0.52}')
    result_dir(state, app_id, "sgd-00000002", stage).joinpath("metrics.csv").write_text(
        "epoch,val_loss,acc\n0,0.9,0.5\n1,0.45,0.8\n\n")


def views(*states: str, role: str = "lrs") -> List[TaskView]:
    return [TaskView(role=role, replica=k, key=f"100_{k}", slurm_state=s, exit_code=0 if s == "COMPLETED" else 1)
            for k, s in enumerate(states)]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state: Path) -> Store:
    return Store(str(state))


def done(store: Store, state: Path) -> rs.Results:
    rec = sweep_app(store)
    write_metrics(state)
    return rs.collect(rec, str(state), views("COMPLETED", "COMPLETED", "COMPLETED", "FAILED"))


# -- rows and metrics ---------------------------------------------------------------------------


def test_one_row_per_run_with_params_state_and_every_metric_sorted(store: Store, state: Path):
    res = done(store, state)
    assert res.params() == ["run.args.opt", "run.args.lr"]
    assert res.metrics() == ["acc", "epoch", "val_loss"]
    rows = rs.table_rows(res, rs.select_metrics(res, None))
    assert rows[0] == ["RUN", "RUN ID", "CASE", "run.args.opt", "run.args.lr", "STATE", "ATTEMPTS", "EXIT",
                       "acc", "epoch", "val_loss"]
    assert rows[1] == ["0", "adam-00000000", "adam", "adam", "0.1", "COMPLETED", "1", "0", "0.9", "-", "0.31"]
    assert rows[2][-3:] == ["-", "-", "0.52"]  # missing metrics are '-'
    assert rows[3][-3:] == ["0.8", "1", "0.45"]  # metrics.csv: its last row
    assert rows[4][5:] == ["FAILED", "1", "1", "-", "-", "-"]
    text = format_table(rows)
    assert "sgd-00000003" in text and len(text.splitlines()) == 5


def test_metrics_json_wins_over_metrics_csv(tmp_path: Path):
    (tmp_path / "metrics.json").write_text('{"val_loss": 0.1, "eval": {"acc": 0.7}}')
    (tmp_path / "metrics.csv").write_text("val_loss\n9\n")
    assert rs.read_metrics(str(tmp_path)) == ({"val_loss": 0.1, "eval.acc": 0.7}, "")
    (tmp_path / "metrics.json").unlink()
    assert rs.read_metrics(str(tmp_path)) == ({"val_loss": 9}, "")


def test_metrics_csv_last_row_typed_and_blank_cells_skipped():
    text = "step,loss,tag,lr\n1,2.5,a,0.1\n2,1.25,best,\n"
    assert rs.parse_metrics_csv(text) == {"step": 2, "loss": 1.25, "tag": "best"}
    assert rs.parse_metrics_csv("loss\n") == {}


def test_an_unreadable_metrics_file_is_a_note_not_a_crash(store: Store, state: Path):
    rec = sweep_app(store)
    result_dir(state, "100", "adam-00000000").joinpath("metrics.json").write_text('{"val_loss": 0.3')  # half written
    res = rs.collect(rec, str(state), views("RUNNING", "PENDING", "PENDING", "PENDING"))
    assert res.runs[0].metrics == {} and "metrics.json: unreadable" in res.notes[0]
    assert [r.state for r in res.runs] == ["RUNNING", "PENDING", "PENDING", "PENDING"]


def test_state_attempts_and_exit_fall_back_to_summary_json(store: Store, state: Path):
    rec = sweep_app(store)
    summary = {"state": "COMPLETED", "attempts": 2, "exit_code": 0}
    result_dir(state, "100", "adam-00000000").joinpath("summary.json").write_text(json.dumps(summary))
    res = rs.collect(rec, str(state), None)  # Slurm did not answer
    assert (res.runs[0].state, res.runs[0].attempts, res.runs[0].exit_code) == ("COMPLETED", 2, 0)
    assert (res.runs[1].state, res.runs[1].attempts, res.runs[1].exit_code) == ("UNKNOWN", None, None)
    unknown = [TaskView("lrs", 0, "100_0", "UNKNOWN")]
    assert rs.collect(rec, str(state), unknown).runs[0].state == "COMPLETED"


def test_a_pending_retry_shows_as_pending():
    v = TaskView("r", 0, "1_0", "FAILED", exit_code=1, attempts=1, retry_pending=True)
    assert rs.status_of(v, RunSummary("FAILED")) == ("PENDING", 1, 1)


def test_metric_picks_one_column_and_an_unknown_one_lists_those_found(store: Store, state: Path):
    res = done(store, state)
    assert rs.table_rows(res, rs.select_metrics(res, "val_loss"))[0][-2:] == ["EXIT", "val_loss"]
    with pytest.raises(ForgeError, match="no run reported metric 'loss'; metrics found: acc, epoch, val_loss"):
        rs.select_metrics(res, "loss")
    empty = rs.collect(sweep_app(store, "101"), str(state), None)
    assert rs.table_rows(empty, rs.select_metrics(empty, "loss"))[1][-1] == "-"  # nothing written yet: no error


def test_csv_and_json_files(store: Store, state: Path, tmp_path: Path):
    res = done(store, state)
    rows = rs.rows_of(res, rs.select_metrics(res, None))
    rs.write_csv(str(tmp_path / "r.csv"), rows)
    rs.write_json(str(tmp_path / "r.json"), rows)
    with open(tmp_path / "r.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["index", "run_id", "case", "run.args.opt", "run.args.lr", "state", "attempts", "exit_code",
                            "acc", "epoch", "val_loss", "result_dir"]
    assert got[1]["val_loss"] == "0.52" and got[1]["acc"] == "" and got[3]["state"] == "FAILED"
    assert got[0]["result_dir"] == str(state / "results" / "100" / "adam-00000000")
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data) == 4
    assert data[0] == {"index": 0, "run_id": "adam-00000000", "case": "adam", "run.args.opt": "adam", "run.args.lr": 0.1,
                       "state": "COMPLETED", "attempts": 1, "exit_code": 0, "acc": 0.9, "epoch": None,
                       "val_loss": 0.31, "result_dir": got[0]["result_dir"]}


def test_a_metric_named_like_a_column_is_exported_as_metric_dot_name():
    res = rs.Results("1", "a", "", [rs.RunResult(0, "r", "", [("run.args.x", 1)], "a", 0, "/d", metrics={"state": 5})])
    assert rs.rows_of(res, ["state"])[0]["metric.state"] == 5


# -- pipelines and plain apps -------------------------------------------------------------------


def pipeline_app(store: Store, app_id: str = "200") -> AppRecord:
    train = put_table(store, "train", {"train-0": [0, 1], "train-1": [2, 3]}, stage="train")
    evals = put_table(store, "eval", {"eval": [0, 1, 2, 3]}, stage="eval")
    roles = [sweep_role("train.train-0", 2, train, "train"), sweep_role("train.train-1", 2, train, "train"),
             sweep_role("eval", 4, evals, "eval"), RoleRecord("report", 1, entrypoint="sh", env={"FORGE_STAGE": "report"})]
    for r, key in zip(roles[:2], ["train-0", "train-1"]):
        r.args[r.args.index("--role") + 1] = key  # what the pipeline AppDef does to roles of multi-shape steps
    meta = AppMeta(sorted([train, evals]),
                   [("train", ["train.train-0", "train.train-1"]), ("eval", ["eval"]), ("report", ["report"])])
    return save(store, AppRecord(app_id, "pipe", [JobRecord(app_id, "array", role="eval", size=4)], roles,
                                 log_dir="/logs", meta=meta))


def test_pipeline_default_step_is_the_last_with_a_run_table(store: Store, state: Path):
    rec = pipeline_app(store)
    write_metrics(state, "200", stage="eval")
    res = rs.collect(rec, str(state), views("COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", role="eval"))
    assert res.stage == "eval" and res.title == "pipe (200), step eval"
    assert [r.metrics.get("val_loss") for r in res.runs] == [0.31, 0.52, 0.45, None]
    assert res.runs[0].result_dir == str(state / "results" / "200" / "eval" / "adam-00000000")
    assert [r.state for r in res.runs] == ["COMPLETED"] * 4


def test_pipeline_stage_picks_a_step_across_its_roles(store: Store, state: Path):
    rec = pipeline_app(store)
    tv = [TaskView("train.train-1", 1, "x", "TIMEOUT"), TaskView("train.train-0", 0, "y", "COMPLETED")]
    res = rs.collect(rec, str(state), tv, stage="train")
    assert [(r.index, r.role, r.replica, r.state) for r in res.runs] == [
        (0, "train.train-0", 0, "COMPLETED"), (1, "train.train-0", 1, "UNKNOWN"),
        (2, "train.train-1", 0, "UNKNOWN"), (3, "train.train-1", 1, "TIMEOUT")]
    report = rs.collect(rec, str(state), None, stage="report")  # a step without a table: its replicas
    assert [(r.run_id, r.result_dir) for r in report.runs] == [("200-report", str(state / "results/200/report/200-report"))]
    with pytest.raises(ForgeError, match="no step 'test'; its steps: train, eval, report"):
        rs.collect(rec, str(state), None, stage="test")


def test_stage_on_a_sweep_is_an_error(store: Store, state: Path):
    with pytest.raises(ForgeError, match="--stage is for pipelines"):
        rs.collect(sweep_app(store), str(state), None, stage="train")


def test_plain_appdef_rows_are_its_roles(store: Store, state: Path):
    rec = save(store, AppRecord("300", "ddp", [JobRecord("300", "het", components=[["trainer", 0], ["trainer", 1]])],
                                [RoleRecord("trainer", 2, entrypoint="torchrun")], log_dir="/logs"))
    result_dir(state, "300", "300-trainer").joinpath("metrics.json").write_text('{"loss": 1.5}')
    res = rs.collect(rec, str(state), [TaskView("trainer", 0, "300+0", "COMPLETED", exit_code=0),
                                      TaskView("trainer", 1, "300+1", "COMPLETED", exit_code=0)])
    rows = rs.table_rows(res, rs.select_metrics(res, None))
    assert rows == [["RUN", "RUN ID", "CASE", "STATE", "ATTEMPTS", "EXIT", "loss"],
                    ["0", "300-trainer", "-", "COMPLETED", "1", "0", "1.5"]]  # both replicas are one DDP run


# -- plot ---------------------------------------------------------------------------------------


def test_plot_writes_a_png_of_the_metric_per_case(store: Store, state: Path, tmp_path: Path):
    res = done(store, state)
    out = tmp_path / "plots" / "val_loss.png"
    assert rs.plot(res, "val_loss", "run.args.lr", str(out)) == 3
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_points_group_by_case_sorted_by_x_without_missing_values(store: Store, state: Path):
    res = done(store, state)
    assert rs.plot_points(res, "val_loss", "run.args.lr") == {"adam": [(0.001, 0.52), (0.1, 0.31)], "sgd": [(0.1, 0.45)]}
    assert rs.plot_points(res, "val_loss", "run.args.opt") == {"adam": [("adam", 0.31), ("adam", 0.52)], "sgd": [("sgd", 0.45)]}


def test_log_x_only_for_positive_values_over_more_than_two_decades():
    assert rs.log_x([0.1, 0.01, 0.0001])
    assert not rs.log_x([0.1, 0.01, 0.001])  # exactly two decades
    assert not rs.log_x([0.0, 0.1, 100.0])
    assert not rs.log_x(["a", "b"])


def test_plot_needs_exactly_one_metric_and_a_known_param(store: Store, state: Path):
    res = done(store, state)
    with pytest.raises(ForgeError, match="pick one with --metric: acc, epoch, val_loss"):
        rs.plot_metric(res, None)
    assert rs.plot_metric(res, "acc") == "acc"
    with pytest.raises(ForgeError, match="cannot plot 'loss'"):
        rs.plot_metric(res, "loss")
    with pytest.raises(ForgeError, match="nothing to plot"):
        rs.plot_metric(rs.collect(sweep_app(store, "101"), str(state), None), None)
    with pytest.raises(ForgeError, match=r"--x 'lr' is not a parameter of these runs; parameters: run.args.opt, run.args.lr"):
        rs.check_param(res, "lr")


def test_plot_without_matplotlib_says_what_to_install(store: Store, state: Path, tmp_path: Path, monkeypatch):
    res = done(store, state)
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ForgeError, match=r"pip install 'torchx-forge\[plot\]'"):
        rs.plot(res, "val_loss", "run.args.lr", str(tmp_path / "x.png"))


# -- the command --------------------------------------------------------------------------------


class FakeScheduler:
    def __init__(self, store: Store, task_views: Optional[List[TaskView]]) -> None:
        self.store, self.views = store, task_views

    def records(self) -> Records:
        return Records(self.store)

    def load(self, app_id: str):
        return self.records().load(app_id)

    def task_views(self, app_id: str) -> Optional[List[TaskView]]:
        return self.views

    def load_results(self, app_id: str, stage: Optional[str] = None):
        from torchx_forge.laptop import LaptopScheduler

        return LaptopScheduler.load_results(self, app_id, stage)  # type: ignore[arg-type]  # an app of this machine


def forge(monkeypatch, store: Store, task_views, *argv: str) -> int:
    import torchx_forge.laptop

    monkeypatch.setattr(torchx_forge.laptop, "create_scheduler", lambda *a, **k: FakeScheduler(store, task_views))
    return run_forge(*argv)


def test_cli_prints_the_table_and_writes_csv_json_and_png(monkeypatch, capsys, store: Store, state: Path, tmp_path: Path):
    sweep_app(store)
    write_metrics(state)
    out = {k: str(tmp_path / f"r.{k}") for k in ("csv", "json", "png")}
    code = forge(monkeypatch, store, views("COMPLETED", "COMPLETED", "COMPLETED", "FAILED"), "results",
                 "slurm_forge://torchx/100", "--metric", "val_loss", "--csv", out["csv"], "--json", out["json"],
                 "--plot", out["png"], "--x", "run.args.lr")
    text = capsys.readouterr().out
    assert code == 0
    assert text.splitlines()[0] == "lrs (100): 4 run(s)"
    assert "val_loss" in text.splitlines()[1] and "acc" not in text
    assert f"wrote {out['png']} (val_loss vs run.args.lr, 3 point(s))" in text
    assert len(json.loads(Path(out["json"]).read_text())) == 4
    assert Path(out["png"]).read_bytes().startswith(PNG_MAGIC)
    assert Path(out["csv"]).read_text().splitlines()[0].endswith("exit_code,val_loss,result_dir")


@pytest.mark.parametrize("argv, message", [
    (["slurm_forge://torchx/999"], "no record of app '999' in state dir"),
    (["slurm_forge://torchx/100", "--plot", "x.png", "--x", "lr", "--metric", "val_loss"],
     "--x 'lr' is not a parameter of these runs; parameters: run.args.opt, run.args.lr"),
    (["slurm_forge://torchx/100", "--plot", "x.png"], "--plot FILE.png and --x PARAM go together"),
    (["slurm_forge://torchx/100", "--plot", "x.png", "--x", "run.args.lr"], "pick one with --metric"),
    (["local_cwd://torchx/100"], "expected an app handle slurm_forge://SESSION/APP_ID"),
])
def test_cli_errors_are_one_line_and_exit_1(monkeypatch, capsys, store: Store, state: Path, argv: List[Any], message: str):
    sweep_app(store)
    write_metrics(state)
    assert forge(monkeypatch, store, None, "results", *argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not Path("x.png").exists()


def test_a_missing_run_table_is_a_clear_error(store: Store, state: Path):
    rec = sweep_app(store)
    table = Path(rec.tables[0])
    table.chmod(0o600)
    table.unlink()
    with pytest.raises(ForgeError, match="cannot read the run table .*removed from the state dir"):
        rs.collect(rec, str(state), None)


def test_a_store_that_does_not_answer_is_an_error_not_a_run_without_metrics(monkeypatch):
    from torchx_forge.core.storage import StoreUnreachableError

    def down(path):
        raise StoreUnreachableError(path, "EndpointConnectionError: no")

    monkeypatch.setattr(rs.metrics, "read_file", down)
    with pytest.raises(StoreUnreachableError, match=r"s3://b/results/1/r/metrics\.json: the store did not answer"):
        rs.read_metrics("s3://b/results/1/r")
