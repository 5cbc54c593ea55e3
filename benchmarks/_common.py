"""Helpers shared by the benchmarks (bench_sweep.py, bench_scale.py, ...): timing fresh processes
under ``/usr/bin/time -v``, medians, tables, a look at the machine's processes (:class:`Procs`), and a
base class that tags, finds and cancels the Slurm jobs a benchmark run submits and notes when someone
else's jobs share the cluster.

Not a benchmark itself; import it from a script in this directory (``from _common import ...``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

TIME_BIN = "/usr/bin/time"
#: the repository the benchmarks are in (not necessarily the one the installed torchx_forge comes from)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLURM_TOOLS = ("sinfo", "squeue", "sbatch", "scancel", "sacct", "scontrol", "sacctmgr")
#: bytecode cache of every process a benchmark times (outside the source trees, which stay untouched)
PYCACHE = "/tmp/forge-bench-pycache"


class BenchError(RuntimeError):
    pass


@dataclass
class Sample:
    wall: float  # seconds
    rss_kb: int  # max RSS in KiB, as /usr/bin/time reports it (0 if unknown)


@dataclass
class Stats:
    label: str
    samples: List[Sample]

    @property
    def walls(self) -> List[float]:
        return [s.wall for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def rss_max_mb(self) -> float:
        return max(s.rss_kb for s in self.samples) * 1024 / 1e6

    @property
    def rss_median_mb(self) -> float:
        return statistics.median(s.rss_kb for s in self.samples) * 1024 / 1e6

    def spread(self) -> str:
        return f"{min(self.walls):.3f}-{max(self.walls):.3f}"


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], unit: float = 1.0, digits: int = 3) -> str:
    return f"{min(values) * unit:.{digits}f}-{max(values) * unit:.{digits}f}"


# -- formatting -------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append(indent + "  ".join(cells).rstrip())
        if k == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(out)


def fmt_s(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.3f} s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def say(text: str = "") -> None:
    print(text, flush=True)


def section(title: str) -> None:
    say()
    say(f"== {title} " + "=" * max(0, 76 - len(title)))


# -- processes --------------------------------------------------------------------------


def sh(argv: Sequence[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def tail(text: str, n: int = 15) -> str:
    lines = text.strip().splitlines()
    return "\n".join("    | " + line for line in lines[-n:])


def find_torchx() -> str:
    """The torchx of the Python running this script (not a pyenv shim, whose bash
    start-up would add the same constant to every figure and flatten the ratios)."""
    here = os.path.join(os.path.dirname(sys.executable), "torchx")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("torchx")
    if not found:
        raise BenchError("torchx not found next to this Python nor on PATH")
    return found


def run_timed(argv: Sequence[str], cwd: str, env: Dict[str, str], scratch: str) -> Sample:
    """Run argv once under /usr/bin/time -v, stdout to /dev/null; wall clock from here."""
    fd, tpath = tempfile.mkstemp(dir=scratch, prefix="time-")
    os.close(fd)
    t0 = time.perf_counter()
    p = subprocess.run(
        [TIME_BIN, "-v", "-o", tpath, *argv], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wall = time.perf_counter() - t0
    with open(tpath) as f:
        report = f.read()
    os.unlink(tpath)
    if p.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` (in {cwd}) exited {p.returncode}:\n{tail(p.stderr)}")
    rss = 0
    for line in report.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.rsplit(":", 1)[1])
    return Sample(wall, rss)


@contextlib.contextmanager
def count_subprocess_runs() -> Iterator[List[List[str]]]:
    """Count subprocess.run calls (TorchX's slurm scheduler runs sacct through it)."""
    calls: List[List[str]] = []
    real = subprocess.run

    def counting(args, *a, **kw):
        calls.append(list(args) if isinstance(args, (list, tuple)) else [str(args)])
        return real(args, *a, **kw)

    subprocess.run = counting  # type: ignore[assignment]
    try:
        yield calls
    finally:
        subprocess.run = real  # type: ignore[assignment]


def git_describe(path: str) -> str:
    """``<short commit>[ + uncommitted changes]`` of the git work tree holding ``path`` (read only)."""
    commit = sh(["git", "-C", path, "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"
    dirty = sh(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    return commit + (" + uncommitted changes" if dirty else "")


def forge_source() -> str:
    """Where the torchx_forge this Python imports comes from (an editable install may point
    at another work tree than the benchmarks'), with that tree's commit."""
    try:
        import torchx_forge
    except Exception as e:  # pragma: no cover
        return f"? ({e})"
    version = getattr(torchx_forge, "__version__", "?")
    pkg = os.path.dirname(os.path.abspath(torchx_forge.__file__ or "."))
    tree = os.path.dirname(pkg)
    return f"torchx-forge {version}, imported from {tree} @ {git_describe(tree)}"


def preflight() -> None:
    if not os.access(TIME_BIN, os.X_OK):
        raise BenchError(f"{TIME_BIN} not found (Debian: apt-get install time)")
    for tool in ("sinfo", "squeue", "sbatch", "scancel", "sacct"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found: is Slurm installed? (scripts/local-slurm up)")
    p = sh(["sinfo", "-h", "-o", "%a %t"], check=False)
    if p.returncode != 0 or not p.stdout.strip():
        raise BenchError(f"the Slurm cluster does not answer ({p.stderr.strip()}); run scripts/local-slurm up")


def guarded_main(name: str, body: Callable[[], int], stop_on_signals: bool = False, cluster: bool = True) -> int:
    """Run a benchmark's ``body`` after :func:`preflight`: exit code 2 with one line for a
    BenchError, 130 when interrupted (the body's cleanup has cancelled its jobs by then).
    ``stop_on_signals``: SIGTERM and SIGHUP interrupt it too, so its cleanup runs.
    ``cluster=False``: the body needs no Slurm (no preflight)."""
    if stop_on_signals:
        def stop(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, stop)
    try:
        if cluster:
            preflight()
        return body()
    except BenchError as e:
        print(f"{name}: error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted (submitted jobs were cancelled)", file=sys.stderr)
        return 130


class Procs:
    """A look at every process of this machine (the 'login node' and the virtual nodes are one)."""

    PATTERN = re.compile(r"torchx")  # the CLI, and every module of torchx_forge (the cluster's daemons are no match)

    def __init__(self) -> None:
        self.info: Dict[int, Tuple[int, str, str]] = {}  # pid -> (ppid, comm, cmdline)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            self.info[int(d)] = (ppid, comm, cmd)

    def ancestors(self, pid: int) -> List[int]:
        out, seen = [], set()
        while pid in self.info and pid not in seen:
            seen.add(pid)
            pid = self.info[pid][0]
            out.append(pid)
        return out

    def in_slurm_job(self, pid: int) -> bool:
        """Whether ``pid`` is ``slurmstepd`` or descends from one: a job's process on a (virtual) node."""
        return self.info.get(pid, (0, "", ""))[1] == "slurmstepd" or any(
            self.info.get(a, (0, "", ""))[1] == "slurmstepd" for a in self.ancestors(pid))

    @staticmethod
    def environ(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return f.read().replace(b"\0", b"\n").decode(errors="replace")
        except OSError:
            return ""


# -- a benchmark run on the cluster -----------------------------------------------------


class QueueRow(NamedTuple):
    job: str  # the array job id (%F), or the job id
    comment: str
    state: str
    name: str


class BenchBase:
    """Scratch directory, a unique job tag, and the Slurm bookkeeping every benchmark needs.

    Every job a run submits carries ``self.token`` at the start of its ``--comment``, or (jobs a
    tool submits on its own, whose comment we do not set) a job name starting with one of
    ``self.name_prefixes``: that is how :meth:`ours` finds them, and how :meth:`cleanup`
    cancels whatever is left. Jobs matching neither are someone else's.
    """

    drain_timeout = 480.0

    def __init__(self, prefix: str = "forge-bench-", keep: bool = False) -> None:
        self.keep = keep
        self.root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.state = os.path.join(self.root, "state")
        self.scratch = os.path.join(self.root, "scratch")
        os.makedirs(self.scratch)
        self.token = f"forgebench-{uuid.uuid4().hex[:8]}"
        self.name_prefixes: List[str] = []
        self.torchx = find_torchx()
        os.environ["FORGE_STATE_DIR"] = self.state  # for in-process schedulers
        self.env = dict(os.environ)
        self.env["FORGE_STATE_DIR"] = self.state
        # A user's Python caches bytecode; with PYTHONDONTWRITEBYTECODE set (some shells and CI set it)
        # every timed process would compile every changed module again. The cache goes to PYCACHE.
        self.bytecode_note = ""
        if self.env.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
            self.bytecode_note = " (PYTHONDONTWRITEBYTECODE was set: unset for them)"
        self.env.setdefault("PYTHONPYCACHEPREFIX", PYCACHE)
        self.submitted: List[str] = []  # Slurm job ids this run submitted (array job ids)
        self.targets: List[Tuple[str, str, str, bool]] = []  # (target, limit, measured, ok)
        self.notes: List[str] = []
        self.t_start = time.monotonic()
        self._foreign_seen = 0

    # -- Slurm helpers ---------------------------------------------------------------

    def queue(self, all_states: bool = False) -> List[QueueRow]:
        """Every job in squeue (one row per job or array job)."""
        argv = ["squeue", "-h", "-o", "%F|%k|%T|%j"] + (["--states=all"] if all_states else [])
        rows = []
        for line in sh(argv).stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4:
                rows.append(QueueRow(*parts))
        return rows

    def is_ours(self, row: QueueRow) -> bool:
        return row.comment.startswith(self.token) or any(row.name.startswith(p) for p in self.name_prefixes)

    def ours(self, comment: Optional[str] = None, all_states: bool = False) -> List[str]:
        """Our job ids (all of them; with ``comment``, those whose comment starts with exactly it
        followed by nothing or a space: Slurm-forge appends its own ``forge:...`` tag)."""
        rows = self.queue(all_states)
        if comment:
            ids = {r.job for r in rows if r.comment == comment or r.comment.startswith(comment + " ")}
        else:
            ids = {r.job for r in rows if self.is_ours(r)}
        return sorted(ids, key=int)

    def foreign(self) -> int:
        """Jobs in the queue that this run did not submit (someone else's load on the cluster)."""
        return sum(1 for r in self.queue() if not self.is_ours(r))

    def timed(self, argv: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None) -> Sample:
        """run_timed, then a look at the queue (outside the timing) for someone else's jobs."""
        sample = run_timed(argv, cwd, env or self.env, self.scratch)
        self.look()
        return sample

    def look(self) -> None:
        """Remember how many jobs of someone else are in the queue now (for :meth:`watch_stop`)."""
        self._foreign_seen = max(self._foreign_seen, self.foreign())

    def watch_start(self) -> float:
        self._foreign_seen = self.foreign()
        return os.getloadavg()[0]

    def watch_stop(self, what: str, load0: float) -> None:
        """Note when someone else's jobs shared the cluster during a timed section."""
        seen = max(self._foreign_seen, self.foreign())
        if seen:
            self.notes.append(
                f"{what}: up to {seen} job(s) of someone else were queued or running between timed processes"
                f" (1-min load average {load0:.1f} -> {os.getloadavg()[0]:.1f}); those figures may be inflated"
            )

    def scancel(self, ids: Sequence[str]) -> None:
        if ids:
            sh(["scancel", *ids], check=False)

    def wait_until(self, what: str, done: Callable[[], bool], timeout: float, every: float = 1.0) -> Tuple[bool, float]:
        t0 = time.monotonic()
        while not done():
            if time.monotonic() - t0 > timeout:
                return False, time.monotonic() - t0
            time.sleep(every)
        return True, time.monotonic() - t0

    def wait_drain(self, timeout_others: float = 60.0) -> str:
        """Wait for our jobs to leave the queue, then (a while) for everyone's."""
        ok, waited = self.wait_until("our jobs", lambda: not self.ours(), self.drain_timeout)
        if not ok:
            left = self.ours()
            self.scancel(left)
            raise BenchError(f"our jobs {left} were still queued after {waited:.0f} s; cancelled them")
        ok2, waited2 = self.wait_until("queue", lambda: not self.queue(), timeout_others)
        if not ok2:
            n = len(self.queue())
            msg = f"{n} job(s) of someone else still queued after {waited2:.0f} s; measuring anyway"
            self.notes.append(msg)
            return f"ours drained after {waited:.1f} s; {msg}"
        return f"queue drained after {waited + waited2:.1f} s"

    # -- header ----------------------------------------------------------------------

    def header(self, title: str, sizes: str, wait_for_others: float = 60.0) -> None:
        import torchx

        slurm = sh(["sinfo", "--version"], check=False).stdout.strip() or "unknown"
        nodes = sh(["sinfo", "-h", "-o", "%D nodes, CPUs A/I/O/T %C"], check=False).stdout.strip().splitlines()
        say(title)
        say(f"  date        {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
        say(f"  slurm       {slurm}; partition {nodes[0] if nodes else '?'}")
        try:
            affinity = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            affinity = os.cpu_count()
        say(f"  CPUs        {os.cpu_count()} (usable by this process: {affinity}); {platform.machine()}, {platform.platform()}")
        say(f"  python      {platform.python_version()} ({sys.executable})")
        say(f"  torchx      {torchx.__version__} ({self.torchx})")
        say(f"  forge       {forge_source()}")
        say(f"  benchmarks  {REPO} @ {git_describe(REPO)}")
        say(f"  sizes       {sizes}")
        say(f"  scratch     {self.root} (FORGE_STATE_DIR={self.state}); job comment {self.token}")
        say(f"  bytecode    timed processes cache it in PYTHONPYCACHEPREFIX={self.env['PYTHONPYCACHEPREFIX']}"
            f"{self.bytecode_note}")
        foreign = [r for r in self.queue() if not self.is_ours(r)]
        if foreign and wait_for_others > 0:
            say(f"  queue       {len(foreign)} job(s) already queued by others; waiting up to {wait_for_others:.0f} s for them")
            ok, waited = self.wait_until("queue", lambda: not self.foreign(), wait_for_others)
            if ok:
                say(f"  queue       drained after {waited:.0f} s")
            else:
                msg = f"{self.foreign()} job(s) of someone else still queued at start: figures may be noisy"
                self.notes.append(msg)
                say(f"  queue       {msg}")
        elif foreign:
            msg = f"{len(foreign)} job(s) of someone else queued at start: figures may be noisy"
            self.notes.append(msg)
            say(f"  queue       {msg}")
        else:
            say("  queue       empty")

    # -- summary and cleanup ---------------------------------------------------------

    def print_targets(self) -> int:
        """The targets table and the notes; returns how many targets failed."""
        section("Targets")
        rows = [["target", "limit", "measured", "result"]]
        for what, limit, measured, ok in self.targets:
            rows.append([what, limit, measured, verdict(ok)])
        say(table(rows))
        failed = sum(1 for t in self.targets if not t[3])
        say(f"  {len(self.targets) - failed} PASS, {failed} FAIL")
        if self.notes:
            say()
            for note in self.notes:
                say(f"  note: {note}")
        return failed

    def cleanup(self) -> None:
        try:
            queued = {r.job for r in self.queue()}
            left = sorted(set(self.ours()) | (set(self.submitted) & queued), key=int)
        except BenchError as e:  # Slurm went away: cancel what we know of
            say(f"  cleanup: {e}")
            left = sorted(set(self.submitted), key=int)
        if left:
            say(f"  cleanup: scancel {' '.join(left)}")
            self.scancel(left)
        if self.keep:
            say(f"  kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
