"""Batch scripts live in the state dir, local or on an object store, and every later sbatch reads
them from there: nothing depends on a temporary directory of the machine that submitted first."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pytest
from torchx.specs import AppDef, Resource, Role

from torchx_forge.core import layout
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.jobs import build_request
from torchx_forge.slurm.options import ForgeOpts
from torchx_forge.slurm.resubmit import resubmit
from torchx_forge.slurm.scripts import ScriptMissingError, local_copy, sbatch_script
from torchx_forge.slurm.submit import submit
from torchx_forge.state.records import Records
from torchx_forge.state.store import Store

CONFIG = "Configuration data as of 2026-01-01T00:00:00\nMaxJobCount             = 10000\nSLURM_VERSION           = 22.05.8\n"


class Sbatch(SlurmCli):
    """Takes every sbatch and keeps (path given, script text read at that moment) of each."""

    def __init__(self) -> None:
        super().__init__(progress=lambda text: None)
        self.given: List[tuple] = []
        self.next_id = 500

    def run(self, argv: Sequence[str], hint: Optional[str] = None, env: Optional[Dict[str, str]] = None,
            backoff: object = None) -> str:
        assert list(argv[:3]) == ["scontrol", "show", "config"], argv
        return CONFIG

    def submit(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
               tag: Optional[str] = None) -> Tuple[str, str]:
        last = argv[-1]
        if not last.startswith("--"):  # a script file, not --wrap
            assert "://" not in last, f"sbatch was handed a URL it cannot read: {last}"
            self.given.append((last, Path(last).read_text()))
        self.next_id += 1
        return str(self.next_id), ""

    def release(self, job_ids: Iterable[str]) -> None:
        pass

    def cancel(self, job_ids: Iterable[str], signal: Optional[str] = None, batch: bool = False,
               ended_ok: bool = False) -> None:
        pass


def app() -> AppDef:
    return AppDef("scripted", roles=[Role("t", image="", entrypoint="echo", args=["hi"], resource=Resource(cpu=1, gpu=0, memMB=64),
                                          max_retries=1)])


@pytest.fixture
def url_state():
    return f"memory://forge-scripts-{uuid.uuid4().hex}/state"


def test_scripts_of_an_object_store_state_dir_live_in_it(url_state, tmp_path):
    cli, store = Sbatch(), Store(url_state)
    opts = ForgeOpts.of(state_dir=url_state, log_dir=str(tmp_path / "logs"))
    rec = submit(cli, Records(store), build_request(app(), opts))
    job = rec.jobs[0]
    where = store.url_of(layout.submission_script(rec.submission, 0))
    assert job.script == where and job.argv[-1] == where and where.startswith("memory://")
    text = store.read_bytes(layout.submission_script(rec.submission, 0)).decode()
    assert text.startswith("#!/bin/bash") and "torchx_forge.node.launch" in text
    path, given = cli.given[0]
    assert given == text  # sbatch read the very script the record names
    assert not os.path.exists(path)  # its local copy is gone: the store holds the one that counts


def test_a_resubmission_reads_the_script_from_the_store(url_state, tmp_path):
    cli, store = Sbatch(), Store(url_state)
    records = Records(store)
    rec = submit(cli, records, build_request(app(), ForgeOpts.of(state_dir=url_state, log_dir=str(tmp_path / "logs"))))
    cli.given.clear()
    new = resubmit(cli, records, rec, rec.jobs[0], None, "python3", extra_retries=1)
    assert new.argv[-1] == rec.jobs[0].argv[-1]  # the record of the retry names the same script
    assert cli.given and cli.given[0][1] == store.read_bytes(layout.submission_script(rec.submission, 0)).decode()
    assert records.load(rec.app_id).jobs[-1].job_id == new.job_id


def test_a_local_state_dir_keeps_its_scripts_where_they_were(tmp_path):
    cli, state = Sbatch(), tmp_path / "state"
    rec = submit(cli, Records(Store(str(state))), build_request(app(), ForgeOpts.of(state_dir=str(state))))
    path = state / layout.submission_script(rec.submission, 0)
    assert rec.jobs[0].argv[-1] == str(path) and cli.given[0][0] == str(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_script_that_is_gone_is_one_clear_line(url_state, tmp_path):
    with pytest.raises(ScriptMissingError, match=r"cannot resubmit job 12: its script memory://.* is not in the store"), \
            local_copy(f"{url_state}/submissions/x/job-0.sh", job="12"):
        pass
    with pytest.raises(ScriptMissingError, match=r"its script /nowhere/job-0.sh is gone"):
        sbatch_script(Sbatch(), ["sbatch", "--parsable", "/nowhere/job-0.sh"], job="12")
