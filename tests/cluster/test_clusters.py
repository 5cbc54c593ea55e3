"""Several clusters: the second local cluster (``forge2``, ``scripts/local-slurm up --clusters 2``)
in the same slurmdbd as the first (``forge``): Slurm's multi-cluster mode."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from torchx.runner import get_runner

from conftest import REPO, SECOND_CLUSTER, app_state, handle_of, queued_jobs_of, run_torchx, wait_end, wait_for
from torchx_forge.cli.watch import Watcher
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster", "second_cluster")]

OTHER = SECOND_CLUSTER


def sacct(cluster: str, job_id: str) -> dict:
    out = subprocess.run(["sacct", "-M", cluster, "-X", "-n", "-P", "-o", "JobID,State,NodeList", "-j", job_id],
                         capture_output=True, text=True).stdout
    return {line.split("|")[0]: line.split("|")[1:] for line in out.split()}


def record(state_dir: Path, app_id: str):
    return Records(Store(str(state_dir))).load(app_id)


def test_a_sweep_runs_on_the_named_cluster_and_every_verb_follows_it(state_dir: Path, tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (f'echo "run $FORGE_RUN_INDEX on $SLURM_CLUSTER_NAME"; [ "$FORGE_RUN_INDEX" != 2 ] || '
              f'[ -e {marks}/2 ] || {{ : > {marks}/2; exit 5; }}')
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"cluster={OTHER}", "forge.grid", "--name", "far",
                   "--axes", "run.env.I=range(0,4)", "--", "sh", "-c", script)
    handle = handle_of(p)
    app_id = handle.rsplit("/", 1)[1]
    cluster, job_id = app_id.split(":")
    assert cluster == OTHER and int(job_id) >= 1_000_000  # forge2's ids start at 1000000
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert wait_end(handle) == "FAILED"
    wait_for(lambda: len(sacct(OTHER, job_id)) == 4, 60, "forge2's accounting to show the 4 tasks")
    rows = sacct(OTHER, job_id)
    assert len(rows) == 4 and all(r[1].startswith("m") for r in rows.values()), rows  # on forge2's nodes
    out = run_torchx("status", handle, cwd=elsewhere).stdout
    assert f"on cluster {OTHER}" in out and "far[2]:FAILED" in out, out
    log = run_torchx("log", "--streams", "stdout", f"{handle}/far/1", cwd=elsewhere).stdout
    assert log.strip() == f"far/1 run 1 on {OTHER}"
    # the same number on the local cluster is another app: a plain handle does not find this one
    plain = run_torchx("status", f"slurm_forge://torchx/{job_id}", cwd=elsewhere)
    assert plain.returncode != 0 and "Traceback" not in plain.stderr
    # retry resubmits there, and results read every run
    again = run_torchx("forge", "retry", handle, cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    new_id = re.search(r"as job (\d+)", again.stdout).group(1)
    assert int(new_id) >= 1_000_000, again.stdout
    wait_for(lambda: bool(sacct(OTHER, new_id)), 60, "forge2's accounting to show the resubmission")
    assert wait_end(handle) == "SUCCEEDED"
    res = run_torchx("forge", "results", handle, "--json", str(tmp_path / "r.json"), cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    assert [r["state"] for r in json.loads((tmp_path / "r.json").read_text())] == ["COMPLETED"] * 4


def test_cancel_and_companions_stay_on_the_cluster_of_the_app(state_dir: Path):
    # a hard failure with FAILED in retry_on: the companion job (on forge2) resubmits there
    p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"cluster={OTHER},max_retries=1,retry_on=FAILED",
                   "utils.sh", "sh", "-c", 'test "${FORGE_ATTEMPT:-0}" -ge 1 || kill -9 $$')
    handle = handle_of(p)
    rec = record(state_dir, handle.rsplit("/", 1)[1])
    assert rec.cluster == OTHER and rec.jobs[0].companion and int(rec.jobs[0].companion) >= 1_000_000
    assert wait_end(handle, timeout=300) == "SUCCEEDED"
    sleepy = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"cluster={OTHER}", "utils.sh",
                                  "sleep", "300"))
    wait_for(lambda: app_state(sleepy) == "RUNNING", 180, "the job to run on forge2")
    c = run_torchx("cancel", sleepy)
    assert c.returncode == 0, c.stderr  # scancel without -M would do nothing and exit 0: the job would live on
    wait_for(lambda: app_state(sleepy) == "CANCELLED", 120, "the job to be cancelled on forge2")
    job_id = sleepy.rsplit(":", 1)[1]
    assert sacct(OTHER, job_id)[job_id][0].startswith("CANCELLED")


def test_several_clusters_let_slurm_choose_and_forge_follows(state_dir: Path, tmp_path: Path):
    # the local cluster's one-node partition `solo` is full: a sweep allowed on both clusters starts
    # where it can, on forge2 (the filler holds one node, so the tests running beside this one go on)
    filler = subprocess.run(["sbatch", "--parsable", "-p", "solo", "--exclusive", "--job-name=filler",
                             f"--output={tmp_path / 'filler.out'}", "--wrap", "sleep 300"],
                            capture_output=True, text=True, check=True).stdout.strip()
    try:
        wait_for(lambda: "RUNNING" in subprocess.run(["squeue", "-h", "-j", filler, "-o", "%T"], capture_output=True,
                                                     text=True).stdout, 180, "the filler to hold the local cluster's solo partition")
        p = run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"cluster=forge,{OTHER},partition=solo", "forge.grid", "--name",
                       "either", "--axes", "run.env.I=range(0,3)", "--", "sh", "-c", "echo $SLURM_CLUSTER_NAME")
        assert f"Slurm chose cluster {OTHER}" in p.stderr, p.stderr
        handle = handle_of(p)
        assert handle.rsplit("/", 1)[1].startswith(f"{OTHER}:")
        assert wait_end(handle) == "SUCCEEDED"
        assert run_torchx("log", "--streams", "stdout", f"{handle}/either/0").stdout.strip() == f"either/0 {OTHER}"
    finally:
        subprocess.run(["scancel", filler])


def test_list_and_watch_cover_every_cluster_in_one_sacct(state_dir: Path, tmp_path: Path):
    # both live at the first poll (an app that already ended has its answer in its record and asks no
    # cluster): they run until that poll has been made
    go = tmp_path / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.5; done"
    here = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c", wait))
    there = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "-cfg", f"cluster={OTHER}", "utils.sh",
                                 "sh", "-c", wait))
    listed = run_torchx("list", "-s", "slurm_forge").stdout
    assert here in listed and there in listed, listed
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        ids = [h.rsplit("/", 1)[1] for h in (here, there)]
        calls = []

        def poll():
            before = len(sched.cli.calls)
            found = sched.poll(ids)
            calls.append(sched.cli.calls[before:])
            go.touch()
            return found

        Watcher(poll, lambda: len(sched.cli.calls), open("/dev/null", "w"), interval=1, max_interval=2).run()
    assert all(len(c) <= 1 for c in calls) and all(c[0][0] == "sacct" for c in calls if c), calls
    assert f"--clusters=forge,{OTHER}" in calls[0][0], calls[0]  # both clusters in the one call


def test_a_pipeline_across_clusters_is_a_clear_error(state_dir: Path, tmp_path: Path):
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(
        "name: split\n"
        "stages:\n"
        "  a: {run: {command: ['true']}}\n"
        f"  b: {{run: {{command: ['true']}}, after: [a], cluster: {{clusters: {OTHER}}}}}\n"
    )
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(pipe), cwd=REPO)
    assert p.returncode == 1 and "runs on one cluster" in p.stderr and "Traceback" not in p.stderr, p.stderr
    time.sleep(1)
    assert queued_jobs_of(state_dir, clusters=f"forge,{OTHER}") == []
