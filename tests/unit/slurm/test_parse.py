"""Parsing what Slurm 22.05 prints (outputs captured from the local cluster)."""


import pytest
from torchx.specs import AppState

from conftest import REPO
from torchx_forge.core.hostlist import expand_hostlist, expand_ranges
from torchx_forge.core.slurm_time import format_duration, parse_slurm_time
from torchx_forge.core.states import SlurmState
from torchx_forge.slurm.parse import (
    APP_STATES,
    group_attempts,
    parse_sacct,
    parse_squeue,
    split_job_id,
    to_app_state,
)

FIXTURES = REPO / "tests" / "fixtures"
# squeue --noheader --states=all --format=%i|%T|%r|%N|%j --jobs=7,8 (real output)
SQUEUE = (FIXTURES / "squeue-22.05.txt").read_text()
# sacct -X -D --parsable2 --noheader -o JobID,JobName,State,ExitCode,NodeList,Start,End,Reason
SACCT = (FIXTURES / "sacct-22.05.txt").read_text()


def test_every_slurm_state_maps_and_unknown_is_safe():
    for state in SlurmState:
        assert isinstance(to_app_state(state), AppState) and state in APP_STATES
    assert to_app_state("CANCELLED by 0") == AppState.CANCELLED
    assert to_app_state("CANCELLED+") == AppState.CANCELLED
    assert to_app_state("OUT_OF_MEMORY") == AppState.FAILED
    assert to_app_state("REQUEUED") == AppState.PENDING
    assert to_app_state("SOMETHING_NEW") == AppState.UNKNOWN
    assert SlurmState.parse("") == "UNKNOWN"


def test_expand_ranges_and_hostlists():
    assert expand_ranges("2-5%2") == [2, 3, 4, 5]
    assert expand_ranges("1,3,7-9") == [1, 3, 7, 8, 9]
    assert expand_ranges("0-6:3") == [0, 3, 6]
    assert expand_hostlist("n[1-3]") == ["n1", "n2", "n3"]
    assert expand_hostlist("gpu-[01-02,05],login1") == ["gpu-01", "gpu-02", "gpu-05", "login1"]
    assert expand_hostlist("n1") == ["n1"]
    assert expand_hostlist("") == []


def test_split_job_id():
    assert split_job_id("12") == ("12", None, None, False)
    assert split_job_id("12_3") == ("12", "3", None, False)
    assert split_job_id("12_[3-5%2]") == ("12", "3-5%2", None, False)
    assert split_job_id("12+1") == ("12", None, 1, False)
    assert split_job_id("12.batch")[3] is True
    assert split_job_id("garbage")[0] == ""


def test_parse_squeue_expands_collapsed_array_rows():
    rows = {r.key: r for r in parse_squeue(SQUEUE)}
    assert sorted(rows) == ["7_0", "7_1", "7_2", "7_3", "7_4", "7_5", "8+0", "8+1"]
    assert rows["7_4"].state == "PENDING" and rows["7_4"].reason == "JobArrayTaskLimit"
    assert rows["8+1"].nodes == "n2" and rows["8+1"].name == "b-0"


def test_parse_sacct_attempts_states_and_exit_codes():
    rows = parse_sacct(SACCT)
    assert all(not r.key.endswith("batch") for r in rows)
    hist = group_attempts(rows)
    assert hist["7_0"].attempts == 2 and hist["7_0"].last.state == "COMPLETED"
    assert hist["7_0"].last.nodes == "n2"
    assert hist["7_1"].last.state == "CANCELLED"
    assert hist["8+1"].last.exit_code == 3
    assert hist["7_3"].last.state == "PENDING" and hist["7_3"].last.nodes == ""


@pytest.mark.parametrize(
    "text,seconds",
    [("60", 3600), ("90:00", 5400), ("48:00:00", 172800), ("1-12", 129600), ("1-12:30", 131400),
     ("2-00:00:01", 172801), ("5:30", 330)],
)
def test_parse_slurm_time_accepts_every_sbatch_form(text, seconds):
    assert parse_slurm_time(text) == seconds


def test_parse_slurm_time_rejects_garbage_and_knows_unlimited():
    assert parse_slurm_time("UNLIMITED") is None
    with pytest.raises(ValueError, match="not a Slurm time"):
        parse_slurm_time("1h")
    assert format_duration(5400) == "1:30:00"
    assert format_duration(93600) == "1-02:00:00"


def test_parse_sacct_ignores_a_stale_array_range_for_tasks_with_their_own_record():
    # real `sacct -X -D` output of a pipeline eval step on Slurm 22.05: task 0 ran (record 12647),
    # task 1 was cancelled by Slurm when its training failed, but the array's own record kept "[0-1]"
    text = (
        "12645_0|eval|COMPLETED|0:0|n1|2026-11-22T06:14:04|2026-11-22T06:14:04|Dependency\n"
        "12645_[0-1]|eval|CANCELLED|0:0|None assigned|None|2026-11-22T06:15:29|Dependency\n"
        "12650_[2-3]|eval|CANCELLED|0:0|None assigned|None|2026-11-22T06:15:29|Dependency\n"
    )
    hist = group_attempts(parse_sacct(text))
    assert hist["12645_0"].attempts == 1 and hist["12645_0"].last.state == "COMPLETED"
    assert hist["12645_1"].last.state == "CANCELLED"
    assert [hist[k].last.state for k in ("12650_2", "12650_3")] == ["CANCELLED", "CANCELLED"]
