"""The state dir on a real S3 API server (moto's server mode on loopback), without the cluster:
records, task files, run tables read by the launcher in another process, the server killed and
back. The cluster-wide story is tests/cluster/test_s3.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, S3Server
from torchx_forge.core import layout, runrow, runtable
from torchx_forge.core.storage import StoreUnreachableError
from torchx_forge.state.records import AppRecord, JobRecord, Records, RoleRecord
from torchx_forge.state.store import Store


def test_records_round_trip_on_s3(s3_state: str):
    records = Records(Store(s3_state))
    rec = AppRecord(app_id="41", name="s3app", jobs=[JobRecord("41", "array", role="r", size=2)], roles=[RoleRecord("r", 2)],
                    log_dir="/logs")
    records.save(rec)
    records.add_job("41", JobRecord("42", "array", role="r", size=1, tasks=[1], retry_of="41"))
    for i in range(2):
        records.store.write_json(layout.task_file("41", "r", i), {"state": "COMPLETED", "attempt": 0})
    back = Records(Store(s3_state)).load("41")  # a fresh client: nothing from this one's memory
    assert back is not None and [j.job_id for j in back.jobs] == ["41", "42"]
    assert Records(Store(s3_state)).app_ids() == ["41"]
    assert sorted(Records(Store(s3_state)).task_reports("41")) == ["r.0", "r.1"]
    assert not records.cancelled("41")
    records.mark_cancelled("41")
    assert Records(Store(s3_state)).cancelled("41")


def test_the_launcher_reads_its_run_table_from_s3_and_writes_its_state_there(s3_state: str, tmp_path):
    store = Store(s3_state)
    base = runrow.Base(command=(sys.executable, "-c", "import os; print('ran', os.environ['FORGE_RUN_ID'])"),
                         workdir=str(tmp_path))
    row = runrow.RunRow(0, "r-0", argv=base.command, workdir=str(tmp_path))
    table_url = store.put_table(runtable.rows_table("t", "", [row], {"r": [0]}))
    assert table_url.startswith("s3://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FORGE"))}
    env.update(FORGE_APP_ID="77", FORGE_STATE_DIR=s3_state, PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}")
    p = subprocess.run([sys.executable, "-m", "torchx_forge.node.launch", "--role", "r", "--replica", "0", "--",
                        sys.executable, "-m", "torchx_forge.node.task", "--table", table_url, "--role", "r", "--replica", "0"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ran r-0" in p.stdout
    state = Records(Store(s3_state)).task_reports("77")["r.0"]
    assert state.state is not None and state.state.value == "COMPLETED"
    summary = json.loads(Store(s3_state).read_bytes("results/77/r-0/summary.json"))
    assert summary["state"] == "COMPLETED" and summary["run_id"] == "r-0"


def test_a_killed_server_is_a_quick_one_line_error_and_comes_back_with_everything(s3_server: S3Server, s3_state: str):
    store = Store(s3_state)
    store.write_json("apps/5/record.json", {"app_id": "5"})
    s3_server.kill()
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnreachableError) as e:
            Store(s3_state).read_json("apps/5/record.json")
        assert time.monotonic() - start < 30
        text = str(e.value)
        assert text.startswith(f"{s3_state}/apps/5/record.json: the store did not answer (")
        assert s3_server.endpoint in text and "\n" not in text
    finally:
        s3_server.start()
    assert Store(s3_state).read_json("apps/5/record.json") == {"app_id": "5"}  # nothing lost
