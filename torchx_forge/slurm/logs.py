"""Reading and tailing task logs.

A task's stdout and stderr are plain files (Slurm writes them, in append mode,
so a requeued task keeps its earlier attempts). ``LogTail`` reads one or both,
and when tailing keeps following them until the task has ended, asking
``is_done`` with a growing pause (0.5 s up to 5 s) so that following a
thousand-task sweep does not flood the Slurm controller.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator, List, Optional, Sequence, TextIO, Union

CHUNK = 1 << 16


class _Follower:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fp: Optional[TextIO] = None

    def read(self) -> str:
        if self.fp is None:
            if not os.path.isfile(self.path):
                return ""
            self.fp = open(self.path, newline="", errors="replace")  # noqa: SIM115
        data: str = self.fp.read(CHUNK)
        return data

    def close(self) -> None:
        if self.fp is not None:
            self.fp.close()
            self.fp = None


class LogTail:
    """Iterate over the text of ``paths`` (stdout then stderr), optionally following them.

    Args:
        paths: files to read; missing files are waited for while tailing. A function is asked
            again at every check while tailing (a task of a wave not submitted yet has no log
            file until its wave is submitted).
        is_done: returns True once the task has ended (checked only while tailing).
        should_tail: keep reading until ``is_done`` says the task ended.
    """

    def __init__(
        self,
        paths: Union[Sequence[str], Callable[[], Sequence[str]]],
        is_done: Callable[[], bool],
        should_tail: bool = False,
        min_pause: float = 0.2,
        max_pause: float = 5.0,
    ) -> None:
        self.find = paths if callable(paths) else None
        self.followers: List[_Follower] = [_Follower(p) for p in (paths() if callable(paths) else paths)]
        self.is_done = is_done
        self.should_tail = should_tail
        self.min_pause = min_pause
        self.max_pause = max_pause

    def __iter__(self) -> Iterator[str]:
        try:
            if not self.should_tail:
                for f in self.followers:
                    yield from self._drain(f)
                return
            yield from self._follow()
        finally:
            for f in self.followers:
                f.close()

    def _add_new_paths(self) -> None:
        if self.find is not None:
            known = {f.path for f in self.followers}
            self.followers += [_Follower(p) for p in self.find() if p not in known]

    @staticmethod
    def _drain(f: _Follower) -> Iterator[str]:
        while True:
            data = f.read()
            if not data:
                return
            yield data

    def _follow(self) -> Iterator[str]:
        pause = self.min_pause
        next_check = 0.0
        while True:
            got = False
            for f in self.followers:
                for data in self._drain(f):
                    got = True
                    yield data
            if got:
                pause = self.min_pause
                continue
            now = time.monotonic()
            if now >= next_check:
                self._add_new_paths()
                if self.is_done():
                    # one last read: the task may have written right before ending
                    for f in self.followers:
                        yield from self._drain(f)
                    return
                next_check = now + max(pause, 0.5)
            time.sleep(pause)
            pause = min(pause * 1.5, self.max_pause)
