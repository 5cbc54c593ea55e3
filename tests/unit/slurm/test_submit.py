"""Submission as a transaction, against a fake Slurm: intent written, jobs submitted held, record
written, released together; or rolled back (what was submitted cancelled, the intent cleared)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.appdef.meta import ForgeMeta, RetrySpec
from torchx_forge.errors import ConfigError, SlurmError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.submit import submit
from torchx_forge.state.intents import Intents
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

CONFIG = "Configuration data as of 2026-01-01T00:00:00\nMaxJobCount = 10000\nMaxArraySize = 4\nSLURM_VERSION = 22.05.8\n"


class FakeSlurm(SlurmCli):
    """Takes sbatch, scontrol release and scancel; every call is logged as (command, cluster, detail), and
    the submission's intent is read at each one. ``fail``: the command (``sbatch N``: the Nth sbatch) that fails."""

    def __init__(self, store: Store, fail: str = "", place: str = "") -> None:
        super().__init__(progress=lambda text: None)
        self.store, self.fail, self.place = store, fail, place
        self.log: List[tuple] = []
        self.intent_jobs: List[List[str]] = []  # what the intent listed at each call
        self.ids = itertools.count(100)
        self.sbatches = itertools.count(1)
        self.fail_cancel = False
        self.queue: Dict[str, str] = {}  # job id -> its --comment, as squeue shows them

    def run(self, argv: Sequence[str], hint: Optional[str] = None, env: Optional[Dict[str, str]] = None,
            backoff: object = None) -> str:
        words = [a for a in argv if not a.startswith("--clusters=")]
        if words[:3] == ["scontrol", "show", "config"]:
            return CONFIG
        if words[0] == "squeue":  # jobs in use (a submit limit applies), or jobs by their tag
            return "".join(f"{j}|{c}\n" for j, c in self.queue.items()) if "--format=%i|%k" in words else ""
        pending = Intents(self.store).pending()
        self.intent_jobs.append([*pending[0].jobs, f"guard={pending[0].guard}"] if pending else [])
        where = self.cluster or ""
        if words[0] == "sbatch":
            n = next(self.sbatches)
            tag = next(a for a in words if a.startswith("--comment=")).rsplit("-", 1)[1]
            self.log.append(("sbatch", where, tag))
            if self.fail == f"sbatch {n}":
                raise SlurmError(argv, 1, "sbatch: error: Batch job submission failed: Invalid partition name specified")
            job_id = str(next(self.ids))
            self.queue[job_id] = next(a for a in words if a.startswith("--comment=")).split("=", 1)[1]
            return f"{job_id};{self.place}" if self.place and "," in where else job_id
        if words[:2] == ["scontrol", "release"]:
            self.log.append(("release", where, words[2]))
            if self.fail == "release":
                raise SlurmError(argv, 1, "scontrol: error: Invalid job id specified")
            return ""
        if words[0] == "scancel":
            self.log.append(("scancel", where, ",".join(words[1:])))
            if self.fail_cancel:
                raise SlurmError(argv, 1, "scancel: error: Unable to contact slurm controller (connect failure)")
            return ""
        raise AssertionError(f"unexpected Slurm call: {list(argv)}")


def app(replicas: int = 1, retries: int = 0, roles: int = 1) -> AppDef:
    out = []
    for i in range(roles):
        role = Role(f"r{i}", image="", entrypoint="echo", args=["hi"], num_replicas=replicas,
                    resource=Resource(cpu=1, gpu=0, memMB=64))
        out.append(ForgeMeta(array=True, retry=RetrySpec(max_retries=retries)).apply(role))
    return AppDef("tx", roles=out)


def go(tmp_path: Path, the_app: AppDef, fail: str = "", place: str = "", **opts):
    store = Store(str(tmp_path / "state"))
    cli = FakeSlurm(store, fail=fail, place=place)
    opts = {"state_dir": str(tmp_path / "state"), "log_dir": str(tmp_path / "logs"), **opts}
    req = build_request(the_app, ForgeOpts.of(**opts))
    return cli, store, req


def test_held_then_recorded_then_released_together_and_the_guard_cancelled(tmp_path: Path):
    cli, store, req = go(tmp_path, app(replicas=6, retries=1))  # two arrays (MaxArraySize 4), each with a companion
    rec = submit(cli, Records(store), req)
    assert cli.log == [
        ("sbatch", "", "guard"), ("sbatch", "", "0"), ("sbatch", "", "0c"), ("sbatch", "", "1"), ("sbatch", "", "1c"),
        ("release", "", "101,102,103,104"), ("scancel", "", "100"),
    ]
    # the intent lists every job before the next call; it is gone once released
    assert cli.intent_jobs[:6] == [["guard="], ["guard=100"], ["101", "guard=100"], ["101", "102", "guard=100"],
                                   ["101", "102", "103", "guard=100"], ["101", "102", "103", "104", "guard=100"]]
    assert Intents(store).pending() == []
    assert rec.app_id == "101" and [j.job_id for j in rec.jobs] == ["101", "103"]
    assert [j.companion for j in rec.jobs] == ["102", "104"]
    assert Records(store).load("101") is not None
    assert all("--hold" in j.argv for j in rec.jobs) and rec.jobs[1].argv[3] == "--export=ALL,FORGE_APP_ID=101"


@pytest.mark.parametrize("fail, cancelled", [
    ("sbatch 1", None),  # the guard: nothing to cancel
    ("sbatch 2", "100"),  # the first job: its guard
    ("sbatch 4", "101,102,100"),  # the second job: the first, its companion, the guard
    ("release", "101,102,103,104,100"),
])
def test_a_failure_rolls_back_what_was_submitted_and_clears_the_intent(tmp_path: Path, fail: str, cancelled: Optional[str]):
    cli, store, req = go(tmp_path, app(replicas=6, retries=1), fail=fail)
    with pytest.raises(SlurmError):
        submit(cli, Records(store), req)
    scancels = [detail for kind, _, detail in cli.log if kind == "scancel"]
    assert scancels == ([cancelled] if cancelled else [])
    assert Intents(store).pending() == []
    assert Records(store).load("101") is None  # a record written before the release is taken back: not listed


def test_a_rollback_whose_cancel_fails_too_is_left_to_the_guard_without_a_record(tmp_path: Path):
    cli, store, req = go(tmp_path, app(replicas=2, roles=2), fail="release")
    cli.fail_cancel = True  # the controller went down between the record and the release
    with pytest.raises(SlurmError):
        submit(cli, Records(store), req)
    (left,) = Intents(store).pending()  # the guard, or the next command, rolls it back once Slurm answers
    assert left.jobs == ["101", "102"] and left.app_id == ""  # no record: recovery cancels, never releases
    assert Records(store).load("101") is None and Records(store).app_ids() in ([], ["101"])


def test_a_first_job_id_that_names_an_app_already_is_submitted_again(tmp_path: Path):
    """After a crash, Slurm hands out again the ids of jobs it lost: the app whose job had the id
    keeps its record, and the new app gets an id of its own."""
    cli, store, req = go(tmp_path, app(replicas=2, retries=1))
    first = submit(cli, Records(store), req)  # guard 100, job 101, companion 102
    cli.ids = itertools.count(100)  # the controller restarted from a state saved before the first submission
    cli.log.clear()
    _, _, req = go(tmp_path, app(replicas=2, retries=1))
    second = submit(cli, Records(store), req)
    assert first.app_id == "101" and second.app_id == "102"
    # the guard (100 again), the first job (101 again: cancelled while held), the first job once more
    assert [(k, d) for k, _, d in cli.log] == [("sbatch", "guard"), ("sbatch", "0"), ("scancel", "101"), ("sbatch", "0r1"),
                                             ("sbatch", "0c"), ("release", "102,103"), ("scancel", "100")]
    assert Records(store).load("101").submission == first.submission  # the first app's record is untouched


def test_a_state_dir_that_fails_mid_way_is_one_line_and_rolls_back(tmp_path: Path, monkeypatch):
    cli, store, req = go(tmp_path, app(replicas=2, retries=0, roles=2))

    def broken(self, rec):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Records, "save", broken)
    with pytest.raises(ConfigError, match=r"state dir .*: cannot write there \(Permission denied\)"):
        submit(cli, Records(store), req)
    assert cli.log == [("sbatch", "", "guard"), ("sbatch", "", "0"), ("sbatch", "", "1"), ("scancel", "", "101,102,100")]
    assert Intents(store).pending() == []


def test_a_log_dir_nobody_can_write_to_submits_nothing(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    cli, store, req = go(tmp_path, app(), log_dir=str(tmp_path / "file" / "logs"))
    with pytest.raises(ConfigError, match=r"log dir .*: cannot write there"):
        submit(cli, Records(store), req)
    assert cli.log == [] and Intents(store).pending() == []


def test_several_clusters_the_first_job_picks_one_and_the_rest_follow_it(tmp_path: Path):
    cli, store, req = go(tmp_path, app(replicas=6, retries=1), place="b", cluster="a,b")
    rec = submit(cli, Records(store), req)
    assert cli.log == [
        ("sbatch", "a,b", "0"), ("sbatch", "b", "guard"), ("sbatch", "b", "0c"), ("sbatch", "b", "1"),
        ("sbatch", "b", "1c"), ("release", "b", "100,102,103,104"), ("scancel", "b", "101"),
    ]
    # the intent follows: the first job, then the guard and the cluster Slurm chose, before the next sbatch
    assert cli.intent_jobs[:3] == [["guard="], ["100", "guard="], ["100", "guard=101"]]
    assert rec.app_id == "b:100" and rec.cluster == "b"
    assert [j.job_id for j in rec.jobs] == ["100", "103"] and [j.companion for j in rec.jobs] == ["102", "104"]
    assert "--clusters=b" in rec.jobs[0].argv  # kept to resubmit it: the cluster Slurm chose
    assert Intents(store).pending() == []


def test_later_waves_are_planned_and_their_wave_job_submitted_with_the_first(tmp_path: Path):
    cli, store, req = go(tmp_path, app(replicas=12), max_submit_jobs=8)
    rec = submit(cli, Records(store), req)
    kinds = [(kind, detail) for kind, _, detail in cli.log]
    assert kinds[0] == ("sbatch", "guard") and kinds[-2][0] == "release" and kinds[-1] == ("scancel", "100")
    assert ("sbatch", "wave1") in kinds
    released = kinds[-2][1].split(",")
    planned = [j for j in rec.jobs if j.planned]
    assert planned and all(j.job_id.startswith("wave") for j in planned)
    wave_job = next(j for j in rec.jobs if j.kind == "wave")
    assert wave_job.job_id in released and rec.waves > 1
    assert Intents(store).pending() == []


# -- an app of one job: one sbatch, not held ---------------------------------------------------------


def test_an_app_of_one_job_is_one_sbatch_not_held_after_an_intent_that_carries_its_record(tmp_path: Path):
    cli, store, req = go(tmp_path, app(replicas=3))
    intents_at_sbatch: List[dict] = []
    run = cli.run

    def spy(argv, *a, **kw):
        if argv[0] == "sbatch":
            intents_at_sbatch.extend(i.record for i in Intents(store).pending() if i.direct)
            assert "--hold" not in argv and kw["env"]["FORGE_SUBMISSION"]
        return run(argv, *a, **kw)

    cli.run = spy
    rec = submit(cli, Records(store), req)
    assert cli.log == [("sbatch", "", "0")]  # no guard, no release, no scancel
    assert intents_at_sbatch and intents_at_sbatch[0]["jobs"][0]["job_id"] == ""  # the record, but for its id
    assert rec.app_id == "100" and rec.jobs[0].tag == f"{rec.submission}-0" and "--hold" not in rec.jobs[0].argv
    assert Records(store).load("100").submission == rec.submission and Intents(store).pending() == []


def test_a_direct_job_whose_id_names_an_app_already_is_cancelled_and_sent_again(tmp_path: Path):
    cli, store, req = go(tmp_path, app(replicas=2))
    first = submit(cli, Records(store), req)
    cli.ids, _ = itertools.count(100), cli.log.clear()  # Slurm lost job 100 and gives its id again
    _, _, req = go(tmp_path, app(replicas=2))
    second = submit(cli, Records(store), req)
    assert [(k, d) for k, _, d in cli.log] == [("sbatch", "0"), ("scancel", "100"), ("sbatch", "0r1")]
    assert (first.app_id, second.app_id) == ("100", "101")
    assert Records(store).load("100").submission == first.submission


def test_a_direct_job_is_cancelled_when_its_record_cannot_be_written(tmp_path: Path, monkeypatch):
    cli, store, req = go(tmp_path, app(replicas=2))
    monkeypatch.setattr(Records, "save", lambda self, rec: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(ConfigError, match="cannot write there"):
        submit(cli, Records(store), req)
    assert cli.log == [("sbatch", "", "0"), ("scancel", "", "100")] and Intents(store).pending() == []


def _killed_before_the_record(tmp_path: Path, monkeypatch):
    """A direct submission whose client died between its sbatch and its record: the intent is left."""
    from torchx_forge.slurm.submit import Submission

    cli, store, req = go(tmp_path, app(replicas=2))
    monkeypatch.setattr(Submission, "write_record", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
    monkeypatch.setattr(Submission, "roll_back", lambda self: None)
    with pytest.raises(KeyboardInterrupt):
        submit(cli, Records(store), req)
    monkeypatch.undo()
    (intent,) = Intents(store).pending()
    return cli, store, intent


@pytest.mark.parametrize("where", ["squeue", "claim"])
def test_the_next_command_adopts_a_direct_job_left_without_its_record(tmp_path: Path, monkeypatch, where: str):
    from torchx_forge.core import layout
    from torchx_forge.slurm.recover import recover

    cli, store, intent = _killed_before_the_record(tmp_path, monkeypatch)
    assert intent.direct and intent.jobs == [] and Records(store).load("100") is None
    if where == "claim":  # the job ended and left squeue; its first task wrote the claim on starting
        cli.queue.clear()
        store.write_bytes(layout.intent_claim(intent.submission), b"100")
    cli.log.clear()
    said = recover(cli, Records(store), Intents(store), intent)
    assert "adopted: app slurm_forge://torchx/100" in said, said
    assert [k for k, _, _ in cli.log] == []  # nothing cancelled, nothing released
    rec = Records(store).load("100")
    assert rec.submission == intent.submission and rec.jobs[0].job_id == "100"
    assert Intents(store).pending() == [] and not store.exists(layout.intent_claim(intent.submission))


def test_adoption_without_any_job_found_forgets_the_submission(tmp_path: Path, monkeypatch):
    from torchx_forge.slurm.recover import recover

    cli, store, intent = _killed_before_the_record(tmp_path, monkeypatch)
    cli.queue.clear()  # the sbatch never went through (and no task ever started)
    said = recover(cli, Records(store), Intents(store), intent)
    assert "nothing of it is queued" in said and Records(store).app_ids() == [] and Intents(store).pending() == []
