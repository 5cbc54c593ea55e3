"""Submissions in flight, and what the submit side checks of a directory before using it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from torchx_forge.state.files import dir_problem
from torchx_forge.state.intents import Intent, Intents
from torchx_forge.state.store import Store


def test_an_intent_is_written_before_and_gone_after(tmp_path):
    intents = Intents(Store(str(tmp_path)))
    i = Intent("20261201-x", "app", str(tmp_path), "/logs")
    intents.save(i)
    assert [p.submission for p in intents.pending()] == ["20261201-x"]
    i.jobs.append("12")
    intents.save(i)
    assert intents.load("20261201-x").jobs == ["12"]
    intents.done(i)
    intents.done(i)  # twice is fine
    assert intents.pending() == []


def test_a_client_that_died_on_this_machine_is_stale_at_once_one_that_runs_is_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert Intent("s", "app", "d", "l", pid=dead.pid).stale(after=3600)
    assert not Intent("s", "app", "d", "l", pid=os.getpid()).stale(after=0)


def test_seen_from_another_machine_an_intent_is_stale_once_nobody_touched_it_for_a_while(tmp_path):
    far = Intent("s", "app", "d", "l", host="another-login-node", updated=time.time() - 100)
    assert far.stale(after=60) and not far.stale(after=600)


def test_dir_problem_names_what_is_wrong(tmp_path):
    assert dir_problem(str(tmp_path / "new" / "logs")) is None and (tmp_path / "new" / "logs").is_dir()
    (tmp_path / "file").write_text("x")
    assert "cannot write there" in dir_problem(str(tmp_path / "file" / "logs"))
    assert "is full" in dir_problem(str(tmp_path), min_free=1 << 62)
