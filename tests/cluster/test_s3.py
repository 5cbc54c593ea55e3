"""State on an object store, end to end: the real cluster with ``FORGE_STATE_DIR=s3://...`` on moto's
S3 API server (loopback, started by the ``s3_server`` fixture), logs on the cluster's file system.

Nothing here relies on the compute nodes seeing the submitter's temporary files (on this machine
they would): run tables, task state, scripts, checkpoints, summaries and metrics are read and
written only through the store. Local files in these tests (a ledger, a flag) are the test's own
way of watching or steering the program, not something forge needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import (
    REPO,
    S3_KEY_ID,
    S3_SECRET,
    SECOND_CLUSTER,
    S3Server,
    handle_of,
    ledger_lines,
    run_torchx,
    task_row,
    wait_end,
    wait_for,
    warn_batch,
)
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

TRAIN = str(REPO / "examples" / "train_steps.py")
#: a run of a sweep: reports where torchx_forge came from, writes metrics.json into its result dir (a URL)
METRICS = (
    "import json, os, sys, fsspec, torchx_forge; lr = float(sys.argv[sys.argv.index('--lr') + 1]); "
    "print('forge from', torchx_forge.__file__); print('result dir', os.environ['FORGE_RESULT_DIR']); "
    "f = fsspec.open(os.environ['FORGE_RESULT_DIR'] + '/metrics.json', 'w').open(); "
    "json.dump({'loss': round(1 + lr, 6)}, f); f.close()"
)


def forge(*args: str, cwd: Path, env: Dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return run_torchx(*args, cwd=cwd, env=env, timeout=timeout)


def app_id(handle: str) -> str:
    return handle.rsplit("/", 1)[1]


def objects(server: S3Server, url: str) -> List[str]:
    """Every object under ``url`` (s3://bucket/prefix), as URLs."""
    return sorted(f"s3://{p}" for p in server.fs().find(url.replace("s3://", "", 1)))


def s3_json(server: S3Server, url: str) -> dict:
    return json.loads(server.fs().cat_file(url.replace("s3://", "", 1)))


def sweep_file(directory: Path, name: str, command: List[str], lrs: List[float], extra: str = "") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(f"name: {name}\nrun:\n  command: {json.dumps(command)}\n  args: {{lr: 0.1}}\n"
                    f"sweep: {{shared_axes: {{run.args.lr: {json.dumps(lrs)}}}}}\n{extra}")
    return path


def test_a_sweep_with_its_state_on_s3_works_from_any_directory(s3_server: S3Server, s3_state: str, tmp_path: Path):
    submit_dir, elsewhere, logs = tmp_path / "submit", tmp_path / "elsewhere", tmp_path / "logs"
    submit_dir.mkdir()
    elsewhere.mkdir()
    exp = sweep_file(submit_dir, "s3sweep", [sys.executable, "-c", METRICS], [0.1, 0.2, 0.3])
    p = forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={logs}", "forge.sweep", "--config", str(exp),
              cwd=submit_dir)
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    wait_for(lambda: "State: SUCCEEDED" in forge("status", handle, cwd=elsewhere).stdout, 240, f"{handle} to succeed", 2)
    out = forge("status", handle, cwd=elsewhere).stdout
    assert len(re.findall(r"s3sweep\[\d\]\s+\S+\s+COMPLETED\s+0", out)) == 3, out
    # the nodes ran this checkout, read their run table from S3 (not 'bucket/...' as a local path), wrote their results there
    log = forge("log", "--streams", "stdout", f"{handle}/s3sweep/1", cwd=elsewhere).stdout
    assert f"forge from {REPO / 'torchx_forge' / '__init__.py'}" in log, log
    assert f"result dir {s3_state}/results/{app_id(handle)}/" in log, log
    listing = objects(s3_server, s3_state)
    rec = Records(Store(s3_state)).load(app_id(handle))
    table = next(a for a in rec.roles[0].args if a.startswith("s3://"))
    assert table.startswith(f"{s3_state}/tables/") and table in listing  # the table the tasks read, named with its scheme
    assert rec.jobs[0].argv[-1] == rec.jobs[0].script and rec.jobs[0].script in listing  # the script lives in S3
    assert rec.log_dir == str(logs) and any(f.name.endswith(".out") for f in logs.iterdir())  # logs stay on the cluster's disk
    for i in range(3):
        assert f"{s3_state}/apps/{app_id(handle)}/tasks/s3sweep.{i}.json" in listing
    assert not (Path.home() / ".torchx_forge" / "apps" / app_id(handle)).exists()
    # results, list and cancel, from another directory
    r = forge("forge", "results", handle, "--metric", "loss", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[2:5]]
    assert [(row[3], row[4], float(row[-1])) for row in rows] == [
        ("0.1", "COMPLETED", 1.1), ("0.2", "COMPLETED", 1.2), ("0.3", "COMPLETED", 1.3)], r.stdout
    listed = forge("list", "-s", "slurm_forge", cwd=elsewhere)
    assert listed.returncode == 0 and app_id(handle) in listed.stdout, listed.stdout + listed.stderr
    long = sweep_file(submit_dir, "s3long", ["sh", "-c", "sleep 300"], [0.1, 0.2])  # sh ignores --lr
    h2 = handle_of(forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={logs}", "forge.sweep", "--config", str(long),
                         cwd=submit_dir))
    assert forge("cancel", h2, cwd=elsewhere).returncode == 0
    assert wait_end(h2, timeout=120) == "CANCELLED"
    assert f"{s3_state}/apps/{app_id(h2)}/cancelled.json" in objects(s3_server, s3_state)


@pytest.mark.slow
def test_a_warned_task_resumes_from_its_checkpoint_on_s3(s3_server: S3Server, s3_state: str, tmp_path: Path):
    ckpt = s3_server.url(f"{s3_state.split('/')[3]}/ckpt")
    ledger = tmp_path / "ledger"
    p = forge("run", "--scheduler", "slurm_forge", "-cfg",
              f"max_retries=2,log_dir={tmp_path / 'logs'},checkpoint_dir={ckpt}/{{app_id}}/{{run_id}}",
              "utils.python", "--script", TRAIN, "--", "--steps", "25", "--ledger", str(ledger), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    job = app_id(handle)
    wait_for(lambda: ledger_lines(ledger) >= 5, 300, "step 5 (the job may wait for a free node)")
    warn_batch(job)  # the pre-timeout warning, now
    assert wait_end(handle, timeout=300) == "SUCCEEDED"
    steps = [int(line.split()[1]) for line in ledger.read_text().splitlines()]
    assert sorted(steps) == list(range(1, 26)), steps  # every step once: resumed where it stopped
    row = task_row(handle, "python[0]")
    run_dir = f"{ckpt}/{job}/{job}-python"
    assert row[1] == job and row[5] == "2" and row[7] == "warned", row
    assert re.fullmatch(rf"{job}-python/step_\d+\.json", row[6]), row  # resumed from a checkpoint (the table shortens it)
    state = s3_json(s3_server, f"{run_dir}/checkpoint_state.json")
    assert state == {"format": 1, "latest": "step_25.json", "step": 25}
    log = forge("log", f"{handle}/python/0", cwd=tmp_path).stdout
    assert f"resuming from {run_dir}/step_" in log  # the one in S3


#: three checkpoints per run; the best (lowest val_loss) is step 2 for run 0 and step 3 for run 1
PIPE_TRAIN = """\
import fsspec, json, os
d, i = os.environ["FORGE_CHECKPOINT_DIR"], int(os.environ["FORGE_RUN_INDEX"])
loss = {1: 0.9, 2: 0.2 + i, 3: 0.5 - 0.4 * i}
for s in loss:
    with fsspec.open(f"{d}/step_{s}.pt", "w") as f:
        f.write(f"weights {i} {s}")
with fsspec.open(f"{d}/metrics.json", "w") as f:
    json.dump({f"step_{s}.pt": {"val_loss": v} for s, v in loss.items()}, f)
"""
PIPE_EVAL = """\
import fsspec, json, os
src = os.environ["FORGE_INPUT_CHECKPOINT"]
with fsspec.open(src, "r") as f:
    weights = f.read()
with fsspec.open(os.environ["FORGE_RESULT_DIR"] + "/metrics.json", "w") as f:
    json.dump({"input": src, "weights": weights}, f)
"""


def pipeline_file(path: Path) -> Path:
    train, evaluate = ([sys.executable, "-c", code] for code in (PIPE_TRAIN, PIPE_EVAL))
    path.write_text(
        "name: s3pipe\nstages:\n"
        f"  train: {{run: {{command: {json.dumps(train)}}}, sweep: {{shared_axes: {{run.env.I: [0, 1]}}}}}}\n"
        "  eval:\n    after: [train]\n    per_run: true\n    inputs: {checkpoint: best, metric: val_loss, mode: min}\n"
        f"    run: {{command: {json.dumps(evaluate)}}}\n")
    return path


def test_a_pipeline_eval_gets_its_trainings_best_checkpoint_from_s3(s3_server: S3Server, s3_state: str, tmp_path: Path):
    cfg = pipeline_file(tmp_path / "pipe.yaml")
    p = forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={tmp_path / 'logs'}", "forge.pipeline", "--config",
              str(cfg), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    assert wait_end(handle, timeout=300) == "SUCCEEDED", forge("status", handle, cwd=tmp_path).stdout
    app = app_id(handle)
    summaries = [s3_json(s3_server, o) for o in objects(s3_server, f"{s3_state}/results/{app}/train")
                 if o.endswith("/summary.json")]
    run_ids = {s["index"]: s["run_id"] for s in summaries}
    assert sorted(run_ids) == [0, 1], summaries
    for k, best in ((0, 2), (1, 3)):
        got = s3_json(s3_server, f"{s3_state}/results/{app}/eval/{run_ids[k]}/metrics.json")
        assert got["input"] == f"{s3_state}/checkpoints/{app}/train/{run_ids[k]}/step_{best}.pt", got  # the best, as a URL
        assert got["weights"] == f"weights {k} {best}"  # and the eval step could open it
    r = forge("forge", "results", handle, "--stage", "eval", cwd=tmp_path)
    assert r.returncode == 0 and "weights 0 2" in r.stdout and "weights 1 3" in r.stdout, r.stdout + r.stderr


def test_forge_retry_resubmits_from_the_script_kept_in_s3(s3_server: S3Server, s3_state: str, tmp_path: Path):
    submit_dir, scratch, elsewhere = tmp_path / "submit", tmp_path / "tmp", tmp_path / "elsewhere"
    for d in (submit_dir, scratch, elsewhere):
        d.mkdir()
    flag = tmp_path / "ok-now"
    exp = submit_dir / "byhand.yaml"
    exp.write_text("name: s3retry\n"  # runs in tmp_path: the submitting directory goes away
                   f"run: {{command: [sh, -c, 'test $FORGE_RUN_INDEX != 1 || test -e {flag}'], workdir: {tmp_path}}}\n"
                   "sweep: {shared_axes: {run.env.I: [0, 1, 2]}}\n")
    p = forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={tmp_path / 'logs'}", "forge.sweep", "--config", str(exp),
              cwd=submit_dir, env={"TMPDIR": str(scratch)})
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    assert not [f for f in os.listdir(scratch) if f.startswith("forge-")]  # the local copy sbatch read is gone already
    shutil.rmtree(submit_dir)
    shutil.rmtree(scratch)  # whatever the submitting side kept locally, it is gone now
    assert wait_end(handle) == "FAILED"
    rec = Records(Store(s3_state)).load(app_id(handle))
    assert rec.jobs[0].argv[-1].startswith(f"{s3_state}/submissions/")
    flag.write_text("")
    r = forge("forge", "retry", handle, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert "resubmitted s3retry[1] as job" in r.stdout
    assert wait_end(handle) == "SUCCEEDED"
    assert task_row(handle, "s3retry[1]")[5] == "2"
    again = Records(Store(s3_state)).load(app_id(handle)).jobs[-1]
    assert again.retry_of == rec.jobs[0].job_id and again.argv[-1] == rec.jobs[0].argv[-1]


def test_credentials_reach_no_record_and_no_dry_run(s3_server: S3Server, s3_state: str, tmp_path: Path):
    exp = sweep_file(tmp_path, "s3creds", [sys.executable, "-c", METRICS], [0.5])
    handle = handle_of(forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={tmp_path / 'logs'}", "forge.sweep",
                             "--config", str(exp), cwd=tmp_path))
    assert wait_end(handle) == "SUCCEEDED"
    dry = forge("run", "--dryrun", "--scheduler", "slurm_forge", "-cfg", f"log_dir={tmp_path / 'logs'}", "dist.ddp", "-j",
                "1x1", "--env", f"AWS_SECRET_ACCESS_KEY={S3_SECRET},AWS_ACCESS_KEY_ID={S3_KEY_ID}", "--script", "train.py",
                cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "AWS_SECRET_ACCESS_KEY" in dry.stdout and "****" in dry.stdout  # shown, masked
    found = {url: s3_server.fs().cat_file(url[5:]) for url in objects(s3_server, s3_state)}
    assert any("/apps/" in u for u in found) and any("/submissions/" in u for u in found)
    found.update({str(f): f.read_bytes() for f in (tmp_path / "logs").rglob("*") if f.is_file()})
    for secret in (S3_SECRET, S3_KEY_ID):
        assert secret not in dry.stdout + dry.stderr
        leaked = [where for where, data in found.items() if secret.encode() in data]
        assert not leaked, f"{secret[:8]}... written to {leaked}"


@pytest.mark.slow
def test_killing_the_s3_server_mid_run_loses_nothing_and_everything_recovers(s3_server: S3Server, s3_state: str,
                                                                              tmp_path: Path):
    logs = tmp_path / "logs"
    # two runs that write their metrics, then work 40 s: they end while the store is down, and their
    # launchers wait (up to FORGE_STORE_WAIT) to write the task state files and summaries
    program = METRICS + "; import time; time.sleep(40)"
    exp = sweep_file(tmp_path, "s3kill", [sys.executable, "-c", program], [0.1, 0.2])
    env = {"FORGE_STORE_WAIT": "400"}
    p = forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={logs}", "forge.sweep", "--config", str(exp),
              cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    tasks = f"{s3_state}/apps/{app_id(handle)}/tasks"
    wait_for(lambda: len([o for o in objects(s3_server, tasks) if o.endswith(".json")]) == 2
             and all(s3_json(s3_server, o)["state"] == "RUNNING" for o in objects(s3_server, tasks)), 180,
             "both tasks to report RUNNING in S3")
    record_before = s3_json(s3_server, f"{s3_state}/apps/{app_id(handle)}/record.json")
    s3_server.kill()
    try:
        start = time.monotonic()
        st = forge("status", handle, cwd=tmp_path)
        assert time.monotonic() - start < 90
        assert st.returncode == 0 and "Traceback" not in st.stderr, st.stderr
        assert f"{s3_state}/apps/{app_id(handle)}/record.json: the store did not answer" in st.stdout, st.stdout
        assert s3_server.endpoint in st.stdout and "shown from Slurm alone" in st.stdout
        assert re.search(r"State: RUNNING", st.stdout), st.stdout
        for args in (("forge", "results", handle), ("list", "-s", "slurm_forge"), ("log", f"{handle}/s3kill/0")):
            r = forge(*args, cwd=tmp_path)
            lines = [line for line in r.stderr.splitlines() if "error" in line]
            assert r.returncode != 0 and "Traceback" not in r.stderr, (args, r.stderr)
            assert len(lines) == 1 and s3_state in lines[0] and "the store did not answer" in lines[0], (args, r.stderr)
        bad = forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={logs}", "forge.sweep", "--config", str(exp),
                    cwd=tmp_path)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
        assert f"state dir {s3_state}: the store did not answer" in bad.stderr and "AWS_ENDPOINT_URL" in bad.stderr
        assert not handle_of_or_none(bad)
        # the programs end while the store is down: their launchers wait for it, saying so in the task's log
        wait_for(lambda: all("the store did not answer" in f.read_text() for f in logs.glob("s3kill-*-s3kill-*.err"))
                 and len(list(logs.glob("s3kill-*-s3kill-*.err"))) == 2, 150, "both launchers to wait for the store")
    finally:
        s3_server.start()
    assert s3_json(s3_server, f"{s3_state}/apps/{app_id(handle)}/record.json") == record_before  # the record, intact
    assert wait_end(handle, timeout=420) == "SUCCEEDED"
    assert all("the store answers again" in f.read_text() for f in logs.glob("s3kill-*-s3kill-*.err"))
    for i in range(2):
        state = s3_json(s3_server, f"{tasks}/s3kill.{i}.json")
        assert state["state"] == "COMPLETED" and [h["state"] for h in state["history"]] == ["COMPLETED"], state
    r = forge("forge", "results", handle, "--metric", "loss", cwd=tmp_path)
    assert r.returncode == 0 and re.search(r"COMPLETED\s+1\s+0\s+1\.1", r.stdout) and re.search(r"1\.2\s*$", r.stdout, re.M), \
        r.stdout + r.stderr
    again = forge("run", "--scheduler", "slurm_forge", "-cfg", f"log_dir={logs}", "forge.sweep", "--config", str(exp),
                  cwd=tmp_path, env={"FORGE_STORE_WAIT": "30"})
    assert again.returncode == 0, again.stderr  # and new work goes in again
    assert forge("cancel", handle_of(again), cwd=tmp_path).returncode == 0


def handle_of_or_none(p: subprocess.CompletedProcess) -> str:
    return next((line for line in p.stdout.splitlines() if line.startswith("slurm_forge://")), "")


def test_a_wave_job_submits_the_next_wave_from_scripts_kept_in_s3(capped_qos: str, s3_server: S3Server, s3_state: str, tmp_path: Path):
    """A sweep over the submit limit (QOS cap100, see test_waves.py): wave 2 is submitted by a
    Slurm job, on a compute node, from the scripts the state dir keeps on S3."""
    p = forge("run", "--scheduler", "slurm_forge", "-cfg", f"qos={capped_qos},log_dir={tmp_path / 'logs'}", "forge.grid", "--name",
              "s3waves", "--axes", "run.env.I=range(0,150)", "--", "true", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "submitting them in 2 waves" in p.stderr, p.stderr
    handle = handle_of(p)
    assert wait_end(handle, timeout=900) == "SUCCEEDED", forge("status", handle, cwd=tmp_path).stdout
    rec = Records(Store(s3_state)).load(app_id(handle))
    second = [j for j in rec.jobs if j.kind == "array" and j.wave == 1 and not j.planned]
    assert second and all(j.argv[-1].startswith(f"{s3_state}/submissions/") for j in second), second
    assert sum(j.size for j in rec.jobs if j.kind == "array" and not j.planned) == 150


@pytest.mark.slow
@pytest.mark.usefixtures("second_cluster")
def test_two_experiments_on_two_clusters_share_one_s3_state_dir(s3_server: S3Server, s3_state: str, tmp_path: Path):
    """Issue 13's both together: one experiment on the local cluster, one on the second, one state dir
    on S3; every verb, from a directory that submitted nothing, finds each app on its own cluster."""
    logs, elsewhere, flag = tmp_path / "logs", tmp_path / "elsewhere", tmp_path / "b-may-pass"
    elsewhere.mkdir()
    on = "import os; print('on', os.environ['SLURM_CLUSTER_NAME']); "
    flaky = f"import os, sys; os.environ['FORGE_RUN_INDEX'] != '1' or os.path.exists({str(flag)!r}) or sys.exit(3); "
    # name: (cluster, the learning rates of its runs, the program)
    exps = {"expa": ("forge", [0.1, 0.2], on + METRICS), "expb": (SECOND_CLUSTER, [0.1, 0.2, 0.3], on + flaky + METRICS)}
    handles = {}
    for name, (cluster, lrs, program) in exps.items():
        exp = sweep_file(tmp_path, name, [sys.executable, "-c", program], lrs)
        p = forge("run", "--scheduler", "slurm_forge", "-cfg", f"cluster={cluster},log_dir={logs}", "forge.sweep",
                  "--config", str(exp), cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        handles[name] = handle_of(p)
        assert app_id(handles[name]).startswith(f"{cluster}:"), handles[name]
    assert wait_end(handles["expa"]) == "SUCCEEDED"
    assert wait_end(handles["expb"]) == "FAILED"
    # both records (and both sets of task files) in the one bucket prefix, keyed by cluster and job id
    listing = objects(s3_server, s3_state)
    for name, handle in handles.items():
        assert f"{s3_state}/apps/{app_id(handle)}/record.json" in listing, listing
        runs = len(exps[name][1])
        assert sum(u.startswith(f"{s3_state}/apps/{app_id(handle)}/tasks/{name}.") for u in listing) == runs, listing
    listed = forge("list", "-s", "slurm_forge", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert all(app_id(h) in listed.stdout for h in handles.values()), listed.stdout
    status_b = forge("status", handles["expb"], cwd=elsewhere).stdout
    assert f"on cluster {SECOND_CLUSTER}" in status_b and "expb[1]:FAILED" in status_b, status_b
    for name, (cluster, _, _) in exps.items():
        log = forge("log", "--streams", "stdout", f"{handles[name]}/{name}/0", cwd=elsewhere).stdout
        assert f"{name}/0 on {cluster}" in log, log
    # retry of the failed run goes to its own cluster, from the script kept in S3
    flag.write_text("")
    r = forge("forge", "retry", handles["expb"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    new_id = re.search(r"resubmitted expb\[1\] as job (\d+)", r.stdout)
    assert new_id and int(new_id.group(1)) >= 1_000_000, r.stdout  # forge2's ids start at 1000000
    assert wait_end(handles["expb"]) == "SUCCEEDED"
    for name, (_, lrs, _) in exps.items():
        losses = [round(1 + lr, 6) for lr in lrs]  # what METRICS writes
        res = forge("forge", "results", handles[name], "--metric", "loss", "--json", str(tmp_path / f"{name}.json"),
                    cwd=elsewhere)
        assert res.returncode == 0, res.stderr
        rows = json.loads((tmp_path / f"{name}.json").read_text())
        assert [r["state"] for r in rows] == ["COMPLETED"] * len(losses), rows
        assert [r["loss"] for r in rows] == losses, rows
