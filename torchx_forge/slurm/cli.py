"""The one place torchx-forge runs Slurm commands.

``SlurmCli`` is a thin wrapper: it runs a command, returns stdout, and turns a failure into
:class:`SlurmError` carrying Slurm's own message (or :class:`SlurmNotFoundError` when the tools
are missing). It counts its calls so tests and benchmarks can hold status and logs to a fixed
number of Slurm calls. Parsing lives in :mod:`torchx_forge.slurm.parse`.

Slurm's transient failures (a socket timeout, "temporarily unable", a refused connection while a
daemon restarts) are retried here with bounded backoff, and a command that keeps Slurm waiting
says so on stderr every few seconds. ``sbatch`` is never retried blindly: each submission carries
a unique tag in its ``--comment``, and before trying again the tag is looked up in squeue, so a
submission that went through although its answer was lost is found, not made twice.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from torchx_forge.errors import ConfigError, SlurmError, SlurmNotFoundError
from torchx_forge.slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    SUBMIT_LINE,
    JobRow,
    parse_sacct,
    parse_squeue,
    split_job_id,
    tag_in,
    with_tag,
)

#: sacct's message when the cluster has no accounting (slurmdbd) configured.
NO_ACCOUNTING = "accounting storage is disabled"
#: Slurm's words for failures that pass: the same command may work a moment later.
TRANSIENT = (
    "socket timed out", "temporarily unable", "resource temporarily unavailable", "connection refused",
    "unable to contact slurm controller", "transport endpoint is not connected", "zero bytes were transmitted",
    "communication connection failure", "standby mode", "problem talking to the database", "try again",
    "can't be reached now", "slurm_persist_conn_open",
)
#: How often a slow command says it is still waiting on Slurm (seconds).
PROGRESS_EVERY = 10.0


def is_transient(text: str) -> bool:
    """Does Slurm's message describe a failure that may pass (a daemon down or busy)?"""
    low = text.lower()
    return any(t in low for t in TRANSIENT)


@dataclass(frozen=True)
class Backoff:
    """Bounded retries: at most ``tries`` tries, pauses ``first``, ``first * 2``, ...; no new try
    starts once ``budget`` seconds have passed (a slow failure is not repeated)."""

    tries: int = 3
    first: float = 0.5
    budget: float = 8.0

    def pauses(self) -> Iterable[float]:
        pause = self.first
        for _ in range(self.tries - 1):
            yield pause
            pause *= 2


#: squeue, sacct: a status must not hang; the caller falls back when Slurm does not answer
QUERY = Backoff(tries=3, first=0.5, budget=8.0)
#: a query that did not answer is not asked again for this long by the same process: a `torchx log`
#: asks for the app's state several times, and a controller that is down costs each ask ~20 s
QUIET_FOR = 30.0
#: sbatch, scontrol release, scancel: worth waiting a minute for a controller that restarts
CHANGE = Backoff(tries=5, first=2.0, budget=60.0)

HINT_REQUEST = "Nothing was left queued. Fix the request above, check it with --dryrun, and submit again."
#: Slurm's words for a ``-M`` cluster it cannot resolve: an unknown name, or a slurmdbd that does not answer
NO_SUCH_CLUSTER = ("known by database", "invalid entry for --cluster")


def transient_hint(command: str, cluster: Optional[str] = None) -> str:
    """What to do when ``command`` kept failing because Slurm did not answer: the words depend on
    what was asked (a submission left nothing queued, a cancel cancelled nothing)."""
    sinfo = f"`sinfo{f' -M {cluster}' if cluster else ''}`"
    slow = "Slurm did not answer in time (a daemon down, restarting or overloaded)"
    if command == "sbatch":
        return f"{slow} although the request may be right; nothing was left queued: submit again once {sinfo} answers."
    if command == "scancel":
        return f"{slow}: nothing was cancelled yet; run the same cancel again once {sinfo} answers."
    return f"{slow}: try again once {sinfo} answers."


def local_cluster() -> str:
    """The name of the cluster Slurm commands go to without ``-M`` (ClusterName in the local
    slurm.conf: ``$SLURM_CONF`` or /etc/slurm/slurm.conf), read from the file, no Slurm call;
    "" when it cannot be read."""
    path = os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    try:
        with open(path) as f:
            for line in f:
                key, eq, value = line.split("#", 1)[0].partition("=")
                if eq and key.strip().lower() == "clustername":
                    return value.strip()
    except OSError:
        pass
    return ""


class SlurmCli:
    """Runs sbatch/squeue/sacct/scancel/scontrol. Inject a subclass to fake Slurm in unit tests.

    Args:
        cluster: the Slurm cluster every command goes to (``-M``); None: the local one.
    """

    #: sacct takes ``SubmitLine`` (Slurm 21.08 and later); learnt once per process
    submit_line: bool = True

    def __init__(self, progress: Optional[Callable[[str], None]] = None, sleep: Callable[[float], None] = time.sleep,
                 cluster: Optional[str] = None) -> None:
        self.calls: List[List[str]] = []
        self._lock = threading.Lock()
        self.accounting: Optional[bool] = None  # learnt from the first sacct call
        self.progress = progress or (lambda text: print(f"torchx-forge: {text}", file=sys.stderr, flush=True))
        self.sleep = sleep
        self.cluster = cluster or None
        # (cluster, command) -> (when, error) of a query that did not answer; shared by the copies on()
        # makes, so every part of one process knows
        self._unanswered: Dict[Tuple[str, str], Tuple[float, SlurmError]] = {}
        self._known_clusters: Dict[str, List[str]] = {}  # "": what sacctmgr lists (check_clusters), shared too

    def on(self, cluster: Optional[str]) -> SlurmCli:
        """This runner, sending every command to ``cluster`` (None or "": the local one); the calls
        are counted together."""
        if (cluster or None) == self.cluster:
            return self
        other = copy.copy(self)
        other.cluster = cluster or None
        return other

    def _m(self) -> List[str]:
        return [f"--clusters={self.cluster}"] if self.cluster else []

    def _once(self, argv: Sequence[str], env: Optional[Dict[str, str]]) -> subprocess.CompletedProcess[str]:
        with self._lock:
            self.calls.append(list(argv))
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**(os.environ if env is None else env), "SLURM_TIME_FORMAT": "standard"}, umask=0o077,
            )
        except FileNotFoundError:
            raise SlurmNotFoundError(argv[0]) from None
        start = time.monotonic()
        while True:
            try:
                out, err = proc.communicate(timeout=PROGRESS_EVERY)
                return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                self.progress(f"still waiting for `{argv[0]}` after {time.monotonic() - start:.0f} s"
                              " (the Slurm controller is slow, busy or down)")

    def run(self, argv: Sequence[str], hint: Optional[str] = None, env: Optional[Dict[str, str]] = None,
            backoff: Backoff = QUERY) -> str:
        """Run ``argv``; return stdout. Transient failures are tried again within ``backoff``;
        any other failure, or one that persists, raises SlurmError with Slurm's stderr. A query
        (``backoff`` QUERY) that did not answer is not run again for :data:`QUIET_FOR` seconds:
        the same error is raised at once."""
        key = (self.cluster or "", argv[0])
        if backoff is QUERY and key in self._unanswered:
            when, err = self._unanswered[key]
            if time.monotonic() - when < QUIET_FOR:
                raise SlurmError(err.argv, err.returncode, err.stderr, err.stdout, hint=err.hint, transient=True)
            self._unanswered.pop(key, None)  # threads may race here
        start = time.monotonic()
        pauses = iter(backoff.pauses())
        tries = 0
        while True:
            p = self._once(argv, env)
            tries += 1
            if p.returncode == 0:
                return p.stdout
            transient = is_transient(p.stderr + p.stdout)
            if transient and tries == 1 and self.cluster and any(w in p.stderr for w in NO_SUCH_CLUSTER):
                self.check_clusters()  # an unknown name is not worth a minute of retries
            pause = next(pauses, None) if transient else None
            if pause is None or time.monotonic() - start + pause > backoff.budget:
                why = hint or (transient_hint(argv[0], self.cluster) if transient else None)
                if transient and tries > 1:
                    why = f"(tried {tries} times over {time.monotonic() - start:.0f} s) " + (why or "")
                err = SlurmError(argv, p.returncode, p.stderr, p.stdout, hint=why, transient=transient)
                if transient and backoff is QUERY:
                    self._unanswered[key] = (time.monotonic(), err)
                raise err
            first = ((p.stderr or p.stdout).strip().splitlines() or ["?"])[0]
            self.progress(f"`{argv[0]}` failed ({first}); trying again in {pause:g} s")
            self.sleep(pause)

    def unanswered(self, command: str) -> Optional[SlurmError]:
        """The error of a query that got no answer on this runner's cluster in the last :data:`QUIET_FOR` s."""
        hit = self._unanswered.get((self.cluster or "", command))
        return hit[1] if hit and time.monotonic() - hit[0] < QUIET_FOR else None

    def check_clusters(self) -> None:
        """ConfigError when accounting knows no cluster of this runner's name (``-M a,b``: each); sacctmgr
        is asked once per process, and only after Slurm could not resolve a ``-M`` name (see :meth:`run`)."""
        if "" not in self._known_clusters:
            p = self._once(["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster"], None)
            if p.returncode != 0:
                return
            self._known_clusters[""] = sorted({ln.strip() for ln in p.stdout.splitlines() if ln.strip()})
        known = self._known_clusters[""]
        unknown = [c for c in (self.cluster or "").split(",") if c and c not in known]
        if known and unknown:
            raise ConfigError(f"cluster {unknown[0]!r}", f"Slurm knows no such cluster; it knows {', '.join(known)}"
                              " (`sacctmgr show cluster`): pick one of them (-cfg cluster=NAME)")

    # -- submission ---------------------------------------------------------------------

    def sbatch(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None, tag: Optional[str] = None) -> str:
        """Run a full ``sbatch --parsable ...`` command line; return the job id.

        With a ``tag`` (unique per submission), a transient failure is retried only after
        squeue shows that the earlier try did not go through, and a second job that a lost
        answer would leave behind is cancelled: one job per tag, whatever the network did.
        """
        return self.submit(argv, env, tag)[0]

    def on_cluster(self, argv: Sequence[str], tag: Optional[str] = None) -> List[str]:
        """``argv`` as this runner runs it: ``forge:<tag>`` in its comment (with ``tag``), and this
        runner's ``--clusters`` unless it names clusters itself."""
        argv = with_tag(argv, tag) if tag else list(argv)
        named = not self.cluster or any(a.startswith(("--clusters", "-M")) for a in argv)
        return argv if named else [argv[0], *self._m(), *argv[1:]]

    def submit(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
               tag: Optional[str] = None) -> Tuple[str, str]:
        """:meth:`sbatch`, returning (job id, the cluster Slurm chose: ``sbatch -M a,b`` submits
        where the job starts soonest; "" for the local cluster)."""
        argv = self.on_cluster(argv, tag)
        start = time.monotonic()
        pauses = iter(CHANGE.pauses())
        tries = 0
        while True:
            tries += 1
            try:
                out = self.run(argv, env=env, hint=HINT_REQUEST, backoff=Backoff(tries=1))
            except SlurmError as e:
                pause = next(pauses, None) if e.transient else None
                if pause is None or time.monotonic() - start + pause > CHANGE.budget:
                    if e.transient:
                        e.set_hint(f"(tried {tries} times over {time.monotonic() - start:.0f} s) {transient_hint('sbatch')}")
                    raise
                self.progress(f"sbatch failed ({e.first_line}); trying again in {pause:g} s"
                              + (", unless it went through after all" if tag else ""))
                self.sleep(pause)
                found = self.on(_clusters_of(argv) or self.cluster).find_tagged(tag, with_cluster=True) if tag else []
                if found:
                    self.progress(f"the earlier sbatch went through after all, as job {found[0][0]}")
                    self.on(found[0][1] or self.cluster)._drop_duplicates(tag or "", keep=found[0][0])
                    return found[0][0], found[0][1]
                continue
            job_id, _, cluster = out.strip().partition(";")  # --parsable prints "jobid" or "jobid;cluster"
            cluster = cluster or (self.cluster or "")
            if tag and tries > 1:  # an earlier try may have gone through after all
                self.on(cluster or None)._drop_duplicates(tag, keep=job_id)
            return job_id, cluster

    def find_tagged(self, tag: str, prefix: bool = False, with_cluster: bool = False, states: str = "all") -> List[Any]:
        """Job ids of this user's jobs (in squeue's ``states``) whose comment carries ``tag`` (or, with ``prefix``, a
        tag starting with it), oldest first; with ``with_cluster``, (job id, cluster) pairs. Searches
        this runner's cluster, or every one of ``a,b`` when it names several."""
        out = self.run(["squeue", *self._m(), "--noheader", f"--states={states}", f"--user={os.getuid()}",
                        "--format=%i|%k"], backoff=CHANGE) if "," not in (self.cluster or "") else self._tagged_all(states)
        found: List[Tuple[str, str]] = []
        for line in out.splitlines():
            job_id, _, rest = line.partition("|")
            comment, _, cluster = rest.rpartition("|") if rest.count("|") else (rest, "", "")
            base = split_job_id(job_id)[0]
            if tag_in(comment, tag, prefix) and base and base not in [i for i, _ in found]:
                found.append((base, cluster.strip() or (self.cluster or "")))
        found.sort(key=lambda p: int(p[0]))
        return found if with_cluster else [i for i, _ in found]

    def _tagged_all(self, states: str) -> str:
        """``squeue`` of every cluster in ``a,b``, each row ending in its cluster's name."""
        lines = []
        for cluster in (self.cluster or "").split(","):
            out = self.on(cluster).run(["squeue", f"--clusters={cluster}", "--noheader", f"--states={states}",
                                        f"--user={os.getuid()}", "--format=%i|%k"], backoff=CHANGE)
            lines += [f"{line}|{cluster}" for line in out.splitlines() if "|" in line]
        return "\n".join(lines)

    def _drop_duplicates(self, tag: str, keep: str) -> None:
        extra = [j for j in self.find_tagged(tag) if j != keep]
        if extra:
            self.progress(f"cancelling {', '.join(extra)}: the same submission ({tag}) went through twice")
            self.cancel(extra)

    def release(self, job_ids: Iterable[str]) -> None:
        ids = ",".join(job_ids)
        if ids:
            self.run(["scontrol", *self._m(), "release", ids], backoff=CHANGE)

    def cancel(self, job_ids: Iterable[str], signal: Optional[str] = None, batch: bool = False,
               ended_ok: bool = False) -> None:
        """scancel the jobs; with ``ended_ok``, jobs that ended already (or left Slurm) are no error."""
        ids = list(job_ids)
        if not ids:
            return
        argv = ["scancel", *self._m()]  # without -M, scancel of another cluster's job does nothing, and exits 0
        if signal:
            argv.append(f"--signal={signal}")
        if batch:
            argv.append("--batch")
        try:
            self.run(argv + ids, backoff=CHANGE)
        except SlurmError as e:
            gone = ("already completing or completed", "invalid job id", "job has already finished")
            lines = [ln for ln in e.stderr.lower().splitlines() if ln.strip()]
            if not (ended_ok and lines and all(any(g in ln for g in gone) for ln in lines)):
                raise

    # -- queries ------------------------------------------------------------------------

    def squeue(self, job_ids: Iterable[str]) -> List[JobRow]:
        """Rows for the given base job ids (array tasks and het components included).

        Uses the text format, whose ``-j`` filter works on every version (``--json``
        ignores ``-j`` on 22.05). Ids squeue has forgotten are simply absent.
        """
        ids = sorted(set(job_ids), key=lambda s: (len(s), s))
        if not ids:
            return []
        argv = ["squeue", *self._m(), "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}", f"--jobs={','.join(ids)}"]
        try:
            out = self.run(argv)
        except SlurmError as e:
            if "Invalid job id" in e.stderr:  # every id has left squeue
                return []
            raise
        wanted = set(ids)
        return [r for r in parse_squeue(out, self.cluster or "") if r.base in wanted]

    def sacct(self, job_ids: Iterable[str], clusters: Optional[Sequence[str]] = None) -> Optional[List[JobRow]]:
        """Every attempt (``-D``) of the given jobs' allocations (``-X``), oldest first.

        ``clusters``: ask several clusters in one call (their job ids may collide: each row says
        its cluster). Returns None when the cluster has no accounting, so callers fall back to
        the state files the batch scripts write.
        """
        ids = sorted(set(job_ids), key=lambda s: (len(s), s))
        if not ids or self.accounting is False:
            return None if self.accounting is False else []
        fields = (*(("Cluster",) if clusters else ()), *SACCT_FIELDS, *((SUBMIT_LINE,) if self.submit_line else ()))
        where = [f"--clusters={','.join(clusters)}"] if clusters else self._m()
        argv = [
            "sacct", *where, "--allocations", "--duplicates", "--parsable2", "--noheader",
            f"--format={','.join(fields)}", f"--jobs={','.join(ids)}",
        ]
        try:
            out = self.run(argv)
        except SlurmError as e:
            if NO_ACCOUNTING in (e.stderr + e.stdout):
                self.accounting = False
                return None
            if self.submit_line and SUBMIT_LINE in e.stderr:  # a Slurm before 21.08: jobs' tags unknown to sacct
                SlurmCli.submit_line = False
                return self.sacct(job_ids, clusters)
            raise
        if NO_ACCOUNTING in out:  # some versions print it on stdout and exit 0
            self.accounting = False
            return None
        self.accounting = True
        return parse_sacct(out, fields, "" if clusters else (self.cluster or ""))


def _clusters_of(argv: Sequence[str]) -> Optional[str]:
    """The ``--clusters=`` (``-M``) value of an sbatch command line, if any."""
    for i, a in enumerate(argv):
        if a.startswith("--clusters="):
            return a.split("=", 1)[1]
        if a == "-M" and i + 1 < len(argv):
            return argv[i + 1]
    return None
