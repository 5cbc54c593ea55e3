"""The unit tests' fake of Slurm answers as the real Slurm 22.05 did (tests/fixtures), so the tests on
it mean what they say."""

from __future__ import annotations

import pytest

from torchx_forge.errors import SlurmError, SlurmNotFoundError
from unit.fakeslurm import FIXTURES, MISSING, FakeSlurm, fail, unreachable


def test_the_captured_commands_print_the_captured_outputs():
    fake = FakeSlurm()
    squeue = fake.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%r|%N|%j", "--jobs=7,8"])
    assert squeue == (FIXTURES / "squeue-22.05.txt").read_text()
    sacct = fake.run(["sacct", "-D", "--parsable2", "--noheader", "-o",
                      "JobID,JobName,State,ExitCode,NodeList,Start,End,Reason", "-j", "7,8"])
    assert sacct == (FIXTURES / "sacct-22.05.txt").read_text()
    assert "7.batch" not in fake.run(["sacct", "-X", "-P", "-n", "-o", "JobID", "-j", "7"])  # -X: allocations only
    assert fake.run(["sacct", "-X", "-P", "-n", "-o", "JobID,State", "-j", "7_0"]) == "7_0|COMPLETED\n"  # no -D: the last
    assert fake.run(["squeue", "-h", "-o", "%i", "-j", "7"]) == "7_[2-5%2]\n7_0\n7_1\n"
    assert fake.run(["squeue", "-h", "-r", "-o", "%i", "-j", "7_3,8"]) == "7_3\n8+0\n8+1\n"
    assert "SLURM_VERSION           = 22.05.8\n" in fake.run(["scontrol", "show", "config"])


def test_squeue_of_one_unknown_id_is_an_error_of_several_an_empty_answer():
    fake = FakeSlurm()
    with pytest.raises(SlurmError, match="slurm_load_jobs error: Invalid job id specified"):
        fake.run(["squeue", "-h", "-o", "%i", "--jobs=99"])
    assert fake.run(["squeue", "-h", "-o", "%i", "--jobs=98,99"]) == ""
    assert fake.squeue(["99"]) == [] and fake.sacct(["99"]) == []


def test_sbatch_hands_out_ids_and_its_jobs_show_in_squeue_and_sacct(tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --job-name=a-0\n#SBATCH hetjob\n#SBATCH --job-name=b-0\nsrun true\n#SBATCH --job-name=late\n")
    fake = FakeSlurm()
    job_id = fake.sbatch(["sbatch", "--parsable", "--hold", str(script)], env={"A": "1"}, tag="t-0")
    assert job_id == "100" and fake.on("forge2").submit(["sbatch", "--parsable", "--wrap=true"]) == ("101", "forge2")
    assert fake.run(["sbatch", "--wrap=true"]) == "Submitted batch job 102\n"
    first, second, _ = fake.submitted
    assert (first.job_id, first.script_path, first.script, first.env, first.cluster) == ("100", str(script), script.read_text(),
                                                                                         {"A": "1"}, None)
    assert second.cluster == "forge2" and second.script is None
    rows = fake.squeue(["100"])
    assert [(r.key, r.name, r.reason) for r in rows] == [("100+0", "a-0", "JobHeldUser"), ("100+1", "b-0", "JobHeldUser")]
    assert fake.run(["squeue", "-h", "-t", "all", "-o", "%i|%k", "-j", "100"]) == "100+0|forge:t-0\n100+1|forge:t-0\n"
    assert fake.find_tagged("t-0") == ["100"] and fake.on("forge2").squeue(["100"]) == []
    fake.release(["100"])
    assert {r.reason for r in fake.squeue(["100"])} == {"None"}
    fake.cancel(["100", "7"])
    assert {r.state.value for r in fake.squeue(["100", "7"])} == {"CANCELLED"}
    assert {r.state.value for r in fake.sacct(["100"])} == {"CANCELLED"}
    fake.cancel(["100", "99"])  # a job that ended, one that never was: a plain scancel says nothing
    with pytest.raises(SlurmError, match="Kill job error on job id 99: Invalid job id specified"):
        fake.cancel(["99"], signal="USR1")
    with pytest.raises(SlurmError, match="Job has already finished for job 100"):
        fake.release(["100"])
    assert fake.cancelled == ["100", "7", "100", "99", "99"]


def test_sbatch_refuses_what_slurm_refuses(tmp_path):
    fake = FakeSlurm()
    with pytest.raises(SlurmError, match="Unable to open file memory://bucket/job.sh"):
        fake.sbatch(["sbatch", "--parsable", "memory://bucket/job.sh"])
    with pytest.raises(SlurmError, match="Invalid partition name specified"):
        fake.sbatch(["sbatch", "--parsable", "--partition=gpu", "--wrap=true"])
    assert fake.submitted == [] and len(fake.calls) == 2


def test_scripted_answers_come_first_then_slurm_answers_again():
    fake = FakeSlurm().answer("scontrol show config", fail("boom"), fail("again"))
    fake.always("sacctmgr", MISSING)
    with pytest.raises(SlurmError, match="boom"):
        fake.run(["scontrol", "show", "config"])
    with pytest.raises(SlurmError, match="again"):
        fake.run(["scontrol", "show", "config"])
    assert "ClusterName             = forge2" in fake.on("forge2").run(["scontrol", "--clusters=forge2", "show", "config"])
    for _ in range(2):
        with pytest.raises(SlurmNotFoundError):
            fake.run(["sacctmgr", "-n", "-P", "show", "qos", "format=name,maxsubmitjobsperuser"])
    assert [c.answer.returncode for c in fake.called("scontrol")] == [1, 1, 0] and len(fake.called("sacctmgr")) == 2


def test_a_daemon_down_fails_its_commands_only_and_as_real_slurm_does():
    fake = FakeSlurm().down("slurmdbd")
    assert fake.squeue(["8"])  # slurmctld answers
    with pytest.raises(SlurmError) as e:
        fake.sacct(["8"])
    assert e.value.transient and "Problem talking to the database: Connection refused" in e.value.stderr
    assert len(fake.called("sacct")) == 3 and fake.pauses == [0.5, 1.0]  # SlurmCli's retries, never slept
    fake = FakeSlurm().down("slurmctld", timeout=True)
    assert fake.sacct(["8"])  # slurmdbd answers
    with pytest.raises(SlurmError, match="slurm_load_jobs error: Socket timed out on send/recv operation"):
        fake.squeue(["8"])
    fake.up("slurmctld")
    assert fake.on("forge2").squeue(["8"]) == [] and fake.on("forge").squeue(["8"])  # the fixtures: jobs of forge, the local cluster
    assert unreachable(["scancel", "12", "13"]).stderr == (
        "scancel: error: Kill job error on job id 12: Unable to contact slurm controller (connect failure)\n"
        "scancel: error: Kill job error on job id 13: Unable to contact slurm controller (connect failure)\n")


def test_a_cluster_without_accounting():
    fake = FakeSlurm(accounting=False)
    assert fake.sacct(["7"]) is None and fake.accounting is False
    assert "AccountingStorageType   = accounting_storage/none" in fake.run(["scontrol", "show", "config"])
