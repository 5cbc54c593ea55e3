"""FakeSlurm: the one fake of Slurm for the unit tests.

A :class:`SlurmCli` whose one injection point, ``_once`` (run one command, return what it printed),
answers as Slurm 22.05 does instead of running anything: everything forge does with an answer
(retries, the quiet window, sbatch tags, parsing) runs for real. ``from unit.fakeslurm import FakeSlurm``.

Slurm's answers, unless a test scripts others:

- ``squeue``, ``sacct``: the rows captured from the real cluster in tests/fixtures (jobs 7 and 8),
  rows a test adds (:meth:`FakeSlurm.add_job`, or lines in Slurm's own format) and the jobs sbatch
  submitted; ``--jobs``, ``--states``, ``--array``, ``--clusters``, ``-X``, ``-D`` and the format are
  honoured. One unknown id is squeue's "Invalid job id specified" (several: left out), as on 22.05.
- ``sbatch``: reads the script and its ``#SBATCH`` lines when it is run, refuses an unknown partition
  or a script it cannot open, and hands out the next job id as ``--parsable`` prints it: ``ID``, or
  ``ID;cluster`` with ``-M``. ``--hold``, ``--dependency``, ``--comment``, ``--job-name``, ``--array``
  and ``hetjob`` components show in squeue and sacct.
- ``scontrol release``, ``scancel``: change those jobs. A plain scancel of a job that ended or never
  was is silent and exits 0 (22.05 ignores it); with ``--signal`` or ``--batch`` it is "Invalid job id".
- ``scontrol show config``, ``sacctmgr show assoc|qos``: the captured outputs.

Per test:

- ``answer(cmd, *answers)``: the next calls of ``cmd`` ("squeue", "scontrol release", ...) get these
  answers in order, then Slurm answers again; ``always(cmd, answer)``: every later call.
- ``down("slurmctld" | "slurmdbd", timeout=False)``: every command that needs that daemon fails with
  what real Slurm prints then (tests/fixtures/errors-22.05.txt); ``up(daemon)``.
- answers: :func:`ok`, :func:`fail`, :func:`unreachable` (a daemon down or timing out, for one
  command), :func:`lost` (sbatch went through but its answer was lost), :data:`MISSING` (not installed).

Records (shared by the copies ``on(cluster)`` makes): ``calls`` (argv of every command, as
SlurmCli counts them), ``log`` (:class:`Call`: argv, env, cluster, answer, sbatch's script and job
id), ``submitted``, ``cancelled``, ``said`` (progress lines) and ``pauses`` (backoff, never slept).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from torchx_forge.errors import SlurmNotFoundError
from torchx_forge.slurm.cli import SlurmCli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: the Slurm version whose outputs tests/fixtures holds
VERSION = "22.05"
#: the local cluster the fixtures were captured on: its name and partitions
LOCAL = "forge"
PARTITIONS = ("debug", "high")

#: the fields of a line of sacct-22.05.txt, and the %-codes of a line of squeue-22.05.txt
#: (a squeue line may add %k, the comment; %q, the QOS, is the cluster's default)
SACCT_LINE = ("JobID", "JobName", "State", "ExitCode", "NodeList", "Start", "End", "Reason")
SQUEUE_LINE = ("i", "T", "r", "N", "j", "k")
FINAL = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
         "OUT_OF_MEMORY", "REVOKED")

#: Slurm's words for a daemon that is not there, or does not answer (src/common/slurm_errno.c of 22.05.8)
REFUSED = "Unable to contact slurm controller (connect failure)"
TIMED_OUT = "Socket timed out on send/recv operation"


@dataclass(frozen=True)
class Answer:
    """What one command printed and how it exited. ``went_through``: an sbatch that submitted its
    job although this (failed) answer is all the caller saw."""

    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    went_through: bool = False


def ok(stdout: str = "") -> Answer:
    return Answer(0, stdout, "")


def fail(stderr: str, returncode: int = 1) -> Answer:
    return Answer(returncode, "", stderr if stderr.endswith("\n") else stderr + "\n")


def lost(answer: Answer) -> Answer:
    """sbatch submits its job, and the caller sees ``answer`` (a timeout, say) instead of the id."""
    return Answer(answer.returncode, answer.stdout, answer.stderr, went_through=True)


#: the command is not installed (SlurmCli raises SlurmNotFoundError)
MISSING = Answer(127, "", "", went_through=False)


def _captured_errors() -> Dict[str, str]:
    """errors-22.05.txt: ``=== <command> <daemon> <refused|timeout>`` headers, each followed by stderr."""
    out: Dict[str, str] = {}
    key = ""
    for line in (FIXTURES / f"errors-{VERSION}.txt").read_text().splitlines(keepends=True):
        if line.startswith("=== "):
            key = line[4:].strip()
            out[key] = ""
        elif key:
            out[key] += line
    return out


ERRORS = _captured_errors()


def _daemon(argv: Sequence[str]) -> str:
    return "slurmdbd" if argv[0] in ("sacct", "sacctmgr") else "slurmctld"


def _words(argv: Sequence[str]) -> List[str]:
    """The words of a command line that are not options (job ids, ``show config``, ...)."""
    out, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a in ("-M", "-j", "-o", "-u", "-t", "-s", "-S", "-E"):
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def unreachable(argv: Sequence[str], daemon: Optional[str] = None, timeout: bool = False) -> Answer:
    """What ``argv`` prints when ``daemon`` (by default the one it talks to) is down, or (``timeout``)
    accepts connections but does not answer. Captured outputs where the fixtures have them; sbatch,
    scancel and scontrol release/hold print Slurm's message in the format of their 22.05.8 source."""
    argv = list(argv) if not isinstance(argv, str) else argv.split()
    daemon = daemon or _daemon(argv)
    how = "timeout" if timeout else "refused"
    words = _words(argv)
    for key in (" ".join([argv[0], *words[:2]]), argv[0]):
        if f"{key} {daemon} {how}" in ERRORS:
            return fail(ERRORS[f"{key} {daemon} {how}"])
    why = TIMED_OUT if timeout else REFUSED
    if daemon != "slurmctld":
        raise AssertionError(f"FakeSlurm has no captured output of {argv[0]} with {daemon} {how}; capture it")
    if argv[0] == "sbatch":  # src/sbatch/sbatch.c: error("Batch job submission failed: %m")
        return fail(f"sbatch: error: Batch job submission failed: {why}")
    if argv[0] == "scancel":
        if any(a.startswith(("--signal", "--batch", "-s", "-b")) for a in argv):  # loads the jobs first
            return fail(f"slurm_load_jobs error: {why}")
        return fail("".join(f"scancel: error: Kill job error on job id {j}: {why}\n" for j in words))
    if argv[0] == "scontrol" and words[:1] in (["release"], ["hold"]):  # scontrol/update_job.c: "%s for job %s"
        return fail("".join(f"{why} for job {j}\n" for w in words[1:] for j in w.split(",")))
    raise AssertionError(f"FakeSlurm does not know what {' '.join(argv)} prints with {daemon} {how}")


@dataclass
class Call:
    """One command FakeSlurm was asked to run."""

    argv: List[str]
    env: Optional[Dict[str, str]]
    cluster: Optional[str]  # the cluster of the SlurmCli that ran it (``on(cluster)``); None: the local one
    answer: Answer = field(default_factory=Answer)
    script_path: Optional[str] = None  # sbatch: the script it was given
    script: Optional[str] = None  # sbatch: the script's text when sbatch read it
    job_id: Optional[str] = None  # sbatch: the job it submitted

    @property
    def program(self) -> str:
        return self.argv[0]

    @property
    def words(self) -> List[str]:
        return _words(self.argv)

    def matches(self, cmd: str) -> bool:
        """``cmd``: a program name, optionally with words the command line holds ("scontrol release")."""
        first, *rest = cmd.split()
        return self.argv[0] == first and all(w in self.argv[1:] for w in rest)


def _opt(argv: Sequence[str], *names: str) -> Optional[str]:
    """The value of the last of ``--name=value`` / ``-n value`` in ``argv``."""
    found = None
    for i, a in enumerate(argv):
        for name in names:
            if name.startswith("--") and a.startswith(name + "="):
                found = a.split("=", 1)[1]
            elif a == name and i + 1 < len(argv):
                found = argv[i + 1]
    return found


def _has(argv: Sequence[str], *flags: str) -> bool:
    return any(a in flags for a in argv)


def _base(job_id: str) -> str:
    return re.match(r"\d*", job_id).group()


def _tasks(spec: str) -> List[int]:
    """``0-3,7%2`` -> [0, 1, 2, 3, 7]"""
    out: List[int] = []
    for part in spec.partition("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def _expanded(job_id: str) -> List[str]:
    """``7_[2-5%2]`` -> 7_2 ... 7_5; other ids as they are."""
    m = re.match(r"^(\d+)_\[(.*)\]$", job_id)
    return [f"{m.group(1)}_{t}" for t in _tasks(m.group(2))] if m else [job_id]


def _wanted(row_id: str, wanted: Iterable[str]) -> bool:
    """Does ``-j wanted`` name the job, task or component ``row_id``, as Slurm reads ``-j``?"""
    for w in wanted:
        if w == _base(w):
            if _base(row_id) == w:
                return True
        elif w == row_id or w in _expanded(row_id):
            return True
    return False


def _state_word(state: str) -> str:
    return state.partition(" ")[0]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class _Slurm:
    """What the fake cluster(s) know: one object shared by every copy of a FakeSlurm."""

    def __init__(self, version: str, first_id: int) -> None:
        self.version = version
        self.next_id = first_id
        #: hand out ids from next_id even if accounting has them (a controller restarted from an old state)
        self.reuse_ids = False
        self.queue: List[Dict[str, str]] = []  # squeue rows: %-code -> text, and "cluster"
        self.acct: List[Dict[str, str]] = []  # sacct rows: field -> text, and "Cluster"
        self.waits: Dict[Tuple[str, str], bool] = {}  # (cluster, id) of a job sbatch submitted -> has a --dependency
        self.scripts: Dict[str, Tuple[List[Answer], bool]] = {}  # command -> (answers, repeat the last)
        self.down: Dict[str, bool] = {}  # daemon -> timeout?
        self.log: List[Call] = []
        self.accounting_storage = True

    # -- rows ------------------------------------------------------------------------------

    def add_queue(self, text: str, cluster: str) -> None:
        for line in text.splitlines():
            if line.strip():
                values = line.split("|", len(SQUEUE_LINE) - 1)
                row = dict(zip(SQUEUE_LINE, values))
                row.setdefault("k", "(null)")
                row.setdefault("q", "normal")
                self.queue.append({**row, "cluster": cluster})

    def add_acct(self, text: str, cluster: str) -> None:
        for line in text.splitlines():
            if line.strip():
                self.acct.append({"SubmitLine": "", **dict(zip(SACCT_LINE, line.split("|"))), "Cluster": cluster})

    # -- commands --------------------------------------------------------------------------

    def scripted(self, argv: Sequence[str]) -> Optional[Answer]:
        call = Call(list(argv), None, None)
        for cmd, (answers, repeat) in self.scripts.items():
            if answers and call.matches(cmd):
                return answers[0] if repeat and len(answers) == 1 else answers.pop(0)
        return None

    def run(self, argv: List[str], call: Call) -> Answer:
        clusters = (_opt(argv, "--clusters", "-M") or LOCAL).split(",")
        words = _words(argv)
        if argv[0] == "squeue":
            return self.squeue(argv, clusters)
        if argv[0] == "sacct":
            return self.sacct(argv, clusters)
        if argv[0] == "sbatch":
            return self.sbatch(argv, clusters, call)
        if argv[0] == "scancel":
            return self.scancel(argv, clusters[0], words)
        if argv[0] == "scontrol" and words[:1] == ["release"]:
            return self.release(clusters[0], [j for w in words[1:] for j in w.split(",")])
        if argv[0] == "scontrol" and words[:2] == ["show", "config"]:
            return ok(self.config(clusters[0]))
        if argv[0] == "sacctmgr" and words[:2] == ["show", "assoc"]:
            cluster = next((w.split("=", 1)[1] for w in words if w.startswith("cluster=")), None)
            return self.captured_sacctmgr("assoc", argv, "format=cluster,account,maxsubmit,defaultqos", cluster)
        if argv[0] == "sacctmgr" and words[:2] == ["show", "qos"]:
            return self.captured_sacctmgr("qos", argv, "format=name,maxsubmitjobsperuser", None)
        raise AssertionError(f"FakeSlurm does not answer {shlex.join(argv)}: script it with answer()")

    def config(self, cluster: str) -> str:
        text = (FIXTURES / f"scontrol-show-config-{VERSION}.txt").read_text()
        text = re.sub(r"(?m)^(SLURM_VERSION\s+=) .*$", rf"\1 {self.version}", text)
        text = re.sub(r"(?m)^(ClusterName\s+=) .*$", rf"\1 {cluster}", text)
        if not self.accounting_storage:
            text = re.sub(r"(?m)^(AccountingStorageType\s+=) .*$", r"\1 accounting_storage/none", text)
            text = re.sub(r"(?m)^(AccountingStorageEnforce\s+=) .*$", r"\1 none", text)
        return text

    def captured_sacctmgr(self, what: str, argv: Sequence[str], fmt: str, cluster: Optional[str]) -> Answer:
        if fmt not in argv or not _has(argv, "-n") or not _has(argv, "-P"):
            raise AssertionError(f"FakeSlurm has sacctmgr show {what} captured only as `-n -P ... {fmt}`: {list(argv)}")
        lines = (FIXTURES / f"sacctmgr-{what}-{VERSION}.txt").read_text().splitlines()
        return ok("".join(f"{ln}\n" for ln in lines if cluster is None or ln.split("|")[0] == cluster))

    def squeue(self, argv: List[str], clusters: List[str]) -> Answer:
        known = {"--noheader", "-h", "--array", "-r", "--states", "-t", "--format", "-o", "--jobs", "-j", "--user",
                 "-u", "--clusters", "-M"}
        self._only(argv, known)
        if not _has(argv, "--noheader", "-h"):
            raise AssertionError("FakeSlurm prints squeue only with --noheader")
        fmt = _opt(argv, "--format", "-o")
        if not fmt:
            raise AssertionError("FakeSlurm prints squeue only with --format")
        states = (_opt(argv, "--states", "-t") or "").lower()
        listed = {w.upper() for w in states.split(",")} if states not in ("", "all") else set()  # squeue --states=A,B
        jobs = [j for j in (_opt(argv, "--jobs", "-j") or "").split(",") if j]
        rows = [r for r in self.queue if r["cluster"] in clusters]
        if jobs:
            rows = [r for r in rows if _wanted(r["i"], jobs)]
            if not rows and len(jobs) == 1:
                return fail(ERRORS["squeue invalid-job-id"])
        if listed:
            rows = [r for r in rows if _state_word(r["T"]) in listed]
        elif states != "all":
            rows = [r for r in rows if _state_word(r["T"]) not in FINAL]
        if _has(argv, "--array", "-r"):  # one line per task: only the tasks asked for
            rows = [{**r, "i": i} for r in rows for i in _expanded(r["i"]) if not jobs or _wanted(i, jobs)]

        def line(row: Dict[str, str]) -> str:
            def field(m: re.Match) -> str:
                if m.group(1) not in row or m.group(1) == "cluster":
                    raise AssertionError(f"FakeSlurm has no data for squeue %{m.group(1)}; capture it into the fixtures")
                return row[m.group(1)]

            return re.sub(r"%\.?-?\d*([A-Za-z])", field, fmt) + "\n"

        return ok("".join(line(r) for r in rows))

    def sacct(self, argv: List[str], clusters: List[str]) -> Answer:
        known = {"--allocations", "-X", "--duplicates", "-D", "--parsable2", "-P", "--noheader", "-n", "--format", "-o",
                 "--jobs", "-j", "--clusters", "-M", "--starttime", "-S", "--endtime", "-E", "--allusers", "-a"}
        self._only(argv, known)
        if not self.accounting_storage:  # src/sacct/options.c
            return fail("sacct: error: Slurm accounting storage is disabled")
        if not _has(argv, "--parsable2", "-P") or not _has(argv, "--noheader", "-n"):
            raise AssertionError("FakeSlurm prints sacct only with --parsable2 --noheader")
        fmt = _opt(argv, "--format", "-o")
        if not fmt:
            raise AssertionError("FakeSlurm prints sacct only with --format")
        fields = fmt.split(",")
        jobs = [j for j in (_opt(argv, "--jobs", "-j") or "").split(",") if j]
        rows = [r for r in self.acct if r["Cluster"] in clusters and (not jobs or _wanted(r["JobID"], jobs))]
        if _has(argv, "--allocations", "-X"):
            rows = [r for r in rows if "." not in r["JobID"]]
        if not _has(argv, "--duplicates", "-D"):
            last = {(r["Cluster"], r["JobID"]): i for i, r in enumerate(rows)}
            rows = [r for i, r in enumerate(rows) if last[(r["Cluster"], r["JobID"])] == i]
        by_name = [{k.lower(): v for k, v in r.items()} for r in rows]

        def value(row: Dict[str, str], name: str) -> str:
            if name.lower() not in row:
                raise AssertionError(f"FakeSlurm has no data for sacct field {name}; capture it into the fixtures")
            return row[name.lower()]

        return ok("".join("|".join(value(r, f) for f in fields) + "\n" for r in by_name))

    @staticmethod
    def _only(argv: Sequence[str], known: Iterable[str]) -> None:
        for a in argv[1:]:
            if a.startswith("-") and a.split("=", 1)[0] not in known:
                raise AssertionError(f"FakeSlurm does not know {argv[0]} {a}; teach it from real Slurm output")

    def sbatch(self, argv: List[str], clusters: List[str], call: Call) -> Answer:
        wrap = _opt(argv, "--wrap")
        path = argv[-1] if wrap is None and not argv[-1].startswith("-") else None
        components: List[List[str]] = [[]]
        if path is not None:
            try:
                text = Path(path).read_text()
            except OSError:  # src/sbatch/sbatch.c: error("Unable to open file %s", filename)
                return fail(f"sbatch: error: Unable to open file {path}")
            call.script_path, call.script = path, text
            for line in text.splitlines()[1:]:
                if line.startswith("#SBATCH"):
                    words = shlex.split(line[len("#SBATCH"):], comments=True)
                    if words[:1] in (["hetjob"], ["packjob"]):
                        components.append([])
                    else:
                        components[-1] += words
                elif line.strip() and not line.startswith("#"):
                    break  # sbatch reads #SBATCH lines up to the first command
        given = argv[1:-1] if path is not None else argv[1:]
        opts = [*components[0], *given]  # the command line wins over the script
        for comp in components:
            part = _opt([*comp, *given], "--partition", "-p")
            if part is not None and part not in PARTITIONS:  # slurmctld's message, then sbatch's
                return fail(f"sbatch: error: invalid partition specified: {part}\n"
                            "sbatch: error: Batch job submission failed: Invalid partition name specified")
        base = str(self.next_id if self.reuse_ids else max([self.next_id, *(int(_base(r["i"])) + 1 for r in self.queue),
                                                             *(int(_base(r["JobID"])) + 1 for r in self.acct)]))
        self.next_id = int(base) + 1
        cluster = clusters[0]
        default_name = "wrap" if path is None else os.path.basename(path)
        reason = ("JobHeldUser" if _has(opts, "--hold", "-H") else "Dependency" if _opt(opts, "--dependency", "-d")
                  else "BeginTime" if _opt(opts, "--begin", "-b") else "None")
        array = _opt(opts, "--array", "-a")
        comment = _opt(opts, "--comment") or "(null)"
        ids = ([f"{base}+{i}" for i in range(len(components))] if len(components) > 1
               else [f"{base}_[{array}]"] if array else [base])
        for i, job_id in enumerate(ids):
            name = _opt([*components[i], *given], "--job-name", "-J") or default_name
            self.queue.append({"i": job_id, "T": "PENDING", "r": reason, "N": "", "j": name, "k": comment,
                               "q": _opt(opts, "--qos", "-q") or "normal", "cluster": cluster})
            self.acct.append({"JobID": job_id, "JobName": name, "State": "PENDING", "ExitCode": "0:0",
                              "NodeList": "None assigned", "Start": "Unknown", "End": "Unknown", "Reason": reason,
                              "Cluster": cluster, "SubmitLine": " ".join(argv)})
        self.waits[(cluster, base)] = bool(_opt(opts, "--dependency", "-d"))
        call.job_id = base
        where = f";{cluster}" if _opt(argv, "--clusters", "-M") else ""
        if _has(argv, "--parsable"):
            return ok(f"{base}{where}\n")
        return ok(f"Submitted batch job {base}" + (f" on cluster {cluster}" if where else "") + "\n")

    def _rows(self, cluster: str, job_id: str) -> Tuple[List[Dict[str, str]], List[Dict[str, str]]]:
        return ([r for r in self.queue if r["cluster"] == cluster and _wanted(r["i"], [job_id])],
                [r for r in self.acct if r["Cluster"] == cluster and _wanted(r["JobID"], [job_id])])

    def release(self, cluster: str, ids: List[str]) -> Answer:
        errors = []
        for job_id in ids:
            queued, acct = self._rows(cluster, job_id)
            if not queued:  # src/scontrol/update_job.c: "%s for job %s"
                errors.append(f"Invalid job id specified for job {job_id}")
            elif all(_state_word(r["T"]) in FINAL for r in queued):
                errors.append(f"Job has already finished for job {job_id}")
            else:
                waits = self.waits.get((cluster, _base(job_id)), False)
                for r in [*queued, *acct]:
                    for key in ("r", "Reason"):
                        if r.get(key) == "JobHeldUser":
                            r[key] = "Dependency" if waits else "None"
        return fail("".join(e + "\n" for e in errors)) if errors else ok()

    def scancel(self, argv: List[str], cluster: str, ids: List[str]) -> Answer:
        signal = _opt(argv, "--signal", "-s")
        checked = signal is not None or _has(argv, "--batch", "-b")
        errors = []
        for job_id in ids:
            queued, acct = self._rows(cluster, job_id)
            live = [r for r in queued if _state_word(r["T"]) not in FINAL]
            if not live:
                if checked:  # src/scancel/scancel.c, _verify_job_ids(); a plain scancel ignores it
                    errors.append(f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified")
                continue
            if checked:
                continue  # a signal: the fake runs no program that could end on it
            now = _now()
            for r in live:
                r.update(T="CANCELLED", r="None")
            latest = {r["JobID"]: r for r in acct}
            for r in latest.values():
                if _state_word(r["State"]) not in FINAL:
                    r.update(State=f"CANCELLED by {os.getuid()}", End=now,
                             Start=now if r["Start"] == "Unknown" else r["Start"])
        return fail("".join(e + "\n" for e in errors)) if errors else ok()


class FakeSlurm(SlurmCli):
    """Slurm 22.05, faked at SlurmCli's one injection point; see the module's docstring.

    Args:
        version: what ``scontrol show config`` says SLURM_VERSION is (its other lines: the captured 22.05.8 ones).
        fixtures: start with the jobs of tests/fixtures' squeue and sacct outputs (7 and 8) in the queue and in accounting.
        first_id: the lowest id sbatch hands out (always above every job the fake knows).
        accounting: False: a cluster without slurmdbd (sacct says so; scontrol show config too).
        cluster: the cluster of this SlurmCli (as ``on(cluster)``).
    """

    def __init__(self, *, version: str = "22.05.8", fixtures: bool = True, first_id: int = 100, accounting: bool = True,
                 cluster: Optional[str] = None) -> None:
        self.said: List[str] = []
        self.pauses: List[float] = []
        super().__init__(progress=self.said.append, sleep=self.pauses.append, cluster=cluster)
        self.slurm = _Slurm(version, first_id)
        self.slurm.accounting_storage = accounting
        if fixtures:
            self.slurm.add_queue((FIXTURES / f"squeue-{VERSION}.txt").read_text(), LOCAL)
            self.slurm.add_acct((FIXTURES / f"sacct-{VERSION}.txt").read_text(), LOCAL)

    # -- what a test sets up ---------------------------------------------------------------

    def add_queue(self, text: str, cluster: str = LOCAL) -> FakeSlurm:
        """Rows squeue shows, as ``squeue --format='%i|%T|%r|%N|%j|%k'`` prints them (``%k`` optional)."""
        self.slurm.add_queue(text, cluster)
        return self

    def add_accounting(self, text: str, cluster: str = LOCAL) -> FakeSlurm:
        """Rows sacct shows, as ``sacct -P -n -o JobID,JobName,State,ExitCode,NodeList,Start,End,Reason`` prints them."""
        self.slurm.add_acct(text, cluster)
        return self

    def add_job(self, job_id: str, state: str = "RUNNING", *, name: str = "job", reason: str = "None",
                exit_code: str = "0:0", nodes: Optional[str] = None, comment: str = "(null)", queued: bool = True,
                accounted: bool = True, cluster: str = LOCAL) -> FakeSlurm:
        """A job (``12``, ``12_3``, ``12+1``) as squeue (``queued``) and sacct (``accounted``) show it."""
        word = _state_word(state)
        started = word != "PENDING"
        host = nodes if nodes is not None else ("n1" if started else "")
        start = "2026-11-22T03:10:05" if started else "Unknown"
        end = "2026-11-22T03:10:11" if word in FINAL else "Unknown"
        if queued:
            self.add_queue(f"{job_id}|{word}|{reason}|{host}|{name}|{comment}", cluster)
        if accounted:
            self.add_accounting(f"{job_id}|{name}|{state}|{exit_code}|{host or 'None assigned'}|{start}|{end}|{reason}",
                                cluster)
        return self

    def answer(self, cmd: str, *answers: Answer) -> FakeSlurm:
        """The next calls of ``cmd`` (``"sbatch"``, ``"scontrol release"``: a program and words its command
        line holds) get ``answers``, one each, in order; then Slurm answers again."""
        self.slurm.scripts[cmd] = (list(answers), False)
        return self

    def always(self, cmd: str, answer: Answer) -> FakeSlurm:
        """Every later call of ``cmd`` gets ``answer``."""
        self.slurm.scripts[cmd] = ([answer], True)
        return self

    def down(self, daemon: str, timeout: bool = False) -> FakeSlurm:
        """``slurmctld`` (squeue, sbatch, scancel, scontrol) or ``slurmdbd`` (sacct, sacctmgr) is down,
        or (``timeout``) does not answer in time: their commands fail as real Slurm's do."""
        assert daemon in ("slurmctld", "slurmdbd"), daemon
        self.slurm.down[daemon] = timeout
        return self

    def up(self, daemon: str) -> FakeSlurm:
        self.slurm.down.pop(daemon, None)
        return self

    # -- what a test checks ----------------------------------------------------------------

    @property
    def log(self) -> List[Call]:
        return self.slurm.log

    def called(self, cmd: str) -> List[Call]:
        """The calls of ``cmd`` (as for :meth:`answer`), oldest first."""
        return [c for c in self.log if c.matches(cmd)]

    @property
    def submitted(self) -> List[Call]:
        """The sbatch calls that submitted a job (``job_id``; ``script_path`` and ``script`` unless --wrap)."""
        return [c for c in self.log if c.job_id is not None]

    @property
    def cancelled(self) -> List[str]:
        """Every job id given to scancel, in order."""
        return [j for c in self.called("scancel") for j in c.words]

    # -- SlurmCli's injection point --------------------------------------------------------

    def _once(self, argv: Sequence[str], env: Optional[Dict[str, str]]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        call = Call(argv, None if env is None else dict(env), self.cluster)
        with self._lock:
            self.calls.append(list(argv))
            self.slurm.log.append(call)
            scripted = self.slurm.scripted(argv)
            if scripted is MISSING:
                raise SlurmNotFoundError(argv[0])
            if scripted is not None and not scripted.went_through:
                answer = scripted
            elif scripted is None and _daemon(argv) in self.slurm.down:
                answer = unreachable(argv, timeout=self.slurm.down[_daemon(argv)])
            else:
                answer = self.slurm.run(argv, call)
                if scripted is not None:
                    answer = scripted
        call.answer = answer
        return subprocess.CompletedProcess(argv, answer.returncode, answer.stdout, answer.stderr)
