"""``torchx forge watch``: follow many apps at once, with one Slurm call per poll for all of them.

    torchx forge watch                                  every app of yours that has not ended
    torchx forge watch slurm_forge://torchx/12 ...      those apps
    torchx forge watch --once                           one table, then exit

A table of counts per app and pipeline step (pending, running, succeeded, failed, cancelled) with
a progress bar, redrawn in place on a terminal and printed again when it changes otherwise. The
poll interval starts at ``--interval`` and doubles while nothing changes, up to ``--max-interval``
(submitit's backoff); it exits when every app has ended.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

from torchx.specs import AppState

from torchx_forge import laptop as scheduler  # slurm_forge as torchx makes it: apps on a login too
from torchx_forge.cli.apps import app_id_of
from torchx_forge.slurm.merge import app_state
from torchx_forge.slurm.report import format_table
from torchx_forge.slurm.views import TaskView
from torchx_forge.state.records import AppRecord

COLUMNS = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
BAR = 20


def _bucket(v: TaskView) -> str:
    """A task's column: pending until Slurm says otherwise (accounting lags a new submission)."""
    state = v.state
    if state in (AppState.RUNNING,):
        return "RUNNING"
    if state in (AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED):
        return state.name
    return "PENDING"


def bar(done: int, total: int) -> str:
    filled = int(BAR * done / total) if total else BAR
    return f"[{'#' * filled}{'.' * (BAR - filled)}] {100 * done // max(total, 1):3d}%"


@dataclass(frozen=True)
class Line:
    """One row of the table: an app, or one step of a pipeline."""

    app_id: str
    name: str
    step: str
    counts: Tuple[int, ...]
    waves: str

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def done(self) -> int:
        return sum(self.counts[2:])

    def cells(self) -> List[str]:
        return [self.app_id, self.name, self.step or "-", f"{self.total:,}", *(f"{n:,}" for n in self.counts),
                bar(self.done, self.total), self.waves]


def lines_of(rec: AppRecord, views: List[TaskView]) -> List[Line]:
    """The app's rows: one per pipeline step, else one."""
    waves = f"{rec.waves - len(rec.unsubmitted_waves())}/{rec.waves}" if rec.waves > 1 else ""
    groups = [(s, roles) for s, roles in rec.stages()] or [("", [r.name for r in rec.roles])]
    out = []
    for step, roles in groups:
        counts = Counter(_bucket(v) for v in views if v.role in roles)
        out.append(Line(rec.app_id, rec.name, step, tuple(counts.get(c, 0) for c in COLUMNS), waves))
    return out


def ended(views: List[TaskView]) -> bool:
    return bool(views) and all(v.final and not v.retry_pending for v in views) and app_state(views) in (
        AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED)


def render(lines: Sequence[Line]) -> str:
    header = ["APP", "NAME", "STEP", "TASKS", *COLUMNS, "PROGRESS", "WAVES"]
    total = Line("all", "", "", tuple(sum(ln.counts[i] for ln in lines) for i in range(len(COLUMNS))), "")
    rows = [header] + [ln.cells() for ln in lines]
    if len(lines) > 1:
        rows.append(total.cells())
    return format_table(rows)


class Watcher:
    """Polls the apps until they have all ended; one Slurm call per poll, growing pauses."""

    def __init__(self, poll: Callable[[], Tuple[List[Tuple[AppRecord, List[TaskView]]], List[str]]],
                 calls: Callable[[], int], out: TextIO, interval: float = 2.0, max_interval: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.poll, self.calls, self.out = poll, calls, out
        self.interval, self.max_interval, self.sleep = interval, max_interval, sleep
        self.tty = out.isatty()
        self.polls = 0

    def run(self, once: bool = False) -> int:
        """Watch; returns how many apps failed or were cancelled."""
        pause, last = self.interval, ""
        while True:
            before = self.calls()
            found, notes = self.poll()
            self.polls += 1
            lines = [ln for rec, views in found for ln in lines_of(rec, views)]
            table = render(lines) if lines else "  no app of yours is running (see `torchx list -s slurm_forge`)"
            finished = all(ended(views) for _, views in found)
            changed = table != last
            pause = self.interval if changed else min(pause * 2, self.max_interval)
            footer = [f"note: {n}" for n in notes]
            footer.append(f"{time.strftime('%H:%M:%S')}  poll {self.polls}: {self.calls() - before} Slurm call(s) for"
                          f" {len(found)} app(s)" + ("" if finished or once else f"; next in {pause:g} s"))
            if changed or self.tty or finished or once:
                self.show(table, footer)
            last = table
            if finished or once:
                return sum(1 for _, views in found if app_state(views) in (AppState.FAILED, AppState.CANCELLED))
            self.sleep(pause)

    def show(self, table: str, footer: List[str]) -> None:
        if self.tty:
            self.out.write("\x1b[H\x1b[2J")  # redraw in place
        self.out.write(table + "\n" + "\n".join(footer) + "\n")
        self.out.flush()


def cmd_watch(args: argparse.Namespace) -> None:
    sched = scheduler.create_scheduler("torchx")
    ids: Optional[List[str]] = [app_id_of(h) for h in args.app_handles] or None
    watcher = Watcher(lambda: sched.poll(ids), lambda: len(sched.cli.calls), sys.stdout, args.interval,
                      args.max_interval)
    bad = watcher.run(once=args.once)
    if bad and not args.once:
        sys.exit(1)
