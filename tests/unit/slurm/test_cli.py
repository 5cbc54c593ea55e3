"""The one place Slurm commands run: transient failures retried within bounds, sbatch never twice.

Slurm is the shared fake (tests/unit/fakeslurm.py) at the one injection point (``SlurmCli._once``),
answering with real Slurm 22.05 outputs; the same behaviour against the real cluster is in
tests/cluster/test_faults.py.
"""

from __future__ import annotations

import time

import pytest

from torchx_forge.errors import ConfigError, SlurmError
from torchx_forge.slurm.cli import Backoff, is_transient, transient_hint
from torchx_forge.slurm.parse import tag_in, with_tag
from unit.fakeslurm import FakeSlurm, fail, lost, ok, unreachable

TIMEOUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


def test_transient_errors_are_told_apart():
    assert is_transient(TIMEOUT)
    assert is_transient("sacct: error: Problem talking to the database: Connection refused")
    assert is_transient("squeue: error: Unable to contact slurm controller (connect failure)")
    assert is_transient("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying")
    assert not is_transient("sbatch: error: invalid partition specified: nope")


def test_what_real_slurm_prints_when_a_daemon_is_down_or_slow_is_transient():
    for argv in (["squeue"], ["sbatch", "s.sh"], ["scancel", "12"], ["scontrol", "release", "12"],
                 ["scontrol", "show", "config"], ["sacct"], ["sacctmgr", "show", "qos"]):
        for timeout in (False, True):
            assert is_transient(unreachable(argv, timeout=timeout).stderr), (argv, timeout)
    assert not is_transient(fail("slurm_load_jobs error: Invalid job id specified").stderr)


def test_a_transient_failure_is_tried_again_after_a_pause():
    cli = FakeSlurm().answer("squeue", unreachable("squeue", timeout=True), ok("ok"))
    assert cli.run(["squeue"]) == "ok"
    assert len(cli.calls) == 2 and cli.pauses == [0.5] and "trying again" in cli.said[0]


def test_a_persistent_transient_failure_stops_within_its_bounds_and_says_so():
    cli = FakeSlurm().down("slurmctld", timeout=True)
    with pytest.raises(SlurmError) as e:
        cli.run(["squeue"], backoff=Backoff(tries=3, first=0.5, budget=8.0))
    assert len(cli.calls) == 3 and cli.pauses == [0.5, 1.0]
    assert e.value.transient and "tried 3 times" in str(e.value) and "Fix the request" not in str(e.value)


def test_a_query_that_did_not_answer_is_not_asked_again_for_a_while(monkeypatch):
    down = unreachable("squeue")
    cli = FakeSlurm().answer("squeue", down, down, down, ok("ok")).answer("sacct", ok("acct"))
    with pytest.raises(SlurmError):
        cli.run(["squeue"])
    asked = len(cli.calls)
    with pytest.raises(SlurmError) as e:
        cli.on("forge").on(None).run(["squeue"])  # the same process, through a copy: not asked again
    assert len(cli.calls) == asked and e.value.transient and "connect failure" in str(e.value)
    assert cli.run(["sacct"]) == "acct"  # another command is asked
    now = time.monotonic()
    monkeypatch.setattr("torchx_forge.slurm.cli.time.monotonic", lambda: now + 31)
    assert cli.run(["squeue"]) == "ok"  # after QUIET_FOR seconds, asked again


def script(tmp_path):
    path = tmp_path / "s.sh"
    path.write_text("#!/bin/bash\n#SBATCH --time=1\necho hi\n")
    return str(path)


def test_a_request_error_is_not_retried(tmp_path):
    cli = FakeSlurm()
    with pytest.raises(SlurmError) as e:  # Slurm refuses the partition
        cli.sbatch(["sbatch", "--parsable", "--hold", "--partition=nope", script(tmp_path)], tag="sub-0")
    assert len(cli.calls) == 1 and not e.value.transient
    assert "Fix the request above" in str(e.value)


def test_sbatch_tags_its_job_in_the_comment_after_the_users_own():
    argv = with_tag(["sbatch", "--parsable", "--comment=my run", "s.sh"], "20261201-ab-0")
    assert argv == ["sbatch", "--parsable", "--comment=my run forge:20261201-ab-0", "s.sh"]
    assert with_tag(argv, "other-1")[-2] == "--comment=my run forge:other-1"  # a resubmission gets its own tag
    assert tag_in("my run forge:sub-0", "sub-0") and not tag_in("forge:sub-01", "sub-0")
    assert tag_in("forge:sub-0c", "sub-", prefix=True)


def test_sbatch_whose_answer_was_lost_is_found_not_submitted_again(tmp_path):
    cli = FakeSlurm(first_id=41).add_job("40", "PENDING", comment="forge:other-1")
    cli.answer("sbatch", lost(fail(TIMEOUT)))  # job 41 went through; its answer did not come back
    assert cli.sbatch(["sbatch", "--parsable", "--hold", script(tmp_path)], tag="sub-0") == "41"
    assert [c[0] for c in cli.calls] == ["sbatch", "squeue", "squeue"]  # found it; then looked for twins
    assert any("went through after all" in s for s in cli.said)
    assert [c.job_id for c in cli.submitted] == ["41"]


def test_sbatch_retried_after_a_failure_cancels_a_twin_that_shows_up(tmp_path):
    cli = FakeSlurm(first_id=41)
    cli.answer("sbatch", lost(fail(TIMEOUT)))  # job 41 went through; its answer did not come back
    cli.answer("squeue", ok(""))  # and squeue does not show it yet
    assert cli.sbatch(["sbatch", "--parsable", "--hold", script(tmp_path)], tag="sub-0") == "42"
    assert ["scancel", "41"] in cli.calls


# -- several clusters --------------------------------------------------------------------------


def test_every_command_of_a_cluster_names_it_and_sbatch_says_where_it_went(tmp_path):
    cli = FakeSlurm(first_id=1000004)
    there = cli.on("forge2")
    assert there.on("forge2") is there and cli.on(None) is cli
    assert there.submit(["sbatch", "--parsable", script(tmp_path)]) == ("1000004", "forge2")
    assert cli.calls[-1][:2] == ["sbatch", "--clusters=forge2"]
    (row,) = there.squeue(["1000004"])
    assert row.cluster == "forge2" and cli.calls[-1][:2] == ["squeue", "--clusters=forge2"]
    there.release(["1000004"])
    there.cancel(["1000004"])  # without -M, scancel of another cluster's job does nothing and exits 0
    assert cli.calls[-2][:2] == ["scontrol", "--clusters=forge2"] and cli.calls[-1][:2] == ["scancel", "--clusters=forge2"]
    assert there.squeue(["1000004"])[0].state.value == "CANCELLED" and cli.squeue(["1000004"]) == []
    # a list lets Slurm choose; the answer names the cluster it chose
    cli.answer("sbatch", ok("12;forge\n"))
    assert cli.on("forge,forge2").submit(["sbatch", "--parsable", "job.sh"]) == ("12", "forge")


def test_one_sacct_for_several_clusters_tells_their_rows_apart():
    cli = FakeSlurm(fixtures=False).add_accounting("7|a|COMPLETED|0:0|n1|||None")
    cli.add_accounting("7|b|FAILED|3:0|m1|||None", cluster="forge2")
    rows = cli.sacct(["7"], clusters=["forge", "forge2"])
    assert [(r.cluster, r.key, r.state.value) for r in rows] == [("forge", "7", "COMPLETED"), ("forge2", "7", "FAILED")]
    assert "--clusters=forge,forge2" in cli.calls[-1] and "--format=Cluster,JobID," in " ".join(cli.calls[-1])


def test_the_local_cluster_is_read_from_slurm_conf(tmp_path, monkeypatch):
    from torchx_forge.slurm.cli import local_cluster

    conf = tmp_path / "slurm.conf"
    conf.write_text("# a comment\nClusterName=home  # trailing\nSlurmctldHost=x\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert local_cluster() == "home"
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing"))
    assert local_cluster() == ""


# -- a cluster Slurm does not know, and what to do when Slurm does not answer ------------------

#: what 22.05 prints for ``-M nosuch`` (any command)
NO_CLUSTER = ("scontrol: error: No cluster 'nosuch' known by database.\n"
              "scontrol: error: 'nosuch' can't be reached now, or it is an invalid entry for --cluster.  Use 'sacctmgr"
              " list clusters' to see available clusters.")


def test_an_unknown_cluster_is_named_after_the_first_failure_not_retried():
    cli = FakeSlurm().always("scontrol", fail(NO_CLUSTER)).answer("sacctmgr show cluster", ok("forge\nforge2\n"))
    with pytest.raises(ConfigError) as e:
        cli.on("nosuch").run(["scontrol", "--clusters=nosuch", "show", "config"])
    assert str(e.value).startswith("cluster 'nosuch': Slurm knows no such cluster; it knows forge, forge2")
    assert cli.pauses == [] and [c[0] for c in cli.calls] == ["scontrol", "sacctmgr"]
    with pytest.raises(ConfigError):  # the clusters are asked once per process
        cli.on("forge2,nosuch").run(["scontrol", "--clusters=forge2,nosuch", "show", "config"])
    assert [c[0] for c in cli.calls].count("sacctmgr") == 1


def test_a_cluster_slurm_cannot_resolve_while_accounting_is_down_is_retried_as_before():
    cli = FakeSlurm().always("scontrol", fail(NO_CLUSTER)).answer("sacctmgr show cluster", unreachable(["sacctmgr"]))
    with pytest.raises(SlurmError) as e:
        cli.on("forge2").run(["scontrol", "--clusters=forge2", "show", "config"])
    assert e.value.transient and cli.pauses == [0.5, 1.0] and "try again once `sinfo -M forge2` answers" in str(e.value)


def test_no_cluster_check_costs_a_call_when_commands_succeed(tmp_path):
    cli = FakeSlurm(first_id=1000004).on("forge2")
    cli.submit(["sbatch", "--parsable", script(tmp_path)])
    cli.squeue(["1000004"])
    assert not any(c[0] == "sacctmgr" for c in cli.calls)


def test_what_to_do_when_slurm_does_not_answer_depends_on_the_command():
    assert "nothing was left queued: submit again" in transient_hint("sbatch")
    assert "nothing was cancelled yet; run the same cancel again" in transient_hint("scancel")
    for command in ("squeue", "sacct", "scontrol"):
        assert "queued" not in transient_hint(command) and "submit" not in transient_hint(command)
    cli = FakeSlurm().down("slurmctld")
    with pytest.raises(SlurmError) as e:
        cli.cancel(["12"])
    assert "nothing was cancelled yet" in str(e.value) and "submit" not in str(e.value)
