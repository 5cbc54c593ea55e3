"""An adaptive search on Slurm: trials as jobs of the app, decisions as short singleton jobs.

    python -m torchx_forge.slurm.search --state-dir DIR --app APP     (a decision job)
    python -m torchx_forge.slurm.search --state-dir DIR --app APP --relay TAG   (a relay job)

**Submit** (:mod:`~torchx_forge.slurm.search_submit`, from ``torchx run``): the spec and the
first ``parallel`` asked trials are written to ``searches/<submission>/`` in the state dir, then
each trial is submitted held as task k of the app's sweep script (``--array=k``: trial k is
replica k) with ``FORGE_SEARCH_TRIAL`` (its file: the task adds its parameters),
``FORGE_SEARCH_REPORT`` and ``FORGE_SEARCH_BUDGET``. A trial whose tasks ended submits a decision
job (``--dependency=singleton``, named ``forge-search-<app>``) from its own script
(:mod:`~torchx_forge.slurm.search_end`); each trial job also gets a relay job
(``--dependency=afterany:<trial>``, named ``forge-relay-<app>``) that submits the same decision
job when the trial job ended however it ended, unless it exists. Slurm runs at most one job of
that name at a time, so the study has exactly one writer, and decision jobs queue in the order
their trials ended. The record lists the not-yet-asked trials as a planned job; then one release.

**A decision** (:func:`decide_step`): reads every trial file and report, reconciles each asked or
running trial with Slurm's answer (the app's task views: squeue, sacct, the launcher's state
files), calls :func:`~torchx_forge.search.decide` and :func:`~torchx_forge.search.apply`, writes
the trial files that changed (atomically) BEFORE submitting, then submits each ASKED trial that has
no job yet. Every trial job is tagged ``<submission>-t<number>r<rung>a<attempt>`` in its
``--comment`` (its relay job: the same with ``d``, its decision job with ``dr``); a tag found in the record or in squeue is
not submitted again, so a decision killed halfway and run again submits nothing twice: a trial job
is submitted held and released once linked to the app, so squeue keeps one whose decision died
before linking it. Promoted ASHA trials are the same replica (the same run id and checkpoint
dir): the launcher resumes them from their checkpoint. A cancelled app (``cancelled.json``) makes
a decision do nothing. A decision that changed something looks again before it exits (trials
that ended while it ran). A decision job is requeued when preempted and runs the decision again when
its process dies; a search left with no decision job at all is given one by the next status, and
``torchx forge retry`` asks its failed or cancelled trials again (:mod:`~torchx_forge.slurm.search_status`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

from torchx_forge.core import envvars, layout
from torchx_forge.core.formats import KEY, format_of
from torchx_forge.core.options import SAME_PLACE
from torchx_forge.core.record import replace
from torchx_forge.core.states import JobKind, SlurmState
from torchx_forge.core.storage import store_wait
from torchx_forge.errors import ForgeError
from torchx_forge.slurm.cli import SlurmCli
from torchx_forge.slurm.resubmit import _resubmit_argv, clean_env
from torchx_forge.slurm.scripts import sbatch_script
from torchx_forge.slurm.search_budget import search_spec
from torchx_forge.slurm.search_end import DECISION_SUFFIX, PLACEHOLDER, decide_script, decide_sh_rel, record_self
from torchx_forge.slurm.search_reconcile import reask, reconcile, trial_of_tag, trial_tag
from torchx_forge.state.files import be_patient
from torchx_forge.state.records import AppRecord, JobRecord, Records
from torchx_forge.state.store import Store

MODULE = "torchx_forge.slurm.search"
#: the role metadata key of a search (its spec as JSON)
SEARCH_META = "forge_search"
DECIDE_TIME = "00:10:00"
#: the format of a search's spec.json this torchx-forge writes
SPEC_FORMAT = 1
#: rounds of a decision at most: it looks again while a round changed something (trials ended meanwhile)
LOOKS = 5
#: runs of a decision in its job when its process dies (killed, out of memory, the state dir away)
DECIDE_TRIES = 3
#: squeue's reason for a job held by its user (a trial job a decision submitted, not released yet)
HELD = "JobHeldUser"


def spec_of(app: Any) -> Any:
    """The search (a SearchSpec) an AppDef from forge.search carries, else None."""
    for role in app.roles if app is not None else ():
        raw = (role.metadata or {}).get(SEARCH_META)
        if raw:
            from torchx_forge.search import SearchSpec  # noqa: PLC0415

            return SearchSpec.from_json(raw)
    return None


def trial_rel(sdir: str, number: int) -> str:
    return f"{sdir}/trials/{number:06d}.json"


def report_rel(sdir: str, number: int) -> str:
    return f"{sdir}/reports/{number:06d}.json"


def read_head(records: Records, sdir: str) -> Dict[str, Any]:
    """The search's spec.json (spec, template, python, submission), written by the submit before any job."""
    head = records.store.read_json(f"{sdir}/spec.json")
    if not isinstance(head, dict):
        raise FileNotFoundError(f"{records.store.url_of(f'{sdir}/spec.json')}: no search spec")
    format_of(head, "search spec", records.store.url_of(f"{sdir}/spec.json"), SPEC_FORMAT)  # none: 1
    return head


def open_search(cli: SlurmCli, records: Records, rec: AppRecord) -> Tuple[Search, JobRecord, str]:
    """(the search of ``rec`` with its budget as raised, its trials' job template, the python its
    decisions run with), from its spec.json."""
    head = read_head(records, rec.meta.search)
    search = Search(cli, records, rec.meta.search, rec.submission, search_spec(records, rec.meta.search, head))
    return search, JobRecord.from_file(head["template"], "template"), str(head["python"])


class Search:
    """One search's files and jobs: what the submit and every decision share."""

    def __init__(self, cli: SlurmCli, records: Records, sdir: str, submission: str, spec: Any) -> None:
        self.cli, self.records, self.sdir, self.submission, self.spec = cli, records, sdir, submission, spec
        self.store = records.store

    # -- files -------------------------------------------------------------------------------------

    def write_spec(self, template: JobRecord, python: str) -> None:
        self.store.write_json(f"{self.sdir}/spec.json", {KEY: SPEC_FORMAT, "spec": self.spec.to_json(),
                                                         "template": template.to_file(), "python": python,
                                                         "submission": self.submission})

    def write_trial(self, trial: Any) -> None:
        self.store.write_json(trial_rel(self.sdir, trial.number), trial.to_json())

    def trials(self) -> List[Any]:
        from torchx_forge.search import Trial, with_report  # noqa: PLC0415

        out = []
        reports = self.store.read_many_json(f"{self.sdir}/reports")
        for stem, obj in sorted(self.store.read_many_json(f"{self.sdir}/trials").items()):
            t = Trial.from_json(obj, stem)
            if stem in reports:
                t = with_report(t, json.dumps(reports[stem]), self.spec.metric, stem)
            out.append(t)
        return out

    # -- jobs --------------------------------------------------------------------------------------

    def trial_argv(self, template: JobRecord, app_id: Optional[str], trial: Any, hold: bool) -> List[str]:
        from torchx_forge.search.spec import RUNG_ALGORITHMS  # noqa: PLC0415

        argv = _resubmit_argv(template.argv, app_id or "x", [trial.number], 0)
        export = [f"ALL,{envvars.SEARCH_TRIAL.name}={self.store.url_of(trial_rel(self.sdir, trial.number))}",
                  f"{envvars.SEARCH_REPORT.name}={self.store.url_of(report_rel(self.sdir, trial.number))}"]
        if app_id:
            export.append(f"{envvars.APP_ID.name}={app_id}")
        if self.spec.algorithm in RUNG_ALGORITHMS and trial.budget is not None:
            export.append(f"{envvars.SEARCH_BUDGET.name}={trial.budget}")
        export.append(f"{envvars.SEARCH_TAG.name}={trial_tag(self.submission, trial)}")
        if self.store.local:  # decide.sh: the trial's script submits its decision job as its tasks end
            export.append(f"{envvars.SEARCH_DECIDE.name}={self.store.url_of(decide_sh_rel(self.sdir))}")
        argv = [f"--export={','.join(export)}" if a.startswith("--export=") else a for a in argv]
        return argv if hold else [a for a in argv if a != "--hold"]

    def decide_argv(self, rec_name: str, log_dir: str, app_id: str, after: Optional[str], python: str,
                    flags: Sequence[str], hold: bool, reask: str = "", relay: str = "", tag: str = "") -> List[str]:
        """A decision job, one at a time (singleton), at once. With ``after`` (a trial job), a relay
        job instead: it runs when that trial ends, whatever the end, and submits the decision job
        tagged ``relay`` then. (A singleton job waits for every job of its name submitted before it,
        pending ones too: decision jobs submitted with their trials ran in the trials' start order,
        a trial that ended early waiting for the decisions of trials still running.) Requeued when
        preempted, and run again in the job when its process dies (a decision is safe to run again);
        ``reask``: Slurm end states whose trials it asks again first (``forge retry``); ``tag``: the
        decision job's own, for it to link itself to the app (decide.sh's, :mod:`~torchx_forge.slurm.search_end`)."""
        extra = ["--relay", relay] if after else (["--reask", reask] if reask else [])
        extra += ["--tag", tag] if tag else []
        command = shlex.join([python, "-m", MODULE, "--state-dir", self.store.url, "--app", app_id, *extra])
        tries = " ".join(str(i) for i in range(1, DECIDE_TRIES + 1))
        again = (f"for forge_try in {tries}; do {command} && exit 0; echo \"torchx-forge: the decision"
                 f" ended with $?: running it again ($forge_try of {DECIDE_TRIES})\"; sleep 5; done; exit 1")
        keep = [f for f in flags if f.split("=", 1)[0] in SAME_PLACE]
        out = f"{layout.log_prefix(log_dir.replace('%', '%%'), rec_name)}search-%j.log"
        dependency, kind = (f"afterany:{after}", "relay") if after else ("singleton", "search")
        return ["sbatch", "--parsable", *(["--hold"] if hold else []), f"--dependency={dependency}",
                f"--job-name=forge-{kind}-{layout.safe_name(app_id)}", f"--time={DECIDE_TIME}", "--nodes=1",
                "--ntasks=1", "--cpus-per-task=1", "--mem=512", "--requeue", f"--output={out}", *keep,
                f"--wrap={again}"]

    def write_decide_script(self, rec_name: str, log_dir: str, app_id: str, python: str, flags: Sequence[str]) -> None:
        """``decide.sh`` (:mod:`~torchx_forge.slurm.search_end`), on a local state dir (a trial reads
        no URL from bash: on an object store the relay jobs alone submit decisions)."""
        if not self.store.local:
            return
        argv = self.decide_argv(rec_name, log_dir, app_id, None, python, flags, hold=False, tag=PLACEHOLDER)
        argv = self.cli.on_cluster(argv, PLACEHOLDER)  # as a relay's cli.sbatch would run it
        self.store.write_bytes(decide_sh_rel(self.sdir), decide_script(argv).encode())

    def submit_decision(self, rec: AppRecord, template: JobRecord, python: str, tag: str, after: Optional[str] = None,
                        reask: str = "") -> str:
        """A decision job tagged ``tag``, linked to the app."""
        argv = self.decide_argv(rec.name, rec.log_dir, rec.app_id, after, python, template.argv, hold=False, reask=reask,
                                relay=f"{tag}r")
        decision = self.cli.sbatch(argv, env=clean_env(), tag=tag)
        self.records.add_job(rec.app_id, JobRecord(job_id=decision, kind=JobKind.DECIDE.value, argv=argv, tag=tag))
        return decision

    def submit_trial(self, rec: AppRecord, template: JobRecord, trial: Any, python: str,
                     held: Collection[str] = ()) -> List[str]:
        """Trial ``trial``'s job and its decision job, unless a job of their tag exists (record or squeue).

        The trial is submitted held, linked to the app, then released, so a decision killed in
        between leaves a job squeue keeps (and the next decision finds by its tag: a job that ran
        and left squeue could not be told from one never submitted), and a trial job in ``held``
        (ids of the app's jobs held by the user) is released. Its decision job comes after: one
        killed before it is submitted by the next decision (or status: :mod:`~torchx_forge.slurm.search_status`).
        Returns the ids it submitted."""
        tag = trial_tag(self.submission, trial)
        known = {j.tag: j for j in rec.jobs}
        added = []
        job = known.get(tag)
        if job is None:
            found = self.cli.find_tagged(tag)
            argv = self.trial_argv(template, rec.app_id, trial, hold=True)
            job_id = found[0] if found else sbatch_script(self.cli, argv, env=clean_env(), tag=tag)
            added += [] if found else [job_id]
            prev = [j.job_id for j in rec.jobs if j.job_kind is JobKind.ARRAY and trial.number in (j.tasks or [])]
            job = replace(template, job_id=job_id, argv=argv, tasks=[trial.number], planned=False, tag=tag,
                          retry_of=prev[-1] if prev else None, created=time.time(), companion=None)
            self.records.add_job(rec.app_id, job)
            self.cli.release([job_id])
        elif job.job_id in held:
            self.cli.release([job.job_id])
        if f"{tag}d" not in known and not self.cli.find_tagged(f"{tag}d"):
            added.append(self.submit_decision(rec, template, python, f"{tag}d", after=job.job_id))
        return added


def decide_step(cli: SlurmCli, records: Records, app_id: str, python: str, say: Any = print,
                again: Collection[str] = ()) -> int:
    """The decision of the search of ``app_id`` (see the module docstring). Safe to run again at any point.
    ``again``: the Slurm end states of the trials to ask again first (:func:`reask`).

    A decision that changed something looks again before it exits (up to :data:`LOOKS` rounds, each
    one squeue and sacct): trials that ended while it ran are taken now, by the one writer already
    running, not by the next decision job, which would start a scheduling cycle or more later."""
    code, changed = _decide_round(cli, records, app_id, python, say, again)
    for _ in range(LOOKS - 1):
        if not changed:
            break
        code, changed = _decide_round(cli, records, app_id, python, say, (), first=False)
    return code


def _decide_round(cli: SlurmCli, records: Records, app_id: str, python: str, say: Any,
                  again: Collection[str], first: bool = True) -> Tuple[int, bool]:
    """One round of :func:`decide_step`: (exit code, whether it took a trial's end, asked or
    submitted something, and the search goes on). A later round with nothing to do says nothing."""
    from torchx_forge.search import apply, decide, summary  # noqa: PLC0415
    from torchx_forge.slurm.status import gather  # noqa: PLC0415

    rec, code = _open(records, app_id, say)
    if rec is None:
        return code, False
    search, template, _ = open_search(cli, records, rec)
    spec = search.spec
    # Slurm first, then the files: a trial Slurm says ended has written its last report by then
    # (read before, a trial ending in between was taken with the report of its step before last)
    views = gather(cli, records, [rec]).views.get(rec.app_id, [])
    read = search.trials()
    trials = reconcile(spec, read, rec, views, rec.submission, records.task_reports(rec.app_id))
    if again:
        was = {t.number: t.state for t in trials}
        trials = reask(trials, rec, views, rec.submission, again)
        asked = [t.number for t in trials if t.state is not was[t.number]]
        say(f"torchx-forge: trials asked again (one more attempt each, from their checkpoints): {asked or 'none'}")
    decision = decide(spec, trials, 0)
    after = apply(trials, decision)
    before = {t.number: t.to_json() for t in read}
    changed = [t for t in after if before.get(t.number) != t.to_json()]
    for t in sorted(changed, key=lambda t: (t.number in before, t.number)):  # new ones first
        search.write_trial(t)
    progressed = bool(decision.new or decision.promote or decision.prune or decision.failed or decision.told)
    if first or progressed:
        say(f"torchx-forge: {time.strftime('%H:%M:%S')} decision: {len(decision.new)} new, promote {dict(decision.promote)},"
            f" prune {list(decision.prune)}, failed {list(decision.failed)}")
    if decision.stop_reason:
        say(f"torchx-forge: {decision.stop_reason}")
        return 0, False
    from torchx_forge.search import TrialState  # noqa: PLC0415

    submitted: List[str] = []
    held = {v.key.split("_")[0] for v in views if v.slurm_state is SlurmState.PENDING and v.reason == HELD}
    for t in after:
        if t.state is TrialState.ASKED:
            if records.cancelled(app_id):
                say("torchx-forge: the search was cancelled meanwhile: submitting nothing more")
                return 0, False
            rec = records.load(app_id) or rec
            ids = search.submit_trial(rec, template, t, python, held)
            submitted += ids
            if ids:
                say(f"torchx-forge: trial {t.number} (rung {t.rung}, attempt {t.attempts}): job(s) {', '.join(ids)}")
    if first or progressed or submitted:
        say(summary(spec, after))
    return 0, bool(progressed or submitted) and not decision.over


def _open(records: Records, app_id: str, say: Any) -> Tuple[Optional[AppRecord], int]:
    """(the search's record, 0) for a decision or relay to go on; else (None, exit code), said why:
    no such search (1), or it was cancelled (0: nothing to do)."""
    rec = records.load(app_id)
    if rec is None or not rec.meta.search:
        say(f"torchx-forge: no search app {app_id} in {records.store.url}")
        return None, 1
    if records.cancelled(app_id):
        say(f"torchx-forge: search {app_id} was cancelled: deciding nothing")
        return None, 0
    return rec, 0


def relay(cli: SlurmCli, records: Records, app_id: str, tag: str) -> int:
    """(a relay job: its trial job ended) Submit the search's decision job tagged ``tag`` now,
    unless the search was cancelled or a job of that tag exists (a relay run again)."""
    rec, code = _open(records, app_id, print)
    if rec is None:
        return code
    if any(j.tag == tag for j in rec.jobs) or cli.find_tagged(tag):
        print(f"torchx-forge: the decision job {tag} was submitted already")
        return 0
    search, template, python = open_search(cli, records, rec)
    if end_taken(search, tag):
        print(f"torchx-forge: {time.strftime('%H:%M:%S')} a trial job ended, and a decision took its end already:"
              " no decision job needed")
        return 0
    print(f"torchx-forge: {time.strftime('%H:%M:%S')} a trial job ended: decision job"
          f" {search.submit_decision(rec, template, python, tag)}")
    return 0


def end_taken(search: Search, relay_tag: str) -> bool:
    """Has a decision taken the end of the trial job whose relay submits ``relay_tag``
    (``<submission>-t<number>r<rung>a<attempt>dr``)? Its trial file says so: the trial went on (one
    rung up, one more attempt) or ended and was told. A decision that looked again while it ran
    (:func:`decide_step`) often has: the relay then adds no decision job to the queue."""
    from torchx_forge.search import Trial  # noqa: PLC0415

    parts = trial_of_tag(relay_tag[:-len(DECISION_SUFFIX)]) if relay_tag.endswith(DECISION_SUFFIX) else None
    obj = search.store.read_json(trial_rel(search.sdir, parts[0])) if parts else None
    if parts is None or not isinstance(obj, dict):
        return False
    try:
        t = Trial.from_json(obj, str(parts[0]))
    except (ValueError, ForgeError):  # a broken or newer file: the decision job says what is wrong with it
        return False
    return (t.number, t.rung, t.attempts) != parts or (t.state.finished and t.told)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description="(decision job) the next step of a search")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--reask", default="", help="ask the FAIL trials whose job ended in these Slurm states again")
    p.add_argument("--relay", default="", help="(a relay job) submit the decision job of this tag, and nothing else")
    p.add_argument("--tag", default="", help="(a decision job a trial's script submitted) its tag: it links itself to the app")
    args = p.parse_args(argv)
    be_patient(store_wait())
    records = Records(Store(args.state_dir))
    rec = records.load(args.app)
    cli = SlurmCli(cluster=(rec.cluster or None) if rec else None)
    if args.relay:
        sys.exit(relay(cli, records, args.app, args.relay))
    if args.tag:
        record_self(records, args.app, args.tag)
    sys.exit(decide_step(cli, records, args.app, sys.executable, again=[w for w in args.reask.split(",") if w]))


if __name__ == "__main__":
    main()
