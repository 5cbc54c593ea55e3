"""The watch loop: one table per change, growing pauses, exit when every app has ended."""

import io

from torchx_forge.cli.watch import Watcher, bar, lines_of, render
from torchx_forge.slurm.merge import TaskView
from torchx_forge.state.records import AppRecord, JobRecord, RoleRecord


def app(states):
    rec = AppRecord(app_id="7", name="demo", jobs=[JobRecord(job_id="7", kind="array", role="demo", size=len(states))],
                    roles=[RoleRecord("demo", len(states))], log_dir="/tmp")
    views = [TaskView("demo", k, f"7_{k}", s) for k, s in enumerate(states)]
    return rec, views


def test_counts_per_state_and_a_progress_bar():
    rec, views = app(["PENDING", "RUNNING", "COMPLETED", "FAILED"])
    (line,) = lines_of(rec, views)
    assert line.counts == (1, 1, 1, 1, 0) and line.done == 2
    assert bar(2, 4) == "[##########..........]  50%"
    assert "demo" in render([line]) and "PROGRESS" in render([line])


def test_pauses_double_while_nothing_changes_and_it_exits_when_all_ended():
    polls = [app(["RUNNING", "PENDING"])] * 3 + [app(["COMPLETED", "COMPLETED"])]
    sleeps, calls = [], [0]

    def poll():
        calls[0] += 1
        return [polls.pop(0)], []

    out = io.StringIO()
    assert Watcher(poll, lambda: calls[0], out, interval=2, max_interval=5, sleep=sleeps.append).run() == 0
    assert sleeps == [2, 4, 5]  # 2 s after a change, then doubling up to the cap
    assert out.getvalue().count("APP ") == 2  # printed when it changed, not at every poll
    assert "poll 4: 1 Slurm call(s) for 1 app(s)" in out.getvalue()
