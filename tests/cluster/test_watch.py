"""``torchx forge watch`` on the real cluster: many apps, one Slurm call per poll."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from torchx import specs
from torchx.runner import get_runner

from conftest import LabCluster, handle_of, run_torchx
from torchx_forge.cli.watch import Watcher

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def test_a_hundred_apps_cost_one_sacct_per_poll(flood_cluster: LabCluster, state_dir: Path):
    # on the flood cluster: a hundred jobs at once would hold back the jobs of the tests beside it
    # 6 s each: 100 of them on 12 CPUs outlast the submissions (one sbatch each) and a few polls
    app = specs.AppDef("tiny", roles=[specs.Role("t", image="", entrypoint="sleep", args=["6"])])
    with get_runner() as runner:
        handles = [runner.run(app, scheduler="slurm_forge") for _ in range(100)]
        sched = runner._scheduler("slurm_forge")
        ids = [h.rsplit("/", 1)[1] for h in handles]
        polls = []

        def poll():
            before = len(sched.cli.calls)
            found = sched.poll(ids)
            polls.append([c[0] for c in sched.cli.calls[before:]])
            return found

        out = io.StringIO()
        failed = Watcher(poll, lambda: len(sched.cli.calls), out, interval=1, max_interval=4).run()
    assert failed == 0
    assert len(polls) >= 2 and all(calls == ["sacct"] for calls in polls), polls
    text = out.getvalue()
    assert len(re.findall(r"^  \d+\s+tiny ", text, re.M)) >= 100  # a row per app
    last = text.rsplit("APP", 1)[1]
    assert re.search(r"all\s+-\s+100\s+0\s+0\s+100\s+0\s+0\s+\[#{20}\] 100%", last), last
    assert "1 Slurm call(s) for 100 app(s)" in last


def test_watch_from_the_command_line_shows_steps_and_exits_with_the_apps(state_dir: Path, tmp_path: Path):
    ok = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "forge.grid", "--name", "ok", "--axes",
                              "run.env.I=range(0,6)", "--", "true"))
    bad = handle_of(run_torchx("run", "--scheduler", "slurm_forge", "utils.sh", "sh", "-c", "exit 4"))
    w = run_torchx("forge", "watch", ok, bad, "--interval", "1", "--max-interval", "2", timeout=180)
    assert w.returncode == 1, w.stdout + w.stderr  # one of them failed
    final = w.stdout.rsplit("APP", 1)[1]
    assert re.search(r"\bok\s+-\s+6\s+0\s+0\s+6\s+0\s+0\s", final), final
    assert re.search(r"\bsh\s+-\s+1\s+0\s+0\s+0\s+1\s+0\s", final), final
    once = run_torchx("forge", "watch", "--once", ok)
    assert once.returncode == 0 and re.search(r"poll 1: [01] Slurm call\(s\) for 1 app\(s\)$", once.stdout.strip()), once.stdout
    unknown = run_torchx("forge", "watch", "slurm_forge://torchx/999999")
    assert unknown.returncode == 1 and "no slurm_forge record of app '999999'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
