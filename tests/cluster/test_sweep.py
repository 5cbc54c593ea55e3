"""Sweeps as job arrays on the real local cluster (issue: sweeps become Slurm job arrays)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from torchx import specs
from torchx.runner import get_runner

from conftest import REPO, LabCluster, handle_of, queued_jobs_of, run_torchx, squeue_ids, wait_for
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

DEMO = REPO / "examples" / "demo.yaml"


def _record(state_dir: Path, handle: str):
    return Records(Store(str(state_dir))).load(handle.rsplit("/", 1)[1])


def _wait_done(handle: str, timeout: float = 120) -> str:
    last = {}

    def done() -> bool:
        out = run_torchx("status", handle).stdout
        m = re.search(r"State: (\w+)", out)
        last["s"] = m.group(1) if m else "?"
        last["out"] = out
        return last["s"] in ("SUCCEEDED", "FAILED", "CANCELLED")

    wait_for(done, timeout, f"{handle} to finish", interval=1)
    return last["out"]


def test_demo_file_is_one_array_of_nine_runs_each_with_its_own_args(state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(DEMO))
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    rec = _record(state_dir, handle)
    assert [j.kind for j in rec.jobs] == ["array"] and rec.jobs[0].size == 9
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert rec.meta.code is not None and rec.meta.code.commit == head  # the code version is recorded with the app
    out = _wait_done(handle)
    assert "State: SUCCEEDED" in out
    assert len(re.findall(r"demo\[\d\]:SUCCEEDED", out)) == 9
    expected = {
        0: ["--lr", "0.1", "--epochs", "2", "--opt", "adam"],
        2: ["--lr", "0.001", "--epochs", "2", "--opt", "adam"],
        4: ["--lr", "0.1", "--epochs", "2", "--opt", "sgd", "--momentum", "0.9"],
        7: ["--lr", "0.001", "--epochs", "2", "--opt", "sgd", "--momentum", "0.0"],
    }
    for k, args in expected.items():
        log = run_torchx("log", "--streams", "stdout", f"{handle}/demo/{k}").stdout
        assert log.strip() == f"demo/{k} args {args!r}", log
    # Slurm's own view: one array job with 9 tasks, logs named %A_%a
    assert (Path(rec.log_dir) / f"demo-{rec.app_id}_7-demo-7.out").exists()


def test_override_changes_every_run(state_dir: Path):
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(DEMO), "--set", "run.args.epochs=5")
    handle = handle_of(p)
    assert "State: SUCCEEDED" in _wait_done(handle)
    logs = run_torchx("log", "--streams", "stdout", handle).stdout.splitlines()
    assert len(logs) == 9 and all("'--epochs', '5'" in line for line in logs), logs


def test_each_resource_shape_is_its_own_array_under_one_app(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "shapes.yaml"
    exp.write_text(
        "name: shapes\n"
        "run: {command: [sh, -c, 'echo cpus=$SLURM_CPUS_PER_TASK run=$FORGE_RUN_INDEX id=$FORGE_RUN_ID']}\n"
        "sweep:\n  shared_axes: {cluster.cpus_per_task: [1, 2], run.env.X: [a, b]}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(exp)))
    rec = _record(state_dir, handle)
    assert [(j.kind, j.role, j.size) for j in rec.jobs] == [("array", "shapes-0", 2), ("array", "shapes-1", 2)]
    assert rec.app_id == rec.jobs[0].job_id != rec.jobs[1].job_id
    assert "State: SUCCEEDED" in _wait_done(handle)
    log = run_torchx("log", "--streams", "stdout", f"{handle}/shapes-1/1").stdout
    assert re.search(r"cpus=2 run=3 id=run-[0-9a-f]{8}", log), log


def test_split_arrays_keep_replica_ids_and_the_first_array_id_as_app_id(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "split.yaml"
    exp.write_text(
        "name: split\n"
        "run: {command: [sh, -c, 'echo app=$FORGE_APP_ID replica=$FORGE_REPLICA_ID run=$FORGE_RUN_INDEX']}\n"
        f"sweep: {{shared_axes: {{run.env.I: {list(range(25))}}}}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "max_array_size=10",
                                  "forge.sweep", "--config", str(exp)))
    rec = _record(state_dir, handle)
    assert [(j.offset, j.size) for j in rec.jobs] == [(0, 10), (10, 10), (20, 5)]
    assert "State: SUCCEEDED" in _wait_done(handle)
    log = run_torchx("log", "--streams", "stdout", f"{handle}/split/23").stdout
    assert log.strip() == f"split/23 app={rec.app_id} replica=23 run=23"


def test_a_2500_point_sweep_is_three_arrays(flood_cluster: LabCluster, state_dir: Path):
    # on the flood cluster: 2,500 queued tasks would hold back everyone's jobs
    axes = "run.env.I=" + json.dumps(list(range(2500)))
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.grid", "--name", "huge", "--axes", axes, "--", "true")
    handle = handle_of(p)
    rec = _record(state_dir, handle)
    try:
        assert [(j.kind, j.offset, j.size) for j in rec.jobs] == [("array", 0, 1001), ("array", 1001, 1001), ("array", 2002, 498)]
        queued = {i.split("_")[0] for i in squeue_ids()}
        assert {j.job_id for j in rec.jobs} <= queued
    finally:
        run_torchx("cancel", handle)
    wait_for(lambda: not ({j.job_id for j in rec.jobs} & {i.split("_")[0] for i in squeue_ids()}), 60, "the arrays to leave")


def test_throttle_and_single_run_cancel(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "sleepy.yaml"
    exp.write_text("name: sleepy\nrun: {command: [sleep, '300']}\nsweep: {shared_axes: {run.env.I: [0, 1, 2, 3]}}\n")
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", "array_parallelism=2",
                                  "forge.sweep", "--config", str(exp)))
    app_id = handle.rsplit("/", 1)[1]
    try:
        show = subprocess.run(["scontrol", "show", "job", app_id], capture_output=True, text=True).stdout
        assert "ArrayTaskThrottle=2" in show
        wait_for(lambda: "sleepy[1]:RUNNING" in run_torchx("status", handle).stdout, 180, "run 1 to start")
        c = run_torchx("forge", "cancel", f"{handle}/sleepy/1")
        assert c.returncode == 0, c.stderr
        assert f"{app_id}_1" in c.stdout

        def one_cancelled() -> bool:
            out = run_torchx("status", handle).stdout
            return "sleepy[1]:CANCELLED" in out and "sleepy[0]:RUNNING" in out

        wait_for(one_cancelled, 60, "only run 1 to be cancelled")
    finally:
        run_torchx("cancel", handle)


def test_thousand_point_sweep_one_sbatch_status_in_one_call_live_two_finished_logs_in_four(flood_cluster: LabCluster, state_dir: Path):
    # on the flood cluster: its 1,000 tasks take every CPU for minutes, ahead of other tests' jobs
    from torchx.cli.cmd_log import get_logs

    axes = "run.env.I=" + json.dumps(list(range(1000)))
    with get_runner() as runner:
        from torchx_forge_components.forge import grid  # the component function itself

        app = grid("sh", "-c", "echo task $FORGE_RUN_INDEX", axes=axes, name="thousand")
        sched = runner._scheduler("slurm_forge")
        handle = runner.run(app, scheduler="slurm_forge")
        # the app is one array: one sbatch, not held (no guard, no release); besides it, once per
        # 10 minutes, the cluster's limits (scontrol show config)
        kinds = [c[0] if c[0] != "scontrol" else f"scontrol {c[1]}" for c in sched.cli.calls]
        assert [k for k in kinds if k not in ("scontrol show", "sacctmgr")] == ["sbatch"], kinds
        assert "--hold" not in [c for c in sched.cli.calls if c[0] == "sbatch"][0]
        # status at once, every task queued or just started: squeue alone (one row for the pending ones)
        sched.cli.calls.clear()
        live = runner.status(handle)
        assert [c[0] for c in sched.cli.calls] == ["squeue"], sched.cli.calls
        assert live.state in (specs.AppState.PENDING, specs.AppState.RUNNING)
        assert sum(len(role.replicas) for role in live.roles) == 1000
    app_id = handle.rsplit("/", 1)[1]

    def sacct_rows() -> dict:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", app_id], capture_output=True, text=True).stdout
        return dict(line.split("|") for line in out.split())

    # nobody asks forge while it runs: Slurm's accounting is watched directly until every task has ended
    wait_for(lambda: list(sacct_rows().values()).count("COMPLETED") == 1000, 300, "sacct to show 1000 COMPLETED", 5)
    # a fresh process-like scheduler: status of the finished array in two Slurm calls (squeue lists
    # none of its tasks now: sacct says the rest)
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        status = runner.status(handle)
        assert [c[0] for c in sched.cli.calls] == ["squeue", "sacct"], sched.cli.calls
        assert status.state == specs.AppState.SUCCEEDED
        states = {rep.id: rep.state for role in status.roles for rep in role.replicas}
        slurm = sacct_rows()
        assert len(slurm) == 1000 and len(states) == 1000
        assert all(slurm[f"{app_id}_{k}"] == "COMPLETED" and states[k] == specs.AppState.SUCCEEDED for k in range(1000))
    # that answer was final: it is kept in the record, and the next status asks Slurm nothing
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        assert runner.status(handle).state == specs.AppState.SUCCEEDED
        assert sched.cli.calls == [], sched.cli.calls
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        out = _Collect()
        get_logs(out, handle, regex=None, runner=runner)
        assert len(sched.cli.calls) <= 4, sched.cli.calls
        assert len(out.lines) == 1000 and "task 999" in "".join(out.lines)


class _Collect:
    def __init__(self) -> None:
        self.lines = []

    def write(self, s: str) -> None:
        if s.strip():
            self.lines.append(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: x\nrun: {command: ['true']}\nbogus: 1\n", r"x.yaml:3: bogus: unknown key"),
        ("name: x\nrun: {command: ['true']}\nsweep:\n  shared_axes: {run.args.a: [1], run.args.a.b: [2]}\n", r"overlap"),
        ("name: x\nrun: {command: ['true']}\nsweep:\n  shared_axes:\n    run.args.a: []\n", r"x.yaml:5: sweep.shared_axes.run.args.a: expected a non-empty list"),
        ("name: x\nrun: {command: ['true']}\ncluster: {nodes: two}\n", r"x.yaml:3: cluster.nodes: expected a whole number >= 1, got str 'two'"),
        ("name: x\nrun: {command: ['true']}\nsweep: {max_runs: 0, shared_axes: {run.args.a: [1]}}\n", r"sweep.max_runs: expected a whole number >= 1, got 0"),
        ("name: x\nrun: {command: ['true'\n", r"x.yaml:\d+: YAML syntax error"),
        ("name: x\nrun: {command: ['true']}\nsweep: {shared_axes: {run.argz.a: [1]}}\n", r"'run.argz.a' is not a key a sweep can set"),
    ],
)
def test_invalid_experiment_files_give_one_clear_error_and_submit_nothing(state_dir: Path, tmp_path: Path, text: str, expected: str):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(f))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert re.search(expected, p.stderr), p.stderr
    assert queued_jobs_of(state_dir) == []
    v = run_torchx("forge", "validate", "--config", str(f))
    assert v.returncode == 1 and "Traceback" not in v.stderr and re.search(expected, v.stderr), v.stderr


def test_failing_sbatch_mid_submit_leaves_no_job_behind(state_dir: Path, tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nrun: {command: [sleep, '60']}\nsweep: {shared_axes: {cluster.partition: [debug, nosuchpart]}}\n")
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(f))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "invalid partition specified: nosuchpart" in p.stderr
    assert queued_jobs_of(state_dir) == [], "the first array was left in the queue"
    assert not (state_dir / "apps").exists() or not list((state_dir / "apps").iterdir())


def test_preview_json_lists_every_run(tmp_path: Path):
    p = run_torchx("forge", "preview", "--config", str(DEMO), "--json", "--set", "sweep.max_runs=4")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert rows[3] == {"index": 3, "id": rows[3]["id"], "case": "sgd",
                       "params": {"run.args.opt": "sgd", "run.args.lr": 0.1, "run.args.momentum": 0.0}}


def test_generators_and_random_search_run_the_runs_preview_shows(state_dir: Path, tmp_path: Path):
    exp = tmp_path / "rnd.yaml"
    exp.write_text(
        "name: rnd\n"
        "run: {command: [echo]}\n"
        "sweep:\n"
        "  shared_axes: {run.args.x: 'range(0, 3)'}\n"
        "  random: {samples: 4, seed: 7, params: {run.args.lr: 'tag(log, interval(1e-4, 1e-1))', run.args.o: [a, b]}}\n"
    )
    preview = run_torchx("forge", "preview", "--config", str(exp), "--json")
    rows = [json.loads(line) for line in preview.stdout.splitlines()]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.sweep", "--config", str(exp)))
    assert "State: SUCCEEDED" in _wait_done(handle)
    for r in (rows[0], rows[5], rows[11]):
        p = r["params"]
        log = run_torchx("log", "--streams", "stdout", f"{handle}/rnd/{r['index']}").stdout
        assert log.strip() == f"rnd/{r['index']} --x {p['run.args.x']} --lr {p['run.args.lr']} --o {p['run.args.o']}", log
    # the command line form gives the same runs, run ids included
    dry = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "forge.grid", "--name", "rnd", "--axes",
                     "x=range(0,3)", "--random", "lr=tag(log, interval(1e-4, 1e-1));o=[a,b]", "--samples", "4",
                     "--seed", "7", "--", "echo")
    assert dry.returncode == 0, dry.stderr
    assert re.findall(r"rnd/\d+\s+(run-[0-9a-f]{8})", dry.stdout) == [r["id"] for r in rows]
