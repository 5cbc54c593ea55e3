"""The one place torchx-forge runs Slurm commands.

``SlurmCli`` is a thin wrapper: it runs a command, returns stdout, and turns a
failure into :class:`SlurmError` carrying Slurm's own message (or
:class:`SlurmNotFoundError` when the tools are missing). It counts its calls so
tests and benchmarks can hold status and logs to a fixed number of Slurm calls.
Parsing lives in :mod:`torchx_forge.slurm.parse`.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Dict, Iterable, List, Optional, Sequence

from torchx_forge.errors import SlurmError, SlurmNotFoundError
from torchx_forge.slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    JobRow,
    parse_sacct,
    parse_squeue,
)

#: sacct's message when the cluster has no accounting (slurmdbd) configured.
NO_ACCOUNTING = "accounting storage is disabled"


class SlurmCli:
    """Runs sbatch/squeue/sacct/scancel/scontrol. Inject a subclass to fake Slurm in unit tests."""

    def __init__(self) -> None:
        self.calls: List[List[str]] = []
        self._lock = threading.Lock()
        self.accounting: Optional[bool] = None  # learnt from the first sacct call

    def run(
        self, argv: Sequence[str], input: Optional[str] = None, hint: Optional[str] = None, env: Optional[Dict[str, str]] = None
    ) -> str:
        """Run ``argv``; return stdout, or raise SlurmError with Slurm's stderr."""
        with self._lock:
            self.calls.append(list(argv))
        try:
            p = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                check=False,
                env={**(os.environ if env is None else env), "SLURM_TIME_FORMAT": "standard"},
            )
        except FileNotFoundError:
            raise SlurmNotFoundError(argv[0]) from None
        if p.returncode != 0:
            raise SlurmError(argv, p.returncode, p.stderr, p.stdout, hint=hint)
        return p.stdout

    # -- submission ---------------------------------------------------------------------

    def sbatch(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> str:
        """Run a full ``sbatch --parsable ...`` command line; return the job id."""
        out = self.run(
            argv, env=env, hint="Nothing was left queued. Fix the request above, check it with --dryrun, and submit again."
        )
        # --parsable prints "jobid" or "jobid;cluster"
        return out.strip().split(";", 1)[0]

    def release(self, job_ids: Iterable[str]) -> None:
        ids = ",".join(job_ids)
        if ids:
            self.run(["scontrol", "release", ids])

    def cancel(self, job_ids: Iterable[str], signal: Optional[str] = None, batch: bool = False) -> None:
        ids = list(job_ids)
        if not ids:
            return
        argv = ["scancel"]
        if signal:
            argv.append(f"--signal={signal}")
        if batch:
            argv.append("--batch")
        self.run(argv + ids)

    # -- queries ------------------------------------------------------------------------

    def squeue(self, job_ids: Iterable[str]) -> List[JobRow]:
        """Rows for the given base job ids (array tasks and het components included).

        Uses the text format, whose ``-j`` filter works on every version (``--json``
        ignores ``-j`` on 22.05). Ids squeue has forgotten are simply absent.
        """
        ids = sorted(set(job_ids), key=lambda s: (len(s), s))
        if not ids:
            return []
        argv = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}", f"--jobs={','.join(ids)}"]
        try:
            out = self.run(argv)
        except SlurmError as e:
            if "Invalid job id" in e.stderr:  # every id has left squeue
                return []
            raise
        wanted = set(ids)
        return [r for r in parse_squeue(out) if r.base in wanted]

    def sacct(self, job_ids: Iterable[str]) -> Optional[List[JobRow]]:
        """Every attempt (``-D``) of the given jobs' allocations (``-X``), oldest first.

        Returns None when the cluster has no accounting, so callers fall back to
        the state files the batch scripts write.
        """
        ids = sorted(set(job_ids), key=lambda s: (len(s), s))
        if not ids or self.accounting is False:
            return None if self.accounting is False else []
        argv = [
            "sacct", "--allocations", "--duplicates", "--parsable2", "--noheader",
            f"--format={','.join(SACCT_FIELDS)}", f"--jobs={','.join(ids)}",
        ]
        try:
            out = self.run(argv)
        except SlurmError as e:
            if NO_ACCOUNTING in (e.stderr + e.stdout):
                self.accounting = False
                return None
            raise
        if NO_ACCOUNTING in out:  # some versions print it on stdout and exit 0
            self.accounting = False
            return None
        self.accounting = True
        return parse_sacct(out)
