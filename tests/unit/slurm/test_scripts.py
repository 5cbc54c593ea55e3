"""Batch scripts live in the state dir, local or on an object store, and every later sbatch reads
them from there: nothing depends on a temporary directory of the machine that submitted first."""

from __future__ import annotations

import os
import uuid

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.core import layout
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.resubmit import resubmit
from torchx_forge.slurm.scripts import ScriptMissingError, local_copy, sbatch_script
from torchx_forge.slurm.submit import submit
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store
from unit.fakeslurm import FakeSlurm


def given(cli: FakeSlurm, since: int = 0) -> list:
    """(path given, script text sbatch read then) of each sbatch of a script file, from call ``since`` on."""
    return [(c.script_path, c.script) for c in cli.log[since:] if c.script_path is not None]


def app() -> AppDef:
    return AppDef("scripted", roles=[Role("t", image="", entrypoint="echo", args=["hi"], resource=Resource(cpu=1, gpu=0, memMB=64),
                                          max_retries=1)])


@pytest.fixture
def url_state():
    return f"memory://forge-scripts-{uuid.uuid4().hex}/state"


def test_scripts_of_an_object_store_state_dir_live_in_it(url_state, tmp_path):
    cli, store = FakeSlurm(), Store(url_state)  # sbatch cannot open a URL: it must be handed a local file
    opts = ForgeOpts.of(state_dir=url_state, log_dir=str(tmp_path / "logs"))
    rec = submit(cli, Records(store), build_request(app(), opts))
    job = rec.jobs[0]
    where = store.url_of(layout.submission_script(rec.submission, 0))
    assert job.script == where and job.argv[-1] == where and where.startswith("memory://")
    text = store.read_bytes(layout.submission_script(rec.submission, 0)).decode()
    assert text.startswith("#!/bin/bash") and "torchx_forge.node.launch" in text
    path, read = given(cli)[0]
    assert read == text  # sbatch read the very script the record names
    assert not os.path.exists(path)  # its local copy is gone: the store holds the one that counts


def test_a_resubmission_reads_the_script_from_the_store(url_state, tmp_path):
    cli, store = FakeSlurm(), Store(url_state)
    records = Records(store)
    rec = submit(cli, records, build_request(app(), ForgeOpts.of(state_dir=url_state, log_dir=str(tmp_path / "logs"))))
    since = len(cli.log)
    new = resubmit(cli, records, rec, rec.jobs[0], None, "python3", extra_retries=1)
    assert new.argv[-1] == rec.jobs[0].argv[-1]  # the record of the retry names the same script
    again = given(cli, since)
    assert again and again[0][1] == store.read_bytes(layout.submission_script(rec.submission, 0)).decode()
    assert records.load(rec.app_id).jobs[-1].job_id == new.job_id


def test_a_local_state_dir_keeps_its_scripts_where_they_were(tmp_path):
    cli, state = FakeSlurm(), tmp_path / "state"
    rec = submit(cli, Records(Store(str(state))), build_request(app(), ForgeOpts.of(state_dir=str(state))))
    path = state / layout.submission_script(rec.submission, 0)
    assert rec.jobs[0].argv[-1] == str(path) and given(cli)[0][0] == str(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_script_that_is_gone_is_one_clear_line(url_state, tmp_path):
    with pytest.raises(ScriptMissingError, match=r"cannot resubmit job 12: its script memory://.* is not in the store"), \
            local_copy(f"{url_state}/submissions/x/job-0.sh", job="12"):
        pass
    with pytest.raises(ScriptMissingError, match=r"its script /nowhere/job-0.sh is gone"):
        sbatch_script(FakeSlurm(), ["sbatch", "--parsable", "/nowhere/job-0.sh"], job="12")


def test_a_resubmission_never_takes_an_id_the_app_had(tmp_path):
    """After a crash Slurm gives again the ids of jobs it lost: a retried job that gets one of its
    app's own earlier ids (its records would mix them up) is cancelled while held and submitted again."""
    cli, state = FakeSlurm(), tmp_path / "state"
    records = Records(Store(str(state)))
    rec = submit(cli, records, build_request(app(), ForgeOpts.of(state_dir=str(state))))
    lost = rec.jobs[0].job_id
    cli.slurm.queue.clear()  # the controller restarted from a state saved before the submission
    cli.slurm.next_id, cli.slurm.reuse_ids = int(lost), True
    new = resubmit(cli, records, rec, rec.jobs[0], None, "python3", extra_retries=1)
    assert new.job_id not in rec.job_ids(companions=True) and new.companion not in rec.job_ids(companions=True) + [None]
    assert any(c.argv[0] == "scancel" and lost in c.argv for c in cli.log)
