"""The cluster's limits: what is asked of Slurm for an app of a given size, and what is cached."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from torchx_forge.slurm import limits as lim
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.limits import CACHE, SMALL_APP, ClusterLimits, cache_path
from torchx_forge.state.store import Store

CONFIG = ("MaxJobCount = 10000\nMaxArraySize = 1001\nSLURM_VERSION = 22.05.8\nClusterName = lab\n"
          "AccountingStorageEnforce = associations,limits,qos\n")


class Answers(SlurmCli):
    """scontrol show config and the two sacctmgr calls, each logged by its command."""

    def __init__(self, max_submit: str = "1000") -> None:
        super().__init__(progress=lambda text: None)
        self.calls: List[str] = []
        self.max_submit = max_submit

    def run(self, argv: Sequence[str], hint: Optional[str] = None, env: Optional[Dict[str, str]] = None,
            backoff: object = None) -> str:
        self.calls.append(argv[0])
        if argv[0] == "scontrol":
            return CONFIG
        if "assoc" in argv:
            return f"lab|acct|{self.max_submit}|normal\n"
        return "normal|\n"


def test_a_small_app_never_waits_for_sacctmgr(tmp_path: Path):
    cli, store = Answers(), Store(str(tmp_path))
    got = ClusterLimits.read(cli, store, need=SMALL_APP)
    assert cli.calls == ["scontrol"] and got.max_array_size == 1001 and got.submit_time == 0
    assert ClusterLimits.read(cli, store, need=1) == got and cli.calls == ["scontrol"]  # cached


def test_a_big_app_asks_once_and_the_answer_stands_while_it_is_far_below_the_limit(tmp_path: Path, monkeypatch):
    cli, store = Answers(max_submit="10000"), Store(str(tmp_path))
    first = ClusterLimits.read(cli, store, need=1000)
    assert cli.calls == ["scontrol", "sacctmgr", "sacctmgr"] and first.assoc_max_submit == 10000
    cli.calls.clear()
    ClusterLimits.read(cli, store, need=1000)
    assert cli.calls == []  # within CACHE_TTL
    later = time.time() + lim.CACHE_TTL + 1
    monkeypatch.setattr(lim.time, "time", lambda: later)
    again = ClusterLimits.read(cli, store, need=1000)  # 1,000 is far below 10,000: only the controller's config
    assert cli.calls == ["scontrol"] and again.assoc_max_submit == 10000 and again.submit_time == first.submit_time
    cli.calls.clear()
    ClusterLimits.read(cli, store, need=6000)  # within half of the limit: worth asking again
    assert cli.calls == ["scontrol", "sacctmgr", "sacctmgr"], cli.calls


def test_submit_limits_older_than_a_day_are_asked_again(tmp_path: Path, monkeypatch):
    cli, store = Answers(max_submit="10000"), Store(str(tmp_path))
    ClusterLimits.read(cli, store, need=1000)
    later = time.time() + lim.SUBMIT_TTL + 1
    monkeypatch.setattr(lim.time, "time", lambda: later)
    cli.calls.clear()
    ClusterLimits.read(cli, store, need=1000)
    assert cli.calls == ["scontrol", "sacctmgr", "sacctmgr"]


def test_the_cache_is_per_user_and_the_shared_format_1_cache_still_gives_the_version(tmp_path: Path, monkeypatch):
    store = Store(str(tmp_path))
    store.write_json(CACHE, {"time": 0, "slurm_version": "18.08.9"})  # format 1, every user's
    assert ClusterLimits.known_version(store) == "18.08.9"
    ClusterLimits.read(Answers(), store, need=1)
    assert cache_path(None) != CACHE and (tmp_path / cache_path(None)).exists()
    assert ClusterLimits.known_version(store) == "22.05.8"  # this user's, read now
    monkeypatch.setattr(lim, "_user", lambda: "someone-else")
    assert json.loads((tmp_path / CACHE).read_text())["slurm_version"] == "18.08.9"  # the shared one untouched
    assert ClusterLimits.known_version(store) == "18.08.9"  # another user has no cache of their own yet


@pytest.mark.parametrize("need, limit, stands", [
    (1, None, True), (SMALL_APP, 5, True),  # a small app never asks
    (SMALL_APP + 1, None, True), (400, 1000, True),  # no limit last time, or far below it: good for a day
    (600, 1000, False),  # within half of the limit, read more than CACHE_TTL ago: ask again
])
def test_which_apps_the_submit_limits_read_11_minutes_ago_stand_for(need: int, limit: Optional[int], stands: bool):
    ago = time.time() - lim.CACHE_TTL - 60
    assert ClusterLimits(assoc_max_submit=limit, time=ago, submit_time=ago).submit_limits_do(need) is stands
    assert ClusterLimits().submit_limits_do(need) is (need <= SMALL_APP)  # never read


def test_an_app_far_below_its_own_qos_limit_is_not_held_to_a_smaller_qos_of_someone_else(tmp_path: Path):
    ago = time.time() - lim.CACHE_TTL - 60
    read = ClusterLimits(qos_max_submit={"cap100": 100}, default_qos="normal", time=ago, submit_time=ago)
    assert read.submit_limits_do(1000) and read.submit_limits_do(1000, "normal")  # normal has no limit
    assert not read.submit_limits_do(1000, "cap100")  # above its own QOS's limit: ask again
