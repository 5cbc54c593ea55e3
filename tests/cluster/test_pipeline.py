"""Pipelines on the real cluster (and the same pipeline locally, without one)."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from conftest import app_state, handle_of, run_torchx, squeue_ids, wait_end, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

# six trainings of different lengths, an evaluation per run, one comparison of all evaluations
PIPE = """\
name: pipe6
stages:
  prepare: {{run: {{command: [sh, -c, "date +%s.%N > {out}/prepared"]}}}}
  train:
    after: [prepare]
    run:
      command: [sh, -c, "test -e {out}/prepared && sleep $((FORGE_RUN_INDEX * 2)) && echo trained $FORGE_RUN_ID > $FORGE_CHECKPOINT_DIR/step_1.txt"]
    sweep: {{shared_axes: {{run.env.I: [0, 1, 2, 3, 4, 5]}}}}
  eval:
    after: [train]
    per_run: true
    inputs: {{checkpoint: latest}}
    run:
      command: [sh, -c, "cat $FORGE_INPUT_CHECKPOINT > $FORGE_RESULT_DIR/eval.txt && echo eval of $FORGE_RUN_ID"]
  compare:
    after: [eval]
    run:
      command: [sh, -c, "IFS=:; for d in $FORGE_UPSTREAM_RESULT_DIRS; do cat $d/eval.txt; done | sort > {out}/compared; wc -l < {out}/compared"]
"""


def _sacct_times(job: str) -> dict:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,Start,End", "-j", job], capture_output=True, text=True).stdout
    times = {}
    for line in out.split():
        jid, start, end = line.split("|")
        times[jid] = (datetime.fromisoformat(start), datetime.fromisoformat(end))
    return times


def test_prepare_sweep_eval_per_run_compare(state_dir: Path, tmp_path: Path):
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text(PIPE.format(out=tmp_path))
    plan = run_torchx("forge", "plan", "--config", str(cfg))
    assert "eval: 6 run(s) per run" in plan.stdout
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    handle = handle_of(p)
    assert wait_end(handle) == "SUCCEEDED"
    # compare saw all six evaluations, each of its own training run
    lines = (tmp_path / "compared").read_text().splitlines()
    assert len(lines) == 6 and all(line.startswith("trained run-") for line in lines)
    assert len(set(lines)) == 6
    # eval of run i started after training run i ended, and (per run, not per stage) before the longest training ended
    from torchx_forge.state.records import Records
    from torchx_forge.state.store import Store

    rec = Records(Store(str(state_dir))).load(handle.rsplit("/", 1)[1])
    jobs = {j.role: j.job_id for j in rec.jobs}
    train, evals = _sacct_times(jobs["train"]), _sacct_times(jobs["eval"])
    for i in range(6):
        assert evals[f"{jobs['eval']}_{i}"][0] >= train[f"{jobs['train']}_{i}"][1]
    assert evals[f"{jobs['eval']}_0"][0] < train[f"{jobs['train']}_5"][1]
    compare = _sacct_times(jobs["compare"])[f"{jobs['compare']}_0"]
    assert compare[0] >= max(end for _, end in evals.values())
    out = run_torchx("status", handle).stdout
    assert "steps:" in out and re.search(r"eval\s+6 SUCCEEDED", out)


def test_a_failed_training_cancels_its_own_eval_and_the_join(state_dir: Path, tmp_path: Path):
    cfg = tmp_path / "fail.yaml"
    cfg.write_text(
        "name: pfail\nstages:\n"
        "  train: {run: {command: [sh, -c, 'test $FORGE_RUN_INDEX != 1']}, sweep: {shared_axes: {run.env.I: [0, 1, 2]}}}\n"
        "  eval: {after: [train], per_run: true, run: {command: [sh, -c, 'echo eval $FORGE_RUN_INDEX']}}\n"
        "  compare: {after: [eval], run: {command: [echo, compared]}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg)))
    assert wait_end(handle) == "FAILED"
    out = run_torchx("status", handle).stdout
    assert re.search(r"eval\[1\]:CANCELLED", out) and re.search(r"eval\[0\]:SUCCEEDED", out) and re.search(r"eval\[2\]:SUCCEEDED", out)
    assert re.search(r"compare\[0\]:CANCELLED", out)
    assert re.search(r"train\s+.*failed: train\[1\] \(failed, exit 1\)", out), out
    assert not any(i.split("_")[0] in rec_ids(state_dir, handle) for i in squeue_ids())  # nothing left pending


def rec_ids(state_dir: Path, handle: str) -> list:
    from torchx_forge.state.records import Records
    from torchx_forge.state.store import Store

    return Records(Store(str(state_dir))).load(handle.rsplit("/", 1)[1]).job_ids(companions=True)


def test_a_training_that_succeeds_on_retry_is_evaluated_and_joined(state_dir: Path, tmp_path: Path):
    cfg = tmp_path / "retry.yaml"
    cfg.write_text(
        "name: pretry\nretry: {max_retries: 1, retry_on: [FAILED]}\nstages:\n"
        "  train:\n"
        "    run: {command: [sh, -c, 'test $FORGE_RUN_INDEX != 1 -o $FORGE_ATTEMPT != 0']}\n"
        "    sweep: {shared_axes: {run.env.I: [0, 1, 2]}}\n"
        "  eval: {after: [train], per_run: true, run: {command: [sh, -c, 'echo eval $FORGE_RUN_INDEX']}}\n"
        "  compare: {after: [eval], run: {command: [echo, compared]}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg)))
    assert wait_end(handle) == "SUCCEEDED"
    out = run_torchx("status", handle).stdout
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["train[1]"])
    assert row[5] == "2", out  # retried once
    assert "eval 1" in run_torchx("log", f"{handle}/eval/1").stdout
    assert "compared" in run_torchx("log", f"{handle}/compare/0").stdout


def test_any_done_join_runs_over_the_runs_that_finished(state_dir: Path, tmp_path: Path):
    cfg = tmp_path / "any.yaml"
    cfg.write_text(
        "name: pany\nstages:\n"
        "  train: {run: {command: [sh, -c, 'test $FORGE_RUN_INDEX != 1']}, sweep: {shared_axes: {run.env.I: [0, 1, 2]}}}\n"
        "  summary: {after: [train], when: any_done, run: {command: [sh, -c, 'echo ok=$FORGE_UPSTREAM_RUNS_OK failed=$FORGE_UPSTREAM_RUNS_FAILED']}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg)))
    assert wait_end(handle) == "FAILED"  # a training failed for good; the join still ran
    log = run_torchx("log", "--streams", "stdout", f"{handle}/summary/0").stdout
    assert "ok=0,2 failed=1" in log


def test_cancelling_a_running_pipeline_leaves_nothing_queued(state_dir: Path, tmp_path: Path):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(
        "name: plong\nstages:\n"
        "  train: {run: {command: [sleep, '300']}, sweep: {shared_axes: {run.env.I: [0, 1]}}}\n"
        "  eval: {after: [train], per_run: true, run: {command: ['true']}}\n"
        "  compare: {after: [eval], run: {command: ['true']}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg)))
    wait_for(lambda: app_state(handle) == "RUNNING", 180, "the pipeline to run")
    assert run_torchx("cancel", handle).returncode == 0
    ids = rec_ids(state_dir, handle)
    wait_for(lambda: not any(i.split("_")[0] in ids for i in squeue_ids()), 60, "every job of the pipeline to leave squeue")
    assert wait_end(handle) == "CANCELLED"


def test_the_same_pipeline_runs_locally_with_the_same_outputs(state_dir: Path, tmp_path: Path):
    out_local, out_slurm = tmp_path / "local", tmp_path / "slurm"
    for d in (out_local, out_slurm):
        d.mkdir()
        (d / "pipe.yaml").write_text(PIPE.format(out=d).replace("sleep $((FORGE_RUN_INDEX * 2)) && ", ""))
    local = run_torchx("run", "--scheduler", "local_cwd", "forge.pipeline", "--config", str(out_local / "pipe.yaml"),
                       cwd=out_local, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(out_slurm / "pipe.yaml")))
    assert wait_end(handle) == "SUCCEEDED"
    assert (out_local / "compared").read_text() == (out_slurm / "compared").read_text()
    assert len((out_local / "compared").read_text().splitlines()) == 6


def test_planit_traps_are_avoided(state_dir: Path, tmp_path: Path):
    """Options do not leak between steps; every Slurm time form is estimated; plans say where time is unknown."""
    cfg = tmp_path / "traps.yaml"
    cfg.write_text(
        "name: traps\nstages:\n"
        "  big: {run: {command: ['true']}, cluster: {cpus_per_task: 3, gpus_per_node: 1, time_limit: '48:00:00'}}\n"
        "  small: {after: [big], run: {command: ['true']}, cluster: {time_limit: '90:00'}}\n"
        "  side: {run: {command: ['true']}, cluster: {time_limit: '1-12'}}\n"
    )
    dry = run_torchx("run", "--dryrun", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg))
    assert dry.returncode == 0, dry.stderr
    scripts = dry.stdout.split("# job ")[1:]
    big = next(s for s in scripts if "--job-name=big" in s)
    small = next(s for s in scripts if "--job-name=small" in s)
    assert "--cpus-per-task=3" in big and "--gpus-per-node=1" in big and "--time=48:00:00" in big
    assert "--cpus-per-task=3" not in small and "gpus" not in small and "--time=90:00" in small
    assert "--dependency=afterok" in small and "--dependency" not in next(s for s in scripts if "--job-name=side" in s)
    plan = run_torchx("forge", "plan", "--config", str(cfg)).stdout
    assert "critical path: big -> small = 2-01:30:00 best case" in plan, plan
    cfg.write_text(cfg.read_text().replace("cluster: {time_limit: '90:00'}", "cluster: {}"))
    plan = run_torchx("forge", "plan", "--config", str(cfg)).stdout
    assert "no estimate: no time limit on small" in plan


@pytest.mark.parametrize(
    "stages,expected",
    [
        ("  a: {after: [b], run: {command: ['true']}}\n  b: {after: [a], run: {command: ['true']}}\n", r"cycle: .*a -> b -> a|cycle: .*b -> a -> b"),
        ("  a: {after: [nope], run: {command: ['true']}}\n", r"waits for 'nope', which is not a step"),
        ("  a: {run: {command: ['true']}}\n  a: {run: {command: ['true']}}\n", r"duplicate key"),
        ("  a: {run: {command: ['true']}, per_run: true}\n", r"per_run follows exactly one step"),
    ],
)
def test_bad_pipelines_are_clear_errors(state_dir: Path, tmp_path: Path, stages: str, expected: str):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: bad\nstages:\n" + stages)
    p = run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert re.search(expected, p.stderr), p.stderr


@pytest.mark.slow
def test_dependents_follow_a_training_resubmitted_under_a_new_job_id(state_dir: Path, tmp_path: Path):
    """A hard TIMEOUT (no warning) is resubmitted by the companion job under a new id; the eval of
    that run, cancelled by Slurm with the old job, is submitted again behind the new one, and so is the join."""
    cfg = tmp_path / "follow.yaml"
    cfg.write_text(
        "name: pfollow\n"
        "stages:\n"
        "  train:\n"
        "    retry: {max_retries: 1, signal: 'off'}\n"
        "    cluster: {time_limit: '1'}\n"
        "    run: {command: [sh, -c, 'if [ $FORGE_RUN_INDEX = 1 ] && [ $FORGE_ATTEMPT = 0 ]; then sleep 600; fi; echo trained']}\n"
        "    sweep: {shared_axes: {run.env.I: [0, 1]}}\n"
        "  eval: {after: [train], per_run: true, run: {command: [sh, -c, 'echo eval $FORGE_RUN_INDEX']}}\n"
        "  compare: {after: [eval], run: {command: [echo, compared]}}\n"
    )
    handle = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.pipeline", "--config", str(cfg)))
    assert wait_end(handle, timeout=420) == "SUCCEEDED", run_torchx("status", handle).stdout
    out = run_torchx("status", handle).stdout
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["train[1]"])
    assert row[5] == "2", out  # resubmitted once
    ids = rec_ids(state_dir, handle)
    assert len([i for i in ids]) > 6  # train, eval, compare and their companions, plus the resubmissions
    assert "eval 1" in run_torchx("log", f"{handle}/eval/1").stdout
    assert "compared" in run_torchx("log", f"{handle}/compare/0").stdout


def test_a_three_step_pipeline_is_one_held_transaction_and_its_status_at_most_two_calls(state_dir: Path, tmp_path: Path):
    from torchx import specs
    from torchx.runner import get_runner

    from torchx_forge_components.forge import pipeline

    cfg = tmp_path / "three.yaml"
    cfg.write_text("name: three\nstages:\n  a: {run: {command: [echo, a]}}\n  b: {after: [a], run: {command: [echo, b]}}\n"
                   "  c: {after: [b], run: {command: [echo, c]}}\n")
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        handle = runner.run(pipeline(config=str(cfg)), scheduler="slurm_forge")
        kinds = [c[0] if c[0] != "scontrol" else f"scontrol {c[1]}" for c in sched.cli.calls]
        # its guard, the three steps held (each after the one before), one release, the guard cancelled
        assert [k for k in kinds if k not in ("scontrol show", "sacctmgr")] == [
            "sbatch", "sbatch", "sbatch", "sbatch", "scontrol release", "scancel"], kinds
        sched.cli.calls.clear()
        assert runner.status(handle).state in (specs.AppState.PENDING, specs.AppState.RUNNING, specs.AppState.SUCCEEDED)
        assert 1 <= len(sched.cli.calls) <= 2, sched.cli.calls
    assert wait_end(handle) == "SUCCEEDED"
    with get_runner() as runner:
        sched = runner._scheduler("slurm_forge")
        assert runner.status(handle).state == specs.AppState.SUCCEEDED
        assert sched.cli.calls == [], sched.cli.calls  # the status wait_end saw settled it: frozen in the record
